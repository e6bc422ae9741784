"""Online tracking: frames arrive one by one (or in chunks), the state is explicit and fixed.

The PIPs++ window protocol (docs/conventions.md, *Long videos*) is online by construction: a
window of ``S`` frames can run as soon as its last frame has arrived, and all it needs from the
past is the estimate at its first frame and the carried templates. This module makes that state
explicit:

* :class:`OnlineCore` (static settings) with the pure functions
  ``core.init(params, capacity) -> state`` and
  ``core.step(params, state, frames) -> (state, tracks, visible)``; ``state`` is an
  :class:`OnlineState`, a pytree of fixed shapes: the last ``P`` frames (encoded a window at
  a time when the window runs, as offline), each query slot's estimates over those frames, its
  carried templates, its start frame and a mask.
  Memory does not grow with the stream's length, and ``step`` compiles once per chunk size
  (``count`` masks a padded chunk, so a host loop can use one size for everything).
* Query slots (fixed ``capacity``): :meth:`OnlineCore.add` starts queries at the next frame,
  :meth:`OnlineCore.drop` frees slots; both edit the state's arrays (no recompilation).
* :class:`OnlineTracker`, the host class: resizes frames to the model resolution, maps
  coordinates to and from the input video's pixels, assigns slots and gathers the output.

**Same answers as offline.** A query added at frame ``t_a`` is tracked exactly as the forward
segment of :func:`objtrack_jax.tracking.track_queries` for a query at ``t_a``: its own windows
start at ``t_a`` and step by ``S - 1`` frames; a window runs (for every slot whose window ends at
the current frame, all on the last ``S`` frames, so one refinement call serves any mix of
slots) with the zero-velocity initialisation and the carried templates (``carry``). When the
stream ends, :meth:`OnlineCore.finish` runs what the offline engine runs at the end of a video:
the last window shifted back to end at the last frame, or one masked short window for a query
added fewer than ``S`` frames before the end.
The results are bit-equal when the refinement runs on as many points as offline (the host
class rounds its capacity up to a power of two >= 8, as the offline engine pads a group): the
same programs, the same float rounding. The backward half of ``track_queries`` (the frames
before a query's frame) is not online: those frames are gone when the query arrives.

**Latency.** A frame's estimate is final when the window containing it has run and no later
window can change it. The end-of-stream window starts ``S - 1`` frames before the last frame:
it keeps its first frame's position (locked) but replaces that frame's visibility logit and the
positions of the frames after it. So every output is emitted with a fixed delay of ``D = S``
frames: each new frame ``t`` emits the final estimate of frame ``t - D`` (window 8: 8 frames),
and :meth:`finish` emits the last ``D``. Nothing emitted is ever revised.

**The second pass** (``refine_scale``, the shipped weights' x2) is online too: its window ``k``
covers the same frames as the first pass's window ``k`` and starts from the first pass's tracks
on them, which are final once the first pass's window ``k + 1`` has run (before that, the
end-of-stream window could still rewrite them). So it runs one window behind the first pass on
the same frames at the finer resolution, and the delay becomes ``D = 2 (S - 1)`` frames
(window 8: 14). Visibility comes from the first pass, as offline.

**Anchoring** (``TrackingSettings.anchor``, :mod:`objtrack_jax.anchor`) runs in the host
class on each emitted frame, as ``track_queries`` runs it after the passes: the query's template
is taken from the input frame at the query when that frame arrives, each slot carries its
correction forward in time, and the input frames are kept until their estimates are emitted (at
most ``D`` + one chunk of them). A frame's refinement needs only that frame, so the latency is
unchanged; the results equal the forward half of :func:`objtrack_jax.anchor.anchor_tracks`.

**Provisional estimates.** :meth:`OnlineCore.latest` gives each slot's latest position (the end
of its last window, the zero-velocity estimate of every frame after it) without delay.

Layouts: the core works in model pixels, time-major inside the state (``[P, capacity, 2]``) and
returns ``tracks [capacity, K, 2]`` / ``visible [capacity, K]`` (point-major, the tracking API's
layout) for the ``K`` frames of a chunk. Entries for a slot that was not tracking at the emitted
frame (free, dropped, added later, or a frame before the stream's start) are NaN with
``visible`` False.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from objtrack_jax import anchor as anchor_mod
from objtrack_jax import limits
from objtrack_jax.inference import CARRY_MODES, MIN_CHUNK, window_step
from objtrack_jax.models.correlation import sample_features
from objtrack_jax.models.tracker import MIN_SIZE, PIPsTracker


class OnlineState(NamedTuple):
    """The online tracker's state (shapes for ``P`` buffered frames, ``S`` the window, ``n`` the
    capacity, ``h x w`` the model resolution, ``C`` channels; ``fine_*`` only with a second pass,
    else None). The per-slot buffers (``est``, ``vis``) are oldest first: position ``P - 1`` is
    the last frame seen, frame ``frame - 1``.

    Attributes:
      frame: int32 ``[]``, frames seen so far (the next frame's index).
      frames: ``[P, h, w, 3]`` float32, the last ``P`` frames at the model resolution, frame
        ``f`` in row ``f % P`` (a ring: one row written per frame). A window's frames are
        encoded together when it runs, as the offline engine does: the encoder's float rounding
        depends on how many frames it takes at once.
      est: ``[P, n, 2]`` each slot's first-pass estimate at those frames (model pixels).
      vis: ``[P, n]`` visibility logits of the first pass at those frames.
      feats: ``(feats1, feats2, feats4)`` each ``[S, n, C]``: the carried templates.
      done: int32 ``[n]`` first-pass windows completed per slot.
      active: bool ``[n]`` the slot holds a query.
      start: int32 ``[n]`` frame at which the slot's query was added.
      query: ``[n, 2]`` (x, y) model pixels of the query.
      fine_*: the same for the second pass; ``fine_query`` at the fine resolution;
        ``fine_upto`` int32 ``[n]`` the last frame a second-pass window has written (later
        frames start from the first pass's tracks).
    """

    frame: Any
    frames: Any
    est: Any
    vis: Any
    feats: tuple
    done: Any
    active: Any
    start: Any
    query: Any
    fine_frames: Any = None
    fine_est: Any = None
    fine_feats: Optional[tuple] = None
    fine_done: Any = None
    fine_upto: Any = None
    fine_query: Any = None


def _check_size(hw, what: str) -> tuple[int, int]:
    h, w = (int(v) for v in hw)
    if h % 8 or w % 8 or h < MIN_SIZE or w < MIN_SIZE:
        raise ValueError(f"{what} {h}x{w}: height and width must be multiples of 8 and >= "
                         f"{MIN_SIZE}")
    return h, w


def run_window(model: PIPsTracker, params: Any, frames, init, feats, fresh, iters: int,
               carry: str = "pips2", num_valid=None):
    """One window of the PIPs++ protocol, the offline engine's program: the ``S`` frames are
    encoded together, then every point is refined from ``init``.

    Args:
      frames: ``[S, h, w, 3]`` float32 in [0, 255], model resolution.
      init: ``[S, n, 2]`` (x, y) model pixels; frame 0 holds the positions locked in the output.
      feats: carried templates ``(feats1, feats2, feats4)``, each ``[S, n, C]`` (the previous
        window's ``feats``); ``carry='paper'`` seeds all three with ``feats1``.
      fresh: bool ``[n]``: these points ignore ``feats`` and sample their templates from frame 0
        at ``init[0]`` (a segment's first window; every window with ``carry='none'``).
      num_valid: None, or the count of real frames (the rest padding; masked update net).
    Returns:
      the model's :class:`~objtrack_jax.models.tracker.TrackerOutput` with batch axis 1.
    """
    fm = model.apply({"params": params}, frames[None].astype(jnp.float32),
                     method=PIPsTracker.encode)  # [1, S, h, w, C]
    s = fm.shape[1]
    coords0 = init.astype(jnp.float32)[None] / float(model.stride)
    f1 = sample_features(fm[:, :1], coords0[:, :1])[0, 0]  # [n, C], as the model samples it
    f1 = jnp.broadcast_to(f1, (s,) + f1.shape).astype(fm.dtype)
    c1, c2, c4 = feats
    if carry == "paper":
        c2 = c4 = c1
    pick = jnp.asarray(fresh, bool)[None, :, None]
    if carry == "none":
        pick = jnp.ones_like(pick)
    feat_init = tuple(jnp.where(pick, f1, c)[None] for c in (c1, c2, c4))
    return window_step(model, params, fm, init[None], int(iters), feat_init, num_valid)


@dataclasses.dataclass(frozen=True)
class OnlineCore:
    """Static settings of the online tracker (hashable: the jitted functions are cached on it).

    Attributes:
      model: the :class:`PIPsTracker` (with its inference memory settings, see
        :func:`make_core`).
      size: ``(h, w)`` model resolution of the first pass.
      window, iters, carry: the tracking settings (``carry`` in :data:`CARRY_MODES`).
      fine_size: ``(h, w)`` of the second pass, or None for one pass.
      fine_iters: iterations per window of the second pass.
      input_size: ``(H, W)`` of the input video: the second pass starts from the first pass's
        tracks mapped through it (as offline, which maps them to input pixels and back).
      vis_threshold: visible where the visibility logit is above it (the settings' value).
      firm_threshold: None, or a logit: ``step`` and ``finish`` then also return ``firm``, the
        point-frames visible with a logit above it (the anchoring stage reports a point-frame
        whose patch was not found visible only when it is firm,
        :func:`objtrack_jax.anchor.fuse_visibility`).
    """

    model: PIPsTracker
    size: tuple
    window: int
    iters: int
    carry: str = "pips2"
    fine_size: Optional[tuple] = None
    fine_iters: Optional[int] = None
    input_size: Optional[tuple] = None
    vis_threshold: float = 0.0
    firm_threshold: Optional[float] = None

    def __post_init__(self):
        if int(self.window) < 2:
            raise ValueError(f"window must be >= 2 frames, got {self.window}")
        if int(self.iters) < 1:
            raise ValueError(f"iters must be >= 1, got {self.iters}")
        if self.carry not in CARRY_MODES:
            raise ValueError(f"carry must be one of {CARRY_MODES}, got {self.carry!r}")
        object.__setattr__(self, "size", _check_size(self.size, "model resolution"))
        if self.fine_size is not None:
            object.__setattr__(self, "fine_size", _check_size(self.fine_size,
                                                              "second-pass resolution"))
        object.__setattr__(self, "input_size",
                           tuple(int(v) for v in (self.input_size or self.size)))

    # ----------------------------------------------------------------------------------------------
    # Shapes and delays

    @property
    def two_pass(self) -> bool:
        return self.fine_size is not None

    @property
    def buffered(self) -> int:
        """``P``: frames held in the state (``S + 1``, or ``2S - 1`` with the second pass)."""
        return 2 * self.window - 1 if self.two_pass else self.window + 1

    @property
    def latency(self) -> int:
        """``D``: frames between a frame's arrival and the emission of its final estimate."""
        return self.buffered - 1

    def _fine_from_first(self, xy):
        """First-pass model pixels → second-pass model pixels, through input pixels, rounded as
        the offline engine rounds them (float64 scales, a float32 result at each step)."""
        (h, w), (fh, fw), (ih, iw) = self.size, self.fine_size, self.input_size
        to_input = np.array([iw / w, ih / h], np.float64)  # 1 / (model px per input px)
        return _mul_f64(_mul_f64(xy, to_input), np.array([fw / iw, fh / ih], np.float64))

    # ----------------------------------------------------------------------------------------------
    # init / add / drop

    def init(self, params: Any, capacity: int) -> OnlineState:
        """An empty state for ``capacity`` query slots (``params`` fixes the feature dtype)."""
        del params
        n = int(capacity)
        if n < 1:
            raise ValueError(f"capacity must be >= 1 query slot, got {capacity}")
        p, s, c = self.buffered, self.window, int(self.model.latent_dim)
        dt = jnp.dtype(self.model.dtype)

        def side(hw):
            return (jnp.zeros((p, hw[0], hw[1], 3), jnp.float32),
                    jnp.zeros((p, n, 2), jnp.float32),
                    tuple(jnp.zeros((s, n, c), dt) for _ in range(3)))

        frames, est, feats = side(self.size)
        out = OnlineState(frame=jnp.int32(0), frames=frames, est=est,
                          vis=jnp.zeros((p, n), jnp.float32), feats=feats,
                          done=jnp.zeros((n,), jnp.int32), active=jnp.zeros((n,), bool),
                          start=jnp.zeros((n,), jnp.int32), query=jnp.zeros((n, 2), jnp.float32))
        if self.two_pass:
            ffm, fest, ffeats = side(self.fine_size)
            out = out._replace(fine_frames=ffm, fine_est=fest, fine_feats=ffeats,
                               fine_done=jnp.zeros((n,), jnp.int32),
                               fine_upto=jnp.full((n,), -1, jnp.int32),
                               fine_query=jnp.zeros((n, 2), jnp.float32))
        return out

    def add(self, state: OnlineState, slots, xy, fine_xy=None) -> OnlineState:
        """Starts queries at frame ``state.frame`` (the next frame to arrive) in ``slots``.

        Args:
          slots: bool ``[n]`` mask of the slots to (re)start.
          xy: ``[n, 2]`` (x, y) model pixels (rows of other slots are ignored).
          fine_xy: the same at the second pass's resolution (default: ``xy`` mapped through
            the input size).
        """
        slots = jnp.asarray(slots, bool)
        xy = jnp.asarray(xy, jnp.float32)
        m2 = slots[:, None]
        out = state._replace(
            active=state.active | slots,
            start=jnp.where(slots, state.frame, state.start),
            query=jnp.where(m2, xy, state.query),
            done=jnp.where(slots, 0, state.done))
        if self.two_pass:
            fxy = (self._fine_from_first(xy) if fine_xy is None
                   else jnp.asarray(fine_xy, jnp.float32))
            out = out._replace(fine_query=jnp.where(m2, fxy, state.fine_query),
                               fine_done=jnp.where(slots, 0, state.fine_done),
                               fine_upto=jnp.where(slots, state.frame - 1, state.fine_upto))
        return out

    def drop(self, state: OnlineState, slots) -> OnlineState:
        """Frees the slots in the bool mask ``slots`` (their pending frames are not emitted)."""
        return state._replace(active=state.active & ~jnp.asarray(slots, bool))

    # ----------------------------------------------------------------------------------------------
    # One window of the protocol (first or second pass), used by step and finish

    def _window(self, params, st, fine: bool, pos, count, init, feats, fresh, masked: bool):
        """:func:`run_window` on the frames at positions ``pos .. pos + count - 1`` (padded with
        the last to ``S`` frames; the update net masked to ``count`` when ``masked``). The frame
        buffers are rings: frame ``f`` sits at row ``f % P`` (one row written per frame)."""
        p = self.buffered
        frames_buf = st.fine_frames if fine else st.frames
        idx = (st.frame - p + pos + jnp.minimum(jnp.arange(self.window), count - 1)) % p
        iters = int(self.fine_iters or self.iters) if fine else int(self.iters)
        return run_window(self.model, params, frames_buf[idx], init, feats, fresh, iters,
                          self.carry, count if masked else None)

    def _fine_init(self, state, pos, count, first):
        """Second-pass init on buffer frames ``pos ..`` (padded to S), as offline
        (``track_windows(keep_init=True)``): the frames earlier second-pass windows have written
        keep their estimates (frame 0 always: the previous window's last frame), the others
        start from the first pass's tracks at the fine resolution; a first window starts at the
        query."""
        s = self.window
        idx = pos + jnp.minimum(jnp.arange(s), count - 1)
        rest = self._fine_from_first(state.est[idx])
        written = (state.frame - self.buffered + idx)[:, None] <= state.fine_upto[None, :]
        init = jnp.where(written[..., None], state.fine_est[idx], rest)
        return init.at[0].set(jnp.where(first[:, None], state.fine_query, init[0]))

    # ----------------------------------------------------------------------------------------------
    # step

    def step(self, params, state: OnlineState, frames, fine_frames=None, count=None):
        """Feeds ``K`` frames; returns ``(state, tracks [n, K, 2], visible [n, K])`` (and
        ``firm [n, K]`` after them when :attr:`firm_threshold` is set).

        Args:
          frames: ``[K, h, w, 3]`` at the model resolution, values in [0, 255].
          fine_frames: ``[K, fh, fw, 3]`` the same frames at the second pass's resolution
            (required with a second pass).
          count: only the first ``count`` frames are real (int, may be traced; default K): the
            rest are skipped and emit nothing, so a host loop can pad every chunk to one size.
        Returns:
          ``tracks`` (model pixels; second-pass ones with a second pass) and ``visible`` of frame
          ``f - D`` for each fed frame ``f`` (:attr:`latency`); NaN / False where no slot was
          tracking at that frame. :func:`emitted_frames` gives the frame indices.
        """
        frames = jnp.asarray(frames)
        k = frames.shape[0]
        if frames.ndim != 4 or frames.shape[1:] != tuple(self.size) + (3,):
            raise ValueError(f"frames must be [K, {self.size[0]}, {self.size[1]}, 3] at the model "
                             f"resolution, got {tuple(frames.shape)}")
        enc = frames.astype(jnp.float32)
        if self.two_pass:
            got = None if fine_frames is None else tuple(jnp.shape(fine_frames))
            if got != (k,) + tuple(self.fine_size) + (3,):
                raise ValueError(f"fine_frames must be [{k}, {self.fine_size[0]}, "
                                 f"{self.fine_size[1]}, 3] with a second pass, got {got}")
            fenc = jnp.asarray(fine_frames, jnp.float32)
        else:
            fenc = jnp.zeros((k,), jnp.float32)
        count = k if count is None else count
        real = jnp.arange(k) < count

        def body(st, xs):
            frame, fine_frame, is_real = xs
            return jax.lax.cond(is_real, lambda s_: self._frame(params, s_, frame, fine_frame),
                                lambda s_: (s_, self._nothing(s_)), st)

        state, (tracks, visible, firm) = jax.lax.scan(body, state, (enc, fenc, real))
        out = (state, jnp.swapaxes(tracks, 0, 1), jnp.swapaxes(visible, 0, 1))
        return out if self.firm_threshold is None else out + (jnp.swapaxes(firm, 0, 1),)

    def _nothing(self, st):
        n = st.active.shape[0]
        return jnp.full((n, 2), jnp.nan, jnp.float32), jnp.zeros((n,), bool), jnp.zeros((n,), bool)

    def _frame(self, params, st: OnlineState, frame, fine_frame):
        p, s = self.buffered, self.window

        def shift(buf, new):
            return jnp.concatenate([buf[1:], new[None].astype(buf.dtype)], 0)

        t = st.frame
        new = st.active & (st.start == t)
        est_last = jnp.where(new[:, None], st.query, st.est[-1])  # zero-velocity fill
        st = st._replace(frames=st.frames.at[t % p].set(frame.astype(st.frames.dtype)),
                         est=shift(st.est, est_last),
                         vis=shift(st.vis, jnp.zeros_like(st.vis[-1])))
        if self.two_pass:
            st = st._replace(fine_frames=st.fine_frames.at[t % p].set(
                                 fine_frame.astype(st.fine_frames.dtype)),
                             fine_est=shift(st.fine_est, st.fine_est[-1]))
        st = st._replace(frame=t + 1)  # position P - 1 is frame t
        due = st.active & (t > st.start) & ((t - st.start) % (s - 1) == 0)

        def first_pass(st):
            pos = p - s
            out = self._window(params, st, False, pos, s, st.est[pos:], st.feats,
                               (st.done == 0) | (self.carry == "none"), False)
            m = due[None, :, None]
            est = st.est.at[pos:].set(jnp.where(m, out.tracks[0], st.est[pos:]))
            vis = st.vis
            if out.vis_logits is not None:
                vis = vis.at[pos:].set(jnp.where(due[None], out.vis_logits[0], vis[pos:]))
            feats = tuple(jnp.where(m, f[0], c) for f, c in zip(out.feats, st.feats))
            st = st._replace(est=est, vis=vis, feats=feats, done=st.done + due)
            if self.two_pass:  # the second pass's window one behind: its frames are final now
                fdue = due & (st.done >= 2)
                st = jax.lax.cond(jnp.any(fdue), lambda x: self._fine_window(params, x, 0, s, fdue,
                                                                             False),
                                  lambda x: x, st)
            return st

        st = jax.lax.cond(jnp.any(due), first_pass, lambda x: x, st)
        return st, self._emit(st, t - self.latency, 0)

    def _fine_window(self, params, st, pos, count, which, masked):
        first = st.fine_done == 0
        init = self._fine_init(st, pos, count, first)
        out = self._window(params, st, True, pos, count, init, st.fine_feats,
                           first | (self.carry == "none"), masked)
        s = self.window
        m = which[None, :, None]
        idx = pos + jnp.arange(s)  # rows written; a padded window writes only its real frames
        keep = (jnp.arange(s) < count)[:, None, None] & m
        cur = st.fine_est[jnp.minimum(idx, self.buffered - 1)]
        fine_est = _scatter_rows(st.fine_est, idx, jnp.where(keep, out.tracks[0], cur))
        feats = tuple(jnp.where(m, f[0], c) for f, c in zip(out.feats, st.fine_feats))
        last = st.frame - self.buffered + pos + count - 1
        return st._replace(fine_est=fine_est, fine_feats=feats, fine_done=st.fine_done + which,
                           fine_upto=jnp.where(which, last, st.fine_upto))

    def _emit(self, st, frame, pos):
        """``(tracks [n, 2], visible [n])`` of buffer position ``pos`` = frame ``frame``."""
        ok = st.active & (frame >= st.start) & (frame >= 0)
        est = st.fine_est if self.two_pass else st.est
        xy = jnp.where((frame == st.start)[:, None],
                       st.fine_query if self.two_pass else st.query, est[pos])
        at_query = frame == st.start
        vis = ((st.vis[pos] > self.vis_threshold) | at_query
               if self.model.visibility_head else ok)
        firm = vis
        if self.firm_threshold is not None and self.model.visibility_head:
            firm = vis & ((st.vis[pos] > self.firm_threshold) | at_query)
        return jnp.where(ok[:, None], xy, jnp.nan), ok & vis, ok & firm

    def latest(self, state: OnlineState):
        """Provisional ``[n, 2]`` model pixels (second pass's resolution with a second pass: the
        first pass's latest mapped up): each slot's estimate at the last frame seen, i.e. the end
        of its last completed window (zero velocity since); NaN for free slots."""
        xy = state.est[-1]
        if self.two_pass:
            xy = self._fine_from_first(xy)
        return jnp.where(state.active[:, None], xy, jnp.nan)

    # ----------------------------------------------------------------------------------------------
    # finish

    def finish(self, params, state: OnlineState):
        """Ends the stream: runs the offline engine's end-of-video windows and returns
        ``(tracks [n, D, 2], visible [n, D], frames [D])`` (``(tracks, visible, firm, frames)``
        when :attr:`firm_threshold` is set), the final estimates of the last
        ``D`` frames (``frames`` their indices; negative indices, i.e. a stream shorter than
        ``D``, are NaN / False). Host-side (a few calls of one jitted window each)."""
        st = jax.tree_util.tree_map(lambda x: x, state)
        p, s = self.buffered, self.window
        total = int(st.frame)
        active = np.asarray(st.active)
        start = np.asarray(st.start)
        done = np.asarray(st.done)
        length = total - start  # frames of each slot's segment
        run = _finish_window_fn(self)
        # First pass: the last window shifted back (long segments), or one short window.
        groups: dict[tuple, np.ndarray] = {}
        for i in np.flatnonzero(active):
            n_i = int(length[i])
            if n_i < 2:
                continue
            if n_i < s:
                groups.setdefault((p - n_i, n_i, True), []).append(i)
            elif (n_i - 1) % (s - 1):
                groups.setdefault((p - s, s, False), []).append(i)
        for (pos, cnt, masked), rows in sorted(groups.items()):
            which = np.zeros(active.shape, bool)
            which[rows] = True
            st = run(params, st, jnp.int32(pos), jnp.int32(cnt), jnp.asarray(which), False, masked)
        # Second pass: the window one behind the first pass, then the shifted-back one.
        if self.two_pass:
            todo = []
            for i in np.flatnonzero(active):
                n_i = int(length[i])
                if n_i < 2:
                    continue
                if n_i < s:
                    todo.append((0, p - n_i, n_i, True, i))
                    continue
                k = int(done[i]) - 1  # the last regular window, not yet refined
                todo.append((0, int(start[i]) + k * (s - 1) - (total - p), s, False, i))
                if (n_i - 1) % (s - 1):
                    todo.append((1, p - s, s, False, i))
            for order in (0, 1):
                groups = {}
                for o, pos, cnt, masked, i in todo:
                    if o == order:
                        groups.setdefault((pos, cnt, masked), []).append(i)
                for (pos, cnt, masked), rows in sorted(groups.items()):
                    which = np.zeros(active.shape, bool)
                    which[rows] = True
                    st = run(params, st, jnp.int32(pos), jnp.int32(cnt), jnp.asarray(which), True,
                             masked)
        frames = np.arange(total - self.latency, total)
        tracks, visible, firm = [], [], []
        for j, f in enumerate(frames):
            xy, vis, fi = self._emit(st, jnp.int32(f), j + 1)
            tracks.append(xy)
            visible.append(vis)
            firm.append(fi)
        if not len(frames):
            n = active.shape[0]
            out = (np.zeros((n, 0, 2), np.float32), np.zeros((n, 0), bool), frames)
            firm = np.zeros((n, 0), bool)
        else:
            out = (np.asarray(jnp.stack(tracks, 1)), np.asarray(jnp.stack(visible, 1)), frames)
            firm = np.asarray(jnp.stack(firm, 1))
        return out if self.firm_threshold is None else out[:2] + (firm, frames)

    def _finish_window(self, params, st, pos, count, which, fine: bool, masked: bool):
        if fine:
            return self._fine_window(params, st, pos, count, which, masked)
        s = self.window
        idx = pos + jnp.minimum(jnp.arange(s), count - 1)
        fresh = (st.done == 0) | (self.carry == "none")
        out = self._window(params, st, False, pos, count, st.est[idx], st.feats, fresh, masked)
        keep = (jnp.arange(s) < count)[:, None, None] & which[None, :, None]
        rows = pos + jnp.arange(s)
        est = _scatter_rows(st.est, rows, jnp.where(keep, out.tracks[0], st.est[idx]))
        vis = st.vis
        if out.vis_logits is not None:
            vis = _scatter_rows(vis, rows, jnp.where(keep[..., 0], out.vis_logits[0], vis[idx]))
        m = which[None, :, None]
        feats = tuple(jnp.where(m, f[0], c) for f, c in zip(out.feats, st.feats))
        return st._replace(est=est, vis=vis, feats=feats, done=st.done + which)


def _mul_f64(x, scale: np.ndarray):
    """``float32(float64(x) * scale)`` for float32 ``x`` and a float64 constant ``scale``
    (broadcast on the last axis), in float32 arithmetic: the scale as a float32 pair
    ``hi + lo`` and the product ``x * hi`` split exactly (Dekker's two-product). Equal to numpy's
    rounding except where the exact product lies within ~1e-14 (relative) of a float32 tie.
    (A division by a constant would not do: XLA turns it into a multiplication by the rounded
    reciprocal.)"""
    hi = scale.astype(np.float32)
    lo = (scale - hi.astype(np.float64)).astype(np.float32)

    def split(a):  # a = a_hi + a_lo, each with at most 12 significant bits
        c = a * np.float32(4097.0)
        a_hi = c - (c - a)
        return a_hi, a - a_hi

    p = x * hi
    xh, xl = split(x)
    hh, hl = split(jnp.asarray(hi))
    err = ((xh * hh - p) + xh * hl + xl * hh) + xl * hl  # x * hi - p, exactly
    return p + (err + x * lo)


def _scatter_rows(buf, rows, values):
    """``buf`` with ``buf[rows[i]] = values[i]``; rows past the end are dropped (the padding of a
    short window)."""
    return buf.at[rows].set(values, mode="drop")


@functools.lru_cache(maxsize=16)
def _finish_window_fn(core: OnlineCore):
    return jax.jit(core._finish_window, static_argnums=(5, 6))


@functools.lru_cache(maxsize=16)
def _step_fn(core: OnlineCore):
    return jax.jit(core.step, donate_argnums=(1,))  # the state's buffers are updated in place


def emitted_frames(core: OnlineCore, state_after: OnlineState, k: int) -> np.ndarray:
    """Frame indices of the ``k`` outputs of the :meth:`OnlineCore.step` that returned
    ``state_after`` (for a chunk of ``k`` real frames; negative: before the stream's start)."""
    end = int(state_after.frame)
    return np.arange(end - k, end) - core.latency


def make_core(model: PIPsTracker, size: Sequence[int], *, window: int, iters: int,
              carry: str = "pips2", fine_size: Optional[Sequence[int]] = None,
              fine_iters: Optional[int] = None, input_size: Optional[Sequence[int]] = None,
              max_memory_mb: Optional[int] = None, vis_threshold: float = 0.0,
              firm_threshold: Optional[float] = None) -> OnlineCore:
    """An :class:`OnlineCore` whose model has the inference memory settings the offline engine
    uses for this resolution (:func:`objtrack_jax.memory.inference_model`), so both run the same
    program per window."""
    from objtrack_jax.memory import inference_model

    size = _check_size(size, "model resolution")
    return OnlineCore(model=inference_model(model, size[0], size[1], max_memory_mb),
                      size=size, window=int(window), iters=int(iters), carry=carry,
                      fine_size=None if fine_size is None else tuple(fine_size),
                      fine_iters=None if fine_iters is None else int(fine_iters),
                      input_size=None if input_size is None else tuple(input_size),
                      vis_threshold=float(vis_threshold),
                      firm_threshold=None if firm_threshold is None else float(firm_threshold))


# --------------------------------------------------------------------------------------------------
# Host class
# --------------------------------------------------------------------------------------------------


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


def _setting(settings, name, default=None):
    if settings is None:
        return default
    if isinstance(settings, dict):
        return settings.get(name, default)
    return getattr(settings, name, default)


class _Anchoring:
    """The anchoring stage (:mod:`objtrack_jax.anchor`) of :class:`OnlineTracker`, on the host
    side of the core: each emitted estimate is re-aligned to its query's patch in the input
    frame, as :func:`objtrack_jax.tracking.run_tracking` does after the passes.

    Fixed-size state, whatever the stream's length: the input frames not yet emitted (a ring of
    ``latency + chunk`` frames), each slot's query templates (``capacity`` rows, computed from
    the input frame at the query when that frame arrives) and each slot's carry
    (:func:`objtrack_jax.anchor.init_carry`, reset when a query starts in the slot). The frames a
    window emits are refined in time order, ``piece`` frames per jitted call (one compiled
    shape), the slots active where they track and the frame is after their query frame (the
    forward half of :func:`objtrack_jax.anchor.anchor_tracks`)."""

    def __init__(self, capacity: int, frame_size: tuple, ring: int, piece: int,
                 config: Optional["anchor_mod.AnchorConfig"] = None):
        self.cfg = config or anchor_mod.AnchorConfig()
        self.capacity, self.frame_size = int(capacity), tuple(frame_size)
        self.ring, self.piece = int(ring), int(piece)
        self.frames: Optional[np.ndarray] = None  # [ring, H, W, 3], allocated at the first push
        self._template = anchor_mod.template_fn(self.cfg)
        self._refine = anchor_mod.frames_fn(self.cfg)
        zero = jnp.zeros(self.frame_size + (3,), jnp.float32)
        self.tmpl = self._template(zero, jnp.zeros((self.capacity, 2), jnp.float32))
        self.carry = anchor_mod.init_carry(self.tmpl)
        self.pending = np.zeros(self.capacity, bool)  # templates due from the next frame
        self.query = np.zeros((self.capacity, 2), np.float32)  # (x, y) input pixels

    def add(self, slots, xy) -> None:
        """Queries at ``xy`` (input pixels) start in ``slots`` at the next frame to arrive."""
        self.pending[slots] = True
        self.query[slots] = np.asarray(xy, np.float32)

    def drop(self, mask) -> None:
        self.pending &= ~mask

    def store(self, first: int, frames: np.ndarray) -> None:
        """Keeps ``frames`` (``[k, H, W, 3]``, frames ``first ..``) until emitted; the pending
        queries (at frame ``first``) take their templates from ``frames[0]``."""
        if self.frames is None or (frames.dtype != self.frames.dtype
                                   and self.frames.dtype != np.float32):
            old = self.frames
            dt = np.uint8 if frames.dtype == np.uint8 and old is None else np.float32
            self.frames = np.zeros((self.ring,) + self.frame_size + (3,), dt)
            if old is not None:
                self.frames[:] = old
        rows = np.arange(first, first + len(frames)) % self.ring
        self.frames[rows] = frames
        if self.pending.any():
            new = self._template(jnp.asarray(frames[0], jnp.float32), jnp.asarray(self.query))
            mask = jnp.asarray(self.pending)

            def pick(a, b):
                return jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)

            self.tmpl = jax.tree_util.tree_map(pick, new, self.tmpl)
            fresh = anchor_mod.init_carry(self.tmpl)
            self.carry = jax.tree_util.tree_map(pick, fresh, self.carry)
            self.pending[:] = False

    def apply(self, idx: np.ndarray, tracks: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Anchors the emitted ``tracks [capacity, k, 2]`` (input pixels, NaN where a slot was
        not tracking) of frames ``idx`` (ascending), slots with query frames ``start``. Returns
        ``(tracks, accepted [capacity, k])``."""
        out = tracks.copy()
        accepted = np.zeros(tracks.shape[:2], bool)
        f = self.piece
        for a in range(0, len(idx), f):
            sub = idx[a:a + f]
            m = len(sub)
            frames = self.frames[sub % self.ring].astype(np.float32)
            if m < f:  # one compiled shape: inactive copies of the last frame
                frames = np.concatenate([frames, np.repeat(frames[-1:], f - m, 0)])
            cur = np.swapaxes(tracks[:, a:a + m], 0, 1)  # [m, capacity, 2]
            active = np.zeros((f, self.capacity), bool)
            active[:m] = np.isfinite(cur).all(-1) & (sub[:, None] > start[None, :])
            xy = np.zeros((f, self.capacity, 2), np.float32)
            xy[:m] = np.where(active[:m, :, None], cur, 0.0)
            new, _, ok, self.carry = self._refine(jnp.asarray(frames), self.tmpl, jnp.asarray(xy),
                                                  jnp.asarray(active), self.carry)
            accepted[:, a:a + m] = np.swapaxes(np.asarray(ok)[:m], 0, 1)
            new = np.swapaxes(np.asarray(new)[:m], 0, 1)
            act = np.swapaxes(active[:m], 0, 1)
            out[:, a:a + m] = np.where(act[..., None], new, out[:, a:a + m])
        return out, accepted

    def warm_up(self) -> None:
        """Compiles the template and refinement programs (nothing in the state changes)."""
        zero = jnp.zeros(self.frame_size + (3,), jnp.float32)
        jax.block_until_ready(self._template(zero, jnp.asarray(self.query)))
        frames = jnp.zeros((self.piece,) + self.frame_size + (3,), jnp.float32)
        jax.block_until_ready(self._refine(frames, self.tmpl,
                                           jnp.zeros((self.piece, self.capacity, 2), jnp.float32),
                                           jnp.zeros((self.piece, self.capacity), bool),
                                           self.carry))


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
      settings: a :class:`~objtrack_jax.settings.TrackingSettings`, or the dict of
        :func:`objtrack_jax.model_io.inference_settings`; keyword arguments override it.
      window, iters, carry, refine_scale, refine_iters: tracking settings (as
        :func:`~objtrack_jax.tracking.track_queries`); ``refine_scale`` None/0/1: one pass.
      resolution: model ``(h, w)``; default: aspect kept, short side ``short_side`` (384).
      anchor: re-align every emitted estimate to its query frame's patch
        (:mod:`objtrack_jax.anchor`, as ``track_queries`` does after the passes; None: the
        ``anchor`` of ``settings``, False for the dict form). Same latency: the refinement of a
        frame needs only that frame, the query's template and the carry from the frame before.
      chunk: frames per call of the jitted step (inputs are padded to it, one compilation).
    """

    def __init__(self, model: PIPsTracker, params: Any, frame_size: Sequence[int],
                 capacity: int = 64, *, settings=None, window: Optional[int] = None,
                 iters: Optional[int] = None, carry: Optional[str] = None,
                 resolution: Optional[Sequence[int]] = None, short_side: Optional[int] = None,
                 refine_scale: Optional[float] = None, refine_iters: Optional[int] = None,
                 max_memory_mb: Optional[int] = None, anchor: Optional[bool] = None,
                 chunk: int = 1):
        try:
            from objtrack_jax.settings import default_resolution, refine_size
        except ImportError:  # before the settings module
            from objtrack_jax.tracking import default_resolution, refine_size

        window = window or _setting(settings, "window")
        iters = iters or _setting(settings, "iters")
        if window is None or iters is None:
            raise ValueError("OnlineTracker needs window and iters (or settings holding them, "
                             "e.g. objtrack_jax.model_io.inference_settings(info))")
        carry = carry or _setting(settings, "carry") or "pips2"
        if refine_scale is None:
            refine_scale = _setting(settings, "refine_scale")
        refine_iters = refine_iters or _setting(settings, "refine_iters")
        resolution = resolution or _setting(settings, "resolution")
        short_side = short_side or _setting(settings, "short_side") or 384
        max_memory_mb = max_memory_mb or _setting(settings, "max_memory_mb")
        if anchor is None:
            anchor = _setting(settings, "anchor", False)
        if not isinstance(anchor, (bool, np.bool_)):
            raise ValueError(f"anchor must be True or False, got {anchor!r}")
        hw = tuple(int(v) for v in frame_size)
        if len(hw) != 2 or min(hw) < 1:
            raise ValueError(f"frame_size must be (H, W) of the input frames, got {frame_size}")
        size = tuple(resolution) if resolution is not None else default_resolution(*hw, short_side)
        fine = refine_size(size, refine_scale, model.stride)
        limits.check_stream(window, iters, refine_iters, size, fine, capacity)  # hard limits
        vis_threshold = _setting(settings, "vis_threshold", 0.0) or 0.0
        firm = anchor_mod.firm_threshold(anchor_mod.AnchorConfig(), vis_threshold) if anchor \
            else None
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
        self._step = _step_fn(self.core)
        # the anchoring stage: frames kept until emitted (latency + one chunk of the step)
        self.anchor = (_Anchoring(self.capacity, hw, self.core.latency + self.chunk, self.chunk)
                       if anchor else None)
        self.frames_seen = 0
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
        run = _finish_window_fn(core)
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
        """Frees ``slots`` (indices); frames of theirs not yet emitted are not emitted."""
        mask = np.zeros(self.capacity, bool)
        mask[np.asarray(slots, np.int64)] = True
        self.state = self.core.drop(self.state, mask)
        self._active &= ~mask
        if self.anchor is not None:
            self.anchor.drop(mask)

    def _resize(self, frames, size):
        from objtrack_jax.video_io import resize_video

        return frames if tuple(frames.shape[1:3]) == tuple(size) else resize_video(frames, size)

    def push(self, frames) -> Emitted:
        """Feeds one frame ``[H, W, 3]`` or a chunk ``[K, H, W, 3]`` (uint8, or float in
        [0, 255]); returns the final estimates emitted (one per frame fed, frames ``latency``
        behind; none before the stream is ``latency`` frames long)."""
        import time

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
        at_query = self._start[:, None] == idx[None, :]
        query = self._query[:, None].astype(np.float32)  # exactly the query at its frame
        out = np.where(at_query[..., None] & np.isfinite(out), query, out).astype(np.float32)
        if self.anchor is not None and len(idx):
            out, accepted = self.anchor.apply(idx, out, self._start)
            if firm is not None:
                visible = anchor_mod.fuse_visibility(visible, firm, accepted | at_query)
        return Emitted(idx, out, visible)

    def finish(self) -> Emitted:
        """Ends the stream: the final estimates of the last :attr:`latency` frames."""
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
