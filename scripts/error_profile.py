"""Where a tracker's error comes from: error against frames since the query, and against motion.

    python scripts/error_profile.py --data-root data/real_eval [--split test] \
        [--checkpoint RUN | --baseline lk] [--max-videos 10] [--max-points 96] [--out X.json]

``objtrack eval`` gives the PIPs++ summary (d_1 ... d_16, d_avg, survival, MTE); this script says
*why* a d_avg is what it is, on the same PointOdyssey-layout data, queries (first frame, visible
points) and resolution as ``objtrack eval --dataset synthetic`` (aspect kept, the weights' validated
short side; a baseline: the shipped weights' short side; ``--short-side 0``: native):

* ``by_offset``: for frames 1, 2, 4, 8, 16 ... after the query, over visible points: the median
  and 25th-percentile error (px), the share within 1 px, the mean signed error (x, y) (a bias
  or a lag shows here) and the median ground-truth displacement from the query.
* ``by_motion``: at frame 1, points binned by their ground-truth displacement: the median
  error and the slope of predicted against true displacement (1 = right speed; < 1 lags).

A model that loses to Lucas-Kanade at d_1 ... d_4 but beats it at d_16 is imprecise rather than
lost; the frame-1 error of nearly static points is its floor. The model runs at its weights'
validated window, iterations and second pass (``config.json``'s ``info.inference``) unless given.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

import numpy as np

MOTION_BINS = ((0, 2), (2, 5), (5, 10), (10, 30), (30, float("inf")))


def _offsets(num_frames: int) -> list[int]:
    out, t = [], 1
    while t < num_frames:
        out.append(t)
        t *= 2
    if num_frames - 1 not in out and num_frames > 1:
        out.append(num_frames - 1)
    return out


def profile(errors: list[np.ndarray], disps: list[np.ndarray], valids: list[np.ndarray]) -> dict:
    """``errors``/``disps``: per video ``[T, N, 2]`` prediction minus truth / truth minus the
    query position; ``valids``: ``[T, N]``. Returns ``{'by_offset': [...], 'by_motion': [...]}``."""
    num_frames = min(e.shape[0] for e in errors)
    by_offset = []
    for t in _offsets(num_frames):
        e = np.concatenate([x[t][v[t] > 0] for x, v in zip(errors, valids)])
        d = np.concatenate([x[t][v[t] > 0] for x, v in zip(disps, valids)])
        if len(e) == 0:
            continue
        n = np.linalg.norm(e, axis=-1)
        by_offset.append({
            "frames_after_query": t, "points": int(len(e)),
            "median_err_px": round(float(np.median(n)), 3),
            "p25_err_px": round(float(np.percentile(n, 25)), 3),
            "within_1px_pct": round(float(np.mean(n < 1.0) * 100), 2),
            "mean_signed_err_xy": [round(float(v), 3) for v in e.mean(0)],
            "median_gt_motion_px": round(float(np.median(np.linalg.norm(d, axis=-1))), 3)})
    by_motion = []
    if num_frames > 1:
        e = np.concatenate([x[1][v[1] > 0] for x, v in zip(errors, valids)])
        g = np.concatenate([x[1][v[1] > 0] for x, v in zip(disps, valids)])
        mag = np.linalg.norm(g, axis=-1)
        for lo, hi in MOTION_BINS:
            k = (mag >= lo) & (mag < hi)
            if k.sum() < 5:
                continue
            pred = g[k] + e[k]
            slope = float((pred * g[k]).sum() / max((g[k] ** 2).sum(), 1e-9))
            by_motion.append({"gt_motion_px": [lo, None if hi == float("inf") else hi],
                              "points": int(k.sum()), "slope": round(slope, 3),
                              "median_err_px": round(float(np.median(np.linalg.norm(e[k], axis=-1))), 3)})
    return {"by_offset": by_offset, "by_motion": by_motion}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True, help="PointOdyssey-layout folder (objtrack synth)")
    p.add_argument("--split", default="test")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", default=None, help="weights (default: the shipped ones)")
    src.add_argument("--baseline", choices=("zero", "lk", "dis"), default=None)
    p.add_argument("--window", type=int, default=None)
    p.add_argument("--iters", type=int, default=None)
    p.add_argument("--refine-scale", type=float, default=None,
                   help="second pass (default: the weights' validated setting; 0: one pass)")
    p.add_argument("--short-side", type=int, default=None,
                   help="videos resized to this short side, aspect kept (default: the weights' "
                        "validated one, for a baseline the shipped weights'; 0: native size)")
    p.add_argument("--max-videos", type=int, default=10)
    p.add_argument("--max-points", type=int, default=96, help="first N visible queries per video")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    if not os.path.isdir(os.path.join(args.data_root, args.split)):
        p.error(f"{args.data_root}: no '{args.split}' split folder (expected a PointOdyssey-layout "
                "root such as `objtrack synth --preset real-eval` writes)")

    from objtrack_jax import evaluation, model_io  # pylint: disable=import-outside-toplevel
    from objtrack_jax.settings import DEFAULT_SHORT_SIDE, resolve  # pylint: disable=import-outside-toplevel

    # the model's weights, or for a baseline the shipped ones (their validated short side)
    model, params, info = model_io.load_model(args.checkpoint if args.baseline is None else None)
    tracking = resolve(info, window=args.window, iters=args.iters, refine_scale=args.refine_scale)
    short_side = ((tracking.short_side or DEFAULT_SHORT_SIDE) if args.short_side is None
                  else args.short_side)
    size = functools.partial(evaluation._aspect_kept, short_side=short_side) if short_side else None
    settings = {}
    if args.baseline is None:
        settings = {k: getattr(tracking, k) for k in ("window", "iters", "refine_scale",
                                                      "refine_iters")}
    tracker = evaluation.as_tracker(args.baseline or model, params, tracking)
    errors, disps, valids = [], [], []
    for i, rec in enumerate(evaluation.iter_records("synthetic", args.data_root, size=size,
                                                    split=args.split)):
        if i >= args.max_videos:
            break
        keep = np.flatnonzero(rec["query_ok"])[: args.max_points]
        if keep.size == 0:
            continue
        gt = rec["trajs"][:, keep]  # [T, N, 2] (x, y)
        queries = np.stack([np.zeros(keep.size), gt[0, :, 1], gt[0, :, 0]], -1)
        tracks, _ = evaluation.call_tracker(tracker, rec["video"], queries)
        errors.append(np.transpose(np.asarray(tracks), (1, 0, 2)) - gt)
        disps.append(gt - gt[:1])
        valids.append(rec["valids"][:, keep])
        print(f"video {i}: {rec['name']} ({keep.size} points)", file=sys.stderr)
    if not errors:
        p.error(f"{args.data_root}/{args.split}: no video with a visible query at frame 0")
    out = {"config": {"data_root": args.data_root, "split": args.split,
                      "tracker": args.baseline or (args.checkpoint or "shipped weights"),
                      "videos": len(errors), "max_points": args.max_points,
                      "short_side": short_side or "native", **settings},
           **profile(errors, disps, valids)}
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return out


if __name__ == "__main__":
    main()
