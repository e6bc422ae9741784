"""The post-network stage: anchoring, visibility fusion and the query-frame lock, once.

After the network (and its optional second, finer pass, :func:`objtrack_jax.tracking.run_tracking`)
every entry point finishes its tracks the same way:

* **Anchoring** (``TrackingSettings.anchor``, an :class:`~objtrack_jax.anchor.AnchorConfig` or
  None): every estimate is re-aligned to its query frame's patch by the per-frame rules of
  :mod:`objtrack_jax.anchor` (:func:`~objtrack_jax.anchor.anchor_frame`). The one driver of
  those rules is :func:`scan_frames`, a ``lax.scan`` over frames with an explicit state
  (:func:`init_state`: each point's query templates and the rules' carry, an opaque pytree with
  one row per point). A frame's ``start`` mask says whose query frame it is: those points take
  their template from that frame and a fresh carry (:func:`~objtrack_jax.anchor.init_carry`);
  ``active`` says which points the frame refines (the frames after the query frame in a
  forward scan, before it in a backward one). The three users call the same function:

  - the host (:func:`anchor_tracks`, used by ``track_queries``): jitted (:func:`scan_fn`) over
    chunks of frames of a video of any length, forward and then backward, the state carried
    from chunk to chunk;
  - the functional API (:func:`anchor_clip`, used by
    :func:`objtrack_jax.functional.anchor_clips` and ``make_tracker``): traced, once forward
    and once backward over a whole clip;
  - the online tracker (:class:`objtrack_jax.online.OnlineTracker`): jitted, over each emitted
    piece of frames in time order, the state carried between pieces (forward only).

  Since the state holds everything a frame needs from the past, any split of the frames into
  chunks gives the same result.
* **Visibility fusion** (:func:`fuse`, :func:`visibility`): the network's verdict (logit above
  ``vis_threshold``), except that a point-frame whose patch was not found is visible only when
  the network is firm (:func:`~objtrack_jax.anchor.firm_threshold`,
  :func:`~objtrack_jax.anchor.fuse_visibility`); the query frame is always visible.
* **Query-frame lock** (:func:`lock_query`): the track equals the query at its query frame.

Functions here take numpy arrays on the host and jax arrays (or tracers) inside ``jit``; the
query lock and the fusion return the same kind. Coordinates: ``(x, y)`` pixels of the frames
given (docs/conventions.md).
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from objtrack_jax import anchor
from objtrack_jax.anchor import AnchorConfig
from objtrack_jax.settings import anchor_config


def _xp(x):
    return jnp if isinstance(x, jax.Array) else np


# --------------------------------------------------------------------------------------------------
# The driver: one scan over frames
# --------------------------------------------------------------------------------------------------

def _templates(cfg: AnchorConfig, frame, xy):
    """The query templates (:func:`objtrack_jax.anchor.templates`) of points ``xy [N, 2]`` in
    one frame ``[H, W, 3]``."""
    return anchor.templates(anchor.pyramid(anchor.grey(frame), cfg.levels), xy, cfg.radius)


def init_state(cfg: AnchorConfig, frame_size, n: int):
    """The state of :func:`scan_frames` for ``n`` points in frames of ``frame_size (H, W)``
    before any query frame: ``(templates, carry)``, zero templates and the carry of
    :func:`objtrack_jax.anchor.init_carry` (no point active yet)."""
    shapes = jax.eval_shape(lambda f, xy: _templates(cfg, f, xy),
                            jax.ShapeDtypeStruct(tuple(frame_size) + (3,), jnp.float32),
                            jax.ShapeDtypeStruct((int(n), 2), jnp.float32))
    tmpl = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
    return tmpl, anchor.init_carry(tmpl)


def _rows(mask):
    """``where(mask, a, b)`` over rows, for leaves of any rank with the points first."""
    def pick(a, b):
        return jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)
    return pick


def scan_frames(cfg: AnchorConfig, state, frames, start, active, xy, query):
    """Anchors ``F`` frames in the order given (pure; jit- and vmap-able).

    Args:
      state: ``(templates, carry)`` from :func:`init_state` or the previous call.
      frames: ``[F, H, W, 3]`` float32 RGB.
      start: ``[F, N]`` bool, the points whose query frame this is: their templates are taken
        from it at ``query`` and their carry restarts (before the frame is refined).
      active: ``[F, N]`` bool, the points this frame refines (the others pass through).
      xy: ``[F, N, 2]`` the network's estimates.
      query: ``[N, 2]`` float32, the queries ``(x, y)``.
    Returns:
      ``(new [F, N, 2], score [F, N], accepted [F, N], state)``
      (:func:`objtrack_jax.anchor.anchor_frame`, frame by frame).
    """
    def body(st, xs):
        tmpl, carry = st
        frame, here, p, act = xs

        def restart(tc):  # the points whose query frame this is: template, fresh carry
            pick = _rows(here)
            tmpl = jax.tree_util.tree_map(pick, _templates(cfg, frame, query), tc[0])
            return tmpl, jax.tree_util.tree_map(pick, anchor.init_carry(tmpl), tc[1])

        tmpl, carry = jax.lax.cond(jnp.any(here), restart, lambda tc: tc, (tmpl, carry))
        new, score, ok, carry = anchor.anchor_frame(cfg, frame, tmpl, p, act, carry)
        return (tmpl, carry), (new, score, ok)

    state, (new, score, ok) = jax.lax.scan(body, state, (frames, start, xy, active))
    return new, score, ok, state


@functools.lru_cache(maxsize=None)
def scan_fn(cfg: AnchorConfig):
    """:func:`scan_frames` for ``cfg``, jitted (cached: one per configuration)."""
    return jax.jit(functools.partial(scan_frames, cfg))


def padded_count(n: int) -> int:
    """Point counts are padded to a power of two >= 8 (a few compiled shapes)."""
    return max(8, 1 << int(np.ceil(np.log2(max(n, 1)))))


# --------------------------------------------------------------------------------------------------
# Query lock and visibility
# --------------------------------------------------------------------------------------------------

def at_query_frame(t_q, num_frames: int):
    """``[N, T]`` bool: frame ``t`` is point ``n``'s query frame (``t_q [N]`` integers)."""
    xp = _xp(t_q)
    return xp.arange(num_frames)[None] == t_q[:, None]


def lock_query(tracks, at_query, query):
    """``tracks [N, T, 2]`` with the query ``query [N, 2]`` ``(x, y)`` itself (float32) where
    ``at_query [N, T]``: the track equals the query at its query frame."""
    xp = _xp(tracks)
    return xp.where(at_query[..., None], xp.asarray(query).astype(xp.float32)[:, None], tracks)


def fuse(visible, firm, accepted, at_query, lost=None):
    """The visibility of anchored tracks (``[N, T]`` bool each): ``visible`` (the network's
    logit above the visibility threshold), ``firm`` (above the firm threshold,
    :func:`objtrack_jax.anchor.firm_threshold`; None: no hiding), ``accepted`` (the patch was
    found; None: not anchored), ``at_query`` (the query frames, always visible), ``lost`` (the
    point is lost, score :data:`~objtrack_jax.anchor.LOST_SCORE`: hidden; None: none is)."""
    if firm is not None and accepted is not None:
        hidden = None if lost is None else lost & ~at_query
        visible = anchor.fuse_visibility(visible, firm, accepted | at_query, hidden)
    return visible | at_query


def thresholds(cfg: Optional[AnchorConfig], vis_threshold: float):
    """``(threshold, firm)`` float32 logits: the visibility threshold, and the firm one where a
    patch was not found (None: ``cfg`` is None or hides nothing)."""
    firm = None if cfg is None else anchor.firm_threshold(cfg, vis_threshold)
    return np.float32(vis_threshold), (None if firm is None else np.float32(firm))


def visibility(logits, vis_threshold: float, cfg: Optional[AnchorConfig], accepted, at_query,
               lost=None):
    """``(visible [N, T], threshold)`` from the visibility logits ``[N, T]`` (:func:`fuse`);
    ``threshold`` is the logit each point-frame is measured from (``[N, T]``, or the scalar
    ``vis_threshold`` when nothing is hidden; +inf where a point is ``lost``): occlusion logits
    are ``threshold - logits``."""
    xp = _xp(logits)
    thr, firm = thresholds(cfg, vis_threshold)
    if firm is None or accepted is None:
        return fuse(logits > thr, None, None, at_query), thr
    visible = fuse(logits > thr, logits > firm, accepted, at_query, lost)
    threshold = xp.where(accepted | at_query, thr, firm)
    if lost is not None:
        threshold = xp.where(lost & ~at_query, xp.float32(np.inf), threshold)
    return visible, threshold


# --------------------------------------------------------------------------------------------------
# The three callers' drivers
# --------------------------------------------------------------------------------------------------

def anchor_clip(cfg: AnchorConfig, video, t_q, query, tracks):
    """Anchoring of one clip as a pure function: ``video [T, H, W, 3]`` float32, ``t_q [N]``
    int32 query frames in [0, T), ``query [N, 2]`` ``(x, y)``, ``tracks [N, T, 2]``. Returns
    ``(tracks, accepted [N, T], lost [N, T])`` as :func:`anchor_tracks` returns them (``lost``:
    its score is :data:`~objtrack_jax.anchor.LOST_SCORE`): a forward
    :func:`scan_frames` over the clip (points after their query frame) and a backward one
    (before it), each taking a point's template when it reaches its query frame."""
    num_frames = video.shape[0]
    query = query.astype(jnp.float32)
    tracks = tracks.astype(jnp.float32)
    t = jnp.arange(num_frames)[:, None]
    start = t == t_q[None]  # [T, N]
    xy = jnp.swapaxes(tracks, 0, 1)  # [T, N, 2]
    state = init_state(cfg, video.shape[1:3], query.shape[0])
    fwd, fsc, fok, _ = scan_frames(cfg, state, video, start, t > t_q[None], xy, query)
    bwd, bsc, bok, _ = scan_frames(cfg, state, video[::-1], start[::-1], (t < t_q[None])[::-1],
                                   xy[::-1], query)
    fwd, fok, bwd, bok = (jnp.swapaxes(a, 0, 1) for a in (fwd, fok, bwd[::-1], bok[::-1]))
    fsc, bsc = jnp.swapaxes(fsc, 0, 1), jnp.swapaxes(bsc[::-1], 0, 1)
    f = jnp.arange(num_frames)[None]
    out = jnp.where((f > t_q[:, None])[..., None], fwd,
                    jnp.where((f < t_q[:, None])[..., None], bwd, tracks))
    at_query = at_query_frame(t_q, num_frames)
    lost = jnp.where(f > t_q[:, None], fsc, bsc) == anchor.LOST_SCORE
    return lock_query(out, at_query, query), fok | bok | at_query, lost & ~at_query


def anchor_tracks(video, tracks: np.ndarray, query_points: np.ndarray,
                  config: Optional[AnchorConfig] = None, chunk: int = 16, on_chunk=None):
    """Refines ``tracks [N, T, 2]`` (x, y input pixels) against each point's query patch, on
    the host, ``chunk`` frames at a time (:func:`scan_fn`).

    Frames after a point's query frame are refined in time order, those before it in reverse
    order (the direction its track was estimated in), each carrying the point's state.

    Args:
      video: ``[T, H, W, 3]`` RGB frames (array or :class:`~objtrack_jax.video_io.FrameSource`,
        read ``chunk`` frames at a time), at the resolution of ``tracks``.
      tracks: the network's tracks.
      query_points: ``[N, 3]`` ``(t, y, x)``, the queries the tracks start from.
      config: the :class:`~objtrack_jax.anchor.AnchorConfig` (None: the validated defaults,
        those of ``TrackingSettings(anchor=True)``).
      on_chunk: called after each chunk of frames (progress; :func:`num_chunks` calls).
    Returns:
      ``(tracks [N, T, 2] float32, accepted [N, T] bool, score [N, T] float32)``: refined tracks
      (the query frames keep their queries exactly), where the refinement was accepted, and its
      normalised cross-correlation (-1 where not accepted; :data:`~objtrack_jax.anchor.LOST_SCORE`
      where the point is lost, ``AnchorConfig.hold_still``; 1 at the query frame).
    """
    cfg = config if config is not None else anchor_config(True)
    tracks = np.asarray(tracks, np.float32)
    q = np.asarray(query_points, np.float64)
    n, num_frames = tracks.shape[:2]
    out = tracks.copy()
    accepted = np.zeros((n, num_frames), bool)
    scores = np.full((n, num_frames), -1.0, np.float32)
    if n == 0 or num_frames == 0:
        return out, accepted, scores
    if hasattr(video, "read"):
        read = video.read
    else:
        arr = video
        read = lambda a, b: np.asarray(arr[a:b])  # noqa: E731
    t_query = np.round(q[:, 0]).astype(np.int64)
    size = padded_count(n)
    query = np.zeros((size, 2), np.float32)
    query[:n] = q[:, [2, 1]]
    tq = np.full(size, num_frames, np.int64)  # padding rows: never start, never active
    tq[:n] = t_query
    fn = scan_fn(cfg)
    for backward in (False, True):
        if backward and not (t_query > 0).any():
            break
        state = None
        starts = list(range(0, num_frames, chunk))
        for first in (starts[::-1] if backward else starts):
            end = min(num_frames, first + chunk)
            m = end - first
            t = np.arange(first, end)
            frames = np.asarray(read(first, end), np.float32)
            if state is None:
                state = init_state(cfg, frames.shape[1:3], size)
            xy = np.zeros((chunk, size, 2), np.float32)
            xy[:m, :n] = np.swapaxes(tracks[:, first:end], 0, 1)
            active = np.zeros((chunk, size), bool)
            active[:m] = (t[:, None] < tq[None]) if backward else (t[:, None] > tq[None])
            begin = np.zeros((chunk, size), bool)
            begin[:m] = t[:, None] == tq[None]
            if backward:  # frames in the order the track was estimated in
                frames, xy[:m], active[:m], begin[:m] = (
                    frames[::-1], xy[:m][::-1].copy(), active[:m][::-1].copy(),
                    begin[:m][::-1].copy())
            if m < chunk:  # one compiled shape: pad with inactive copies of the last frame
                frames = np.concatenate([frames, np.repeat(frames[-1:], chunk - m, 0)])
            new, score, ok, state = fn(state, jnp.asarray(frames), jnp.asarray(begin),
                                       jnp.asarray(active), jnp.asarray(xy), jnp.asarray(query))
            new, score, ok = (np.asarray(a)[:m] for a in (new, score, ok))
            if backward:
                new, score, ok = new[::-1], score[::-1], ok[::-1]
            act = active[:m, :n][::-1] if backward else active[:m, :n]
            act = np.swapaxes(act, 0, 1)  # [n, m]: the frames this pass refined
            sel = np.swapaxes(ok[:, :n], 0, 1) & act
            blk = out[:, first:end]
            blk[act] = np.swapaxes(new[:, :n], 0, 1)[act]
            accepted[:, first:end] |= sel
            score = np.swapaxes(score[:, :n], 0, 1)
            lost = act & (score == anchor.LOST_SCORE)  # AnchorConfig.hold_still: held, hidden
            scores[:, first:end] = np.where(sel | lost, score, scores[:, first:end])
            if on_chunk is not None:
                on_chunk()
    at_query = at_query_frame(t_query, num_frames)
    out = lock_query(out, at_query, query[:n])
    return out, accepted | at_query, np.where(at_query, np.float32(1.0), scores)


def num_chunks(num_frames: int, query_frames, chunk: int = 16) -> int:
    """How many times :func:`anchor_tracks` calls ``on_chunk``."""
    per = -(-int(num_frames) // chunk)
    return per * (2 if (np.round(np.asarray(query_frames)) > 0).any() else 1)


class Stream:
    """Anchoring of a stream, frames in time order (the online tracker's; forward only).

    Fixed-size state, whatever the stream's length: the input frames not yet anchored (a ring
    of ``ring`` frames), each slot's query ``(x, y)`` and the :func:`scan_frames` state (the
    templates are taken when a slot's query frame is anchored). :meth:`apply` anchors ``piece``
    frames per jitted call (one compiled shape).
    """

    def __init__(self, cfg: AnchorConfig, capacity: int, frame_size: tuple, ring: int,
                 piece: int):
        self.cfg = cfg
        self.capacity, self.frame_size = int(capacity), tuple(frame_size)
        self.ring, self.piece = int(ring), int(piece)
        self.frames: Optional[np.ndarray] = None  # [ring, H, W, 3], allocated at the first push
        self._fn = scan_fn(cfg)
        self.state = init_state(cfg, self.frame_size, self.capacity)
        self.query = np.zeros((self.capacity, 2), np.float32)  # (x, y) input pixels

    def add(self, slots, xy) -> None:
        """Queries at ``xy`` (input pixels) start in ``slots`` (their templates are taken when
        their query frame is anchored)."""
        self.query[slots] = np.asarray(xy, np.float32)

    def store(self, first: int, frames: np.ndarray) -> None:
        """Keeps ``frames`` (``[k, H, W, 3]``, frames ``first ..``) until they are anchored."""
        if self.frames is None or (frames.dtype != self.frames.dtype
                                   and self.frames.dtype != np.float32):
            old = self.frames
            dt = np.uint8 if frames.dtype == np.uint8 and old is None else np.float32
            self.frames = np.zeros((self.ring,) + self.frame_size + (3,), dt)
            if old is not None:
                self.frames[:] = old
        rows = np.arange(first, first + len(frames)) % self.ring
        self.frames[rows] = frames

    def apply(self, idx: np.ndarray, tracks: np.ndarray, start: np.ndarray):
        """Anchors ``tracks [capacity, k, 2]`` (input pixels, NaN where a slot was not
        tracking) of frames ``idx`` (ascending, each frame once, after the frames before it),
        slots with query frames ``start``. Returns ``(tracks, accepted [capacity, k], lost
        [capacity, k])`` (``lost``: score :data:`~objtrack_jax.anchor.LOST_SCORE`)."""
        out = tracks.copy()
        accepted = np.zeros(tracks.shape[:2], bool)
        lost = np.zeros(tracks.shape[:2], bool)
        f = self.piece
        for a in range(0, len(idx), f):
            sub = idx[a:a + f]
            m = len(sub)
            frames = self.frames[sub % self.ring].astype(np.float32)
            if m < f:  # one compiled shape: inactive copies of the last frame
                frames = np.concatenate([frames, np.repeat(frames[-1:], f - m, 0)])
            cur = np.swapaxes(tracks[:, a:a + m], 0, 1)  # [m, capacity, 2]
            tracking = np.isfinite(cur).all(-1)
            active = np.zeros((f, self.capacity), bool)
            active[:m] = tracking & (sub[:, None] > start[None, :])
            begin = np.zeros((f, self.capacity), bool)
            begin[:m] = tracking & (sub[:, None] == start[None, :])
            xy = np.zeros((f, self.capacity, 2), np.float32)
            xy[:m] = np.where(active[:m, :, None], cur, 0.0)
            new, score, ok, self.state = self._fn(self.state, jnp.asarray(frames), jnp.asarray(begin),
                                              jnp.asarray(active), jnp.asarray(xy),
                                              jnp.asarray(self.query))
            accepted[:, a:a + m] = np.swapaxes(np.asarray(ok)[:m], 0, 1)
            new = np.swapaxes(np.asarray(new)[:m], 0, 1)
            act = np.swapaxes(active[:m], 0, 1)
            lost[:, a:a + m] = act & (np.swapaxes(np.asarray(score)[:m], 0, 1)
                                      == anchor.LOST_SCORE)
            out[:, a:a + m] = np.where(act[..., None], new, out[:, a:a + m])
        return out, accepted, lost

    def warm_up(self) -> None:
        """Compiles the program (nothing in the state changes)."""
        f, n = self.piece, self.capacity
        none = jnp.zeros((f, n), bool)
        jax.block_until_ready(self._fn(self.state,
                                       jnp.zeros((f,) + self.frame_size + (3,), jnp.float32),
                                       none, none, jnp.zeros((f, n, 2), jnp.float32),
                                       jnp.asarray(self.query)))
