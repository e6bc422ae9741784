"""Tracking arbitrary query points through a video of any length (TAP-Vid style queries).

:func:`track_queries` takes queries ``(t, y, x)`` at *any* frame and returns ``[n, T, 2]`` tracks:

* Points are grouped by query frame ``t_q = round(t)``. Each group is tracked **forward** on frames
  ``t_q .. T-1`` and **backward** on the reversed frames ``t_q, t_q-1, .., 0``, both with the
  long-video engine :func:`objtrack_jax.inference.track_windows` (windows with one frame of overlap,
  the initial estimate is the query position repeated over time, templates carried with ``carry``,
  points refined in padded chunks of at most ``chunk_size`` on each window's feature maps). The
  backward result is reversed back and the two are stitched at ``t_q``; the output at ``t_q`` is
  the query itself, exactly.
* Optionally (``refine_scale``) a **second pass** refines those tracks at a finer resolution: the
  same windows, forward and backward from each query frame, but every window starts from the
  first pass's tracks (``track_windows(keep_init=True)``) rather than from the last position. The
  first pass finds the motion at the resolution the weights were trained at; the second, with
  feature maps of more cells per object, places each point more precisely (the shipped weights:
  first pass at short side 192, second at twice that, chosen on the val split; README).
  Visibility comes from the first pass.

Coordinate conventions (docs/conventions.md, *Coordinates and layouts*):

* Tracks are ``(x, y)`` pixels, queries ``(t, y, x)``, x = 0 the centre of the first column (pixel
  centres at integers).
* Resizing to the model resolution ``(h, w)`` scales coordinates by ``w / W`` and ``h / H``
  (``x_model = x · w/W``), the rule the PIPs++ evaluation uses for ground truth; tracks are mapped
  back with the inverse scale. (The exact half-pixel mapping would be ``(x + 0.5)·w/W − 0.5``; the
  two differ by under half a pixel and the model was trained with the former.)
* Frames are resized with OpenCV bilinear (``INTER_LINEAR``); uint8 input stays uint8.

Visibility: if the model has a visibility head, ``visible = sigmoid(logit) > 0.5`` (the query frame
itself is always visible). Without a head no visibility is returned (``None``) -- never made up.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Optional, Sequence

import numpy as np

from objtrack_jax.inference import (check_carry, encode_frames, num_windows, to_point_major,
                                    to_time_major, track_segments, track_windows)
from objtrack_jax.memory import default_budget_mb, inference_model, point_chunk_size
from objtrack_jax.models.tracker import MIN_SIZE, PIPsTracker, check_inputs
from objtrack_jax.video_io import (ArrayFrames, FrameSource, FrameView,
                                   resize_video)  # noqa: F401  (the one frame resizer; public here)

log = logging.getLogger(__name__)

DEFAULT_SHORT_SIDE = 384


# --------------------------------------------------------------------------------------------------
# Queries and sizes
# --------------------------------------------------------------------------------------------------


def grid_queries(num_per_side: int, height: int, width: int, t: int = 0,
                 margin: Optional[float] = None) -> np.ndarray:
    """A regular ``num_per_side × num_per_side`` grid of queries at frame ``t``.

    Args:
      num_per_side: points per row and per column.
      height, width: frame size in pixels.
      t: query frame.
      margin: distance in pixels of the outermost points from the border (points at
        ``linspace(margin, W-1-margin, n)``). None: half a grid cell, i.e. the points sit at the
        centres of an n×n tiling of the frame.

    Returns:
      float32 ``[num_per_side², 3]`` as ``(t, y, x)``, row-major (y outer, x inner).
    """
    n = int(num_per_side)
    if n < 1:
        raise ValueError(f"num_per_side must be >= 1, got {num_per_side}")

    def axis(size):
        if margin is None:
            return (np.arange(n) + 0.5) * (size / n) - 0.5
        if 2 * margin > size - 1:
            raise ValueError(f"margin {margin} leaves no room in a frame of size {size}")
        return np.linspace(margin, size - 1 - margin, n)

    ys, xs = np.meshgrid(axis(height), axis(width), indexing="ij")
    return np.stack([np.full(n * n, t), ys.reshape(-1), xs.reshape(-1)], -1).astype(np.float32)


def grid_step_queries(step: float, height: int, width: int, t: int = 0) -> np.ndarray:
    """A dense grid of one query per ``step × step`` pixel cell, at the cells' centres, at frame
    ``t``: ``floor(H/step) · floor(W/step)`` points (128 × 224 = 28,672 for step 4 at 512×896).

    Returns float32 ``[n, 3]`` as ``(t, y, x)``, row-major (y outer, x inner)."""
    if not step > 0:
        raise ValueError(f"grid step must be > 0 pixels, got {step}")
    ny, nx = int(height // step), int(width // step)
    if ny < 1 or nx < 1:
        raise ValueError(f"grid step {step:g} px leaves no point in a {height}x{width} frame")
    ys, xs = np.meshgrid((np.arange(ny) + 0.5) * step - 0.5, (np.arange(nx) + 0.5) * step - 0.5,
                         indexing="ij")
    return np.stack([np.full(ny * nx, t), ys.reshape(-1), xs.reshape(-1)], -1).astype(np.float32)


def default_resolution(height: int, width: int, short_side: int = DEFAULT_SHORT_SIDE,
                       stride: int = 8) -> tuple[int, int]:
    """Model resolution for an ``height × width`` video: aspect kept, short side ``short_side``.

    Both sides are rounded to multiples of ``stride`` and are at least ``MIN_SIZE`` (128).
    """
    scale = short_side / min(height, width)

    def side(s):
        return max(MIN_SIZE, int(round(s * scale / stride)) * stride)

    return side(height), side(width)


def _check_video(video: np.ndarray) -> np.ndarray:
    """``[T, H, W, 3]`` uint8, or float in [0, 255] (returned as float32).

    Non-finite pixels are an error naming the first bad frame. Float frames whose values all lie
    in [0, 1] are taken to be [0, 1]-scaled: a warning is logged and they are multiplied by 255
    (the model expects [0, 255]).
    """
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"video must be [T, H, W, 3] RGB, got shape {video.shape}")
    if video.shape[0] == 0:
        raise ValueError(f"video has no frames (shape {video.shape})")
    if video.dtype.kind not in "uif":
        raise ValueError(f"video must be uint8 or float pixels, got dtype {video.dtype}")
    if video.dtype != np.uint8:
        video = video.astype(np.float32, copy=False)
        finite = np.isfinite(video).reshape(video.shape[0], -1).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise ValueError(f"video frame {bad[0]} has non-finite pixel values (nan/inf); "
                             f"{bad.size} of {video.shape[0]} frames are affected")
        lo, hi = float(video.min()), float(video.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"float video pixels must lie in [0, 255], got [{lo:g}, {hi:g}]")
        if 0 < hi <= 1.0:
            log.warning("float video in [%g, %g] looks [0, 1]-scaled; multiplying by 255 (the "
                        "model expects [0, 255])", lo, hi)
            video = video * np.float32(255.0)
    return video


def _check_queries(query_points, num_frames: int, height: Optional[int] = None,
                   width: Optional[int] = None) -> np.ndarray:
    """``[n, 3]`` (t, y, x) float64; errors name the first bad query and the valid range (frames
    [0, T-1]; x in [-0.5, W-0.5] and y in [-0.5, H-0.5], the image's extent in pixel-centre
    coordinates)."""
    q = np.asarray(query_points, np.float64)
    if q.ndim != 2 or q.shape[1] != 3:
        raise ValueError(f"query_points must be [n, 3] as (t, y, x), got shape {q.shape}")
    if not np.all(np.isfinite(q)):
        i = int(np.flatnonzero(~np.isfinite(q).all(axis=1))[0])
        raise ValueError(f"query {i} {tuple(q[i])} has non-finite values")
    t = np.round(q[:, 0])
    if q.size and (t.min() < 0 or t.max() > num_frames - 1):
        i = int(np.flatnonzero((t < 0) | (t > num_frames - 1))[0])
        raise ValueError(f"query {i} is at frame {q[i, 0]:g}; query frames must lie in "
                         f"[0, {num_frames - 1}]")
    if height is not None and width is not None and q.size:
        outside = (q[:, 1] < -0.5) | (q[:, 1] > height - 0.5) | (q[:, 2] < -0.5) | (q[:, 2] > width - 0.5)
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            raise ValueError(
                f"query {i} (t, y, x) = ({q[i, 0]:g}, {q[i, 1]:g}, {q[i, 2]:g}) lies outside the "
                f"{height}x{width} image (valid: y in [-0.5, {height - 0.5:g}], x in [-0.5, "
                f"{width - 0.5:g}]); {int(outside.sum())} of {len(q)} queries are outside")
    return q


def refine_size(size: Sequence[int], refine_scale: Optional[float],
                stride: int = 8) -> Optional[tuple[int, int]]:
    """The second pass's model resolution: ``size`` (H, W) times ``refine_scale``, sides rounded
    to multiples of ``stride``; None when there is no second pass (``refine_scale`` None, 0 or
    1). A scale below 1 or not a number raises ValueError."""
    if refine_scale is None or float(refine_scale) in (0.0, 1.0):
        return None
    f = float(refine_scale)
    if not np.isfinite(f) or f < 1.0:
        raise ValueError(f"refine_scale must be >= 1 (or 0 for no second pass), got {refine_scale}")
    return tuple(max(MIN_SIZE, int(round(int(v) * f / stride)) * stride) for v in size)


def check_tracking_options(window: int, iters: int, chunk_size: Optional[int]) -> None:
    """ValueError naming the value and the valid range for window < 2, iters < 1, chunk < 1
    (``chunk_size`` None: picked from the memory budget)."""
    if int(window) < 2:
        raise ValueError(f"window must be >= 2 frames (one frame overlaps the next window), got {window}")
    if int(iters) < 1:
        raise ValueError(f"iters must be >= 1 refinement iteration, got {iters}")
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1 point, got {chunk_size}")


def available_memory_bytes() -> Optional[int]:
    """MemAvailable from /proc/meminfo (Linux), else the physical memory; None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def estimate_tracking_bytes(num_points: int, num_frames: int, height: int, width: int,
                            model_size: Sequence[int], window: int, latent_dim: int = 128,
                            streamed: bool = False) -> int:
    """A rough lower bound of the host memory :func:`track_queries` needs: the input frames (a
    window of them when ``streamed`` from a :class:`~objtrack_jax.video_io.FrameSource`, else the
    whole video) and a window resized, the encoded window (4-level pyramid), the output
    tracks/logits with their stitching copies, and the three carried templates of every point."""
    h, w = (int(s) for s in model_size)
    s_win = max(1, min(int(window), int(num_frames)))
    frames = (s_win if streamed else num_frames) * height * width * 3 + s_win * h * w * 3 * 4
    fmaps = s_win * (h // 8) * (w // 8) * latent_dim * 4 * 4 // 3
    tracks = num_points * num_frames * 3 * 4 * 3
    templates = num_points * s_win * latent_dim * 3 * 4
    return int(frames + fmaps + tracks + templates)


def check_memory(estimate: int, what: str, hint: str = "") -> None:
    """MemoryError (before allocating) when ``estimate`` bytes exceed the available memory."""
    avail = available_memory_bytes()
    if avail is not None and estimate > avail:
        raise MemoryError(f"{what} needs an estimated {estimate / 2**30:.1f} GiB but only "
                          f"{avail / 2**30:.1f} GiB of memory is available; refusing before "
                          f"allocating{'; ' + hint if hint else ''}")


def track_segment(model: PIPsTracker, params: Any, video: np.ndarray, xy0: np.ndarray, *,
                  window: int, iters: int, carry: str = "pips2", chunk_size: int = 256,
                  on_window: Optional[Callable[[], None]] = None, features=None,
                  max_memory_mb: Optional[int] = None, bucket: bool = True):
    """Tracks points given at frame 0 of ``video`` through all of it (the init is ``xy0``
    repeated over time). ``bucket``: a segment shorter than a window runs padded to one
    (``track_windows(pad_short=True)``), so all short lengths share one compiled program.

    Args:
      video: ``[L, H, W, 3]`` frames at the model resolution (uint8 or float in [0, 255]), an
        array or a :class:`~objtrack_jax.video_io.FrameSource` (read a window at a time).
      xy0: ``[n, 2]`` (x, y) query positions at frame 0, model pixels.
      features: optional ``[L, H/8, W/8, C]`` feature maps of ``video`` (encoded once by the
        caller, see :func:`objtrack_jax.inference.encode_frames`).
    Returns:
      ``(tracks [L, n, 2] float32, vis_logits [L, n] float32 or None)``.
    """
    xy0 = np.asarray(xy0, np.float32)
    init = np.broadcast_to(xy0, (1, len(video)) + xy0.shape)
    tracks, vis = track_windows(model, params, video if isinstance(video, FrameSource) else video[None],
                                init, window=window, iters=iters,
                                carry=carry, chunk_size=chunk_size, on_window=on_window,
                                features=None if features is None else features[None],
                                max_memory_mb=max_memory_mb, pad_short=bucket)
    return tracks[0], (None if vis is None else vis[0])


def shared_features(model: PIPsTracker, params: Any, frames,
                    max_memory_mb: Optional[int] = None) -> Optional[np.ndarray]:
    """Every frame's feature maps, encoded once for all query groups and both directions, when
    they take at most an eighth of the budget; else None (each window encodes its own frames).
    ``frames``: ``[T, H, W, 3]`` array or :class:`~objtrack_jax.video_io.FrameSource`."""
    t, h, w = frames.shape[:3]
    nbytes = t * (h // model.stride) * (w // model.stride) * int(model.latent_dim) * 4
    budget = default_budget_mb() if max_memory_mb is None else int(max_memory_mb)
    if nbytes > budget * 2 ** 20 / 8:
        return None
    m = inference_model(model, h, w, max_memory_mb)
    return encode_frames(m, params, frames, m.encode_chunk)


def _track_groups_batched(model, params, features, groups, num_frames, xy_query, scale, tracks,
                          logits, kw) -> None:
    """Every query group's forward and backward segments through
    :func:`objtrack_jax.inference.track_segments` (windows of many groups in one call), written
    into ``tracks`` / ``logits`` as the one-group-at-a-time loop of :func:`track_queries` does."""
    segments, owners = [], []
    for t, idx in groups:
        xy0 = (xy_query[idx] * scale).astype(np.float32)
        segments += [(np.arange(t, num_frames), xy0), (np.arange(t, -1, -1), xy0)]
        owners.append((t, idx))
    out = track_segments(model, params, features, segments, window=kw["window"],
                         iters=kw["iters"], carry=kw["carry"], chunk_size=kw["chunk_size"],
                         on_window=kw["on_window"], max_memory_mb=kw["max_memory_mb"])
    for g, (t, idx) in enumerate(owners):
        _write_group(tracks, logits, t, idx, out[2 * g], out[2 * g + 1], xy_query, scale)


def _refine_groups(model: PIPsTracker, params: Any, source, tracks, groups, xy_query, size,
                   kw: dict) -> None:
    """The second pass of :func:`track_queries` (module docstring): every group's forward and
    backward segments refined at model resolution ``size`` starting from ``tracks`` (``[n, T,
    2]`` input pixels), written back into ``tracks`` (the queries kept exactly)."""
    num_frames, height, width = source.shape[:3]
    scale = np.array([size[1] / width, size[0] / height], np.float64)
    frames = FrameView(source, resize_to=size)
    segments = sum((num_frames - t > 1) + (t > 0) for t, _ in groups)
    features = shared_features(model, params, frames, kw["max_memory_mb"]) if segments > 1 else None
    run = dict(window=kw["window"], iters=kw["iters"], carry=kw["carry"],
               chunk_size=kw["chunk_size"], on_window=kw["on_window"],
               max_memory_mb=kw["max_memory_mb"], pad_short=kw["bucket"], keep_init=True)
    for t, idx in groups:
        init = (to_time_major(tracks[idx]) * scale).astype(np.float32)  # [T, n_g, 2] model px
        init[t] = xy_query[idx] * scale
        halves = []
        for step in (1, -1):  # forward from t, then backward
            sl = slice(t, None) if step == 1 else slice(t, None, -1)
            refined, _ = track_windows(
                model, params, FrameView(frames, t, step=step), init[sl][None],
                features=None if features is None else features[sl][None], **run)
            halves.append((refined[0], None))
        _write_group(tracks, None, t, idx, halves[0], halves[1], xy_query, scale)


def _write_group(tracks, logits, t, idx, fwd, bwd, xy_query, scale) -> None:
    """Joins a query group's backward and forward segments (``(tracks [L, n_g, 2], vis)``, model
    pixels, each from frame ``t``) into ``tracks [n, T, 2]`` (input pixels, the queries kept
    exactly at frame ``t``) and ``logits [n, T]`` at the group's rows ``idx``."""
    seg = np.concatenate([bwd[0][::-1][:t], fwd[0]], 0)  # [T, n_g, 2] model px
    tracks[idx] = to_point_major(seg / scale).astype(np.float32)
    tracks[idx, t] = xy_query[idx]
    if logits is not None:
        logits[idx] = to_point_major(np.concatenate([bwd[1][::-1][:t], fwd[1]], 0))


# --------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------


def track_queries(model: PIPsTracker, params: Any, video, query_points, *, window: int = 16,
                  iters: int = 8, carry: str = "pips2", chunk_size: Optional[int] = 256,
                  resize_to: Optional[Sequence[int]] = None, progress: bool = True,
                  max_memory_mb: Optional[int] = None, bucket: bool = True,
                  refine_scale: Optional[float] = None, refine_iters: Optional[int] = None):
    """Tracks queries given at any frame through the whole video (module docstring).

    Args:
      model, params: a :class:`PIPsTracker` and its parameters.
      video: ``[T, H, W, 3]`` RGB, uint8 or float in [0, 255]; any length T >= 1. Either an array
        or a :class:`~objtrack_jax.video_io.FrameSource` (e.g. :func:`~objtrack_jax.video_io.
        open_video` on an mp4 or a folder of frames): frames are read, resized and encoded a
        window (or an encoder chunk) at a time, so memory does not grow with the video's length
        beyond the ``[n, T]`` outputs (and the shared feature maps, below). The results are the
        same for both (the engine reads an array through the same window reads).
      query_points: ``[n, 3]`` as ``(t, y, x)``, pixels of the input video; t is rounded.
      window: frames per window (S_max); iters: refinement iterations per window.
      carry: template carry across windows, ``'pips2'``, ``'paper'`` or ``'none'``
        (see :mod:`objtrack_jax.inference`).
      chunk_size: at most this many points are refined at once, all chunks on one encoding of
        each window (dense grids); None: :func:`objtrack_jax.memory.point_chunk_size` of the
        budget (up to 4096 points at the default budget).
      resize_to: model resolution ``(h, w)`` (multiples of 8, >= 128). None:
        :func:`default_resolution` (aspect kept, short side 384). Pass the video's own size to run
        without resizing.
      progress: show a tqdm bar over windows.
      max_memory_mb: memory budget for chunk sizes (:mod:`objtrack_jax.memory`; None: half the
        machine's memory).
      bucket: compile a few programs per video shape: segments shorter than a window are padded
        to one (masked, same results up to float rounding) and point counts to powers of two, so
        an evaluation's videos of one shape reuse the same programs; and with several query
        frames (the TAP-Vid protocol) the groups' segments run side by side
        (:func:`~objtrack_jax.inference.track_segments`: the next windows of many segments in
        one call of ~128 points). False: one group after another, a program per short segment
        length.
      refine_scale: a second pass refines the tracks, starting from the first pass's, at this
        multiple of the model resolution (sides rounded to multiples of 8; module docstring);
        None, 0 or 1: one pass. refine_iters: its iterations per window (None: ``iters``).

    Returns:
      ``(tracks, visible, vis_logits)``: tracks float32 ``[n, T, 2]`` (x, y) pixels of the input
      video, equal to the query at its query frame; ``visible`` bool ``[n, T]`` and ``vis_logits``
      float32 ``[n, T]`` when the model has a visibility head, else both None.
    """
    check_carry(carry)
    check_tracking_options(window, iters, chunk_size)
    streamed = isinstance(video, FrameSource)
    source = video if streamed else ArrayFrames(_check_video(video))
    if streamed and (len(source.shape) != 4 or source.shape[-1] != 3 or len(source) == 0):
        raise ValueError(f"video must be [T > 0, H, W, 3] RGB, got shape {source.shape}")
    num_frames, height, width = source.shape[:3]
    size = default_resolution(height, width) if resize_to is None else tuple(int(s) for s in resize_to)
    check_inputs((1, 2) + size + (3,), (1, 2, 1, 2), model.stride)
    n = int(np.shape(query_points)[0]) if np.ndim(query_points) else 0
    check_memory(estimate_tracking_bytes(n, num_frames, height, width, size, window,  # first
                                         int(model.latent_dim), streamed),
                 f"tracking {n} points through {num_frames} frames at {size[0]}x{size[1]}",
                 "track fewer points or frames, or at a smaller resolution")
    fine = refine_size(size, refine_scale, model.stride)
    if fine is not None:
        check_inputs((1, 2) + fine + (3,), (1, 2, 1, 2), model.stride)
        check_tracking_options(window, int(refine_iters or iters), chunk_size)
        check_memory(estimate_tracking_bytes(n, num_frames, height, width, fine, window,
                                             int(model.latent_dim), streamed),
                     f"refining {n} points through {num_frames} frames at {fine[0]}x{fine[1]}",
                     "track fewer points or frames, or refine at a smaller resolution")
    queries = _check_queries(query_points, num_frames, height, width)
    scale = np.array([size[1] / width, size[0] / height], np.float64)  # (x, y): model px per input px
    frames = FrameView(source, resize_to=size)  # resized as windows are read

    has_vis = bool(model.visibility_head)
    tracks = np.zeros((n, num_frames, 2), np.float32)
    logits = np.zeros((n, num_frames), np.float32) if has_vis else None
    t_query = np.round(queries[:, 0]).astype(np.int64)
    xy_query = queries[:, [2, 1]]  # (x, y) input pixels
    groups = [(int(t), np.flatnonzero(t_query == t)) for t in np.unique(t_query)]

    bar = None
    if progress:
        from tqdm import tqdm

        total = sum(num_windows(num_frames - t, window) + num_windows(t + 1, window) for t, _ in groups)
        total *= 2 if fine is not None else 1
        bar = tqdm(total=total, desc="tracking", unit="win")
    tick = bar.update if bar is not None else None
    if chunk_size is None:
        chunk_size = point_chunk_size(window, int(model.latent_dim), max_memory_mb)
    kw = dict(window=window, iters=iters, carry=carry, chunk_size=chunk_size, on_window=tick,
              max_memory_mb=max_memory_mb, bucket=bucket)
    segments = sum((num_frames - t > 1) + (t > 0) for t, _ in groups)
    features = shared_features(model, params, frames, max_memory_mb) if segments > 1 else None
    try:
        if features is not None and bucket and len(groups) > 1:  # the query groups side by side
            _track_groups_batched(model, params, features, groups, num_frames, xy_query, scale,
                                  tracks, logits, kw)
        else:  # one group after another
            for t, idx in groups:
                xy0 = (xy_query[idx] * scale).astype(np.float32)
                fwd = track_segment(model, params, FrameView(frames, t), xy0, **kw,
                                    features=None if features is None else features[t:])
                bwd = track_segment(model, params, FrameView(frames, t, step=-1), xy0, **kw,
                                    features=None if features is None else features[t::-1])
                _write_group(tracks, logits, t, idx, fwd, bwd, xy_query, scale)
        if fine is not None:
            features = None  # the first pass's maps are freed before the second pass's
            _refine_groups(model, params, source, tracks, groups, xy_query, fine,
                           dict(kw, iters=int(refine_iters or iters)))
    finally:
        if bar is not None:
            bar.close()
    if not has_vis:
        return tracks, None, None
    visible = logits > 0.0  # sigmoid(logit) > 0.5
    visible[np.arange(n), t_query] = True
    return tracks, visible, logits
