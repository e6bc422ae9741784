"""The long-video engine: the one window loop of the PIPs++ long-video protocol.

Every caller that tracks through more frames than one window (``track_long_video`` below,
:func:`objtrack_jax.tracking.track_queries`, hence ``objtrack eval``/``track``/``demo`` and the
evaluation during training) runs :func:`track_windows`. The rules (docs/conventions.md,
"Long videos"):

* windows of ``window`` frames; window k+1 starts at ``start_k + window - 1`` (one frame of
  overlap); the last window is shifted back to end at the last frame (:func:`window_starts`);
* each window runs with the current estimate as its initialisation; its final output (frame 0
  re-locked) is written back and every later frame is set to the window's last estimate
  (zero-velocity fill);
* templates are carried across windows (:data:`CARRY_MODES`):
  ``'pips2'`` (PIPs++ test code): feats1 (the frame-0 template) for the whole video,
  feats2/feats4 from the previous window, sliced to the new length, for iteration 0;
  ``'paper'`` (the object-prior test code): feats2 = feats4 = feats1 when carrying;
  ``'none'``: every window starts from its own frame-0 templates.

Each window of frames is encoded **once**, then the points are refined in chunks of at most
``chunk_size`` on those feature maps (bounded memory for dense grids; PIPs++ tracks every point
independently, so chunking changes nothing beyond float rounding). Chunks are padded to a
power-of-two size (at least 8) so that different point counts share a few compiled shapes. The
jitted encoder and refinement are cached per (model, iters): windows of equal shape never
recompile.

Frames are read one window at a time (``rgbs`` may be a
:class:`~objtrack_jax.video_io.FrameSource`, e.g. an mp4 opened with
:func:`~objtrack_jax.video_io.open_video`): memory is flat in the video's length.

Layout: this module works in the model's time-major ``[B, T, N, 2]`` (x, y) pixels; the tracking
API uses ``[N, T, 2]``, converted with :func:`to_point_major` / :func:`to_time_major` only.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Optional

import jax.numpy as jnp
import numpy as np

from objtrack_jax.memory import TrimmedJit, inference_model
from objtrack_jax.models.tracker import PIPsTracker, check_inputs
from objtrack_jax.video_io import FrameSource, as_frame_source

CARRY_MODES = ("pips2", "paper", "none")
MIN_CHUNK = 8


def to_point_major(tracks):
    """Engine/metric layout ``[T, N, ...]`` → tracking-API layout ``[N, T, ...]`` (numpy).

    The one conversion between the two track layouts (docs/conventions.md, *Coordinates and
    layouts*); :func:`to_time_major` is its inverse."""
    return np.swapaxes(np.asarray(tracks), 0, 1)


def to_time_major(tracks):
    """Tracking-API layout ``[N, T, ...]`` → engine/metric layout ``[T, N, ...]`` (numpy)."""
    return np.swapaxes(np.asarray(tracks), 0, 1)


def check_carry(carry: str) -> str:
    if carry not in CARRY_MODES:
        raise ValueError(f"carry must be one of {CARRY_MODES}, got {carry!r}")
    return carry


def window_starts(num_frames: int, window: int) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` of the PIPs++ windows covering ``num_frames`` frames."""
    if window < 2:
        raise ValueError(f"window must be >= 2 frames, got {window}")
    out = []
    cur = 0
    while True:
        end = cur + window
        if end > num_frames:
            diff = end - num_frames
            end -= diff
            cur = max(cur - diff, 0)
        out.append((cur, end))
        if end >= num_frames:
            return out
        cur = cur + window - 1


def num_windows(num_frames: int, window: int) -> int:
    """How many windows :func:`track_windows` runs on ``num_frames`` frames (0 for one frame)."""
    return len(window_starts(num_frames, window)) if num_frames > 1 else 0


def padded_chunk_size(n: int, chunk_size: Optional[int]) -> int:
    """Points per refined chunk: a power of two >= n (>= MIN_CHUNK), capped at ``chunk_size``;
    ``chunk_size=None``: exactly ``n`` (one chunk, no padding)."""
    if chunk_size is None:
        return max(n, 1)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if n >= chunk_size:
        return chunk_size
    return min(chunk_size, max(MIN_CHUNK, 1 << max(0, math.ceil(math.log2(max(n, 1))))))


@functools.lru_cache(maxsize=16)
def _encode_fn(model: PIPsTracker) -> Callable:
    def run(params, rgbs):
        return model.apply({"params": params}, rgbs, method=PIPsTracker.encode)

    return TrimmedJit(run)


@functools.lru_cache(maxsize=32)
def _refine_fn(model: PIPsTracker, iters: int, with_init: bool, masked: bool = False) -> Callable:
    def run(params, fmaps, trajs, feat_init, num_valid):
        return model.apply({"params": params}, fmaps, trajs, iters,
                           feat_init if with_init else None, num_valid if masked else None,
                           method=PIPsTracker.refine)

    return TrimmedJit(run)


def _pad_time(x, length: int):
    """``[B, L, ...]`` → ``[B, length, ...]``, the last frame repeated (numpy)."""
    x = np.asarray(x)
    pad = length - x.shape[1]
    return x if pad <= 0 else np.concatenate([x, np.repeat(x[:, -1:], pad, axis=1)], 1)


def encode_frames(model: PIPsTracker, params: Any, frames, chunk: int = 4) -> np.ndarray:
    """Feature maps of every frame, ``[T, H, W, 3]`` (array or
    :class:`~objtrack_jax.video_io.FrameSource`, read ``chunk`` frames at a time) → numpy
    ``[T, H/8, W/8, C]``.

    Frames go through the encoder ``chunk`` at a time (the last chunk padded with copies of the
    last frame), so a video of any length compiles one encoder program. The encoder (and the
    contextual attention) works on each frame alone, so a frame's features are the same in
    whatever window it appears: callers encode a video once and slice windows, both directions.
    """
    frames = as_frame_source(frames)
    t = len(frames)
    chunk = max(1, min(int(chunk), t))
    encode = _encode_fn(model)
    out = None
    for start in range(0, t, chunk):
        part = frames.read(start, min(start + chunk, t))
        if part.shape[0] < chunk:
            part = np.concatenate([part, np.repeat(part[-1:], chunk - part.shape[0], 0)], 0)
        f = np.asarray(encode(params, jnp.asarray(part[None], jnp.float32))[0])
        if out is None:
            out = np.empty((t,) + f.shape[1:], f.dtype)
        out[start:start + chunk] = f[:t - start]
    return out


def _carried(feats: Optional[tuple], length: int, carry: str) -> Optional[tuple]:
    """The templates a window of ``length`` frames starts from (module docstring)."""
    if feats is None or carry == "none":
        return None
    feats = tuple(f[:, :length] for f in feats)
    return (feats[0],) * 3 if carry == "paper" else feats


def track_windows(model: PIPsTracker, params: Any, rgbs, trajs_e0, *, window: int, iters: int,
                  carry: str = "pips2", chunk_size: Optional[int] = None,
                  on_window: Optional[Callable[[], None]] = None, features=None,
                  max_memory_mb: Optional[int] = None, pad_short: bool = False):
    """Tracks through a video of any length with the PIPs++ protocol (module docstring).

    Args:
      rgbs: ``[B, T, H, W, 3]`` frames in [0, 255] (numpy or jax; float or uint8), at the model
        resolution; or, for B = 1, a :class:`~objtrack_jax.video_io.FrameSource` of ``[T, H, W,
        3]`` frames, read one window at a time (streaming: the video is never held whole).
      trajs_e0: ``[B, T, N, 2]`` initial estimate in pixels; frame 0 holds the queries.
      window: S_max, frames per window; iters: refinement iterations per window.
      carry: one of :data:`CARRY_MODES`.
      chunk_size: refine at most this many points at once (padded, see
        :func:`padded_chunk_size`); None: all points in one chunk.
      on_window: called after each window (progress).
      features: optional ``[B, T, H/8, W/8, C]`` feature maps of ``rgbs`` (from
        :func:`encode_frames`), used instead of encoding each window.
      max_memory_mb: budget for the model's inference memory settings
        (:func:`objtrack_jax.memory.inference_model`; None: half the machine's memory).
      pad_short: a video shorter than ``window`` runs as a full window padded with its last
        frame, its update net masked to the real frames (``PIPsTracker.refine(num_valid=...)``):
        the same results up to float rounding, and every short length shares one compiled
        program (the TAP-Vid protocol's many short segments). False: a program per length.
    Returns:
      ``(tracks [B, T, N, 2] float32, vis_logits [B, T, N] float32 or None)``: numpy; the
      logits only when the model has a visibility head.
    """
    check_carry(carry)
    if isinstance(rgbs, FrameSource):
        source, shape = rgbs, (1,) + tuple(rgbs.shape)
        read = lambda start, end: source.read(start, end)[None]  # noqa: E731
    else:
        rgbs = np.asarray(rgbs)
        shape = rgbs.shape
        read = lambda start, end: rgbs[:, start:end]  # noqa: E731
    init = np.asarray(trajs_e0, np.float32)
    if len(shape) != 5 or init.ndim != 4 or init.shape[:2] != shape[:2]:
        check_inputs(shape, init.shape, model.stride)  # raises, naming the bad shape
    # Shapes of any window (a one-frame video is returned as is, below).
    check_inputs(shape[:1] + (2,) + shape[2:], init.shape[:1] + (2,) + init.shape[2:],
                 model.stride)
    b, length, n = init.shape[:3]
    has_vis = bool(model.visibility_head)
    if length == 1 or n == 0:
        return init.copy(), (np.zeros((b, length, n), np.float32) if has_vis else None)
    size = padded_chunk_size(n, chunk_size)
    num_chunks = -(-n // size)
    pad = num_chunks * size - n
    trajs = np.concatenate([init, np.repeat(init[:, :, :1], pad, axis=2)], 2) if pad else init.copy()
    vis = np.zeros(trajs.shape[:3], np.float32)
    model = inference_model(model, shape[2], shape[3], max_memory_mb)
    encode = _encode_fn(model)
    feats: list[Optional[tuple]] = [None] * num_chunks
    short = bool(pad_short) and length < window  # one window, padded to `window` frames
    span = window if short else None
    num_valid = jnp.int32(length)
    for start, end in window_starts(length, window):
        if features is not None:
            fmaps = jnp.asarray(_pad_time(features[:, start:end], span or 0))
        else:
            fmaps = encode(params, jnp.asarray(_pad_time(read(start, end), span or 0), jnp.float32))
        for c in range(num_chunks):
            sl = slice(c * size, (c + 1) * size)
            feat_init = _carried(feats[c], end - start, carry)
            refine = _refine_fn(model, int(iters), feat_init is not None, short)
            out = refine(params, fmaps, jnp.asarray(_pad_time(trajs[:, start:end, sl], span or 0)),
                         feat_init, num_valid)
            w = end - start
            trajs[:, start:end, sl] = np.asarray(out.tracks)[:, :w]
            trajs[:, end:, sl] = trajs[:, end - 1:end, sl]
            if out.vis_logits is not None:
                vis[:, start:end, sl] = np.asarray(out.vis_logits)[:, :w]
            feats[c] = out.feats  # (a padded short video is one window: never carried)
        if on_window is not None:
            on_window()
    return trajs[:, :, :n], (vis[:, :, :n] if has_vis else None)


def track_long_video(model: PIPsTracker, params: Any, rgbs, trajs_e0, *, window: int = 128,
                     iters: int = 16, carry: str = "pips2", progress: bool = False,
                     return_vis: bool = False, chunk_size: Optional[int] = None):
    """:func:`track_windows` with an optional progress bar.

    Args:
      rgbs: ``[B, T, H, W, 3]`` frames in [0, 255] (numpy or jax; float or uint8).
      trajs_e0: ``[B, T, N, 2]`` initial estimate in pixels; frame 0 holds the queries.
      window: S_max, frames per window.
      carry: ``'pips2'``, ``'paper'`` or ``'none'`` (see module docstring).
    Returns:
      ``[B, T, N, 2]`` numpy tracks (and ``[B, T, N]`` visibility logits when ``return_vis``;
      zeros when the model has no visibility head).
    """
    bar = None
    if progress:
        from tqdm import tqdm

        length = len(rgbs) if isinstance(rgbs, FrameSource) else np.shape(rgbs)[1]
        bar = tqdm(total=num_windows(length, window), desc="windows", unit="win")
    try:
        trajs, vis = track_windows(model, params, rgbs, trajs_e0, window=window, iters=iters,
                                   carry=carry, chunk_size=chunk_size,
                                   on_window=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    if return_vis:
        return trajs, (np.zeros(trajs.shape[:3], np.float32) if vis is None else vis)
    return trajs
