"""Input-pipeline throughput (clips/s) at the paper's training shape: S=24, N=128, 384x512 crops.

Generates a synthetic PointOdyssey-layout root (540x960 frames, like PointOdyssey) in a temporary
directory with ``data_pipelines.synthetic`` (or, when that module is missing, in-memory sequences of
random frames, said in the output), then times

* ``stream``: the tf.data pipeline (``make_train_iterator``, parallel map, batching), and
* ``per_clip``: one clip at a time in this thread, split into loading (JPEG/PNG decode, annotations)
  and processing (augmentations, filters, FPS).

Prints one JSON object. ``train_step_s`` is left as None: the lead fills in the train-step time.

    python benchmarks/bench_pipeline.py [--batches 8] [--batch 2] [--frames 64] [--seqs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from objtrack_jax.data_pipelines import (  # pylint: disable=wrong-import-position
    pipeline, sources, transforms)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine, peak_rss_mb  # noqa: E402


def _config(root: str, args):
    """The data config of this benchmark (an ml_collections.ConfigDict)."""
    c = pipeline.default_data_config()
    c.root = root
    c.clip_len, c.num_points, c.crop_size = 24, 128, (384, 512)
    c.frame_strides = (1, 2)
    c.clip_stride = 8
    c.num_parallel_calls = args.parallel
    c.prefetch = 2
    return c


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=8, help="timed batches (after 2 warm-up)")
    p.add_argument("--batch", type=int, default=2, help="global batch (paper code: 2)")
    p.add_argument("--frames", type=int, default=64, help="frames per synthetic sequence")
    p.add_argument("--seqs", type=int, default=2, help="synthetic sequences")
    p.add_argument("--points", type=int, default=2048, help="annotated points per sequence")
    p.add_argument("--parallel", type=int, default=-1, help="num_parallel_calls (-1 = AUTOTUNE)")
    p.add_argument("--per-clip", type=int, default=6, help="clips timed one at a time")
    args = p.parse_args(argv)
    pipeline.hide_accelerators_from_tf()

    tmp = tempfile.TemporaryDirectory(prefix="bench_pipeline_")
    try:
        from objtrack_jax.data_pipelines import synthetic  # pylint: disable=import-outside-toplevel
    except ImportError:
        synthetic = None
    t0 = time.perf_counter()
    if synthetic is not None:
        synthetic.generate_dataset(tmp.name, num_seqs={"train": args.seqs}, frames=args.frames,
                                   size=(540, 960), num_points=args.points, progress=False,
                                   write_depths=False)
        data_note = f"synthetic.generate_dataset root in a temp dir ({args.seqs} seqs)"
        source = None
    else:  # in-memory random clips (no decoding cost: an upper bound)
        rng = np.random.default_rng(0)
        seqs = []
        for _ in range(args.seqs):
            t = args.frames
            base = rng.uniform(0, [960, 540], (1, args.points, 2))
            trajs = (base + np.cumsum(rng.normal(0, 2, (t, args.points, 2)), 0)).astype(np.float32)
            masks = np.repeat((np.arange(960)[None] // 120 + 1).astype(np.uint8)[None], 540, 1)
            seqs.append(dict(rgbs=rng.integers(0, 256, (t, 540, 960, 3), dtype=np.uint8),
                             masks=np.broadcast_to(masks, (t, 540, 960)), trajs=trajs,
                             visibs=np.ones((t, args.points), bool),
                             valids=np.ones((t, args.points), bool)))
        data_note = "data_pipelines.synthetic not available: in-memory random clips (no JPEG decode)"
        source = "memory"
    gen_s = time.perf_counter() - t0

    c = _config(tmp.name, args)
    src = sources.in_memory_source(seqs, c) if source == "memory" else sources.make_source(c)

    # Per clip, in this thread: loading vs processing.
    maker = sources.ExampleMaker(src, c)
    load_s, proc_s, skipped = [], [], 0
    for g in range(args.per_clip):
        ci = maker.clip_index(g, 0)
        si, start, fs = (int(v) for v in src.table[ci])
        t1 = time.perf_counter()
        clip = src.load(si, start, fs, c.clip_len)
        t2 = time.perf_counter()
        ex = transforms.process_clip(clip, c, np.random.default_rng([c.seed, g, 0]))
        t3 = time.perf_counter()
        skipped += ex is None
        load_s.append(t2 - t1)
        proc_s.append(t3 - t2)

    # The tf.data stream.
    it = pipeline.make_train_iterator(c, args.batch, source=src, process_index=0, process_count=1)
    for _ in range(2):
        next(it)
    t1 = time.perf_counter()
    for _ in range(args.batches):
        b = next(it)
    stream_s = time.perf_counter() - t1
    it.close()
    clips = args.batches * args.batch

    result = dict(
        benchmark="input_pipeline",
        config=dict(clip_len=c.clip_len, num_points=c.num_points, crop_size=list(c.crop_size),
                    frame_strides=list(c.frame_strides), global_batch=args.batch,
                    num_parallel_calls=c.num_parallel_calls, augmentations="default_data_config",
                    source_frames="540x960", data=data_note, seqs=args.seqs, frames=args.frames,
                    annotated_points=args.points, clip_table_size=len(src)),
        machine=machine(affinity_cpus=len(os.sched_getaffinity(0))
                        if hasattr(os, "sched_getaffinity") else None),
        peak_rss_mb=peak_rss_mb(),  # clips/s is this benchmark's throughput (no points tracked)
        data_generation_s=round(gen_s, 2),
        stream_clips_per_s=round(clips / stream_s, 3),
        stream_batches_timed=args.batches,
        per_clip_load_s=round(float(np.median(load_s)), 4),
        per_clip_process_s=round(float(np.median(proc_s)), 4),
        per_clip_single_thread_clips_per_s=round(1.0 / float(np.median(np.add(load_s, proc_s))), 3),
        per_clip_skipped=int(skipped),
        batch_shapes={k: list(v.shape) for k, v in b.items() if k in ("rgbs", "masks", "trajs")},
        train_step_s=None,  # TO BE FILLED BY THE LEAD: train-step time at the same shape
        train_step_note="not measured here; the lead adds the jitted train-step time",
    )
    print(json.dumps(result, indent=1))
    tmp.cleanup()
    return result


if __name__ == "__main__":
    main()
