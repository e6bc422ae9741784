"""``objtrack demo``: the shipped model beside classical baselines on fresh scenes, or on your video.

Scene mode (default, no download, about a minute on a 2-core CPU):

1. generates ``--scenes`` held-out scenes: real photographs from the *evaluation* photo set
   (:mod:`data_pipelines.real_scenes`, never seen in training) under camera homographies with
   independently moving photo objects (``--scene procedural`` for the procedural textures), on
   seeds of their own 'demo' stream;
2. tracks the points visible at frame 0 with the shipped weights (PIPs++ long-video protocol,
   :func:`objtrack_jax.tracking.track_queries`, at the window / iterations the weights were
   validated at) and with the zero-motion, Lucas-Kanade and DIS baselines
   (:mod:`objtrack_jax.baselines`) on the same queries;
3. prints d_1 / d_2 / d_avg / survival / MTE for each (and the model's AJ / OA when it has a visibility head);
4. writes ``demo.mp4`` (model | ground truth, side by side, same colour per point), ``demo.png``
   (a contact sheet of it) and ``demo.json`` (the numbers) into ``--out`` (default: here).

``objtrack demo --video PATH`` tracks a grid of points through your video instead (the outputs of
``objtrack track``: ``demo.mp4``, ``demo.npz``, ``demo.png``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Optional, Sequence

import numpy as np

GAP = 6  # pixels between the two panels


def demo_parser() -> argparse.ArgumentParser:
    from objtrack_jax.cli_args import (add_checkpoint_arg, add_refine_args, add_set_arg, parse_hw,
                                       setting_int)
    from objtrack_jax.limits import add_budget_arg

    p = argparse.ArgumentParser(prog="objtrack demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=".", help="output folder (default: the current directory)")
    p.add_argument("--video", default=None, help="track a grid of points through this video instead")
    add_checkpoint_arg(p)
    p.add_argument("--scene", choices=("real", "procedural"), default="real",
                   help="real: evaluation photos under known motions (default); procedural: "
                        "procedural textures")
    p.add_argument("--scenes", type=int, default=4, help="scenes evaluated (the first is drawn)")
    p.add_argument("--frames", type=int, default=24, help="frames per scene")
    p.add_argument("--size", type=parse_hw, default=(192, 256), help="scene HxW")
    p.add_argument("--points", type=int, default=64, help="queries per scene (visible at frame 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid", type=int, default=12, help="--video: an NxN grid of queries")
    p.add_argument("--max-frames", type=int, default=96, help="--video: frames read")
    p.add_argument("--window", type=setting_int("window"), default=None,
                   help="frames per window (default: the weights' validated setting)")
    p.add_argument("--iters", type=setting_int("iters"), default=None,
                   help="refinement iterations per window (default: the weights' validated setting)")
    add_refine_args(p)
    add_set_arg(p)
    add_budget_arg(p)
    p.add_argument("--no-baselines", action="store_true", help="skip the LK and DIS baselines")
    p.add_argument("--scale", type=int, default=2, help="upscaling of the drawn synthetic frames")
    return p


def _panel_label(image: np.ndarray, text: str, x0: int) -> None:
    import cv2

    scale = max(0.35, image.shape[0] / 500)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(image, (x0, image.shape[0] - h - base - 6), (x0 + w + 6, image.shape[0]), (0, 0, 0), -1)
    cv2.putText(image, text, (x0 + 3, image.shape[0] - base - 3), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), 1, cv2.LINE_AA)


def side_by_side(frames: np.ndarray, pred: np.ndarray, gt: np.ndarray, gt_visible: np.ndarray,
                 scale: int = 2, labels: Sequence[str] = ("model", "ground truth")):
    """Frames ``[T, H, W, 3]``, ``pred`` / ``gt`` ``[N, T, 2]`` and ``gt_visible`` ``[N, T]`` (the
    tracking API's layout) → (two panels ``[T, sH, 2sW+GAP, 3]``, tracks ``[2N, T, 2]``,
    visibility ``[2N, T]``, colours ``[2N, 3]``): predictions left, ground truth right."""
    import cv2

    from objtrack_jax import viz

    t, h, w, _ = frames.shape
    big = np.stack([cv2.resize(f, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST) for f in frames])
    canvas = np.zeros((t, h * scale, 2 * w * scale + GAP, 3), np.uint8)
    canvas[:, :, :w * scale] = big
    canvas[:, :, w * scale + GAP:] = big
    for f in canvas:
        _panel_label(f, labels[0], 0)
        _panel_label(f, labels[1], w * scale + GAP)
    # Pixel centres: x_big = (x + 0.5) * scale - 0.5.
    p = (np.asarray(pred, np.float64) + 0.5) * scale - 0.5
    g = (np.asarray(gt, np.float64) + 0.5) * scale - 0.5
    g[..., 0] += w * scale + GAP
    tracks = np.concatenate([p, g], axis=0)
    visible = np.concatenate([np.ones(pred.shape[:2], bool), gt_visible], axis=0)
    colors = viz.point_colors(gt, gt_visible, (h, w), layout="NT")
    return canvas, tracks, visible, np.concatenate([colors, colors], 0)


def _scene(args, i: int) -> dict:
    from objtrack_jax.data_pipelines import real_scenes, synthetic

    seed = synthetic.sequence_seed(args.seed, "demo", i)
    if args.scene == "real":
        return real_scenes.generate_sequence(seed, frames=args.frames, size=args.size,
                                             num_points=256, photos="eval")
    return synthetic.generate_sequence(seed, frames=args.frames, size=args.size, num_points=256)


def _visibility_metrics(queries, gt, gt_vis, tracks, visible, size) -> dict:
    """AJ / OA / delta_avg of the model (TAP-Vid definitions, 'first' queries, 256x256 frame)."""
    from objtrack_jax import metrics as metrics_lib

    scale = np.array([256.0 / size[1], 256.0 / size[0]], np.float32)
    m = metrics_lib.tapvid_metrics(
        queries[None], ~gt_vis.T[None], (np.transpose(gt, (1, 0, 2)) * scale)[None],
        ~visible[None], (tracks * scale)[None], "first")
    return {k: float(m[k][0]) for k in ("average_jaccard", "occlusion_accuracy",
                                        "average_pts_within_thresh")}


def run_synthetic(model, params, settings, args) -> dict:
    """The scene mode (module docstring) with tracking ``settings`` (at the scenes' size)."""
    from objtrack_jax import baselines
    from objtrack_jax import metrics as metrics_lib
    from objtrack_jax import viz
    from objtrack_jax.inference import to_point_major, to_time_major
    from objtrack_jax.tracking import run_tracking
    from objtrack_jax.video_io import write_video

    names = ["model", "zero-motion"] + ([] if args.no_baselines else ["lucas-kanade", "dis-flow"])
    rows = {name: [] for name in names}
    vis_rows = []
    drawn = None
    t_track = 0.0
    for i in range(args.scenes):
        seq = _scene(args, i)
        keep = np.flatnonzero(seq["visibs"][0] & seq["valids"][0])
        keep = keep[np.unique(np.linspace(0, keep.size - 1, min(args.points, keep.size)).round().astype(int))]
        gt = seq["trajs_2d"][:, keep]  # [T, n, 2]
        queries = np.stack([np.zeros(keep.size), gt[0, :, 1], gt[0, :, 0]], -1).astype(np.float32)
        t0 = time.perf_counter()
        tracks, visible, _ = run_tracking(model, params, seq["rgbs"], queries,
                                          settings.replace(resolution=args.size))
        t_track += time.perf_counter() - t0
        estimates = {"model": tracks}
        for name, key in (("zero-motion", "zero"), ("lucas-kanade", "lk"), ("dis-flow", "dis")):
            if name in rows:
                estimates[name] = baselines.track(key, seq["rgbs"], queries)[0]
        valids = seq["valids"][:, keep]
        for name, est in estimates.items():
            m = metrics_lib.pips_metrics(to_time_major(est)[None], gt[None], valids[None],
                                         image_size=args.size)
            rows[name].append({k: float(v[0]) for k, v in m.items()})
        if visible is not None:
            vis_rows.append(_visibility_metrics(queries, gt, seq["visibs"][:, keep], tracks,
                                                visible, args.size))
        if i == 0:
            drawn = (seq["rgbs"], tracks, to_point_major(gt), to_point_major(seq["visibs"][:, keep]))
        print(f"scene {i + 1}/{args.scenes}: {keep.size} points, d_avg "
              + ", ".join(f"{n} {rows[n][-1]['d_avg']:.1f}" for n in names))
    mean = {name: metrics_lib.average_metrics(r) for name, r in rows.items()}
    if vis_rows:
        mean["model"].update(metrics_lib.average_metrics(vis_rows))
    print()
    print(metrics_lib.format_table([{"video": k, **v} for k, v in mean.items()],
                                   ("d_1", "d_2", "d_avg", "survival", "median_l2"),
                                   add_mean=False))
    print("d_1, d_2: % of points within 1 and 2 px; d_avg: mean of d_1..d_16 (higher is better); "
          "survival: % of frames before a point first drifts > 16 px; median_l2 (MTE): median "
          "error in px (lower is better).")
    if vis_rows:
        m = mean["model"]
        print(f"model visibility (TAP-Vid definitions): AJ {100 * m['average_jaccard']:.1f}, "
              f"OA {100 * m['occlusion_accuracy']:.1f}, <delta_avg {100 * m['average_pts_within_thresh']:.1f}")
    else:
        print("AJ/OA: n/a (the model has no visibility head)")

    frames, pred, gt, gt_vis = drawn
    canvas, tracks, visible, colors = side_by_side(frames, pred, gt, gt_vis, scale=args.scale,
                                                   labels=("objtrack_jax", "ground truth"))
    out_mp4 = os.path.join(args.out, "demo.mp4")
    out_png = os.path.join(args.out, "demo.png")
    video = viz.draw_tracks(canvas, tracks, visible, tail=8, colors=colors, layout="NT")
    write_video(out_mp4, video, fps=12)
    viz.save_png(out_png, viz.contact_sheet(canvas, tracks, visible, num=6, cols=2, colors=colors,
                                            layout="NT"))
    return {"mean": mean, "per_scene": rows, "track_seconds": t_track,
            "outputs": [out_mp4, out_png]}


def demo_main(argv: Optional[Sequence[str]] = None) -> dict:
    from objtrack_jax import limits
    from objtrack_jax.cli_args import load_model_or_exit, settings_overrides
    from objtrack_jax.cli_eval import query_count
    from objtrack_jax.settings import resolve
    from objtrack_jax.video_tracking import track_video

    parser = demo_parser()
    args = parser.parse_args(argv)
    t_start = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    if args.scenes < 1 or args.frames < 2 or args.points < 1:
        parser.error("--scenes, --points must be >= 1 and --frames >= 2")
    count = query_count(args) if args.video is not None else None  # limits before the model
    if count is None:
        limits.check_points(args.points, "--points")
        limits.check_frames(args.frames, "--frames")
        limits.check_size(args.size, "--size")
    model, params, info = load_model_or_exit(parser, args.checkpoint)
    settings = resolve(info, **settings_overrides(parser, args))
    limits.check_settings(settings, limits.CLI_NAMES)
    if count is not None:
        limits.check_command(model, settings, **count, max_minutes=args.max_minutes,
                             prog="objtrack demo")
    else:
        limits.check_command(model, settings, args.scenes * args.points, args.frames, *args.size,
                             max_minutes=args.max_minutes, prog="objtrack demo", echo=None)
    if args.video is not None:
        return track_video(model, params, args.video, os.path.join(args.out, "demo.mp4"),
                           settings=settings, grid=args.grid, max_frames=args.max_frames)
    name = info.get("name", args.checkpoint)
    print(f"objtrack demo: weights {name}; {args.scenes} {args.scene} scenes of {args.frames} "
          f"frames at {args.size[0]}x{args.size[1]}, up to {args.points} points each; "
          f"{settings.describe()}")
    result = run_synthetic(model, params, settings, args)
    result["seconds"] = time.perf_counter() - t_start
    result["weights"] = name
    result["settings"] = settings.as_dict()
    out_json = os.path.join(args.out, "demo.json")
    with open(out_json, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {', '.join(result['outputs'])}, {out_json} in {result['seconds']:.0f} s "
          f"(tracking {result['track_seconds']:.1f} s incl. compilation)")
    return result
