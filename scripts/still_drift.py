"""Still-clip drift check: how far a tracker's points slide when nothing moves.

    python scripts/still_drift.py [--checkpoint RUN] [--frames 100] [--size 384x512] \
        [--grid 12] [--photos 3] [--refine-scale X] [--[no-]anchor] [--out still.json]

One photograph of the held-out evaluation photo set (never a training photo) is repeated for
``--frames`` frames with fresh sensor noise (sigma 2), a slow 3 % brightness flicker and JPEG
re-compression (quality 85) on every frame: the ground truth of every point is its query
position. A ``--grid`` x ``--grid`` grid of queries at frame 0 is tracked at the weights'
validated settings (``config.json`` ``info.inference``; ``--refine-scale`` etc. override) and the
script reports, for frames 1, 7, 49, 99, 199 (those < ``--frames``):

* ``median_px`` / ``p90_px``: distance from the query position;
* ``mean_dx`` / ``mean_dy``: the mean signed displacement (a bias has a direction);

and over the whole clip ``jitter_px``: the median frame-to-frame movement. Several photos
(``--photos``) are pooled. ``scripts/export_weights.py`` records the result beside the weights;
compare weights with it before exporting (a drift that grows with the video is the first thing
a user sees on a static camera).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import cv2
import numpy as np

REPORT_FRAMES = (1, 7, 49, 99, 199)


def still_clip(photo_index: int, frames: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``[frames, H, W, 3]`` uint8: one held-out photo with per-frame noise, flicker and JPEG."""
    from objtrack_jax.data_pipelines import real_scenes

    bank = real_scenes.photo_set("eval")
    rng = np.random.default_rng(seed + 1000 * photo_index)
    h, w = size
    base = real_scenes.photo_view(rng, [bank[photo_index % len(bank)]], h, w, (0.9, 1.1))
    base = base.astype(np.float32)
    out = np.empty((frames, h, w, 3), np.uint8)
    for t in range(frames):
        gain = 1.0 + 0.03 * np.sin(2 * np.pi * t / 60.0)
        f = base * gain + rng.normal(0.0, 2.0, base.shape)
        img = np.clip(f, 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", img, (cv2.IMWRITE_JPEG_QUALITY, 85))
        out[t] = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else img
    return out


def grid(num: int, size: tuple[int, int], margin: float = 0.08) -> np.ndarray:
    """``[num*num, 3]`` queries (t=0, y, x) evenly inside the frame, ``margin`` from the border."""
    h, w = size
    ys = np.linspace(margin * (h - 1), (1 - margin) * (h - 1), num)
    xs = np.linspace(margin * (w - 1), (1 - margin) * (w - 1), num)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([np.zeros(num * num), yy.ravel(), xx.ravel()], -1).astype(np.float32)


def drift_report(tracks: np.ndarray, queries: np.ndarray) -> dict:
    """``tracks [N, T, 2]`` (x, y) of still points queried at frame 0 → the drift summary."""
    start = queries[:, None, [2, 1]]
    disp = tracks - start  # [N, T, 2]
    dist = np.linalg.norm(disp, axis=-1)
    num_frames = tracks.shape[1]
    rows = []
    for t in REPORT_FRAMES:
        if t >= num_frames:
            continue
        rows.append({"frame": t, "median_px": round(float(np.median(dist[:, t])), 3),
                     "p90_px": round(float(np.percentile(dist[:, t], 90)), 3),
                     "mean_dx": round(float(disp[:, t, 0].mean()), 3),
                     "mean_dy": round(float(disp[:, t, 1].mean()), 3)})
    step = np.linalg.norm(np.diff(tracks, axis=1), axis=-1)
    return {"by_frame": rows, "jitter_px": round(float(np.median(step)), 3),
            "points": int(tracks.shape[0]), "frames": int(num_frames)}


def run(tracker, frames: int = 100, size=(384, 512), grid_n: int = 12, photos: int = 3) -> dict:
    """``tracker(video, queries) -> tracks [N, T, 2]``; pooled report over ``photos`` clips."""
    all_tracks, all_q = [], []
    for i in range(photos):
        video = still_clip(i, frames, size)
        q = grid(grid_n, size)
        all_tracks.append(np.asarray(tracker(video, q), np.float64))
        all_q.append(q)
    return drift_report(np.concatenate(all_tracks), np.concatenate(all_q))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=None, help="weights (default: the shipped ones)")
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--size", default="384x512", help="HxW of the still clip")
    p.add_argument("--grid", type=int, default=12)
    p.add_argument("--photos", type=int, default=3)
    p.add_argument("--refine-scale", type=float, default=None)
    p.add_argument("--anchor", action=argparse.BooleanOptionalAction, default=None,
                   help="anchoring to the query frame (default: the weights' setting)")
    p.add_argument("--window", type=int, default=None)
    p.add_argument("--iters", type=int, default=None)
    p.add_argument("--corr-centered", choices=("on", "off"), default=None,
                   help="override the model's coarse-level sampling (diagnosis only)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    h, w = (int(v) for v in args.size.lower().split("x"))
    from objtrack_jax.model_io import load_model
    from objtrack_jax.tracking import track_queries

    model, params, info = load_model(args.checkpoint)
    if args.corr_centered is not None:
        model = model.clone(corr_centered=args.corr_centered == "on")
    kw = {k: v for k, v in dict(refine_scale=args.refine_scale, window=args.window,
                                iters=args.iters, anchor=args.anchor).items() if v is not None}

    def tracker(video, queries):
        tracks, _, _ = track_queries(model, params, info, video, queries, progress=False, **kw)
        return tracks

    t0 = time.perf_counter()
    report = run(tracker, args.frames, (h, w), args.grid, args.photos)
    report.update(checkpoint=args.checkpoint or "shipped", size=[h, w], settings=kw,
                  corr_centered=bool(getattr(model, "corr_centered", False)),
                  seconds=round(time.perf_counter() - t0, 1))
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
