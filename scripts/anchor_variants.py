"""Anchoring variants side by side on a dataset split, from one network run per video.

    python scripts/anchor_variants.py --data-root data/real_slow5 --split val \
        [--max-points 128] [--max-videos N] [--variant hold_still=8] [--variant ...] \
        [--checkpoint RUN] [--out variants.json]

Anchoring (:mod:`objtrack_jax.anchor`) runs after the network, so its settings can be compared
without re-running the network: each video is tracked once with the weights' validated settings
and anchoring off, then every :class:`~objtrack_jax.anchor.AnchorConfig` variant (the defaults,
then each ``--variant key=value[,key=value]``) anchors those tracks and fuses the visibility as
:func:`objtrack_jax.tracking.run_tracking` does (:func:`objtrack_jax.anchor.fuse_visibility`,
lost points hidden). Each variant is scored by :func:`objtrack_jax.evaluation.evaluate` (PIPs++
protocol, the points visible at frame 0 as ``objtrack eval`` picks them, ``still=True`` for the
occlusion accuracy and the recall of occluded point-frames, frame 0 included, mean over videos):
the defaults' row is what ``objtrack eval --dataset synthetic --data-root DATA --split SPLIT
--max-points N`` reports. JSON out, with the command, machine and date.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import time

import numpy as np

KEYS = ("d_1", "d_2", "d_4", "d_8", "d_16", "d_avg", "survival", "median_l2",
        "occlusion_accuracy", "occlusion_recall")


def parse_variant(text: str) -> dict:
    """``"hold_still=8,still_px=1.5"`` -> ``{"hold_still": 8, "still_px": 1.5}`` (typed as the
    :class:`AnchorConfig` field)."""
    from objtrack_jax.anchor import AnchorConfig

    fields = {f.name: f for f in dataclasses.fields(AnchorConfig)}
    out = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key not in fields:
            raise SystemExit(f"anchor_variants: error: unknown AnchorConfig field {key!r} in "
                             f"--variant {text!r}; fields: {sorted(fields)}")
        default = getattr(AnchorConfig(), key)
        if isinstance(default, bool):
            out[key] = value.lower() in ("1", "true", "yes")
        elif value.lower() == "none":
            out[key] = None
        else:
            out[key] = type(default)(float(value)) if default is not None else float(value)
    return out


def anchored(video, tracks, logits, queries, cfg, vis_threshold: float):
    """The network's ``tracks [N, T, 2]`` and visibility ``logits [N, T]`` anchored with ``cfg``
    and fused as :func:`objtrack_jax.tracking.run_tracking` does (:func:`objtrack_jax.post.visibility`): ``(tracks, visible [N, T],
    lost [N, T])``."""
    from objtrack_jax import anchor, post

    out, accepted, scores = post.anchor_tracks(video, tracks, queries, cfg)
    lost = scores == anchor.LOST_SCORE
    at_query = post.at_query_frame(np.round(queries[:, 0]).astype(int), tracks.shape[1])
    visible, _ = post.visibility(logits, vis_threshold, cfg, accepted, at_query, lost)
    return out, visible, lost


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--max-points", type=int, default=128)
    p.add_argument("--max-videos", type=int, default=None)
    p.add_argument("--variant", action="append", default=[])
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    from objtrack_jax import anchor
    from objtrack_jax.evaluation import evaluate
    from objtrack_jax.model_io import load_model
    from objtrack_jax.settings import resolve
    from objtrack_jax.tracking import run_tracking

    variants = [{}] + [parse_variant(v) for v in args.variant]
    model, params, info = load_model(args.checkpoint)
    settings = resolve(info, None)
    cache: dict = {}

    def network(video, queries):
        key = (video.shape, hash(video[:, ::7, ::7].tobytes()), queries.tobytes())
        if key not in cache:
            s = settings.replace(resolution=tuple(video.shape[1:3]), anchor=False)
            t0 = time.perf_counter()
            tracks, _, logits = run_tracking(model, params, video, queries, s)
            cache[key] = (tracks, logits, time.perf_counter() - t0)
            print(f"network: {video.shape[0]} frames, {len(queries)} points, "
                  f"{cache[key][2]:.1f} s", file=sys.stderr, flush=True)
        return cache[key][:2]

    def tracker_for(cfg):
        def track(video, queries):
            video, queries = np.asarray(video)[0], np.asarray(queries, np.float32)[0]
            tracks, logits = network(video, queries)
            out, visible, _ = anchored(video, tracks, logits, queries, cfg,
                                       settings.vis_threshold)
            return out[None], ~visible[None]
        return track

    rows = []
    for kw in variants:
        cfg = anchor.AnchorConfig(**kw)
        t0 = time.perf_counter()
        _, mean = evaluate("synthetic", args.data_root, tracker_for(cfg), None, info,
                           split=args.split, max_points=args.max_points,
                           max_videos=args.max_videos, progress=False, still=True)
        row = {"variant": kw or "defaults",
               **{k: None if mean.get(k) is None else round(float(mean[k]), 2) for k in KEYS},
               "num_videos": mean.get("num_videos"),
               "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    report = {
        "command": "python " + " ".join([os.path.relpath(__file__)] + list(argv or sys.argv[1:])),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"load {os.getloadavg()[0]:.1f}",
        "checkpoint": args.checkpoint or "shipped", "data_root": args.data_root,
        "split": args.split, "max_points": args.max_points,
        "network_seconds": round(sum(v[2] for v in cache.values()), 1), "rows": rows}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return report


if __name__ == "__main__":
    main()
