"""``objtrack eval`` and ``objtrack track``: thin argument parsing around the library.

* ``eval_main(argv)``: :func:`objtrack_jax.evaluation.evaluate` on a benchmark, prints the
  per-video table and the mean, optionally writes JSON (config, per-video rows, mean). Metrics that
  need predicted occlusion (TAP-Vid AJ/OA/jaccard) print as ``n/a`` and are ``null`` in the JSON
  when the model has no visibility head.
* ``track_main(argv)``: tracks a grid or a file of queries through a video
  (:func:`objtrack_jax.tracking.track_queries`), writes an annotated mp4, an ``.npz`` with the
  tracks, and a PNG contact sheet, and prints timings.

``--checkpoint`` accepts anything :func:`objtrack_jax.model_io.load_model` reads (a PyTorch
``.pth`` file or a folder of ``model-<step>.pth``, a ``params.msgpack`` + ``config.json`` folder, a
training workdir with ``config.json`` + ``checkpoints/``); without it the shipped weights are used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Optional, Sequence

import numpy as np

from objtrack_jax import evaluation


def _parse_hw(text: str) -> tuple[int, int]:
    try:
        h, w = text.lower().replace(",", "x").split("x")
        return int(h), int(w)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected HxW such as 384x512, got {text!r}") from e


def _parse_model_hw(text: str) -> tuple[int, int]:
    """``HxW`` that the tracker accepts: both multiples of 8 and >= 128 (checked at start-up)."""
    from objtrack_jax.models.tracker import MIN_SIZE

    h, w = _parse_hw(text)
    if h % 8 or w % 8 or h < MIN_SIZE or w < MIN_SIZE:
        raise argparse.ArgumentTypeError(
            f"{text!r}: height and width must be multiples of 8 and >= {MIN_SIZE} (e.g. "
            f"{max(MIN_SIZE, -(-h // 8) * 8)}x{max(MIN_SIZE, -(-w // 8) * 8)})")
    return h, w


def _at_least(minimum: int, what: str = ""):
    """An argparse int type that rejects values below ``minimum``, naming the value and range."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from e
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is not allowed: must be >= {minimum}"
                                             + (f" ({what})" if what else ""))
        return value

    parse.__name__ = f"int>={minimum}"
    return parse


def _load(parser: argparse.ArgumentParser, checkpoint: Optional[str]):
    """(model, params, info) from --checkpoint, or the shipped weights without it."""
    from objtrack_jax import model_io

    try:
        return model_io.load_model(checkpoint)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))


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
    p.add_argument("--checkpoint", default=None,
                   help="PyTorch .pth (file or folder), params.msgpack folder or training workdir")
    p.add_argument("--baseline", default=None, choices=("zero", "lk", "dis"),
                   help="evaluate a classical baseline instead of a model, on the same queries "
                        "and resolution: 'zero' = zero motion, 'lk' = OpenCV pyramidal "
                        "Lucas-Kanade (21x21, 3 levels), 'dis' = OpenCV DIS optical flow, both "
                        "chained frame to frame from the query frame")
    p.add_argument("--protocol", default="pips", choices=evaluation.PROTOCOLS)
    p.add_argument("--carry", default="pips2", choices=("pips2", "paper", "none"))
    p.add_argument("--window", type=_at_least(2, "windows overlap by one frame"), default=128,
                   help="frames per window (PIPs++ 128, paper 36)")
    p.add_argument("--iters", type=_at_least(1), default=16, help="refinement iterations per window")
    p.add_argument("--resolution", type=_parse_model_hw, default=None,
                   help="HxW. pips: frames/GT resized to it (default 512x896); tapvid: model input "
                        "size (default 256x256)")
    p.add_argument("--query-mode", default="first", choices=("first", "strided"), help="tapvid protocol")
    p.add_argument("--survival-threshold", type=float, default=16.0,
                   help="PIPs++ survival threshold (PIPs++ 16, the paper's PointOdyssey table 50)")
    p.add_argument("--split", default=None, help="dataset split (default test; CroHD train)")
    p.add_argument("--max-videos", type=_at_least(1), default=None)
    p.add_argument("--max-points", type=_at_least(1), default=None,
                   help="at most this many queries per video")
    p.add_argument("--max-frames", type=int, default=None,
                   help="pips protocol: the first this many frames of each video")
    p.add_argument("--chunk-size", type=_at_least(1), default=256, help="points refined at once")
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
        from data_pipelines import pointodyssey

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
        model, params, info = _load(parser, args.checkpoint)
    t0 = time.perf_counter()
    per_video, mean = evaluation.evaluate(
        args.dataset, args.data_root, model, params, protocol=args.protocol, window=args.window,
        iters=args.iters, carry=args.carry, query_mode=args.query_mode, max_videos=args.max_videos,
        progress=not args.no_progress, resolution=args.resolution,
        survival_threshold=args.survival_threshold, split=args.split, max_points=args.max_points,
        max_frames=args.max_frames, chunk_size=args.chunk_size)
    seconds = time.perf_counter() - t0
    keys = evaluation.metric_keys(args.protocol)
    rows = [_printable(r) for r in per_video] + [_printable({"video": "mean", **mean})]
    print(format_table(rows, keys, add_mean=False))
    has_vis = (model == "lk") if isinstance(model, str) else bool(model.visibility_head)
    if not has_vis and args.protocol == "tapvid":
        print("n/a: the model has no visibility head, so occlusion accuracy and Jaccard "
              "(AJ) cannot be computed.")
    print(f"{len(per_video)} videos in {seconds:.1f} s")
    config = {k: v for k, v in vars(args).items() if k != "no_progress"}
    config["model"] = {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool))}
    config["visibility_head"] = has_vis
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
    q.add_argument("--grid", type=_at_least(1, "points per side"), default=None,
                   help="N: an NxN grid of queries at --grid-frame")
    q.add_argument("--queries", default=None,
                   help=".npy or .txt with one (t, y, x) row per query, in pixels of the input video")
    p.add_argument("--grid-frame", type=_at_least(0), default=0, help="query frame of the --grid points")
    p.add_argument("--checkpoint", default=None,
                   help="PyTorch .pth (file or folder), params.msgpack folder or training workdir")
    p.add_argument("--out", default="tracks.mp4", help="annotated video; .npz and .png are written next to it")
    p.add_argument("--resolution", type=_parse_model_hw, default=None,
                   help="model input HxW (multiples of 8, >= 128); default: aspect kept, short side 384")
    p.add_argument("--max-frames", type=_at_least(1), default=None)
    p.add_argument("--strict", action="store_true",
                   help="a video that decodes fewer frames than its header reports is an error "
                        "(default: a warning naming both counts)")
    p.add_argument("--window", type=_at_least(2, "windows overlap by one frame"), default=16,
                   help="frames per window")
    p.add_argument("--iters", type=_at_least(1), default=8, help="refinement iterations per window")
    p.add_argument("--carry", default="pips2", choices=("pips2", "paper", "none"))
    p.add_argument("--chunk-size", type=_at_least(1), default=256, help="points refined at once")
    p.add_argument("--tail", type=_at_least(0), default=8, help="frames of track tail drawn")
    p.add_argument("--fps", type=float, default=None, help="output fps (default: the input's, else 24)")
    p.add_argument("--no-progress", action="store_true")
    return p


def _read_queries(path: str) -> np.ndarray:
    try:
        if path.endswith(".npy"):
            q = np.load(path, allow_pickle=False)
        else:
            with open(path) as f:
                text = f.read().replace(",", " ")
            q = np.loadtxt(text.splitlines(), ndmin=2)
    except (ValueError, EOFError) as e:
        raise ValueError(f"{path}: cannot read queries ({e})") from e
    q = np.asarray(q, np.float32)
    if q.ndim != 2 or q.shape[1] != 3:
        raise ValueError(f"{path}: queries must be rows of (t, y, x), got shape {q.shape}")
    return q


def _outputs(out: str) -> tuple[str, str, str]:
    stem = os.path.splitext(out)[0]
    return out, stem + ".npz", stem + ".png"


def track_main(argv: Optional[Sequence[str]] = None) -> dict:
    """Runs ``objtrack track``; returns a dict with the output paths, shapes and timings."""
    from objtrack_jax import viz
    from objtrack_jax import tracking
    from objtrack_jax.tracking import default_resolution, grid_queries, track_queries
    from objtrack_jax.video_io import read_video, video_info, write_video

    parser = track_parser()
    args = parser.parse_args(argv)
    if not os.path.exists(args.video):  # before loading the model
        parser.error(f"video not found: {args.video}")
    if args.queries is not None and not os.path.isfile(args.queries):
        parser.error(f"--queries file not found: {args.queries}")
    timings = {}
    t0 = time.perf_counter()
    model, params, info = _load(parser, args.checkpoint)
    timings["load_model"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    frames = read_video(args.video, max_frames=args.max_frames, strict=args.strict)
    timings["read_video"] = time.perf_counter() - t0
    num_frames, height, width = frames.shape[:3]
    resolution = args.resolution or default_resolution(height, width)
    if args.queries is not None:
        queries = _read_queries(args.queries)
    else:
        if not 0 <= args.grid_frame < num_frames:
            parser.error(f"--grid-frame {args.grid_frame} outside the video's {num_frames} frames "
                         f"(valid: 0..{num_frames - 1})")
        grid = args.grid or 16
        tracking.check_memory(  # before the grid itself is allocated
            tracking.estimate_tracking_bytes(grid * grid, num_frames, height, width, resolution,
                                             args.window, int(model.latent_dim)),
            f"--grid {grid} ({grid * grid} points) through {num_frames} frames",
            "use a smaller --grid, --max-frames or --resolution")
        queries = grid_queries(grid, height, width, t=args.grid_frame)
    print(f"{args.video}: {num_frames} frames {height}x{width}; {len(queries)} queries; model at "
          f"{resolution[0]}x{resolution[1]}, window {args.window}, iters {args.iters}")

    t0 = time.perf_counter()
    tracks, visible, logits = track_queries(
        model, params, frames, queries, window=args.window, iters=args.iters, carry=args.carry,
        chunk_size=args.chunk_size, resize_to=resolution, progress=not args.no_progress)
    if not np.all(np.isfinite(tracks)):
        raise FloatingPointError(f"the model produced non-finite tracks for {args.video} "
                                 "(check the checkpoint)")
    timings["track"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    out_mp4, out_npz, out_png = _outputs(args.out)
    tracks_t = np.transpose(tracks, (1, 0, 2))  # [T, n, 2] for the drawing helpers
    visible_t = None if visible is None else visible.T
    drawn = viz.draw_tracks(frames, tracks_t, visible_t, tail=args.tail)
    fps = args.fps or (video_info(args.video).get("fps") if os.path.isfile(args.video) else None) or 24.0
    write_video(out_mp4, drawn, fps=fps)
    del drawn
    extra = {} if visible is None else {"visible": visible, "vis_logits": logits}
    np.savez(out_npz, tracks=tracks, query_points=queries, has_visibility=visible is not None,
             resolution=np.asarray(resolution), **extra)
    viz.save_png(out_png, viz.contact_sheet(frames, tracks_t, visible_t, tail=args.tail,
                                            cell_width=min(width, 480)))
    timings["write"] = time.perf_counter() - t0

    per_frame = timings["track"] / num_frames
    print(f"tracked {len(queries)} points x {num_frames} frames in {timings['track']:.1f} s "
          f"({1000 * per_frame:.0f} ms/frame, includes compilation); total "
          f"{sum(timings.values()):.1f} s")
    if visible is None:
        print("note: the model has no visibility head; every point is drawn as visible and the .npz "
              "holds no visibility")
    print(f"wrote {out_mp4}, {out_npz}, {out_png}")
    return dict(video=out_mp4, npz=out_npz, png=out_png, num_frames=int(num_frames),
                num_points=int(len(queries)), resolution=tuple(resolution), timings=timings)


if __name__ == "__main__":  # pragma: no cover
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "eval":
        eval_main(sys.argv[2:])
    elif cmd == "track":
        track_main(sys.argv[2:])
    else:
        sys.exit("usage: python -m objtrack_jax.cli_eval {eval,track} ...")
