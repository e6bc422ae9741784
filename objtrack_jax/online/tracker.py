"""The host side of online tracking: :class:`OnlineTracker` (frames in, final tracks out,
``latency`` frames later; input pixels, query slots, the anchoring stage of
:mod:`objtrack_jax.post` on each emitted frame) and :func:`track_stream` (a whole video through
it). The pure core is :mod:`objtrack_jax.online.core`."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from objtrack_jax import anchor as anchor_mod
from objtrack_jax import limits, post
from objtrack_jax.inference import MIN_CHUNK
from objtrack_jax.models.tracker import PIPsTracker
from objtrack_jax.online.core import finish_window_fn, make_core, step_fn


class Emitted(NamedTuple):
    """Final estimates emitted by :meth:`OnlineTracker.push` / :meth:`OnlineTracker.finish`.

    Attributes:
      frames: int ``[k]`` frame indices (ascending).
      tracks: float32 ``[capacity, k, 2]`` (x, y) pixels of the input video; NaN where the slot
        held no query at that frame.
      visible: bool ``[capacity, k]`` (without a visibility head: the slot was tracking).
    """

    frames: np.ndarray
    tracks: np.ndarray
    visible: np.ndarray




class OnlineTracker:
    """Frames in, final tracks out, ``latency`` frames later (module docstring).

    ``tracker = OnlineTracker(model, params, (H, W), capacity=64, settings=...)``, then per frame
    ``tracker.add(queries)`` (``(t, y, x)`` rows with ``t`` the next frame's index),
    ``out = tracker.push(frame)`` and at the end ``tracker.finish()``. ``drop(slots)`` frees
    slots; ``latest()`` gives a provisional position without delay.

    Args:
      model, params: the tracker and its weights.
      frame_size: ``(H, W)`` of the input frames.
      capacity: query slots, rounded up to a power of two >= 8 as the offline engine pads a
        query group's points (the state's fixed size; a refinement call costs ``capacity``
        points). Tracks equal the offline ones bit for bit when the offline group is padded to
        the same count; otherwise up to float rounding (the refinement's matrix products
        round differently for another point count), which the iterated windows amplify
        (measured: up to 3e-3 px after 20 frames).
      settings: the weights' ``info``, a :class:`~objtrack_jax.settings.TrackingSettings` or a
        dict of its fields, resolved as every entry point does
        (:func:`objtrack_jax.settings.resolve`; without it, ``window`` and ``iters`` are needed).
      window, iters, carry, resolution, short_side, refine_scale, refine_iters, max_memory_mb,
        anchor, and any other :class:`~objtrack_jax.settings.TrackingSettings` field: keyword
        overrides (None keeps the value; ``refine_scale`` 0: one pass). ``anchor``: re-align
        every emitted estimate to its query frame's patch (:mod:`objtrack_jax.post`, as
        ``track_queries`` does after the passes): True, False or an
        :class:`~objtrack_jax.anchor.AnchorConfig`. Same latency: the refinement of a frame
        needs only that frame, the query's template and the carry from the frame before.
      chunk: frames per call of the jitted step (inputs are padded to it, one compilation).
    """

    def __init__(self, model: PIPsTracker, params: Any, frame_size: Sequence[int],
                 capacity: int = 64, *, settings=None, window: Optional[int] = None,
                 iters: Optional[int] = None, carry: Optional[str] = None,
                 resolution: Optional[Sequence[int]] = None, short_side: Optional[int] = None,
                 refine_scale: Optional[float] = None, refine_iters: Optional[int] = None,
                 max_memory_mb: Optional[int] = None, anchor: Optional[bool] = None,
                 chunk: int = 1, **overrides):
        from objtrack_jax.settings import refine_size, resolve

        if settings is None and (window is None or iters is None):  # no 128-frame latency
            raise ValueError("OnlineTracker needs window and iters, or settings holding them (the "
                             "weights' info, a TrackingSettings or a dict of its fields)")
        s = resolve(settings, entry="OnlineTracker", window=window, iters=iters, carry=carry,
                    resolution=resolution, short_side=short_side, refine_scale=refine_scale,
                    refine_iters=refine_iters, max_memory_mb=max_memory_mb, anchor=anchor,
                    **overrides)
        window, iters, carry, refine_iters = s.window, s.iters, s.carry, s.refine_iters
        max_memory_mb, anchor, vis_threshold = s.max_memory_mb, s.anchor, s.vis_threshold
        hw = tuple(int(v) for v in frame_size)
        if len(hw) != 2 or min(hw) < 1:
            raise ValueError(f"frame_size must be (H, W) of the input frames, got {frame_size}")
        size = s.model_size(*hw)
        fine = refine_size(size, s.refine_scale, model.stride)
        limits.check_stream(window, iters, refine_iters, size, fine, capacity)  # hard limits
        self.settings = s
        cfg = s.anchor  # an AnchorConfig or None (TrackingSettings.anchor)
        firm = None if cfg is None else anchor_mod.firm_threshold(cfg, vis_threshold)
        self.core = make_core(model, size, window=window, iters=iters, carry=carry,
                              fine_size=fine, fine_iters=refine_iters, input_size=hw,
                              max_memory_mb=max_memory_mb, vis_threshold=vis_threshold,
                              firm_threshold=firm)
        self.params = params
        self.frame_size, self.size, self.fine_size = hw, self.core.size, fine
        self.chunk = max(1, int(chunk))
        if int(capacity) < 1:
            raise ValueError(f"capacity must be >= 1 query slot, got {capacity}")
        # The offline engine refines a group's points padded to a power of two >= 8; the same
        # count here gives the same program, hence the same float rounding (equal tracks).
        self.capacity = max(MIN_CHUNK, 1 << (int(capacity) - 1).bit_length())
        self.state = self.core.init(params, self.capacity)
        self._scale = np.array([size[1] / hw[1], size[0] / hw[0]], np.float64)
        self._fine_scale = None if fine is None else np.array([fine[1] / hw[1], fine[0] / hw[0]],
                                                              np.float64)
        self._out_scale = self._scale if fine is None else self._fine_scale
        self._query = np.zeros((self.capacity, 2), np.float64)  # input pixels
        self._start = np.full(self.capacity, -1, np.int64)
        self._active = np.zeros(self.capacity, bool)
        self._step = step_fn(self.core)
        # the anchoring stage: frames kept until emitted (latency + one chunk of the step)
        self.anchor = (None if cfg is None else
                       post.Stream(cfg, self.capacity, hw, self.core.latency + self.chunk,
                                   self.chunk))
        self.frames_seen = 0
        self.finished = False  # finish() was called: the stream takes no more frames
        self.step_seconds: list[float] = []  # wall time of each push, per frame

    @property
    def latency(self) -> int:
        """Frames between a frame's arrival and the emission of its final estimate."""
        return self.core.latency

    def warm_up(self) -> float:
        """Compiles every program the stream will run (the step, and each end-of-stream window
        :meth:`finish` may need) by running each once on the empty state, then hands the
        compiler's freed memory back to the OS: the stream then never stalls on a compilation
        and its memory peak is here, whatever its length. Returns the seconds taken."""
        import time

        from objtrack_jax.memory import release_freed_memory

        t0 = time.perf_counter()
        core, p, s = self.core, self.core.buffered, self.core.window
        zeros = np.zeros((self.chunk,) + tuple(self.size) + (3,), np.float32)
        fine = None if self.fine_size is None else \
            np.zeros((self.chunk,) + tuple(self.fine_size) + (3,), np.float32)
        self.state = self._step(self.params, self.state, zeros, fine, np.int32(0))[0]
        run = finish_window_fn(core)
        none = jnp.zeros((self.capacity,), bool)
        for two in ((False, True) if core.two_pass else (False,)):
            for masked in (False, True):
                jax.block_until_ready(run(self.params, self.state, jnp.int32(p - s),
                                          jnp.int32(s), none, two, masked))
        if self.anchor is not None:
            self.anchor.warm_up()
        release_freed_memory()
        return time.perf_counter() - t0

    def free_slots(self) -> np.ndarray:
        return np.flatnonzero(~self._active)

    def add(self, queries) -> np.ndarray:
        """Starts ``queries`` (``[n, 3]`` ``(t, y, x)`` input pixels, ``t`` = the next frame's
        index :attr:`frames_seen`) in free slots; returns their slot indices."""
        self._check_open("add")
        q = np.asarray(queries, np.float64)
        if q.ndim != 2 or q.shape[1] != 3:
            raise ValueError(f"queries must be [n, 3] rows of (t, y, x), got shape {q.shape}")
        if not np.all(np.isfinite(q)):
            raise ValueError("queries hold non-finite values")
        bad = np.flatnonzero(np.round(q[:, 0]) != self.frames_seen)
        if bad.size:
            raise ValueError(f"query {bad[0]} is at frame {q[bad[0], 0]:g}; an online query starts "
                             f"at the next frame to arrive, {self.frames_seen}")
        h, w = self.frame_size
        out = (q[:, 1] < -0.5) | (q[:, 1] > h - 0.5) | (q[:, 2] < -0.5) | (q[:, 2] > w - 0.5)
        if out.any():
            i = int(np.flatnonzero(out)[0])
            raise ValueError(f"query {i} (y, x) = ({q[i, 1]:g}, {q[i, 2]:g}) lies outside the "
                             f"{h}x{w} frame")
        free = self.free_slots()
        if len(q) > len(free):
            raise ValueError(f"{len(q)} queries but only {len(free)} of {self.capacity} slots are "
                             "free; drop some or create the tracker with a larger capacity")
        slots = free[:len(q)]
        xy_in = q[:, [2, 1]]
        mask = np.zeros(self.capacity, bool)
        mask[slots] = True
        xy = np.zeros((self.capacity, 2), np.float32)
        xy[slots] = (xy_in * self._scale).astype(np.float32)
        fxy = None
        if self._fine_scale is not None:
            fxy = np.zeros((self.capacity, 2), np.float32)
            fxy[slots] = (xy_in * self._fine_scale).astype(np.float32)
        self.state = self.core.add(self.state, mask, xy, fxy)
        self._query[slots] = xy_in
        self._start[slots] = self.frames_seen
        self._active[slots] = True
        if self.anchor is not None:
            self.anchor.add(slots, xy_in)
        return slots

    def drop(self, slots) -> None:
        """Frees ``slots`` (indices of slots in use, 0 .. capacity - 1); frames of theirs not
        yet emitted are not emitted."""
        idx = np.asarray(slots).reshape(-1)
        if idx.size and (idx.dtype.kind not in "iu" or not np.all(idx == np.round(idx))):
            raise ValueError(f"drop: slots must be integer slot indices, got {slots!r}")
        idx = idx.astype(np.int64)
        bad = idx[(idx < 0) | (idx >= self.capacity)]
        if bad.size:
            raise ValueError(f"drop: slot {bad[0]} does not exist; the slots are 0.."
                             f"{self.capacity - 1}")
        free = idx[~self._active[idx]]
        if free.size:
            raise ValueError(f"drop: slot {free[0]} is not in use (the slots in use: "
                             f"{np.flatnonzero(self._active).tolist()})")
        mask = np.zeros(self.capacity, bool)
        mask[idx] = True
        self.state = self.core.drop(self.state, mask)
        self._active &= ~mask

    def _check_open(self, what: str) -> None:
        if self.finished:
            raise ValueError(f"{what} after finish(): the stream is finished; start another "
                             "stream with a new OnlineTracker")

    def _resize(self, frames, size):
        from objtrack_jax.video_io import resize_video

        return frames if tuple(frames.shape[1:3]) == tuple(size) else resize_video(frames, size)

    def push(self, frames) -> Emitted:
        """Feeds one frame ``[H, W, 3]`` or a chunk ``[K, H, W, 3]`` (uint8, or float in
        [0, 255]); returns the final estimates emitted (one per frame fed, frames ``latency``
        behind; none before the stream is ``latency`` frames long)."""
        import time

        self._check_open("push")
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or tuple(frames.shape[1:]) != self.frame_size + (3,):
            raise ValueError(f"frames must be [H, W, 3] or [K, H, W, 3] with (H, W) = "
                             f"{self.frame_size}, got shape {frames.shape}")
        emitted = []
        for a in range(0, len(frames), self.chunk):
            t0 = time.perf_counter()
            part = frames[a:a + self.chunk]
            k = len(part)
            if self.anchor is not None:
                self.anchor.store(self.frames_seen, part)
            if k < self.chunk:
                part = np.concatenate([part, np.repeat(part[-1:], self.chunk - k, 0)], 0)
            small = self._resize(part, self.size).astype(np.float32)
            fine = None if self.fine_size is None else \
                self._resize(part, self.fine_size).astype(np.float32)
            self.state, tracks, visible, *firm = self._step(self.params, self.state, small, fine,
                                                            np.int32(k))
            tracks, visible = np.asarray(tracks)[:, :k], np.asarray(visible)[:, :k]
            firm = np.asarray(firm[0])[:, :k] if firm else None
            idx = np.arange(self.frames_seen, self.frames_seen + k) - self.latency
            self.frames_seen += k
            emitted.append(self._to_input(idx, tracks, visible, firm))
            self.step_seconds += [(time.perf_counter() - t0) / k] * k
        keep = [e for e in emitted if len(e.frames)]
        if not keep:
            return Emitted(np.zeros(0, np.int64), np.zeros((self.capacity, 0, 2), np.float32),
                           np.zeros((self.capacity, 0), bool))
        return Emitted(np.concatenate([e.frames for e in keep]),
                       np.concatenate([e.tracks for e in keep], 1),
                       np.concatenate([e.visible for e in keep], 1))

    def _to_input(self, idx, tracks, visible, firm=None) -> Emitted:
        ok = idx >= 0
        idx, tracks, visible = idx[ok], tracks[:, ok], visible[:, ok]
        firm = None if firm is None else firm[:, ok]
        out = (tracks / self._out_scale).astype(np.float32)  # as offline: float64, then float32
        at_query = (self._start[:, None] == idx[None, :]) & np.isfinite(out).all(-1)
        out = post.lock_query(out, at_query, self._query)  # exactly the query at its frame
        if self.anchor is not None and len(idx):
            out, accepted, lost = self.anchor.apply(idx, out, self._start)
            if firm is not None:
                visible = post.fuse(visible, firm, accepted, at_query, lost)
        return Emitted(idx, out, visible)

    def finish(self) -> Emitted:
        """Ends the stream: the final estimates of the last :attr:`latency` frames. The tracker
        then takes no more frames or queries."""
        self._check_open("finish")
        self.finished = True
        tracks, visible, *rest = self.core.finish(self.params, self.state)
        firm = np.asarray(rest[0]) if len(rest) == 2 else None
        return self._to_input(rest[-1], np.asarray(tracks), np.asarray(visible), firm)

    def latest(self) -> np.ndarray:
        """Provisional ``[capacity, 2]`` input pixels at the last frame seen (NaN: free slot;
        not anchored)."""
        xy = np.asarray(self.core.latest(self.state), np.float64)
        return (xy / self._out_scale).astype(np.float32)


def track_stream(tracker: OnlineTracker, frames, queries, on_emit=None) -> dict:
    """Streams ``frames`` (any iterable of ``[H, W, 3]`` frames: a camera, a pipe, a
    :class:`~objtrack_jax.video_io.FrameSource`) through ``tracker``, adding each query
    ``(t, y, x)`` just before its frame ``t``.

    ``on_emit(out)`` (optional) sees every :class:`Emitted` as it comes. Returns ``tracks
    [n, T, 2]``, ``visible [n, T]`` (input pixels, rows in the order of ``queries``; NaN before
    a query's frame), ``step_ms [T]`` (compute per frame; the first includes compilation) and
    ``latency_frames``. Queries at frames the stream never reaches are an error at the end."""
    from objtrack_jax.video_io import FrameSource

    q = np.asarray(queries, np.float64).reshape(-1, 3)
    order = np.argsort(np.round(q[:, 0]), kind="stable")
    rows = np.full(len(q), -1, np.int64)  # query -> slot
    pending = list(order)
    tracks_by_frame, vis_by_frame = [], []

    def take(out: Emitted):
        if len(out.frames):
            tracks_by_frame.append((out.frames, out.tracks))
            vis_by_frame.append(out.visible)
            if on_emit is not None:
                on_emit(out)

    if isinstance(frames, FrameSource):
        source = frames
        frames = (source.read(i, i + 1)[0] for i in range(len(source)))
    t = 0
    for frame in frames:
        now = [i for i in pending if int(np.round(q[i, 0])) == t]
        if now:
            rows[now] = tracker.add(q[now])
            pending = [i for i in pending if i not in now]
        take(tracker.push(frame))
        t += 1
    if pending:
        raise ValueError(f"{len(pending)} queries are at frames the stream never reached (it "
                         f"ended after {t} frames), e.g. query {pending[0]} at frame "
                         f"{q[pending[0], 0]:g}")
    take(tracker.finish())
    tracks = np.full((len(q), t, 2), np.nan, np.float32)
    visible = np.zeros((len(q), t), bool)
    for (idx, tr), vis in zip(tracks_by_frame, vis_by_frame):
        tracks[:, idx] = tr[rows]
        visible[:, idx] = vis[rows]
    return {"tracks": tracks, "visible": visible,
            "step_ms": 1000 * np.asarray(tracker.step_seconds[-t:] if t else [], np.float64),
            "latency_frames": tracker.latency}
