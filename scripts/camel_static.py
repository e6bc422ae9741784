"""Drift on a real static-camera video: camel.mp4's motionless background.

    python scripts/camel_static.py [--video ../shared/data/camel.mp4] [--frames 200] [--grid 16] \
        [--checkpoint RUN] [--refine-scale X] [--[no-]anchor] [--out camel_static.json] \
        [--png camel_static.png]

camel.mp4 (960x540, a static camera; ``$OBJTRACK_SHARED_DIR/data/camel.mp4``, default
``../shared``) holds a walking camel in front of sky, palm trees, a hedge, sand and a road that do
not move. A ``--grid`` x ``--grid`` grid of queries at frame 0 is tracked through the first
``--frames`` frames by the model (its weights' validated settings) and by Lucas-Kanade with a
forward-backward check (``objtrack_jax.baselines.lucas_kanade``). The **static background** is
chosen by LK alone, never by the model: the grid points that LK keeps alive through every frame
and that never move more than ``--static-px`` (default 1 px) from their query. For those points
the script reports the model's displacement from the query at the last frame (median, quartiles,
90th percentile, share above 2 px, mean direction) and its median frame-to-frame jitter, beside
LK's; ``--png`` writes a contact sheet of the model's tracks (static points only).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_VIDEO = os.path.join(os.environ.get("OBJTRACK_SHARED_DIR", os.path.join(REPO, "..", "shared")),
                             "data", "camel.mp4")


def static_points(lk_tracks: np.ndarray, lk_alive: np.ndarray, queries: np.ndarray,
                  static_px: float) -> np.ndarray:
    """Indices of the queries LK keeps alive in every frame within ``static_px`` of the query."""
    start = queries[:, None, [2, 1]]
    moved = np.linalg.norm(lk_tracks - start, axis=-1).max(axis=1)
    return np.flatnonzero(lk_alive.all(axis=1) & (moved <= static_px))


def displacement_summary(tracks: np.ndarray, queries: np.ndarray) -> dict:
    """``tracks [n, T, 2]`` of still points → their displacement at the last frame and jitter."""
    disp = tracks[:, -1] - queries[:, [2, 1]]
    dist = np.linalg.norm(disp, axis=-1)
    step = np.linalg.norm(np.diff(tracks, axis=1), axis=-1)
    if not len(dist):
        return {"points": 0}
    q25, med, q75, p90 = np.percentile(dist, [25, 50, 75, 90])
    return {"points": int(len(dist)), "median_px": round(float(med), 3),
            "q25_px": round(float(q25), 3), "q75_px": round(float(q75), 3),
            "p90_px": round(float(p90), 3), "share_over_2px": round(float(np.mean(dist > 2)), 3),
            "mean_dx": round(float(disp[:, 0].mean()), 3),
            "mean_dy": round(float(disp[:, 1].mean()), 3),
            "jitter_px": round(float(np.median(step)), 3)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--video", default=DEFAULT_VIDEO)
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--grid", type=int, default=16)
    p.add_argument("--static-px", type=float, default=1.0)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--refine-scale", type=float, default=None)
    p.add_argument("--anchor", action=argparse.BooleanOptionalAction, default=None,
                   help="anchoring to the query frame (default: the weights' setting)")
    p.add_argument("--out", default=None)
    p.add_argument("--png", default=None)
    args = p.parse_args(argv)
    if not os.path.isfile(args.video):
        sys.exit(f"camel_static: error: video not found: {args.video} (set OBJTRACK_SHARED_DIR or "
                 "pass --video)")
    from objtrack_jax import baselines, viz
    from objtrack_jax.model_io import load_model
    from objtrack_jax.tracking import grid_queries, track_queries
    from objtrack_jax.video_io import read_video

    video = read_video(args.video, max_frames=args.frames)
    h, w = video.shape[1:3]
    queries = grid_queries(args.grid, h, w)
    t0 = time.perf_counter()
    lk, alive = baselines.lucas_kanade(video, queries)
    lk_s = time.perf_counter() - t0
    still = static_points(lk, alive, queries, args.static_px)
    model, params, info = load_model(args.checkpoint)
    kw = {k: v for k, v in dict(refine_scale=args.refine_scale, anchor=args.anchor).items()
          if v is not None}
    t0 = time.perf_counter()
    tracks, visible, _ = track_queries(model, params, info, video, queries, progress=False, **kw)
    model_s = time.perf_counter() - t0
    tracks = np.asarray(tracks, np.float64)
    report = {
        "video": os.path.basename(args.video), "frames": int(video.shape[0]), "size": [h, w],
        "grid_points": int(len(queries)), "static_px": args.static_px,
        "checkpoint": args.checkpoint or "shipped", "settings": kw,
        "model": displacement_summary(tracks[still], queries[still]),
        "lk": displacement_summary(lk[still].astype(np.float64), queries[still]),
        "model_visible_share": None if visible is None else round(float(np.mean(visible)), 4),
        "seconds": {"model": round(model_s, 1), "lk": round(lk_s, 1)},
    }
    if args.png and len(still):
        sheet = viz.contact_sheet(video, tracks[still].astype(np.float32), None, num=4, cols=2,
                                  cell_width=480, layout="NT")
        viz.save_png(args.png, sheet)
        report["png"] = args.png
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return report


if __name__ == "__main__":
    main()
