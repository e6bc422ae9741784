"""The rules of the PIPs++ long-video protocol (docs/conventions.md, *Long videos*), each once.

Every loop that tracks through more frames than one window follows them: the host engine
(:mod:`objtrack_jax.inference`: ``track_windows``, ``track_segments``), the pure function
(:func:`objtrack_jax.functional.track`: a ``lax.scan`` over windows), the online tracker
(:class:`objtrack_jax.online.OnlineCore`: a window runs when its last frame arrives) and the
exported artifacts (:mod:`objtrack_jax.export`). The functions are pure: they take python ints
and numpy arrays (the host loop; computed with numpy) or jax arrays and tracers (jit, scan;
computed with ``jax.numpy``), the same definition for both (:func:`_xp` picks the namespace).

* **Schedule** (:func:`num_windows`, :func:`window_span`): a segment of ``L`` frames runs in
  windows of ``S`` frames; window ``k`` starts at ``k (S - 1)`` (one frame shared with the
  previous window), and the last one is shifted back to end at the segment's end (start
  ``max(L - S, 0)``). A segment of one frame has no window; one of ``L < S`` frames has one
  short window (``num_valid = L`` real frames), padded to ``S`` frames with its last frame
  (:func:`window_frames`) and run masked (``PIPsTracker.refine(num_valid=...)``) or unpadded.
  :func:`ends_window` and :func:`last_shifted` state the same schedule as seen frame by frame
  (the online tracker).
* **Zero-velocity start and write-back** (:func:`write_window`): a window starts from the current
  estimate of its frames (frame 0: the query or the previous window's last estimate, kept by the
  model); its output replaces the estimate (and the visibility logits) of its real frames, and
  every later frame of the segment takes the window's last estimate (the zero-velocity fill;
  ``fill=False`` for a refinement pass that keeps its initial tracks there).
* **Template carry** (:func:`carried`, :func:`fresh_or_carried`; ``carry`` one of
  :data:`~objtrack_jax.settings.CARRY_MODES`): a segment's first window samples its templates at
  frame 0. After it, ``'pips2'`` (PIPs++ test code) passes the previous window's ``(feats1,
  feats2, feats4)`` on (feats1 is the first window's frame-0 template for the whole segment);
  ``'paper'`` (the object-prior test code) seeds all three with the carried feats1; ``'none'``:
  every window samples its own.
* **The step** (:func:`window_step`: ``PIPsTracker.refine`` of one window's feature maps;
  :func:`run_window`: the window's frames encoded together first, templates picked per point).

Shapes: ``S`` frames per window, ``T`` frames of the segment's state, time on axis 1 of the
state: ``trajs [B, T, ..., 2]`` (x, y) model pixels, ``vis [B, T, ...]`` logits; the model's
window layout ``[B, S, N, ...]``; templates ``(feats1, feats2, feats4)`` each ``[B, S, N, C]``.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from objtrack_jax.models.correlation import sample_features
from objtrack_jax.models.tracker import PIPsTracker
from objtrack_jax.settings import CARRY_MODES


def _xp(*xs):
    """``jax.numpy`` when any of ``xs`` is a jax array (or a tracer), else ``numpy``."""
    return jnp if any(isinstance(x, jax.Array) for x in xs) else np


def check_carry(carry: str) -> str:
    """``carry`` if it is one of :data:`~objtrack_jax.settings.CARRY_MODES`, else ValueError."""
    if carry not in CARRY_MODES:
        raise ValueError(f"carry must be one of {CARRY_MODES}, got {carry!r}")
    return carry


# --------------------------------------------------------------------------------------------------
# The schedule

def num_windows(length, window: int):
    """Windows of a segment of ``length`` frames (int or int array): 0 for one frame, else
    ``1 + ceil(max(length - window, 0) / (window - 1))``."""
    xp = _xp(length)
    extra = xp.maximum(length - window, 0)
    n = xp.where(length < 2, 0, 1 + (extra + window - 2) // (window - 1))
    return n[()] if xp is np else n


def window_span(k, length, window: int):
    """``(start, num_valid)`` of window ``k`` (``0 <= k < num_windows``) of a segment of
    ``length`` frames: its first frame and its count of real frames (``<= window``)."""
    xp = _xp(k, length)
    last = k >= num_windows(length, window) - 1
    start = xp.where(last, xp.maximum(length - window, 0), _unshifted_start(k, window))
    num_valid = xp.minimum(window, length - start)
    return (start[()], num_valid[()]) if xp is np else (start, num_valid)


def _unshifted_start(k, window: int):
    """Window ``k``'s first frame as scheduled before the segment's end is known."""
    return k * (window - 1)


def window_spans(length: int, window: int) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` of every window of a segment of ``length`` frames (host ints)."""
    if window < 2:
        raise ValueError(f"window must be >= 2 frames, got {window}")
    out = []
    for k in range(int(num_windows(int(length), window))):
        start, count = window_span(k, int(length), window)
        out.append((int(start), int(start + count)))
    return out


def window_frames(start, num_valid, size: int):
    """``[..., size]`` indices of a window's frames (``start`` and ``num_valid`` ints or
    ``[...]`` arrays): ``start, start + 1, ...``, the last real frame repeated as padding."""
    xp = _xp(start, num_valid)
    return (xp.asarray(start)[..., None]
            + xp.minimum(xp.arange(size), xp.asarray(num_valid)[..., None] - 1))


def ends_window(rel, window: int):
    """Whether frame ``rel`` of a segment (0: its first) is the last frame of one of its
    windows as scheduled before the end is known: ``rel = _unshifted_start(k + 1)``."""
    return (rel > 0) & (rel % _unshifted_start(1, window) == 0)


def last_shifted(length, window: int):
    """Whether the last window of a segment of ``length >= 2`` frames is shifted back to end at
    the segment's end (:func:`window_span`: its start is not the unshifted one)."""
    k = num_windows(length, window) - 1
    start, _ = window_span(k, length, window)
    return start != _unshifted_start(k, window)


# --------------------------------------------------------------------------------------------------
# Write-back, zero-velocity fill, carry

def write_window(trajs, vis, start, num_valid, tracks, vis_logits=None, *, fill: bool = True,
                 where=None):
    """A window's output written into a segment's state (module docstring).

    Args:
      trajs: ``[B, T, ..., 2]`` the estimate; ``vis``: ``[B, T, ...]`` logits, or None.
      start, num_valid: the window's first frame in the state and its real frames (ints, or
        ``[B]`` arrays).
      tracks: ``[B, S, ..., 2]`` the window's output (frames past ``num_valid``: padding,
        ignored); ``vis_logits``: ``[B, S, ...]``, or None (``vis`` kept).
      fill: every frame after the window takes its last estimate (zero-velocity fill).
      where: None, or bool ``[B, ...]`` (``vis``'s shape without the time axis): only these
        rows are written.
    Returns:
      ``(trajs, vis)`` updated (new arrays).
    """
    xp = _xp(trajs, vis, start, num_valid, tracks, vis_logits, where)
    if where is None and isinstance(start, int) and isinstance(num_valid, int):
        return _write_static(xp, trajs, vis, start, num_valid, tracks, vis_logits, fill)
    t, s = trajs.shape[1], tracks.shape[1]
    rest = (1,) * (trajs.ndim - 3)  # the axes between time and (x, y)
    start = xp.reshape(xp.asarray(start), (-1, 1) + rest)
    count = xp.reshape(xp.asarray(num_valid), (-1, 1) + rest)
    j = xp.reshape(xp.arange(t), (1, t) + rest)
    rel = xp.clip(j - start, 0, s - 1)  # [B, T, ...]: the window's frame at each state frame
    inside = (j >= start) & (j < start + count)
    after = j >= start + count
    if where is not None:
        m = xp.expand_dims(xp.asarray(where), 1)
        inside, after = m & inside, m & after
    new = xp.take_along_axis(tracks, rel[..., None], axis=1)
    later = trajs
    if fill:
        last = xp.take_along_axis(tracks, (count - 1)[..., None], axis=1)
        later = xp.where(after[..., None], last, trajs)
    trajs = xp.where(inside[..., None], new, later)
    if vis is not None and vis_logits is not None:
        vis = xp.where(inside, xp.take_along_axis(vis_logits, rel, axis=1), vis)
    return trajs, vis


def _write_static(xp, trajs, vis, start: int, count: int, tracks, vis_logits, fill: bool):
    """:func:`write_window` for a window at a fixed place (host ints): the same rule with
    slices, so that a traced program (export's unrolled windows) holds plain slice updates."""
    end = start + count

    def put(a, sl, b):
        if xp is np:
            a = a.copy()
            a[sl] = b
            return a
        return a.at[sl].set(b)

    trajs = put(trajs, (slice(None), slice(start, end)), tracks[:, :count])
    if fill:
        trajs = put(trajs, (slice(None), slice(end, None)), tracks[:, count - 1:count])
    if vis is not None and vis_logits is not None:
        vis = put(vis, (slice(None), slice(start, end)), vis_logits[:, :count])
    return trajs, vis


def carried(feats: Optional[tuple], carry: str) -> Optional[tuple]:
    """The templates a carried window starts from, given the previous window's ``feats``
    (``(feats1, feats2, feats4)``; None: a first window): None (sample its own at frame 0) for a
    first window or ``carry='none'``; ``(feats1,) * 3`` for ``'paper'``; ``feats`` for
    ``'pips2'``."""
    if feats is None or carry == "none":
        return None
    return (feats[0],) * 3 if carry == "paper" else tuple(feats)


def fresh_or_carried(own, feats: tuple, fresh, carry: str) -> tuple:
    """Per point, the templates of :func:`carried` or, where ``fresh`` (bool ``[N]``: the
    point's first window) or with ``carry='none'``, its own frame-0 template ``own [..., N, C]``
    (broadcast like ``feats``' members) for all three."""
    base = carried(feats, carry)
    pick = jnp.asarray(fresh, bool)[:, None]
    if base is None:
        base, pick = tuple(feats), jnp.ones_like(pick)
    return tuple(jnp.where(pick, own, c) for c in base)


# --------------------------------------------------------------------------------------------------
# The step

def window_step(model: PIPsTracker, params: Any, fmaps, trajs, iters: int, feat_init=None,
                num_valid=None):
    """One window, pure (jit- and vmap-able): ``PIPsTracker.refine`` of the window's feature maps
    ``fmaps [B, S, h, w, C]`` from the estimate ``trajs [B, S, N, 2]`` (frame 0 kept), with the
    templates ``feat_init`` (each ``[B, S, N, C]``, :func:`carried`; None: sampled at frame 0)
    and ``num_valid`` real frames (scalar or ``[B]``; None: all ``S``, unmasked). Returns the
    model's :class:`~objtrack_jax.models.tracker.TrackerOutput` (``tracks``, ``vis_logits``,
    ``feats`` to carry into the next window)."""
    return model.apply({"params": params}, fmaps, trajs, iters, feat_init, num_valid,
                       method=PIPsTracker.refine)


def run_window(model: PIPsTracker, params: Any, frames, init, feats, fresh, iters: int,
               carry: str = "pips2", num_valid=None):
    """One window from its frames: the ``S`` frames encoded together (as the host engine encodes
    a window), each point's templates picked (:func:`fresh_or_carried`), then
    :func:`window_step`.

    Args:
      frames: ``[S, h, w, 3]`` float32 in [0, 255], model resolution.
      init: ``[S, n, 2]`` (x, y) model pixels; frame 0 holds the positions kept in the output.
      feats: the previous window's templates ``(feats1, feats2, feats4)``, each ``[S, n, C]``.
      fresh: bool ``[n]``: these points sample their templates at frame 0 (a first window).
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
    feat_init = tuple(f[None] for f in fresh_or_carried(f1, feats, fresh, carry))
    return window_step(model, params, fm, init[None], int(iters), feat_init, num_valid)
