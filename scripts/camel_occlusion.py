"""Occlusion and drag on a real static-camera video: camel.mp4's background points that the camel
passes over.

    python scripts/camel_occlusion.py [--video ../shared/data/camel.mp4] [--frames 200] \
        [--grid 16] [--checkpoint RUN] [--variant hold_still=8] [--out camel_occlusion.json] \
        [--png camel_occlusion.png]

camel.mp4 (960x540, a static camera; ``$OBJTRACK_SHARED_DIR/data/camel.mp4``, default
``../shared``; evaluation only, never training data) holds a walking camel in front of a
background that does not move. A ``--grid`` x ``--grid`` grid of queries at frame 0 is tracked
through the first ``--frames`` frames by the model at its weights' validated settings, with
anchoring off (one network run), and then anchored with each
:class:`~objtrack_jax.anchor.AnchorConfig` variant (the defaults, the shipped setting, then each
``--variant``; ``scripts/anchor_variants.py``: the same stage as ``objtrack track``).

Ground truth, from the video alone, never from the tracker: the camera is still, so the
**background** is the per-pixel median of the frames (every ``--median-stride``-th), and a
point-frame is **covered** where the mean absolute grey difference between the frame and the
background over the point's 11x11 patch exceeds ``--cover-diff`` grey levels. The **background
points** are the grid points not covered at frame 0: their true position is their query in every
frame. For each variant the script reports, over the background points: how many end (last
frame) more than 2 / 10 px from their query; the covered point-frames and the share reported
occluded; the uncovered point-frames more than 10 px off while reported visible (the slide);
and, for the points covered at some frame (**passed over**), how many are within 2 px at the
last frame and the first frame after their last pass at which they are within 2 px again
(re-found). ``--png`` writes a contact sheet of the passed-over points' tracks (the last
variant). JSON out, with the command, machine and date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
DEFAULT_VIDEO = os.path.join(os.environ.get("OBJTRACK_SHARED_DIR", os.path.join(REPO, "..", "shared")),
                             "data", "camel.mp4")
RADIUS = 5  # the anchoring patch radius (AnchorConfig.radius)


def grey(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])


def background(video: np.ndarray, stride: int) -> np.ndarray:
    """The per-pixel median grey image of ``video [T, H, W, 3]`` over every ``stride``-th frame."""
    sub = video[::stride]
    out = np.empty(video.shape[1:3], np.float32)
    for y in range(0, out.shape[0], 64):  # row bands: bounded memory
        out[y:y + 64] = np.median(grey(sub[:, y:y + 64]), axis=0)
    return out


def covered(video: np.ndarray, bg: np.ndarray, xy: np.ndarray, diff: float) -> np.ndarray:
    """``[N, T]``: the mean absolute grey difference to ``bg`` over each point's patch exceeds
    ``diff`` (something other than the background is there)."""
    h, w = bg.shape
    x = np.clip(np.round(xy[:, 0]).astype(int), RADIUS, w - RADIUS - 1)
    y = np.clip(np.round(xy[:, 1]).astype(int), RADIUS, h - RADIUS - 1)
    out = np.zeros((len(xy), len(video)), bool)
    for i, (xi, yi) in enumerate(zip(x, y)):
        win = (slice(yi - RADIUS, yi + RADIUS + 1), slice(xi - RADIUS, xi + RADIUS + 1))
        d = np.abs(grey(video[:, win[0], win[1]]) - bg[win][None]).mean(axis=(1, 2))
        out[i] = d > diff
    return out


def summary(tracks: np.ndarray, visible: np.ndarray, query_xy: np.ndarray,
            cover: np.ndarray) -> dict:
    """Figures of the background points' ``tracks [n, T, 2]`` and reported ``visible [n, T]``
    against their queries ``[n, 2]`` (the truth) and ``cover [n, T]``."""
    err = np.linalg.norm(tracks - query_xy[:, None], axis=-1)  # [n, T]
    t = np.arange(err.shape[1])
    passed = cover.any(axis=1)
    refound, frames_to = [], []
    for i in np.flatnonzero(passed):
        last = int(np.flatnonzero(cover[i])[-1])
        after = np.flatnonzero((t > last) & (err[i] <= 2.0))
        if last < len(t) - 1:
            refound.append(len(after) > 0)
            if len(after):
                frames_to.append(int(after[0] - last))
    occ = cover
    free = ~cover
    return {
        "points": int(len(err)),
        "end_over_2px": int(np.sum(err[:, -1] > 2)), "end_over_10px": int(np.sum(err[:, -1] > 10)),
        "end_median_px": round(float(np.median(err[:, -1])), 3) if len(err) else None,
        "end_p90_px": round(float(np.percentile(err[:, -1], 90)), 3) if len(err) else None,
        "uncovered_over_10px_reported_visible": int(np.sum(free & (err > 10) & visible)),
        "points_over_10px_reported_visible": int(np.sum((free & (err > 10) & visible).any(1))),
        "covered_point_frames": int(occ.sum()),
        "covered_reported_occluded": round(100.0 * float(np.mean(~visible[occ])), 1)
        if occ.any() else None,
        "uncovered_reported_visible": round(100.0 * float(np.mean(visible[free])), 1)
        if free.any() else None,
        "passed_over_points": int(passed.sum()),
        "passed_over_end_within_2px": int(np.sum(err[passed, -1] <= 2)),
        "passed_over_max_err_px": [round(float(v), 1) for v in np.sort(err[passed].max(1))],
        "passed_over_refound_within_2px": int(np.sum(refound)),
        "passed_over_uncovered_before_end": int(len(refound)),
        "frames_to_refind_median": float(np.median(frames_to)) if frames_to else None,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--video", default=DEFAULT_VIDEO)
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--grid", type=int, default=16)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--variant", action="append", default=[],
                   help="AnchorConfig fields, e.g. hold_still=8 (repeatable)")
    p.add_argument("--median-stride", type=int, default=3)
    p.add_argument("--cover-diff", type=float, default=20.0)
    p.add_argument("--out", default=None)
    p.add_argument("--png", default=None)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if not os.path.isfile(args.video):
        sys.exit(f"camel_occlusion: error: video not found: {args.video} (set "
                 "OBJTRACK_SHARED_DIR or pass --video)")
    from anchor_variants import anchored, parse_variant

    from objtrack_jax import anchor
    from objtrack_jax.model_io import load_model
    from objtrack_jax.settings import resolve
    from objtrack_jax.tracking import grid_queries, track_queries
    from objtrack_jax.video_io import read_video

    variants = [{}] + [parse_variant(v) for v in args.variant]
    video = read_video(args.video, max_frames=args.frames)
    h, w = video.shape[1:3]
    queries = grid_queries(args.grid, h, w)
    qxy = queries[:, [2, 1]].astype(np.float64)
    bg = background(video, args.median_stride)
    cover = covered(video, bg, qxy, args.cover_diff)
    back = np.flatnonzero(~cover[:, 0])
    model, params, info = load_model(args.checkpoint)
    settings = resolve(info, None)
    t0 = time.perf_counter()
    tracks, _, logits = track_queries(model, params, info, video, queries,
                                      progress=not args.no_progress, anchor=False)
    net_s = time.perf_counter() - t0
    net_vis = np.asarray(logits) > settings.vis_threshold
    rows = [{"variant": "network only (--no-anchor)",
             **summary(np.asarray(tracks, np.float64)[back], net_vis[back], qxy[back],
                       cover[back])}]
    last = None
    for kw in variants:
        t0 = time.perf_counter()
        out, visible, lost = anchored(video, np.asarray(tracks), np.asarray(logits), queries,
                                      anchor.AnchorConfig(**kw), settings.vis_threshold)
        rows.append({"variant": kw or "defaults", "seconds": round(time.perf_counter() - t0, 1),
                     "lost_point_frames": int(lost[back].sum()),
                     **summary(out.astype(np.float64)[back], visible[back], qxy[back],
                               cover[back])})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        last = (out, visible)
    report = {
        "command": "python " + " ".join([os.path.relpath(__file__)] + list(argv or sys.argv[1:])),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"load {os.getloadavg()[0]:.1f}",
        "video": os.path.basename(args.video), "frames": int(video.shape[0]), "size": [h, w],
        "grid_points": int(len(queries)), "background_points": int(len(back)),
        "cover_diff": args.cover_diff, "checkpoint": args.checkpoint or "shipped",
        "network_seconds": round(net_s, 1), "rows": rows,
    }
    passed = back[cover[back].any(axis=1)]
    if args.png and len(passed):
        from objtrack_jax import viz

        sheet = viz.contact_sheet(video, last[0][passed].astype(np.float32), last[1][passed],
                                  num=6, cols=3, cell_width=480)
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
