"""The long-video engine: the host loop of the PIPs++ long-video protocol.

Every caller that tracks through more frames than one window on the host
(:func:`objtrack_jax.tracking.track_queries`, hence ``objtrack eval``/``track``/``demo`` and the
evaluation during training) runs here. The protocol's rules (docs/conventions.md, "Long
videos": the schedule, the zero-velocity start and write-back, the template carry, the
per-window step) are those of :mod:`objtrack_jax.windows`, shared with the pure function, the
online tracker and the exported artifacts. On the host, a segment's points go through their
windows as jobs (``_Job``, one per chunk of points: its estimate, visibility logits and carried
templates; ``inputs`` for the next window, ``advance`` with its output) and
:func:`_run_windows` is the one window loop: it runs the next window of a group of jobs until
none has windows left. Its two drivers differ only in which jobs run together and where their
feature maps come from: :func:`track_windows` (one segment, every chunk at the same window, the
window's frames read from the video, streamed from a file, and encoded once for all its chunks)
and :func:`track_segments` (the same window of many short segments of one video in one call,
gathered from its shared feature maps on the device: the TAP-Vid protocol's query groups).
:func:`track_long_video` is :func:`track_windows` with a progress bar, the entry the parity
tests compare with the PyTorch original.

Each window of frames is encoded **once**, then the points are refined in chunks of at most
``chunk_size`` on those feature maps (bounded memory for dense grids; PIPs++ tracks every point
independently, so chunking changes nothing beyond float rounding). Chunks are padded to a
power-of-two size (at least 8; :func:`track_segments`: two sizes, :func:`segment_chunks`) so that
different point counts share a few compiled shapes. The
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
from objtrack_jax.windows import (carried, check_carry, num_windows, window_frames, window_spans,
                                  window_step, write_window)

MIN_CHUNK = 8


def to_point_major(tracks):
    """Engine/metric layout ``[T, N, ...]`` → tracking-API layout ``[N, T, ...]`` (numpy).

    The one conversion between the two track layouts (docs/conventions.md, *Coordinates and
    layouts*); :func:`to_time_major` is its inverse."""
    return np.swapaxes(np.asarray(tracks), 0, 1)


def to_time_major(tracks):
    """Tracking-API layout ``[N, T, ...]`` → engine/metric layout ``[T, N, ...]`` (numpy)."""
    return np.swapaxes(np.asarray(tracks), 0, 1)


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


def _padded(x, size: int):
    """``x [B, L, ...]`` (numpy) padded to ``size`` frames with its last (a short window)."""
    return x[:, window_frames(0, x.shape[1], max(int(size), x.shape[1]))]


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


class _Job:
    """One chunk of a segment's points on its way through the segment's windows: its state
    (estimate ``trajs [b, L, size, 2]``, visibility logits ``vis [b, L, size]``, carried
    templates), its windows (:func:`objtrack_jax.windows.window_spans`) and the next one to
    run. Every window of both drivers goes through :meth:`inputs` (the estimate to start from,
    :func:`~objtrack_jax.windows.carried` templates) and :meth:`advance`
    (:func:`~objtrack_jax.windows.write_window`)."""

    def __init__(self, trajs: np.ndarray, windows: list[tuple[int, int]], *, seg: int = 0,
                 frames: Optional[np.ndarray] = None, first: bool = True):
        self.trajs = trajs
        self.vis = np.zeros(trajs.shape[:3], np.float32)
        self.windows = windows
        self.next = 0
        self.feats: Optional[tuple] = None
        self.seg, self.frames, self.first = seg, frames, first

    @property
    def size(self) -> int:
        """Points (padding included)."""
        return self.trajs.shape[2]

    @property
    def left(self) -> int:
        """Windows still to run."""
        return len(self.windows) - self.next

    @property
    def span(self) -> tuple[int, int]:
        """``(start, end)`` of the next window, in the segment's frames."""
        return self.windows[self.next]

    def inputs(self, carry: str, length: int = 0) -> tuple[np.ndarray, Optional[tuple]]:
        """The next window's starting estimate ``[b, S, size, 2]`` (padded to ``length`` frames
        with its last frame when shorter) and the templates it starts from (None: its own)."""
        start, end = self.span
        return _padded(self.trajs[:, start:end], length), carried(self.feats, carry)

    def advance(self, tracks, vis_logits, feats: Optional[tuple], fill: bool = True) -> None:
        """Takes the next window's output (``tracks [b, >= S, size, 2]``, ``vis_logits`` or None,
        the templates to carry) and moves on to the following window."""
        start, end = self.span
        self.trajs, self.vis = write_window(
            self.trajs, self.vis, start, end - start, np.asarray(tracks),
            None if vis_logits is None else np.asarray(vis_logits), fill=fill)
        self.feats = feats
        self.next += 1


def _chunk_jobs(init: np.ndarray, chunks, windows, **kwargs) -> list[_Job]:
    """The jobs of one segment's points ``init [b, L, n, 2]`` split as ``chunks [(start, size),
    ...]``; a chunk short of ``size`` points is padded with copies of its first point (finite;
    points are tracked independently, and the padding is dropped by :func:`_joined`)."""
    jobs = []
    for c, (start, size) in enumerate(chunks):
        part = np.array(init[:, :, start:start + size], np.float32)
        if part.shape[2] < size:
            part = np.concatenate([part, np.repeat(part[:, :, :1], size - part.shape[2], 2)], 2)
        jobs.append(_Job(part, windows, first=c == 0, **kwargs))
    return jobs


def _joined(jobs: list[_Job], n: int) -> tuple[np.ndarray, np.ndarray]:
    """A segment's ``(tracks [b, L, n, 2], vis_logits [b, L, n])`` from its chunks' jobs."""
    return (np.concatenate([j.trajs for j in jobs], 2)[:, :, :n],
            np.concatenate([j.vis for j in jobs], 2)[:, :, :n])


def _run_windows(jobs: list[_Job], next_group: Callable[[list], list],
                 run_group: Callable[[list], None]) -> None:
    """The window loop of both drivers: while a job has windows left, the group
    ``next_group(jobs with windows left)`` runs its next window (``run_group(group)``, which
    calls :meth:`_Job.advance` on each)."""
    while True:
        live = [j for j in jobs if j.left > 0]
        if not live:
            return
        run_group(next_group(live))


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
      carry: one of :data:`~objtrack_jax.settings.CARRY_MODES`.
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
    jobs = _chunk_jobs(init, [(c, size) for c in range(0, n, size)],
                       window_spans(length, window))
    model = inference_model(model, shape[2], shape[3], max_memory_mb)
    encode = _encode_fn(model)
    short = bool(pad_short) and length < window  # one window, padded to `window` frames
    span = window if short else 0
    num_valid = jnp.int32(length)

    def run_group(group):  # every chunk, at the same window: its frames encoded once
        start, end = group[0].span
        if features is not None:
            fmaps = jnp.asarray(_padded(features[:, start:end], span))
        else:
            fmaps = encode(params, jnp.asarray(_padded(read(start, end), span), jnp.float32))
        for job in group:
            trajs, feat_init = job.inputs(carry, span)
            refine = _refine_fn(model, int(iters), feat_init is not None, short)
            out = refine(params, fmaps, jnp.asarray(trajs), feat_init, num_valid)
            job.advance(out.tracks, out.vis_logits, out.feats, fill=not keep_init)
        if on_window is not None:
            on_window()

    _run_windows(jobs, lambda live: live, run_group)
    trajs, vis = _joined(jobs, n)
    return trajs, (vis if has_vis else None)


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
        init = np.broadcast_to(xy0, (1, len(frames)) + xy0.shape)
        jobs += _chunk_jobs(init, segment_chunks(len(xy0), chunk_size),
                            window_spans(len(frames), window), seg=i, frames=frames)
    sizes = {}
    for n in {j.size for j in jobs}:
        b = segment_batch_size(window, features.shape[1:], n, max_memory_mb, itemsize)
        sizes[n] = b if max_batch is None else max(1, min(b, int(max_batch)))

    def next_group(live):  # the fullest class (point count, first or carried window) first
        classes: dict[tuple, list] = {}
        for j in live:
            classes.setdefault((j.size, j.next > 0), []).append(j)
        key = max(classes, key=lambda k: (len(classes[k]) / sizes[k[0]], -k[1]))
        return sorted(classes[key], key=lambda j: -j.left)[:sizes[key[0]]]

    _run_windows(jobs, next_group, lambda group: _refine_batch(
        model, params, device_features, group, sizes[group[0].size], window, int(iters), carry,
        on_window))
    out = []
    for i, (frames, xy0) in enumerate(segments):
        mine = [j for j in jobs if j.seg == i]
        if mine:
            tracks, vis = _joined(mine, len(np.reshape(xy0, (-1, 2))))
            tracks, vis = tracks[0], vis[0]
        else:
            tracks = np.zeros((len(frames), 0, 2), np.float32)
            vis = tracks[..., 0]
        out.append((tracks, vis if has_vis else None))
    return out


def _refine_batch(model, params, features, jobs, batch: int, window: int, iters: int,
                  carry: str, on_window) -> None:
    """The next window of each of ``jobs`` (equal point counts, all first or all carried windows)
    in one refinement call of ``batch`` segments (padded with copies of the last job, dropped),
    each window's frames gathered from the device's feature maps and padded to ``window``."""
    padded = jobs + jobs[-1:] * (batch - len(jobs))
    spans = [j.span for j in padded]
    idx = np.stack([j.frames[window_frames(s, e - s, window)] for j, (s, e) in zip(padded, spans)])
    num_valid = np.array([e - s for s, e in spans], np.int32)
    inputs = [j.inputs(carry, window) for j in padded]
    feat_init = None
    if inputs[0][1] is not None:  # a carried window is a full one (window_span)
        feat_init = tuple(jnp.asarray(np.concatenate([f[k] for _, f in inputs], 0))
                          for k in range(3))
    refine = _refine_gather_fn(model, iters, feat_init is not None)
    out = refine(params, features, jnp.asarray(idx.astype(np.int32)),
                 jnp.asarray(np.concatenate([t for t, _ in inputs], 0)), feat_init,
                 jnp.asarray(num_valid))
    tracks = np.asarray(out.tracks)
    vis = None if out.vis_logits is None else np.asarray(out.vis_logits)
    feats = tuple(np.asarray(f) for f in out.feats)
    for i, j in enumerate(jobs):
        j.advance(tracks[i:i + 1], None if vis is None else vis[i:i + 1],
                  tuple(f[i:i + 1] for f in feats))
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
