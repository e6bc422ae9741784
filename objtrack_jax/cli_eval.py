"""``objtrack eval`` and ``objtrack track``: thin argument parsing around the library.

* ``eval_main(argv)``: :func:`objtrack_jax.evaluation.evaluate` on a benchmark, prints the
  per-video table and the mean, optionally writes JSON (config, per-video rows, mean). Metrics that
  need predicted occlusion (TAP-Vid AJ/OA/jaccard) print as ``n/a`` and are ``null`` in the JSON
  when the model has no visibility head.
* ``track_main(argv)``: :func:`objtrack_jax.video_tracking.track_video` (a grid or a file of
  queries through a video; an annotated mp4, an ``.npz`` with the tracks, a PNG contact sheet).

``--checkpoint`` accepts anything :func:`objtrack_jax.model_io.load_model` reads (a PyTorch
``.pth`` file or a folder of ``model-<step>.pth``, a ``params.msgpack`` + ``config.json`` folder, a
training workdir with ``config.json`` + ``checkpoints/``); without it the shipped weights are used.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Optional, Sequence

import numpy as np

from objtrack_jax import evaluation, limits
from objtrack_jax.cli_args import (add_checkpoint_arg, add_refine_args, add_set_arg, at_least,
                                   load_model_or_exit, parse_model_hw, setting_int,
                                   settings_overrides)
from objtrack_jax.limits import add_budget_arg
from objtrack_jax.settings import CARRY_MODES, resolve


def _nan_to_none(obj):
    """NaN metrics (0/0, see objtrack_jax.metrics) become JSON null: the file stays valid JSON."""
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, (float, np.floating)) and not np.isfinite(obj):
        return None
    return obj


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


# --------------------------------------------------------------------------------------------------
# objtrack eval
# --------------------------------------------------------------------------------------------------


def eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="objtrack eval", description="Evaluate a tracker on a benchmark.")
    p.add_argument("--dataset", required=True, choices=evaluation.DATASETS)
    p.add_argument("--data-root", default=None,
                   help="dataset root / pickle (optional for synthetic: a small split is generated)")
    add_checkpoint_arg(p)
    p.add_argument("--baseline", default=None, choices=("zero", "lk", "dis"),
                   help="evaluate a classical baseline instead of a model, on the same queries "
                        "and resolution: 'zero' = zero motion, 'lk' = OpenCV pyramidal "
                        "Lucas-Kanade (21x21, 3 levels), 'dis' = OpenCV DIS optical flow, both "
                        "chained frame to frame from the query frame")
    p.add_argument("--protocol", default="pips", choices=evaluation.PROTOCOLS)
    p.add_argument("--carry", default=None, choices=CARRY_MODES,
                   help="template carry across windows (default: the weights' setting, pips2)")
    p.add_argument("--window", type=setting_int("window"), default=None,
                   help="frames per window (default: what the weights were validated at, shipped "
                        "weights 8; weights that record nothing: 128 as PIPs++; paper 36)")
    p.add_argument("--iters", type=setting_int("iters"), default=None,
                   help="refinement iterations per window (default: the weights' validated "
                        "setting, shipped weights 4; else 16)")
    add_refine_args(p)
    add_set_arg(p)
    p.add_argument("--resolution", type=parse_model_hw, default=None,
                   help="HxW. pips: frames/GT resized to it (default 512x896); tapvid: model input "
                        "size (default 256x256)")
    p.add_argument("--query-mode", default="first", choices=("first", "strided"), help="tapvid protocol")
    p.add_argument("--corrected", action="store_true",
                   help="pips protocol on TAP-Vid: ground truth at pixel centres (p*(w,h) - 0.5) "
                        "instead of test_on_tap.py's p*(W-1,H-1)*(w/W,h/H) (docs/conventions.md); "
                        "default: as the original script")
    p.add_argument("--survival-threshold", type=float, default=16.0,
                   help="PIPs++ survival threshold (PIPs++ 16, the paper's PointOdyssey table 50)")
    p.add_argument("--still", action="store_true",
                   help="pips protocol: also drift (median / 90th percentile distance to the "
                        "truth at frames 50, 100, 199), jitter (frame-to-frame residual) and "
                        "occlusion accuracy / recall of occluded point-frames, as the static "
                        "benchmark reports them (docs/drift.md)")
    p.add_argument("--split", default=None, help="dataset split (default test; CroHD train)")
    p.add_argument("--max-videos", type=at_least(1), default=None)
    p.add_argument("--max-points", type=at_least(1), default=None,
                   help="at most this many queries per video (pips protocol on PointOdyssey: the "
                        "N of PIPs++'s point selection, default 256)")
    p.add_argument("--max-frames", type=int, default=None,
                   help="pips protocol: the first this many frames of each video")
    p.add_argument("--chunk-size", type=setting_int("chunk_size"), default=None,
                   help="points refined at once (default: picked from the memory budget)")
    p.add_argument("--out", default=None, help="write results (config, per video, mean) as JSON")
    p.add_argument("--no-progress", action="store_true")
    return p


def _check_data_root(parser: argparse.ArgumentParser, args) -> None:
    """--data-root exists (synthetic may generate one) and, for the PointOdyssey layout, is a root
    rather than one of its split folders (the reader's DataError says so and names the parent)."""
    root = args.data_root
    if root is None:
        return
    if not os.path.exists(root):
        if args.dataset != "synthetic":
            parser.error(f"--data-root {root} does not exist")
        return
    if args.dataset in ("pointodyssey", "synthetic") and os.path.isdir(root):
        from objtrack_jax.data_pipelines import pointodyssey

        pointodyssey.list_sequences(root, args.split or evaluation.DEFAULT_SPLITS[args.dataset])


def _printable(row: dict) -> dict:
    return {k: ("n/a" if v is None else v) for k, v in row.items()}


def eval_main(argv: Optional[Sequence[str]] = None) -> dict:
    """Runs ``objtrack eval``; returns ``{'config', 'per_video', 'mean'}`` (also written to --out)."""
    from objtrack_jax.metrics import format_table

    parser = eval_parser()
    args = parser.parse_args(argv)
    _check_data_root(parser, args)  # before the model is loaded
    if args.baseline is not None:
        if args.checkpoint is not None:
            parser.error("--baseline and --checkpoint are exclusive")
        model, params, info = args.baseline, None, {"architecture": f"baseline:{args.baseline}"}
    else:
        model, params, info = load_model_or_exit(parser, args.checkpoint)
    if isinstance(model, str):  # baselines have no tracking settings (nor a second pass)
        settings = None
    else:
        # --resolution is the protocol's frame size here, not the tracking setting
        settings = resolve(info, **settings_overrides(parser, args, skip=("resolution",)))
        limits.check_settings(settings, limits.CLI_NAMES)
    t0 = time.perf_counter()
    per_video, mean = evaluation.evaluate(
        args.dataset, args.data_root, model, params, info, settings=settings,
        protocol=args.protocol, query_mode=args.query_mode, max_videos=args.max_videos,
        progress=not args.no_progress, resolution=args.resolution,
        survival_threshold=args.survival_threshold, split=args.split, max_points=args.max_points,
        max_frames=args.max_frames, corrected=args.corrected,
        still=args.still and args.protocol == "pips")
    seconds = time.perf_counter() - t0
    keys = evaluation.metric_keys(args.protocol)
    if args.still and args.protocol == "pips":
        keys = tuple(keys) + tuple(k for k in evaluation.STILL_KEYS if k in mean)
    elif args.still:
        print("--still applies to the pips protocol only; ignored")
    rows = [_printable(r) for r in per_video] + [_printable({"video": "mean", **mean})]
    print(format_table(rows, keys, add_mean=False))
    has_vis = (model == "lk") if isinstance(model, str) else bool(model.visibility_head)
    if not has_vis and args.protocol == "tapvid":
        print("n/a: the model has no visibility head, so occlusion accuracy and Jaccard "
              "(AJ) cannot be computed.")
    print(f"{len(per_video)} videos in {seconds:.1f} s")
    config = {k: v for k, v in vars(args).items() if k not in ("no_progress", "settings_set")}
    config["model"] = {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool))}
    config["visibility_head"] = has_vis
    if settings is not None:  # the settings run, resolved (the flags above: as given)
        config.update({k: v for k, v in settings.as_dict().items() if k != "resolution"})
    config["settings"] = None if settings is None else settings.as_dict()
    result = {"config": config, "per_video": per_video, "mean": mean, "seconds": seconds}
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(_nan_to_none(result), f, indent=2, default=_json_default, allow_nan=False)
        print(f"wrote {args.out}")
    return result


# --------------------------------------------------------------------------------------------------
# objtrack track
# --------------------------------------------------------------------------------------------------


def track_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="objtrack track", description="Track points through a video.")
    p.add_argument("video", help="video file (mp4, ...) or folder of frames")
    q = p.add_mutually_exclusive_group()
    q.add_argument("--grid", type=at_least(1, "points per side"), default=None,
                   help="N: an NxN grid of queries at --grid-frame")
    q.add_argument("--grid-step", type=float, default=None, metavar="PX",
                   help="a dense grid at --grid-frame, one query per PXxPX pixels of the input "
                        "video (4 at 512x896: 28,672 points, refined in chunks that share each "
                        "window's encoding)")
    q.add_argument("--queries", default=None,
                   help=".npy or .txt with one (t, y, x) row per query, in pixels of the input video")
    p.add_argument("--grid-frame", type=at_least(0), default=0, help="query frame of the --grid points")
    add_checkpoint_arg(p)
    p.add_argument("--out", default="tracks.mp4", help="annotated video; .npz and .png are written next to it")
    p.add_argument("--resolution", type=parse_model_hw, default=None,
                   help="model input HxW (multiples of 8, >= 128); default: aspect kept, short "
                        "side as validated with the weights (shipped weights 192; else 384)")
    p.add_argument("--max-frames", type=at_least(1), default=None)
    p.add_argument("--strict", action="store_true",
                   help="a video that decodes fewer frames than its header reports is an error "
                        "(default: a warning naming both counts)")
    p.add_argument("--online", action="store_true",
                   help="track frame by frame with the online tracker (a file, a folder or '-' "
                        "for raw RGB24 on stdin with --pipe-size HxW); reports per-frame latency; "
                        "`objtrack track --online --help` lists its options (docs/online.md)")
    p.add_argument("--window", type=setting_int("window"), default=None,
                   help="frames per window (default: the weights' validated setting, shipped "
                        "weights 8; else 128)")
    p.add_argument("--iters", type=setting_int("iters"), default=None,
                   help="refinement iterations per window (default: the weights' validated "
                        "setting, shipped weights 4; else 16)")
    p.add_argument("--carry", default=None, choices=CARRY_MODES,
                   help="template carry across windows (default: the weights' setting, pips2)")
    add_refine_args(p)
    add_set_arg(p)
    p.add_argument("--chunk-size", type=setting_int("chunk_size"), default=None,
                   help="points refined at once (default: picked from --max-memory, up to 4096)")
    p.add_argument("--max-memory", type=at_least(64), default=None, metavar="MB",
                   help="memory budget that picks the encoder/refinement/point chunk sizes "
                        "(default: half the machine's memory)")
    add_budget_arg(p)
    p.add_argument("--tail", type=at_least(0), default=8, help="frames of track tail drawn")
    p.add_argument("--fps", type=float, default=None, help="output fps (default: the input's, else 24)")
    p.add_argument("--no-progress", action="store_true")
    return p


def query_count(args, queries=None) -> dict:
    """The size of an ``objtrack track`` (or ``demo --video``) run from the video's header and
    the query flags, as :func:`objtrack_jax.limits.check_command` takes it: ``num_points``,
    ``num_frames``, ``height``, ``width``, ``query_frames`` and ``points_what`` (the flag that
    made the points)."""
    from objtrack_jax.video_io import video_info
    from objtrack_jax.video_tracking import DEFAULT_GRID

    info = video_info(args.video)
    t, h, w = int(info["num_frames"]), int(info["height"]), int(info["width"])
    t = min(t, args.max_frames) if args.max_frames else t
    step, frame = getattr(args, "grid_step", None), getattr(args, "grid_frame", 0)
    if queries is not None:
        n, frames, what = len(queries), queries[:, 0], f"--queries gives {len(queries):,} points"
    elif step is not None and step > 0:
        n = int(h // step) * int(w // step)
        frames, what = {frame: n}, f"--grid-step {step:g} on {w}x{h} frames gives {n:,} points"
    else:
        g = args.grid or DEFAULT_GRID
        n, frames, what = g * g, {frame: g * g}, f"--grid {g} gives {g * g:,} points"
    return dict(num_points=n, num_frames=t, height=h, width=w, query_frames=frames,
                points_what=what)


def track_main(argv: Optional[Sequence[str]] = None) -> dict:
    """Runs ``objtrack track``: :func:`objtrack_jax.video_tracking.track_video` with the flags;
    returns its dict (output paths, shapes, arrays, timings incl. ``load_model``)."""
    from objtrack_jax.video_tracking import read_queries, track_video

    parser = track_parser()
    args = parser.parse_args(argv)
    if not os.path.exists(args.video):  # before loading the model
        parser.error(f"video not found: {args.video}")
    if args.queries is not None and not os.path.isfile(args.queries):
        parser.error(f"--queries file not found: {args.queries}")
    queries = None if args.queries is None else read_queries(args.queries)
    t0 = time.perf_counter()
    model, params, info = load_model_or_exit(parser, args.checkpoint)
    load_seconds = time.perf_counter() - t0
    settings = resolve(info, **settings_overrides(parser, args))
    count = query_count(args, queries)  # from the video's header, before any work
    limits.check_command(model, settings, **count, max_minutes=args.max_minutes)
    result = track_video(
        model, params, args.video, args.out, settings=settings, queries=queries, grid=args.grid,
        grid_step=args.grid_step, grid_frame=args.grid_frame, max_frames=args.max_frames,
        tail=args.tail, fps=args.fps, progress=not args.no_progress, strict=args.strict)
    result["timings"] = {"load_model": load_seconds, **result["timings"]}
    return result
