"""Tracking arbitrary query points through a video of any length (TAP-Vid style queries).

:func:`track_queries` takes queries ``(t, y, x)`` at *any* frame and returns ``[n, T, 2]`` tracks:

* Points are grouped by query frame ``t_q = round(t)``. Each group is tracked **forward** on frames
  ``t_q .. T-1`` and **backward** on the reversed frames ``t_q, t_q-1, .., 0``, both with the
  long-video engine :func:`objtrack_jax.inference.track_windows` (windows with one frame of overlap,
  the initial estimate is the query position repeated over time, templates carried with ``carry``,
  points refined in padded chunks of at most ``chunk_size`` on each window's feature maps). The
  backward result is reversed back and the two are stitched at ``t_q``; the output at ``t_q`` is
  the query itself, exactly.

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

from typing import Any, Callable, Optional, Sequence

import cv2
import numpy as np

from objtrack_jax.inference import check_carry, num_windows, track_windows
from objtrack_jax.models.tracker import MIN_SIZE, PIPsTracker, check_inputs

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


def default_resolution(height: int, width: int, short_side: int = DEFAULT_SHORT_SIDE,
                       stride: int = 8) -> tuple[int, int]:
    """Model resolution for an ``height × width`` video: aspect kept, short side ``short_side``.

    Both sides are rounded to multiples of ``stride`` and are at least ``MIN_SIZE`` (128).
    """
    scale = short_side / min(height, width)

    def side(s):
        return max(MIN_SIZE, int(round(s * scale / stride)) * stride)

    return side(height), side(width)


def resize_video(video: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """``[T, H, W, 3]`` → ``[T, h, w, 3]`` with OpenCV bilinear; dtype kept (uint8 or float32)."""
    video = np.asarray(video)
    h, w = (int(s) for s in size)
    if video.shape[1:3] == (h, w):
        return video
    dtype = np.uint8 if video.dtype == np.uint8 else np.float32
    out = np.empty((video.shape[0], h, w, video.shape[3]), dtype)
    for i in range(video.shape[0]):
        out[i] = cv2.resize(video[i].astype(dtype, copy=False), (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def _check_video(video: np.ndarray) -> np.ndarray:
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"video must be [T, H, W, 3] RGB, got shape {video.shape}")
    if video.dtype != np.uint8:
        video = video.astype(np.float32, copy=False)
    return video


def _check_queries(query_points, num_frames: int) -> np.ndarray:
    q = np.asarray(query_points, np.float64)
    if q.ndim != 2 or q.shape[1] != 3:
        raise ValueError(f"query_points must be [n, 3] as (t, y, x), got shape {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ValueError("query_points contain non-finite values")
    t = np.round(q[:, 0])
    if q.size and (t.min() < 0 or t.max() > num_frames - 1):
        raise ValueError(f"query frames must lie in [0, {num_frames - 1}], got "
                         f"[{t.min():g}, {t.max():g}]")
    return q


def track_segment(model: PIPsTracker, params: Any, video: np.ndarray, xy0: np.ndarray, *,
                  window: int, iters: int, carry: str = "pips2", chunk_size: int = 256,
                  on_window: Optional[Callable[[], None]] = None):
    """Tracks points given at frame 0 of ``video`` through all of it (the init is ``xy0``
    repeated over time).

    Args:
      video: ``[L, H, W, 3]`` frames at the model resolution (uint8 or float in [0, 255]).
      xy0: ``[n, 2]`` (x, y) query positions at frame 0, model pixels.
    Returns:
      ``(tracks [L, n, 2] float32, vis_logits [L, n] float32 or None)``.
    """
    xy0 = np.asarray(xy0, np.float32)
    init = np.broadcast_to(xy0, (1, video.shape[0]) + xy0.shape)
    tracks, vis = track_windows(model, params, video[None], init, window=window, iters=iters,
                                carry=carry, chunk_size=chunk_size, on_window=on_window)
    return tracks[0], (None if vis is None else vis[0])


# --------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------


def track_queries(model: PIPsTracker, params: Any, video, query_points, *, window: int = 16,
                  iters: int = 8, carry: str = "pips2", chunk_size: int = 256,
                  resize_to: Optional[Sequence[int]] = None, progress: bool = True):
    """Tracks queries given at any frame through the whole video (module docstring).

    Args:
      model, params: a :class:`PIPsTracker` and its parameters.
      video: ``[T, H, W, 3]`` RGB, uint8 or float in [0, 255]; any length T >= 1.
      query_points: ``[n, 3]`` as ``(t, y, x)``, pixels of the input video; t is rounded.
      window: frames per window (S_max); iters: refinement iterations per window.
      carry: template carry across windows, ``'pips2'``, ``'paper'`` or ``'none'``
        (see :mod:`objtrack_jax.inference`).
      chunk_size: at most this many points are refined at once.
      resize_to: model resolution ``(h, w)`` (multiples of 8, >= 128). None:
        :func:`default_resolution` (aspect kept, short side 384). Pass the video's own size to run
        without resizing.
      progress: show a tqdm bar over windows.

    Returns:
      ``(tracks, visible, vis_logits)``: tracks float32 ``[n, T, 2]`` (x, y) pixels of the input
      video, equal to the query at its query frame; ``visible`` bool ``[n, T]`` and ``vis_logits``
      float32 ``[n, T]`` when the model has a visibility head, else both None.
    """
    check_carry(carry)
    video = _check_video(video)
    num_frames, height, width = video.shape[:3]
    queries = _check_queries(query_points, num_frames)
    n = queries.shape[0]
    size = default_resolution(height, width) if resize_to is None else tuple(int(s) for s in resize_to)
    check_inputs((1, 2) + size + (3,), (1, 2, 1, 2), model.stride)
    scale = np.array([size[1] / width, size[0] / height], np.float64)  # (x, y): model px per input px
    frames = resize_video(video, size)

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
        bar = tqdm(total=total, desc="tracking", unit="win")
    tick = bar.update if bar is not None else None
    kw = dict(window=window, iters=iters, carry=carry, chunk_size=chunk_size, on_window=tick)
    try:
        for t, idx in groups:
            xy0 = (xy_query[idx] * scale).astype(np.float32)
            fwd, fwd_vis = track_segment(model, params, frames[t:], xy0, **kw)
            bwd, bwd_vis = track_segment(model, params, frames[t::-1], xy0, **kw)
            seg = np.concatenate([bwd[::-1][:t], fwd], 0)  # [T, n_g, 2] model px
            tracks[idx] = np.transpose(seg / scale, (1, 0, 2)).astype(np.float32)
            tracks[idx, t] = xy_query[idx]
            if has_vis:
                logits[idx] = np.concatenate([bwd_vis[::-1][:t], fwd_vis], 0).T
    finally:
        if bar is not None:
            bar.close()
    if not has_vis:
        return tracks, None, None
    visible = logits > 0.0  # sigmoid(logit) > 0.5
    visible[np.arange(n), t_query] = True
    return tracks, visible, logits
