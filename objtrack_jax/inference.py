"""The long-video engine: the window loop of the PIPs++ long-video protocol.

Every caller that tracks through more frames than one window
(:func:`objtrack_jax.tracking.track_queries`, hence ``objtrack eval``/``track``/``demo`` and the
evaluation during training; :mod:`objtrack_jax.functional` for the in-memory function) follows the
rules below (docs/conventions.md, "Long videos"), written once here as pieces that every driver
uses: :func:`segment_windows` (the schedule), :func:`window_step` (one window: the model's
refinement, pure, jit- and vmap-able), :func:`_carried` (the templates a window starts from) and
:func:`_write_window` (write-back and zero-velocity fill). Two drivers run them on the host:
:func:`track_windows` (one segment, frames streamed from a file a window at a time, each window
encoded once for all its point chunks) and :func:`track_segments` (many short segments of one
video side by side on its shared feature maps: the TAP-Vid protocol's query groups).
:func:`track_long_video` is :func:`track_windows` with a progress bar, the entry the parity tests
compare with the PyTorch original.

A per-window step for other loops (streaming, export): ``window_step(model, params, fmaps
[B, S, h, w, C], trajs [B, S, N, 2], iters, feat_init=None | (f1, f2, f4) each [B, S, N, C],
num_valid=None | int | [B]) -> TrackerOutput`` (tracks, vis_logits, feats to carry).

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
from objtrack_jax.settings import CARRY_MODES
from objtrack_jax.video_io import FrameSource, as_frame_source

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


def segment_windows(length: int, window: int) -> list[tuple[int, int]]:
    """The windows both loops (:func:`track_windows`, :func:`track_segments`) run on a segment of
    ``length`` frames: none for one frame, one (padded when short) for up to ``window`` frames,
    else :func:`window_starts`."""
    return [] if length < 2 else window_starts(length, window)


def num_windows(num_frames: int, window: int) -> int:
    """How many windows :func:`track_windows` runs on ``num_frames`` frames (0 for one frame)."""
    return len(segment_windows(num_frames, window))


def _write_window(trajs: np.ndarray, vis: np.ndarray, start: int, end: int, tracks, vis_logits,
                  fill: bool = True) -> None:
    """Writes one window's output into a segment's state, time on axis 0 (numpy views): its
    estimate ``tracks [>= w, ...]`` over frames ``start .. end-1`` and, with ``fill`` (the PIPs++
    protocol), the window's last estimate over every later frame (zero-velocity fill); its
    visibility logits (``vis_logits``, None: kept) over the same frames."""
    w = end - start
    trajs[start:end] = tracks[:w]
    if fill:
        trajs[end:] = trajs[end - 1:end]
    if vis_logits is not None:
        vis[start:end] = vis_logits[:w]


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


def window_step(model: PIPsTracker, params: Any, fmaps, trajs, iters: int, feat_init=None,
                num_valid=None):
    """One window of the protocol, pure (jit- and vmap-able): ``PIPsTracker.refine`` of the
    window's feature maps ``fmaps [B, S, h, w, C]`` from the estimate ``trajs [B, S, N, 2]`` (frame
    0: the query or the previous window's last estimate, kept), with the carried templates
    ``feat_init`` (``(feats1, feats2, feats4)``, each ``[B, S, N, C]``; None: sampled at frame 0)
    and ``num_valid`` real frames (scalar or ``[B]``; None: all ``S``). Returns the model's
    :class:`~objtrack_jax.models.tracker.TrackerOutput` (``tracks``, ``vis_logits``, ``feats`` to
    carry into the next window). The host loop (:func:`track_windows`, :func:`track_segments`) and
    the functional API (:mod:`objtrack_jax.functional`) both run every window through it."""
    return model.apply({"params": params}, fmaps, trajs, iters, feat_init, num_valid,
                       method=PIPsTracker.refine)


@functools.lru_cache(maxsize=16)
def _encode_fn(model: PIPsTracker) -> Callable:
    def run(params, rgbs):
        return model.apply({"params": params}, rgbs, method=PIPsTracker.encode)

    return TrimmedJit(run)


@functools.lru_cache(maxsize=32)
def _refine_fn(model: PIPsTracker, iters: int, with_init: bool, masked: bool = False) -> Callable:
    def run(params, fmaps, trajs, feat_init, num_valid):
        return window_step(model, params, fmaps, trajs, iters, feat_init if with_init else None,
                           num_valid if masked else None)

    return TrimmedJit(run)


@functools.lru_cache(maxsize=32)
def _refine_gather_fn(model: PIPsTracker, iters: int, with_init: bool) -> Callable:
    """Masked refinement of windows gathered inside the program from a video's feature maps
    (``features [T', h, w, C]`` on the device, ``idx [B, S]`` frame indices): no per-call copy
    of the windows' maps."""
    def run(params, features, idx, trajs, feat_init, num_valid):
        return window_step(model, params, features[idx], trajs, iters,
                           feat_init if with_init else None, num_valid)

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
                  max_memory_mb: Optional[int] = None, pad_short: bool = False,
                  keep_init: bool = False):
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
      keep_init: each window starts from ``trajs_e0`` over all its frames but the first (which
        the previous window refined): a refinement pass over tracks already estimated, e.g. at a
        finer resolution (:func:`objtrack_jax.tracking.track_queries`' ``refine_scale``). False
        (the PIPs++ protocol): the frames after a window start at its last position.
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
    for start, end in segment_windows(length, window):
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
            _write_window(trajs[:, :, sl].swapaxes(0, 1), vis[:, :, sl].swapaxes(0, 1), start,
                          end, np.asarray(out.tracks).swapaxes(0, 1),
                          None if out.vis_logits is None else
                          np.asarray(out.vis_logits).swapaxes(0, 1), fill=not keep_init)
            feats[c] = out.feats  # (a padded short video is one window: never carried)
        if on_window is not None:
            on_window()
    return trajs[:, :, :n], (vis[:, :, :n] if has_vis else None)


MAX_SEGMENT_BATCH = 64
POINTS_PER_CALL = 128
MIN_SEGMENT_POINTS = 2


def segment_batch_size(window: int, fmap_shape, num_points: int,
                       max_memory_mb: Optional[int] = None, itemsize: int = 4) -> int:
    """Segments of ``num_points`` (padded) points refined side by side in one call of
    :func:`track_segments`: ``POINTS_PER_CALL // num_points`` (1 to :data:`MAX_SEGMENT_BATCH`,
    a power of two for power-of-two counts), fewer when the batch's window feature maps (with
    their pyramid and correlation scratch, ~4x) would take more than an eighth of the budget.
    One fixed size per point count: a video compiles one program per (point count, carry)."""
    from objtrack_jax.memory import default_budget_mb

    budget = (default_budget_mb() if max_memory_mb is None else int(max_memory_mb)) * 2 ** 20
    per = 4 * window * int(np.prod(fmap_shape)) * itemsize
    b = max(1, min(MAX_SEGMENT_BATCH, POINTS_PER_CALL // max(int(num_points), 1)))
    while b > 1 and b * per > budget / 8:
        b //= 2
    return b


def segment_chunks(n: int, chunk_size: Optional[int] = None) -> list[tuple[int, int]]:
    """``[(start, size), ...]``: how :func:`track_segments` splits a segment's ``n`` points.

    Two sizes only, so that a video compiles four refinement programs: chunks of ``large``
    points (:data:`POINTS_PER_CALL`, or ``chunk_size`` when smaller; one segment per call) and
    chunks of :data:`MIN_SEGMENT_POINTS` (many segments per call). The remainder after the large
    chunks goes into one more large chunk (padded) when it fills at least half of one, else
    into small chunks (the last one padded). A point costs the same whether real or padding, so
    this keeps the padding under the smaller of 3 points and half a large chunk."""
    large = max(MIN_SEGMENT_POINTS, min(int(chunk_size or POINTS_PER_CALL), POINTS_PER_CALL))
    out = [(s, large) for s in range(0, n - n % large, large)]
    start = n - n % large
    if n % large >= large // 2:
        out.append((start, large))
    else:
        out += [(s, MIN_SEGMENT_POINTS) for s in range(start, n, MIN_SEGMENT_POINTS)]
    return out


class _Job:
    """One segment's chunk of points in :func:`track_segments`: its frames (indices into the
    feature maps), its windows, the next one to run and its state (estimate, visibility
    logits, carried templates)."""

    def __init__(self, seg: int, frames: np.ndarray, xy0: np.ndarray, points: slice, size: int,
                 window: int, first: bool):
        self.seg, self.frames, self.first = seg, frames, first
        length = len(frames)
        xy = xy0[points]
        if len(xy) < size:  # padded with copies of the chunk's first point (finite, dropped)
            xy = np.concatenate([xy, np.repeat(xy[:1], size - len(xy), 0)], 0)
        self.trajs = np.repeat(xy[None].astype(np.float32), length, 0)  # [L, size, 2]
        self.vis = np.zeros((length, size), np.float32)
        self.windows = segment_windows(length, window)
        self.next = 0
        self.feats: Optional[tuple] = None

    @property
    def left(self) -> int:
        return len(self.windows) - self.next


def track_segments(model: PIPsTracker, params: Any, features: np.ndarray, segments, *,
                   window: int, iters: int, carry: str = "pips2", chunk_size: Optional[int] = None,
                   on_window: Optional[Callable[[], None]] = None,
                   max_memory_mb: Optional[int] = None, max_batch: Optional[int] = None):
    """Many segments of one video through the PIPs++ window protocol, side by side.

    The TAP-Vid protocol tracks every group of queries that share a frame forward and backward
    from it: dozens of short segments of a few points each. Run one after another (as
    :func:`track_windows` would), each refinement call does little work. Here each call refines
    the next window of up to ``B`` segments (equal padded point counts, all first windows or all
    carried ones), their window feature maps stacked along the batch axis; the segments with the
    most windows left go first, so the batches stay full. Each segment keeps its own windows,
    estimate and carried templates, so the results are those of :func:`track_windows` on each
    segment alone (``pad_short=True``) up to float rounding: every call runs the masked update
    net (``PIPsTracker.refine(num_valid=[B])``), a short segment's window padded to ``window``
    frames, a full window with ``num_valid = window``. ``B`` is fixed per point count
    (:func:`segment_batch_size`; a batch short of it is padded with copies), so a video compiles
    two programs per point count, shared by every video of its shape.

    Args:
      features: ``[T, h, w, C]`` feature maps of the whole video (:func:`encode_frames`).
      segments: ``[(frames, xy0), ...]``: ``frames`` the segment's frame indices into
        ``features`` in tracking order (e.g. ``range(t, -1, -1)`` backward), ``xy0`` ``[n, 2]``
        (x, y) model pixels at the segment's first frame.
      chunk_size: at most this many points per segment and call (capped at
        :data:`POINTS_PER_CALL`); segments are split by :func:`segment_chunks` (TAP-Vid groups
        are mostly a few points: chunks of :data:`MIN_SEGMENT_POINTS`, many per call).
      on_window: called once per window of each segment (progress).
      max_batch: at most this many segments per call (None: :func:`segment_batch_size`).
    Returns:
      a list with, per segment, ``(tracks [L, n, 2] float32, vis_logits [L, n] or None)``.
    """
    check_carry(carry)
    t, hf, wf, _ = np.shape(features)
    # On the device once, its length padded to a power of two: one program per length bucket.
    bucket = 1 << max(0, math.ceil(math.log2(t)))
    features = np.asarray(features)
    device_features = jnp.asarray(np.concatenate(
        [features, np.zeros((bucket - t,) + features.shape[1:], features.dtype)]) if bucket > t
        else features)
    has_vis = bool(model.visibility_head)
    model = inference_model(model, hf * model.stride, wf * model.stride, max_memory_mb)
    itemsize = jnp.dtype(model.dtype).itemsize
    jobs = []
    for i, (frames, xy0) in enumerate(segments):
        frames = np.asarray(frames, np.int64)
        xy0 = np.asarray(xy0, np.float32).reshape(-1, 2)
        for c, (start, size) in enumerate(segment_chunks(len(xy0), chunk_size)):
            jobs.append(_Job(i, frames, xy0, slice(start, start + size), size, window, c == 0))
    sizes = {}
    for n in {j.trajs.shape[1] for j in jobs}:
        b = segment_batch_size(window, features.shape[1:], n, max_memory_mb, itemsize)
        sizes[n] = b if max_batch is None else max(1, min(b, int(max_batch)))
    while True:
        classes: dict[tuple, list] = {}
        for j in jobs:
            if j.left > 0:
                classes.setdefault((j.trajs.shape[1], j.next > 0), []).append(j)
        if not classes:
            break
        key = max(classes, key=lambda k: (len(classes[k]) / sizes[k[0]], -k[1]))
        ready = sorted(classes[key], key=lambda j: -j.left)[:sizes[key[0]]]
        _refine_batch(model, params, device_features, ready, sizes[key[0]], window, int(iters),
                      carry, on_window)
    out = []
    for i, (frames, xy0) in enumerate(segments):
        mine = [j for j in jobs if j.seg == i]
        n = len(np.reshape(xy0, (-1, 2)))
        if mine:
            tracks = np.concatenate([j.trajs for j in mine], 1)[:, :n]
            vis = np.concatenate([j.vis for j in mine], 1)[:, :n]
        else:
            tracks = np.zeros((len(frames), 0, 2), np.float32)
            vis = tracks[..., 0]
        out.append((tracks, vis if has_vis else None))
    return out


def _refine_batch(model, params, features, jobs, batch: int, window: int, iters: int,
                  carry: str, on_window) -> None:
    """The next window of each of ``jobs`` (equal point counts, all first or all carried windows)
    in one refinement call of ``batch`` segments (padded with copies of the last job, dropped)."""
    pad = batch - len(jobs)
    spans = [j.windows[j.next] for j in jobs]
    idx = [j.frames[s:e] for j, (s, e) in zip(jobs, spans)]
    idx = [np.concatenate([i, np.repeat(i[-1:], window - len(i))]) for i in idx]
    idx = np.stack(idx + idx[-1:] * pad).astype(np.int32)  # [B, S] frames of the windows
    trajs = np.stack([_pad_time(j.trajs[None, s:e], window)[0] for j, (s, e) in zip(jobs, spans)])
    trajs = np.concatenate([trajs, np.repeat(trajs[-1:], pad, 0)], 0)
    num_valid = np.array([e - s for s, e in spans + spans[-1:] * pad], np.int32)
    feat_init = None
    if jobs[0].next > 0 and carry != "none":  # a carried window is a full one (window_starts)
        stacked = tuple(np.concatenate([j.feats[k] for j in jobs + jobs[-1:] * pad], 0)
                        for k in range(3))
        feat_init = _carried(stacked, window, carry)
    refine = _refine_gather_fn(model, iters, feat_init is not None)
    out = refine(params, features, jnp.asarray(idx), jnp.asarray(trajs),
                 None if feat_init is None else tuple(jnp.asarray(f) for f in feat_init),
                 jnp.asarray(num_valid))
    tracks = np.asarray(out.tracks)
    vis = None if out.vis_logits is None else np.asarray(out.vis_logits)
    feats = tuple(np.asarray(f) for f in out.feats)
    for i, (j, (s, e)) in enumerate(zip(jobs, spans)):
        _write_window(j.trajs, j.vis, s, e, tracks[i], None if vis is None else vis[i])
        j.feats = tuple(f[i:i + 1] for f in feats)
        j.next += 1
        if on_window is not None and j.first:
            on_window()


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
