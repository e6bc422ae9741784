"""Static-and-slow benchmark: drift, jitter and the PIPs++ metrics on still and slow real-photo
scenes, for the model beside zero motion, Lucas-Kanade and DIS.

    python benchmarks/bench_static.py [--data-root data/real_static] [--checkpoint RUN]
        [--trackers model,zero,lk,dis] [--max-videos 6] [--max-points 128] [--[no-]anchor]
        [--out static.json]

The data is ``objtrack synth --preset real-static`` (generated into ``--data-root`` when it is
missing): 6 test sequences of 200 frames at 192x256 from the held-out evaluation photos, every one
still or slow (camera still or under ~0.3 px/frame, each object still or slow), with sensor noise,
JPEG, lighting drift and flicker and slight blur; exact ground truth. Queries: the points visible
at frame 0 (PIPs++ protocol), at most ``--max-points`` per video, evenly spread over the list.

Per tracker it reports the mean over videos of: ``drift_med_<t>`` / ``drift_p90_<t>`` (px from the
truth at frames 50, 100, 200 — here frame 199, the last), ``jitter`` (median frame-to-frame
residual px), d_1 ... d_16, d_avg, survival, MTE (256-scaled, ``metrics.pips_metrics``), and for
a tracker with a visibility output its occlusion accuracy and the recall of occluded
point-frames. The model runs at its weights' validated settings unless overridden.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, loadavg, machine, peak_rss_mb  # noqa: E402

DRIFT_AT = (50, 100, 199)


def _videos(root: str, split: str, max_videos: int):
    from objtrack_jax.data_pipelines import pointodyssey

    for seq in pointodyssey.list_sequences(root, split)[:max_videos]:
        anno = pointodyssey.load_annotations(seq)
        num = pointodyssey.sequence_length(seq, anno)
        yield os.path.basename(seq), pointodyssey.load_frames(seq, range(num)), anno


def _pick(ok: np.ndarray, max_points: int) -> np.ndarray:
    idx = np.flatnonzero(ok)
    if len(idx) > max_points:
        idx = idx[np.linspace(0, len(idx) - 1, max_points).round().astype(int)]
    return idx


def score(tracks: np.ndarray, visible, trajs: np.ndarray, visibs: np.ndarray, valids: np.ndarray,
          size) -> dict:
    """``tracks [N, T, 2]``, ``visible [N, T]`` or None; truth ``[T, N, ...]``."""
    from objtrack_jax import metrics

    e = np.swapaxes(tracks, 0, 1)
    row = {k: float(v[0]) for k, v in metrics.pips_metrics(e[None], trajs[None], valids[None],
                                                           size).items()}
    row.update(metrics.drift_metrics(e, trajs, valids, DRIFT_AT))
    if visible is not None:
        rates = metrics.occlusion_rates(np.swapaxes(np.asarray(visible, bool), 0, 1), visibs,
                                        valids)
        row["occlusion_accuracy"] = rates["occlusion_accuracy"]
        row["occlusion_recall"] = (float("nan") if rates["occlusion_recall"] is None
                                   else rates["occlusion_recall"])
    return row


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", default=os.path.join(REPO, "data", "real_static"))
    p.add_argument("--split", default="test")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--trackers", default="model,zero,lk,dis")
    p.add_argument("--max-videos", type=int, default=6)
    p.add_argument("--max-points", type=int, default=128)
    p.add_argument("--refine-scale", type=float, default=None)
    p.add_argument("--anchor", action=argparse.BooleanOptionalAction, default=None,
                   help="anchoring to the query frame (default: the weights' setting)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if not os.path.isdir(os.path.join(args.data_root, args.split)):
        from objtrack_jax.data_pipelines import synthetic

        synthetic.generate_dataset(args.data_root, preset="real-static", progress=False)
    from objtrack_jax import baselines
    from objtrack_jax.metrics import average_metrics

    trackers = [t.strip() for t in args.trackers.split(",") if t.strip()]
    model_fn = None
    if "model" in trackers:
        from objtrack_jax.model_io import load_model
        from objtrack_jax.tracking import track_queries

        model, params, info = load_model(args.checkpoint)
        from objtrack_jax.settings import resolve

        args.anchor = resolve(info, anchor=args.anchor).anchor is not None  # recorded as run
        kw = {k: v for k, v in dict(refine_scale=args.refine_scale, anchor=args.anchor).items()
              if v is not None}

        def model_fn(video, q):
            tracks, visible, _ = track_queries(model, params, info, video, q, progress=False, **kw)
            return tracks, visible

    load0 = loadavg()
    rows = {t: [] for t in trackers}
    seconds = {t: 0.0 for t in trackers}
    for name, video, anno in _videos(args.data_root, args.split, args.max_videos):
        keep = _pick(anno["visibs"][0] & anno["valids"][0], args.max_points)
        trajs, visibs = anno["trajs"][:, keep], anno["visibs"][:, keep]
        valids = anno["valids"][:, keep].astype(np.float64)
        q = np.concatenate([np.zeros((len(keep), 1)), trajs[0][:, ::-1]], 1).astype(np.float32)
        for t in trackers:
            t0 = time.perf_counter()
            tracks, visible = model_fn(video, q) if t == "model" else baselines.track(t, video, q)
            seconds[t] += time.perf_counter() - t0
            row = score(np.asarray(tracks, np.float64), visible, trajs, visibs, valids,
                        video.shape[1:3])
            rows[t].append(dict(video=name, **row))
            print(f"{name} {t}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()),
                  file=sys.stderr, flush=True)
    result = dict(
        benchmark="static", data_root=args.data_root, split=args.split,
        checkpoint=args.checkpoint or "shipped", refine_scale=args.refine_scale,
        anchor=args.anchor, max_points=args.max_points,
        videos=len(rows[trackers[0]]) if trackers else 0,
        mean={t: average_metrics(r) for t, r in rows.items()},
        seconds={t: round(s, 1) for t, s in seconds.items()},
        per_video=rows, machine=machine(loadavg_start=load0), peak_rss_mb=peak_rss_mb())
    text = json.dumps(result, indent=1, default=float)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return result


if __name__ == "__main__":
    main()
