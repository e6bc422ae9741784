"""Tracking points through a video file and writing the results: the library behind
``objtrack track`` and ``objtrack demo --video``.

:func:`track_video` opens the video (file or folder of frames) as a
:class:`~objtrack_jax.video_io.FrameSource`, makes the queries (an N×N grid at one frame, or given
``(t, y, x)`` rows), tracks them with :func:`objtrack_jax.tracking.track_queries` and writes three
files next to each other: the video with the tracks drawn (``out``), the tracks file (an ``.npz``
in the one layout of :mod:`objtrack_jax.tracks_io`: ``[n, T, 2]`` (x, y) pixels of the input
video, visibility when the model predicts it, the queries and the settings used) and a PNG
contact sheet.

Streaming: the frames are never all in memory. Tracking reads them a window at a time; the
annotated video is then drawn and appended to the file a block of ``DRAW_BLOCK`` frames at a time
(a second pass over the source: a point's colour comes from its whole track, so no frame can be
drawn before tracking ends); the contact sheet reads its six frames. Only the ``[n, T]`` outputs
grow with the video's length.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any, Callable, Optional

import numpy as np

DEFAULT_GRID = 16
DRAW_BLOCK = 16


def read_queries(path: str) -> np.ndarray:
    """Queries from a ``.npy`` (``[n, 3]``) or a text file (one ``t, y, x`` row per line, commas or
    spaces) → float32 ``[n, 3]`` as ``(t, y, x)``."""
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


def output_paths(out: str) -> tuple[str, str, str]:
    """``(video, npz, png)`` paths written by :func:`track_video` for ``out``."""
    stem = os.path.splitext(out)[0]
    return out, stem + ".npz", stem + ".png"


def track_video(model, params, *inputs, out: Optional[str] = None, settings=None,
                queries: Optional[np.ndarray] = None,
                grid: Optional[int] = None, grid_step: Optional[float] = None,
                grid_frame: int = 0, max_frames: Optional[int] = None,
                tail: int = 8, fps: Optional[float] = None, progress: bool = True,
                echo: Optional[Callable[[str], Any]] = print, strict: bool = False,
                **overrides) -> dict:
    """Tracks queries through the video at ``video`` and writes the three outputs (module docstring).

    Called as ``track_video(model, params, [info,] video, [out])``, e.g.
    ``track_video(*load_model(), "clip.mp4", "tracks.mp4")``: with the weights' ``info`` the
    weights' validated settings are used, as ``objtrack track`` does.

    Args:
      model, params: the tracker (e.g. from :func:`objtrack_jax.model_io.load_model`).
      info: optional, the loaded weights' ``info`` or a
        :class:`~objtrack_jax.settings.TrackingSettings` (:func:`~objtrack_jax.tracking.track_queries`).
      video: a video file or a folder of frames.
      out: the annotated video's path (default ``tracks.mp4``); the ``.npz`` and ``.png`` take its
        stem.
      settings: a :class:`~objtrack_jax.settings.TrackingSettings` or a dict of its fields
        (instead of ``info``'s).
      queries: ``[n, 3]`` ``(t, y, x)`` in pixels of the input video; None: a ``grid × grid`` grid
        (default 16) at frame ``grid_frame``, or with ``grid_step`` one point per ``grid_step²``
        pixels of the input video (:func:`~objtrack_jax.tracking.grid_step_queries`; dense grids
        are refined in chunks of ``chunk_size`` points sharing each window's encoding).
      max_frames: read at most this many frames.
      overrides: any :class:`~objtrack_jax.settings.TrackingSettings` field by its name
        (``window=16``, ``resolution=(h, w)``, ...; None keeps it), as for
        :func:`~objtrack_jax.tracking.track_queries` (:func:`objtrack_jax.settings.resolve`).
      tail: frames of track tail drawn; fps: output frame rate (default: the input's, else 24).
      echo: where the progress lines go (None: silent).
      strict: a video that decodes fewer frames than its header reports is an error (default: a
        warning naming both counts).

    Raises:
      ValueError: unreadable video or queries, a grid frame outside the video, a query outside the
        image, bad tracking options (messages name the value and the valid range).
      MemoryError: the grid's memory estimate exceeds the free memory (before it is allocated).

    Returns:
      dict with the output paths (``video``, ``npz``, ``png``), ``num_frames``, ``num_points``,
      ``resolution``, ``settings`` (the :class:`~objtrack_jax.settings.TrackingSettings` used),
      ``timings`` (seconds per stage) and the arrays ``tracks`` ``[n, T, 2]`` and ``visible``
      ``[n, T]`` (None without a visibility head).
    """
    from objtrack_jax import limits, tracking, viz
    from objtrack_jax.memory import check_memory
    from objtrack_jax.settings import TrackingSettings, resolve
    from objtrack_jax.tracking import grid_queries, run_tracking
    from objtrack_jax.tracks_io import write_tracks_npz
    from objtrack_jax.video_io import open_video, video_info

    if inputs and isinstance(inputs[0], (Mapping, TrackingSettings)):
        source, rest = inputs[0], tuple(inputs[1:])
    else:
        source, rest = None, tuple(inputs)
    if len(rest) not in (1, 2) or not isinstance(rest[0], (str, os.PathLike)) or (
            len(rest) == 2 and out is not None):
        raise TypeError("track_video takes (model, params, [info or settings,] video, [out]) "
                        f"with video a path; got {len(inputs) + 2} positional arguments")
    video = os.fspath(rest[0])
    out = rest[1] if len(rest) == 2 else (out or "tracks.mp4")
    s = resolve(source, settings, entry="track_video", **overrides)
    say = echo or (lambda _: None)
    timings = {}
    t0 = time.perf_counter()
    frames = open_video(video, max_frames=max_frames, strict=strict)  # lazy; counts the frames
    timings["open_video"] = time.perf_counter() - t0
    num_frames, height, width = frames.shape[:3]
    resolution = s.model_size(height, width)
    if queries is None:
        if not 0 <= grid_frame < num_frames:
            raise ValueError(f"grid frame {grid_frame} outside the video's {num_frames} frames "
                             f"(valid: 0..{num_frames - 1}; --grid-frame {grid_frame})")
        if grid_step is not None:
            if not grid_step > 0:
                raise ValueError(f"grid step must be > 0 pixels, got {grid_step}")
            count = int(height // grid_step) * int(width // grid_step)
            what = f"a grid of one point per {grid_step:g}x{grid_step:g} px (--grid-step, {count} points)"
        else:
            grid = grid or DEFAULT_GRID
            if grid < 1:
                raise ValueError(f"grid must be >= 1 point per side, got {grid}")
            count, what = grid * grid, f"a {grid}x{grid} grid (--grid {grid}, {grid * grid} points)"
        check_memory(  # before the grid itself is allocated
            tracking.estimate_tracking_bytes(count, num_frames, height, width, resolution,
                                             s.window, int(model.latent_dim), streamed=True),
            f"{what} through {num_frames} frames",
            "use a smaller grid, fewer frames or a smaller resolution")
        limits.check_points(count, "grid points")  # objtrack_jax.limits, before allocating
        queries = (tracking.grid_step_queries(grid_step, height, width, t=grid_frame)
                   if grid_step is not None else grid_queries(grid, height, width, t=grid_frame))
    queries = np.asarray(queries, np.float32)
    fine = s.fine_size(resolution)
    say(f"{video}: {num_frames} frames {height}x{width}; {len(queries)} queries; model at "
        f"{resolution[0]}x{resolution[1]}, window {s.window}, iters {s.iters}"
        + (f"; refined at {fine[0]}x{fine[1]}" if fine else ""))

    t0 = time.perf_counter()
    tracks, visible, logits = run_tracking(model, params, frames, queries, s, progress=progress)
    if not np.all(np.isfinite(tracks)):
        raise FloatingPointError(f"the model produced non-finite tracks for {video} (check the "
                                 "checkpoint)")
    timings["track"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    out_video, out_npz, out_png = output_paths(out)
    os.makedirs(os.path.dirname(os.path.abspath(out_video)), exist_ok=True)
    fps = fps or (video_info(video).get("fps") if os.path.isfile(video) else None) or 24.0
    out_video = write_tracks_video(out_video, frames, tracks, visible, tail=tail, fps=fps)
    write_tracks_npz(out_npz, tracks, visible, queries, s, writer="objtrack track",
                     vis_logits=logits, resolution=resolution, video_size=(height, width),
                     info={"video": os.path.basename(os.path.normpath(video)),
                           "num_frames": int(num_frames), "fps": float(fps)})
    viz.save_png(out_png, viz.contact_sheet(frames, tracks, visible, tail=tail,
                                            cell_width=min(width, 480), layout="NT"))
    timings["write"] = time.perf_counter() - t0

    per_frame = timings["track"] / num_frames
    say(f"tracked {len(queries)} points x {num_frames} frames in {timings['track']:.1f} s "
        f"({1000 * per_frame:.0f} ms/frame, includes compilation); total "
        f"{sum(timings.values()):.1f} s")
    if visible is None:
        say("note: the model has no visibility head; every point is drawn as visible and the .npz "
            "holds no visibility")
    say(f"wrote {out_video}, {out_npz}, {out_png}")
    return dict(video=out_video, npz=out_npz, png=out_png, num_frames=int(num_frames),
                num_points=int(len(queries)), resolution=tuple(resolution), settings=s,
                timings=timings,
                tracks=tracks, visible=visible)


def write_tracks_video(path: str, frames, tracks: np.ndarray, visible: Optional[np.ndarray],
                       *, tail: int = 8, fps: float = 24.0, block: int = DRAW_BLOCK) -> str:
    """Draws ``[n, T, 2]`` tracks (``visible`` ``[n, T]`` or None; the tracking API's layout) on
    the frames of ``frames`` (a :class:`~objtrack_jax.video_io.FrameSource` or an array) and
    appends them to the video at ``path`` ``block`` frames at a time; returns the path written (a
    ``_frames`` PNG folder when the codec is missing, as :func:`objtrack_jax.video_io.write_video`)."""
    from objtrack_jax import viz
    from objtrack_jax.video_io import VideoWriter, as_frame_source

    source = as_frame_source(frames)
    tracks = np.asarray(tracks)
    if tracks.ndim != 3 or tracks.shape[1] != len(source):
        raise ValueError(f"tracks must be [n, T, 2] with T = {len(source)} (the video's frames), "
                         f"got shape {tracks.shape}")
    colors = viz.point_colors(tracks, visible, source.shape[1:3], layout="NT")  # whole tracks

    def draw(writer):
        for start in range(0, len(source), block):
            end = min(start + block, len(source))
            writer.append(viz.draw_tracks(source.read(start, end), tracks, visible, tail=tail,
                                          colors=colors, start=start, layout="NT"))
        return writer.close()

    written = draw(VideoWriter(path, fps))
    if written is None:  # the file came out empty: draw again into PNG frames
        written = draw(VideoWriter(path, fps, as_frames=True))
    return written
