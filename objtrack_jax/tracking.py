"""Tracking arbitrary query points through a video of any length (TAP-Vid style queries).

:func:`track_queries` takes queries ``(t, y, x)`` at *any* frame and returns ``[n, T, 2]`` tracks:

* Points are grouped by query frame ``t_q = round(t)``. Each group is tracked **forward** on frames
  ``t_q .. T-1`` and **backward** on the reversed frames ``t_q, t_q-1, .., 0``, both with the
  long-video engine :func:`objtrack_jax.inference.track_windows` (windows with one frame of overlap,
  the initial estimate is the query position repeated over time, templates carried with ``carry``,
  points refined in padded chunks of at most ``chunk_size`` on each window's feature maps). The
  backward result is reversed back and the two are stitched at ``t_q``; the output at ``t_q`` is
  the query itself, exactly.
* Optionally (``settings.refine_scale``) a **second pass** refines those tracks at a finer resolution: the
  same windows, forward and backward from each query frame, but every window starts from the
  first pass's tracks (``track_windows(keep_init=True)``) rather than from the last position. The
  first pass finds the motion at the resolution the weights were trained at; the second, with
  feature maps of more cells per object, places each point more precisely (the shipped weights:
  first pass at short side 192, second at twice that, chosen on the val split; README).
  Visibility comes from the first pass.
* Optionally (``settings.anchor``, on for the shipped weights) every estimate is then re-aligned
  to its query frame's patch at the input resolution (the post-network stage,
  :mod:`objtrack_jax.post`, with the rules of :mod:`objtrack_jax.anchor`): sub-pixel placement,
  and the drift that the window restarts accumulate on still content is removed.

Settings: one :class:`~objtrack_jax.settings.TrackingSettings` (window, iterations, resolution,
second pass, carry, chunks, memory budget), by default the loaded weights' validated one:
``track_queries(*load_model(), video, queries)`` tracks as ``objtrack track`` does. The keyword
arguments of :func:`track_queries` change single settings.

Coordinate conventions (docs/conventions.md, *Coordinates and layouts*):

* Tracks are ``(x, y)`` pixels, queries ``(t, y, x)``, x = 0 the centre of the first column (pixel
  centres at integers).
* Resizing to the model resolution ``(h, w)`` scales coordinates by ``w / W`` and ``h / H``
  (``x_model = x · w/W``), the rule the PIPs++ evaluation uses for ground truth; tracks are mapped
  back with the inverse scale. (The exact half-pixel mapping would be ``(x + 0.5)·w/W − 0.5``; the
  two differ by under half a pixel and the model was trained with the former.)
* Frames are resized with OpenCV bilinear (``INTER_LINEAR``); uint8 input stays uint8.

Visibility: if the model has a visibility head, ``visible = logit > settings.vis_threshold`` (0
unless the weights record a threshold chosen on held-out data; the query frame itself is always
visible). With anchoring, a point-frame whose patch was found neither from the query nor from the
previous frame is visible only when its logit is also above ``AnchorConfig.hide_logit``
(:func:`objtrack_jax.post.visibility`). Without a head no visibility is returned
(``None``) -- never made up.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from objtrack_jax import anchor, limits, post
from objtrack_jax.inference import (encode_frames, num_windows, to_point_major, to_time_major,
                                    track_segments, track_windows)
from objtrack_jax.memory import (check_memory, default_budget_mb, estimate_tracking_bytes,
                                 inference_model, point_chunk_size)
from objtrack_jax.models.tracker import PIPsTracker, check_inputs
from objtrack_jax.settings import TrackingSettings, resolve
from objtrack_jax.video_io import (ArrayFrames, FrameSource, FrameView,
                                   resize_video)  # noqa: F401  (the one frame resizer; public here)

log = logging.getLogger(__name__)



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


def _window_run(s: TrackingSettings, iters: int, chunk_size: int, on_window) -> dict:
    """The engine's keyword arguments for one pass (:func:`~objtrack_jax.inference.track_windows`)."""
    return dict(window=s.window, iters=iters, carry=s.carry, chunk_size=chunk_size,
                on_window=on_window, max_memory_mb=s.max_memory_mb, pad_short=s.bucket)


def _segments(groups, num_frames: int):
    """Each query group's forward (frames t..T-1) and backward (t..0) frame indices."""
    return [(np.arange(t, num_frames), np.arange(t, -1, -1)) for t, _ in groups]


def _first_pass(model, params, frames, groups, xy_query, scale, tracks, logits, s, chunk_size,
                on_window) -> None:
    """Every query group forward and backward from its frame, at the model resolution of
    ``frames``, written into ``tracks`` / ``logits`` (module docstring)."""
    num_frames = frames.shape[0]
    num_segments = sum((num_frames - t > 1) + (t > 0) for t, _ in groups)
    features = (shared_features(model, params, frames, s.max_memory_mb)
                if num_segments > 1 else None)
    xy0s = [(xy_query[idx] * scale).astype(np.float32) for _, idx in groups]
    if features is not None and s.bucket and len(groups) > 1:
        # the query groups side by side (windows of many segments in one call)
        segments = [(f, xy0) for (fwd, bwd), xy0 in zip(_segments(groups, num_frames), xy0s)
                    for f in (fwd, bwd)]
        out = track_segments(model, params, features, segments, window=s.window, iters=s.iters,
                             carry=s.carry, chunk_size=chunk_size, on_window=on_window,
                             max_memory_mb=s.max_memory_mb)
        halves = [(out[2 * g], out[2 * g + 1]) for g in range(len(groups))]
    else:  # one group after another
        run = _window_run(s, s.iters, chunk_size, on_window)
        halves = []
        for (t, _), xy0 in zip(groups, xy0s):
            pair = []
            for step in (1, -1):
                sl = slice(t, None) if step == 1 else slice(t, None, -1)
                view = FrameView(frames, t, step=step)
                init = np.broadcast_to(xy0, (1, len(view)) + xy0.shape)
                tr, vis = track_windows(model, params, view, init, **run,
                                        features=None if features is None else features[sl][None])
                pair.append((tr[0], None if vis is None else vis[0]))
            halves.append(tuple(pair))
    for (t, idx), (fwd, bwd) in zip(groups, halves):
        _write_group(tracks, logits, t, idx, fwd, bwd, xy_query, scale)


def _second_pass(model, params, source, tracks, groups, xy_query, size, s, chunk_size,
                 on_window) -> None:
    """The second pass (module docstring): every group's forward and backward segments refined
    at model resolution ``size`` starting from ``tracks`` (``[n, T, 2]`` input pixels), written
    back into ``tracks`` (the queries kept exactly)."""
    num_frames, height, width = source.shape[:3]
    scale = np.array([size[1] / width, size[0] / height], np.float64)
    frames = FrameView(source, resize_to=size)
    segments = sum((num_frames - t > 1) + (t > 0) for t, _ in groups)
    features = shared_features(model, params, frames, s.max_memory_mb) if segments > 1 else None
    run = dict(_window_run(s, s.second_pass_iters, chunk_size, on_window), keep_init=True)
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
    at_query = post.at_query_frame(np.full(len(idx), t), len(seg))
    tracks[idx] = post.lock_query(to_point_major(seg / scale).astype(np.float32), at_query,
                                  xy_query[idx])
    if logits is not None:
        logits[idx] = to_point_major(np.concatenate([bwd[1][::-1][:t], fwd[1]], 0))


# --------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------

def split_inputs(inputs: tuple, what: str, names: Sequence[str]):
    """``(source, *inputs)`` of an entry point called as ``f(model, params, [info or settings,]
    *inputs)``: the optional third positional argument is the loaded weights' ``info`` (a mapping,
    e.g. ``f(*load_model(), video, queries)``) or a :class:`TrackingSettings`; ``TypeError``
    otherwise, naming the expected arguments."""
    if len(inputs) == len(names) + 1:
        source = inputs[0]
        if not isinstance(source, (Mapping, TrackingSettings)):
            raise TypeError(f"{what}(model, params, info, {', '.join(names)}): the third argument "
                            f"must be the weights' info (from load_model) or a TrackingSettings, "
                            f"got {type(source).__name__}")
        return (source,) + tuple(inputs[1:])
    if len(inputs) == len(names):
        return (None,) + tuple(inputs)
    raise TypeError(f"{what} takes (model, params, [info or settings,] {', '.join(names)}), got "
                    f"{len(inputs) + 2} positional arguments")


def track_queries(model: PIPsTracker, params: Any, *inputs,
                  settings: Union[None, Mapping, TrackingSettings] = None, progress: bool = True,
                  **overrides):
    """Tracks queries given at any frame through the whole video (module docstring).

    Called as ``track_queries(model, params, info, video, query_points)`` (e.g.
    ``track_queries(*load_model(), video, queries)``: the weights' validated settings, those of
    ``objtrack track``) or ``track_queries(model, params, video, query_points, settings=...)``.

    Args:
      model, params: a :class:`PIPsTracker` and its parameters.
      info: optional, the loaded weights' ``info`` (:func:`objtrack_jax.model_io.load_model`) or a
        :class:`~objtrack_jax.settings.TrackingSettings`: the settings tracked with.
      video: ``[T, H, W, 3]`` RGB, uint8 or float in [0, 255]; any length T >= 1. Either an array
        or a :class:`~objtrack_jax.video_io.FrameSource` (e.g. :func:`~objtrack_jax.video_io.
        open_video` on an mp4 or a folder of frames): frames are read, resized and encoded a
        window (or an encoder chunk) at a time, so memory does not grow with the video's length
        beyond the ``[n, T]`` outputs (and the shared feature maps). The results are the same for
        both.
      query_points: ``[n, 3]`` as ``(t, y, x)``, pixels of the input video; t is rounded.
      settings: a :class:`~objtrack_jax.settings.TrackingSettings` or a dict of its fields
        (instead of ``info``'s). Without ``info`` and ``settings``: the defaults of weights that
        record nothing (PIPs++'s window 128, 16 iterations, short side 384), with a warning.
      progress: show a tqdm bar over windows.
      overrides: any :class:`~objtrack_jax.settings.TrackingSettings` field by its name, e.g.
        ``window=16``, ``resolution=(h, w)`` (multiples of 8, >= 128; the video's own size tracks
        without resizing), ``refine_scale=0`` (one pass), ``anchor=False`` (the network's
        tracks); None keeps the value (:func:`objtrack_jax.settings.resolve`; ``resize_to=`` is
        the deprecated name of ``resolution=``).

    Returns:
      ``(tracks, visible, vis_logits)``: tracks float32 ``[n, T, 2]`` (x, y) pixels of the input
      video, equal to the query at its query frame; ``visible`` bool ``[n, T]`` and ``vis_logits``
      float32 ``[n, T]`` when the model has a visibility head, else both None.
    """
    source, video, query_points = split_inputs(inputs, "track_queries", ("video", "query_points"))
    s = resolve(source, settings, entry="track_queries", **overrides)
    return run_tracking(model, params, video, query_points, s, progress=progress)


def run_tracking(model: PIPsTracker, params: Any, video, query_points, settings: TrackingSettings,
                 progress: bool = False):
    """The host-side tracking loop with settings already resolved (:func:`track_queries` without
    the argument handling; every entry point ends here)."""
    s = settings
    if not isinstance(s, TrackingSettings):
        raise TypeError(f"settings must be a TrackingSettings, got {type(s).__name__}")
    streamed = isinstance(video, FrameSource)
    source = video if streamed else ArrayFrames(_check_video(video))
    if streamed and (len(source.shape) != 4 or source.shape[-1] != 3 or len(source) == 0):
        raise ValueError(f"video must be [T > 0, H, W, 3] RGB, got shape {source.shape}")
    num_frames, height, width = source.shape[:3]
    size = s.model_size(height, width)
    check_inputs((1, 2) + size + (3,), (1, 2, 1, 2), model.stride)
    n = int(np.shape(query_points)[0]) if np.ndim(query_points) else 0
    check_memory(estimate_tracking_bytes(n, num_frames, height, width, size, s.window,  # first
                                         int(model.latent_dim), streamed),
                 f"tracking {n} points through {num_frames} frames at {size[0]}x{size[1]}",
                 "track fewer points or frames, or at a smaller resolution")
    fine = s.fine_size(size)
    if fine is not None:
        check_inputs((1, 2) + fine + (3,), (1, 2, 1, 2), model.stride)
        check_memory(estimate_tracking_bytes(n, num_frames, height, width, fine, s.window,
                                             int(model.latent_dim), streamed),
                     f"refining {n} points through {num_frames} frames at {fine[0]}x{fine[1]}",
                     "track fewer points or frames, or refine at a smaller resolution")
    limits.check_run(model, n, num_frames, height, width, s, warn=True)  # objtrack_jax.limits
    queries = _check_queries(query_points, num_frames, height, width)
    scale = np.array([size[1] / width, size[0] / height], np.float64)  # (x, y): model px per input px

    has_vis = bool(model.visibility_head)
    tracks = np.zeros((n, num_frames, 2), np.float32)
    logits = np.zeros((n, num_frames), np.float32) if has_vis else None
    t_query = np.round(queries[:, 0]).astype(np.int64)
    xy_query = queries[:, [2, 1]]  # (x, y) input pixels
    groups = [(int(t), np.flatnonzero(t_query == t)) for t in np.unique(t_query)]

    bar = None
    if progress:
        from tqdm import tqdm

        total = sum(num_windows(num_frames - t, s.window) + num_windows(t + 1, s.window)
                    for t, _ in groups)
        total *= 2 if fine is not None else 1
        if s.anchor is not None:
            total += post.num_chunks(num_frames, t_query)
        bar = tqdm(total=total, desc="tracking", unit="win")
    tick = bar.update if bar is not None else None
    chunk_size = s.chunk_size or point_chunk_size(s.window, int(model.latent_dim), s.max_memory_mb)
    accepted = None
    try:
        _first_pass(model, params, FrameView(source, resize_to=size), groups, xy_query, scale,
                    tracks, logits, s, chunk_size, tick)
        if fine is not None:
            _second_pass(model, params, source, tracks, groups, xy_query, fine, s, chunk_size, tick)
        if s.anchor is not None:
            tracks, accepted, scores = post.anchor_tracks(source, tracks, queries, s.anchor,
                                                          on_chunk=tick)
    finally:
        if bar is not None:
            bar.close()
    if not has_vis:
        return tracks, None, None
    lost = None if accepted is None else scores == anchor.LOST_SCORE
    visible, _ = post.visibility(logits, s.vis_threshold, s.anchor, accepted,
                                 post.at_query_frame(t_query, num_frames), lost)
    return tracks, visible, logits
