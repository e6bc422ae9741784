"""``objtrack track --online``: the video streamed frame by frame through
:class:`objtrack_jax.online.OnlineTracker`, with the per-frame latency reported.

The input is a video file, a folder of frames, or ``-``: raw RGB24 frames on standard input
(``--pipe-size HxW``; e.g. from ffmpeg or a camera grabber, docs/online.md). Writes the tracks
file (the ``.npz`` layout of :mod:`objtrack_jax.tracks_io`, as ``objtrack track``; ``tracks`` NaN
before a query's frame, plus ``step_ms`` per frame and ``latency_frames``) and, for a file or
folder, the annotated video as ``objtrack track`` does.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Iterator, Optional, Sequence

import numpy as np


def online_parser():
    from objtrack_jax.cli_args import parse_hw
    from objtrack_jax.cli_eval import track_parser

    p = track_parser()
    p.prog = "objtrack track --online"
    p.description = ("Track points online: frames one at a time, each frame's final estimate "
                     "emitted a fixed number of frames later (one window; two windows less two "
                     "frames with the second pass); reports the per-frame latency. VIDEO may be "
                     "'-' for raw RGB24 frames on standard input (--pipe-size).")
    p.add_argument("--pipe-size", type=parse_hw, default=None, metavar="HxW",
                   help="frame size of raw RGB24 frames read from standard input (VIDEO '-')")
    return p


def pipe_frames(stream, height: int, width: int, max_frames: Optional[int] = None) -> Iterator:
    """``[H, W, 3]`` uint8 frames read from a binary ``stream`` of raw RGB24 frames; a partial
    last frame is an error naming the byte counts."""
    size = height * width * 3
    count = 0
    while max_frames is None or count < max_frames:
        buf = stream.read(size)
        if not buf:
            return
        while len(buf) < size:
            more = stream.read(size - len(buf))
            if not more:
                raise ValueError(f"standard input ended inside frame {count}: {len(buf)} of "
                                 f"{size} bytes ({height}x{width} RGB24, --pipe-size)")
            buf += more
        yield np.frombuffer(buf, np.uint8).reshape(height, width, 3)
        count += 1


def online_main(argv: Optional[Sequence[str]] = None) -> dict:
    from objtrack_jax import limits
    from objtrack_jax.cli_args import load_model_or_exit, settings_overrides
    from objtrack_jax.online import OnlineTracker, track_stream
    from objtrack_jax.settings import resolve
    from objtrack_jax.tracking import grid_queries
    from objtrack_jax.tracks_io import write_tracks_npz
    from objtrack_jax.video_io import open_video, video_info
    from objtrack_jax.video_tracking import DEFAULT_GRID, output_paths, read_queries

    parser = online_parser()
    args = parser.parse_args(argv)
    piped = args.video == "-"
    if piped and args.pipe_size is None:
        parser.error("reading frames from standard input ('-') needs --pipe-size HxW")
    if not piped and not os.path.exists(args.video):
        parser.error(f"video not found: {args.video}")
    if args.grid_step is not None:
        parser.error("--grid-step is not supported online (use --grid or --queries)")
    if args.queries is not None and not os.path.isfile(args.queries):
        parser.error(f"--queries file not found: {args.queries}")
    model, params, info = load_model_or_exit(parser, args.checkpoint)
    settings = resolve(info, **settings_overrides(parser, args))
    if piped:
        height, width = args.pipe_size
        source = None
        frames = pipe_frames(sys.stdin.buffer, height, width, args.max_frames)
    else:
        source = open_video(args.video, max_frames=args.max_frames, strict=args.strict)
        height, width = source.shape[1:3]
        frames = source
    if args.queries is not None:
        queries = read_queries(args.queries)
    else:
        grid = limits.check_grid(args.grid or DEFAULT_GRID, "--grid")
        queries = grid_queries(grid, height, width, t=args.grid_frame)
    num_frames = len(source) if source is not None else args.max_frames  # None: a pipe to its end
    limits.check_command(model, settings, len(queries), num_frames or 0, height, width,
                         queries[:, 0], args.max_minutes, "objtrack track --online",
                         (lambda m: print(m, file=sys.stderr)) if num_frames else None)
    tracker = OnlineTracker(model, params, (height, width), capacity=max(1, len(queries)),
                            settings=settings)
    print(f"{args.video}: {height}x{width}; {len(queries)} queries; online at "
          f"{tracker.size[0]}x{tracker.size[1]}, {settings.describe()}; each frame's estimate "
          f"is final {tracker.latency} frames after it arrives", file=sys.stderr)
    compile_s = tracker.warm_up()  # compile first: no frame waits for a compilation
    t0 = time.perf_counter()
    result = track_stream(tracker, frames, queries)
    seconds = time.perf_counter() - t0
    steps = result["step_ms"]
    num_frames = len(steps)
    report = {
        "frames": int(num_frames), "points": int(len(queries)),
        "latency_frames": int(result["latency_frames"]),
        "compile_s": round(compile_s, 1),
        "per_frame_ms": {"mean": float(np.mean(steps)), "p50": float(np.median(steps)),
                         "p95": float(np.percentile(steps, 95)), "max": float(np.max(steps))}
        if num_frames else None,
        "seconds": round(seconds, 2),
    }
    print("per-frame latency: " + json.dumps(report), file=sys.stderr)
    out_video, out_npz, _ = output_paths(args.out)
    has_vis = bool(model.visibility_head)  # without a head, visible only says "tracking"
    write_tracks_npz(out_npz, result["tracks"], result["visible"] if has_vis else None, queries,
                     settings, writer="objtrack track --online", resolution=tracker.size,
                     video_size=(height, width),
                     info={"video": "-" if piped else os.path.basename(os.path.normpath(
                         args.video)), "num_frames": int(num_frames)},
                     extra={"step_ms": steps, "latency_frames": result["latency_frames"]})
    written = [out_npz]
    if source is not None:
        from objtrack_jax.video_tracking import write_tracks_video

        fps = args.fps or (video_info(args.video).get("fps") if os.path.isfile(args.video)
                           else None) or 24.0
        tracks = np.nan_to_num(result["tracks"], nan=-1e4)  # not yet queried: off screen
        written.append(write_tracks_video(out_video, source, tracks, result["visible"],
                                          tail=args.tail, fps=fps))
    print("wrote " + ", ".join(written), file=sys.stderr)
    return {**report, "tracks": result["tracks"], "visible": result["visible"],
            "npz": out_npz}
