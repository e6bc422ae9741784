"""The online core: :class:`OnlineCore` (static settings) and its pure functions over the
explicit, fixed-size :class:`OnlineState` (the package docstring, :mod:`objtrack_jax.online`, says
what the state holds and why the answers equal the offline engine's). The window rules are
:mod:`objtrack_jax.windows`; this module holds the stream's bookkeeping around them."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from objtrack_jax.models.tracker import MIN_SIZE, PIPsTracker
from objtrack_jax.windows import (check_carry, ends_window, last_shifted, run_window,
                                  window_frames, window_span, write_window)


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


@dataclasses.dataclass(frozen=True)
class OnlineCore:
    """Static settings of the online tracker (hashable: the jitted functions are cached on it).

    Attributes:
      model: the :class:`PIPsTracker` (with its inference memory settings, see
        :func:`make_core`).
      size: ``(h, w)`` model resolution of the first pass.
      window, iters, carry: the tracking settings (``carry`` in
        :data:`~objtrack_jax.settings.CARRY_MODES`).
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
        check_carry(self.carry)
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
        """:func:`~objtrack_jax.windows.run_window` on the frames at positions ``pos .. pos +
        count - 1`` (padded with the last to ``S`` frames; the update net masked to ``count``
        when ``masked``); ``fresh``: the slots' first windows. The frame buffers are rings:
        frame ``f`` sits at row ``f % P`` (one row written per frame)."""
        p = self.buffered
        frames_buf = st.fine_frames if fine else st.frames
        idx = (st.frame - p + window_frames(pos, count, self.window)) % p
        iters = int(self.fine_iters or self.iters) if fine else int(self.iters)
        return run_window(self.model, params, frames_buf[idx], init, feats, fresh, iters,
                          self.carry, count if masked else None)

    def _fine_init(self, state, pos, count, first):
        """Second-pass init on buffer frames ``pos ..`` (padded to S), as offline
        (``track_windows(keep_init=True)``): the frames earlier second-pass windows have written
        keep their estimates (frame 0 always: the previous window's last frame), the others
        start from the first pass's tracks at the fine resolution; a first window starts at the
        query."""
        idx = window_frames(pos, count, self.window)
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
        # a new frame starts at the last estimate (windows.write_window's zero-velocity fill)
        est_last = jnp.where(new[:, None], st.query, st.est[-1])
        st = st._replace(frames=st.frames.at[t % p].set(frame.astype(st.frames.dtype)),
                         est=shift(st.est, est_last),
                         vis=shift(st.vis, jnp.zeros_like(st.vis[-1])))
        if self.two_pass:
            st = st._replace(fine_frames=st.fine_frames.at[t % p].set(
                                 fine_frame.astype(st.fine_frames.dtype)),
                             fine_est=shift(st.fine_est, st.fine_est[-1]))
        st = st._replace(frame=t + 1)  # position P - 1 is frame t
        due = st.active & ends_window(t - st.start, s)

        def first_pass(st):
            pos = p - s
            out = self._window(params, st, False, pos, s, st.est[pos:], st.feats, st.done == 0,
                               False)
            est, vis = _write(st.est, st.vis, pos, s, out, due)
            feats = tuple(jnp.where(due[None, :, None], f[0], c)
                          for f, c in zip(out.feats, st.feats))
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
        out = self._window(params, st, True, pos, count, init, st.fine_feats, first, masked)
        # the frames after the window keep their init: a refinement pass (no fill)
        fine_est, _ = _write(st.fine_est, None, pos, count, out, which, fill=False)
        m = which[None, :, None]
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
        run = finish_window_fn(self)
        # First pass: the last window shifted back (long segments), or one short window.
        groups: dict[tuple, np.ndarray] = {}
        for i in np.flatnonzero(active):
            n_i = int(length[i])
            if n_i < 2:
                continue
            if n_i < s:
                groups.setdefault((p - n_i, n_i, True), []).append(i)
            elif last_shifted(n_i, s):
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
                # the last window the first pass ran as scheduled, not yet refined
                k_start, _ = window_span(int(done[i]) - 1, n_i, s)
                todo.append((0, int(start[i]) + int(k_start) - (total - p), s, False, i))
                if last_shifted(n_i, s):
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
        idx = window_frames(pos, count, self.window)
        out = self._window(params, st, False, pos, count, st.est[idx], st.feats, st.done == 0,
                           masked)
        est, vis = _write(st.est, st.vis, pos, count, out, which)
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


def _write(buf, vis, pos, count, out, which, fill: bool = True):
    """:func:`~objtrack_jax.windows.write_window` of a window's output ``out`` (batch axis 1)
    into the buffers ``buf [P, n, 2]`` / ``vis [P, n]`` (or None) at positions ``pos ..
    pos + count - 1``, for the slots ``which`` (bool ``[n]``)."""
    est, vis = write_window(buf[None], None if vis is None else vis[None], pos, count,
                            out.tracks, out.vis_logits, fill=fill, where=which[None])
    return est[0], None if vis is None else vis[0]


@functools.lru_cache(maxsize=16)
def finish_window_fn(core: OnlineCore):
    return jax.jit(core._finish_window, static_argnums=(5, 6))


@functools.lru_cache(maxsize=16)
def step_fn(core: OnlineCore):
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
