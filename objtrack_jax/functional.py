"""The model as a pure function in tapnet's conventions: ``(params, video, queries) -> tracks``.

For clips that fit in memory, beside the host-side loop (:func:`objtrack_jax.tracking.track_queries`)
for files of any length::

    import jax
    from objtrack_jax import load_model
    from objtrack_jax.functional import make_tracker

    model, params, info = load_model()
    track = jax.jit(make_tracker(model, info))  # the weights' window, iterations, carry, anchor
    out = track(params, video, queries)                 # video [B, T, H, W, 3], queries [B, N, 3]
    out["tracks"], out["occlusion"]                     # [B, N, T, 2] (x, y), [B, N, T] logits

Conventions (docs/api.md; the same as tapnet's TAPIR and the rest of this package):

* ``video``: ``[B, T, H, W, 3]`` RGB, uint8 or float in [0, 255]; H and W multiples of 8, at least
  128: the model's resolution (this function does not resize; resize the frames and scale the
  queries by ``w/W``, ``h/H`` first, :func:`objtrack_jax.video_io.resize_video`).
* ``queries``: ``[B, N, 3]`` as ``(t, y, x)``: frame index (rounded, clipped to [0, T-1]) and pixel
  coordinates with x = 0 the centre of the first column.
* returns a dict: ``tracks`` float32 ``[B, N, T, 2]`` as ``(x, y)`` pixels, equal to the query at
  its query frame; ``occlusion`` float32 ``[B, N, T]`` logits (occluded where > 0: the
  settings' ``vis_threshold`` minus the logits of the model's visibility head; with anchoring,
  :func:`objtrack_jax.anchor.firm_threshold` in place of ``vis_threshold`` where a point's patch
  was not found, :func:`objtrack_jax.post.visibility`) and ``visible``
  bool ``[B, N, T]`` (not occluded, and always at the query frame); both None for a model
  without a visibility head.

What it computes is the PIPs++ long-video protocol of the host loop, for every query at once:
each point is tracked forward from its query frame to the last frame and backward to the first,
in windows of ``settings.window`` frames with one frame of overlap (the last window shifted back
to end at the segment's end; a segment shorter than a window padded with its last frame and
masked), each window starting from the previous estimate and the carried templates
(``settings.carry``), ``settings.iters`` refinement iterations per window. The video is encoded
once; each point then reads its windows' feature maps (points in chunks of ``point_chunk``, a
``lax.map``; windows a ``lax.scan``). Its tracks equal the host loop's on the same frames and
settings up to float rounding (tests/test_functional.py). Not here: the second, finer pass
(``settings.refine_scale``, which needs the video at a second resolution) and the memory
bounding of the host loop; its memory grows with ``B·T`` frames of feature maps.

The post-network stage (:mod:`objtrack_jax.post`) is applied when ``settings.anchor`` says so
(the shipped weights' settings do; ``make_tracker(..., anchor=False)`` leaves it out): after the
network, every estimate is re-aligned to its query frame's patch, in the frames given, i.e. at
the model's resolution (``track_queries`` anchors at the input video's), and the visibility is
fused with it (:func:`objtrack_jax.post.visibility`). :func:`anchor_clips` does the anchoring as
a pure function: per clip :func:`objtrack_jax.post.anchor_clip`, the same per-frame driver
(:func:`objtrack_jax.post.scan_frames`) that ``track_queries`` runs over chunks of frames, traced
once forward and once backward over the clip; its tracks equal
:func:`objtrack_jax.post.anchor_tracks` on the same network tracks (tests/test_functional.py).

The window rules (schedule, zero-velocity start and write-back, template carry, the step
:func:`objtrack_jax.windows.window_step`) are those of :mod:`objtrack_jax.windows`, shared with
the host loop.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from objtrack_jax import post, windows
from objtrack_jax.anchor import AnchorConfig
from objtrack_jax.memory import inference_model
from objtrack_jax.models.tracker import PIPsTracker, check_inputs
from objtrack_jax.settings import TrackingSettings, anchor_config, resolve


def _direction(model, params, fmaps, b_idx, t_q, xy, length, window, iters, carry, step):
    """One direction for a chunk of points: ``b_idx [P]`` video, ``t_q [P]`` query frame,
    ``xy [P, 2]``, ``length [P]`` frames of the segment, ``step`` +1 / -1. Returns the segment's
    tracks ``[P, T, 2]`` and visibility logits ``[P, T]``, index j = frame ``t_q + step·j``: the
    rules of :mod:`objtrack_jax.windows`, each point its own segment (batch axis ``P``, one point
    each), every window masked, windows past a segment's last written nowhere."""
    num_frames = fmaps.shape[1]
    p = xy.shape[0]
    trajs = jnp.broadcast_to(xy[:, None], (p, num_frames, 2)).astype(jnp.float32)
    vis = jnp.zeros((p, num_frames), jnp.float32)
    nw = windows.num_windows(length, window)

    def run(k, trajs, vis, feats):
        start, num_valid = windows.window_span(k, length, window)
        idx = windows.window_frames(start, num_valid, window)  # [P, S], last repeated
        frames = jnp.clip(t_q[:, None] + step * idx, 0, num_frames - 1)
        maps = fmaps[b_idx[:, None], frames]  # [P, S, h, w, C]
        init = jnp.take_along_axis(trajs, idx[..., None], axis=1)[:, :, None]  # [P, S, 1, 2]
        out = windows.window_step(model, params, maps, init, iters,
                                  windows.carried(feats, carry), num_valid)
        trajs, vis = windows.write_window(
            trajs, vis, start, num_valid, out.tracks[:, :, 0],
            None if out.vis_logits is None else out.vis_logits[:, :, 0], where=k < nw)
        return trajs, vis, out.feats, out.vis_logits is not None

    trajs, vis, feats, has_vis = run(jnp.int32(0), trajs, vis, None)
    max_windows = max(1, windows.num_windows(num_frames, window))  # static: the longest's
    if max_windows > 1:
        def body(state, k):
            trajs, vis, feats = state
            trajs, vis, feats, _ = run(k, trajs, vis, feats)
            return (trajs, vis, feats), None

        (trajs, vis, feats), _ = jax.lax.scan(body, (trajs, vis, feats),
                                              jnp.arange(1, max_windows, dtype=jnp.int32))
    return trajs, vis, has_vis


def anchor_clips(video, queries, tracks, config: Optional[AnchorConfig] = None,
                 with_lost: bool = False):
    """The anchoring stage (:mod:`objtrack_jax.post`) as a pure function: ``tracks [B, N, T,
    2]`` of ``queries [B, N, 3]`` in ``video [B, T, H, W, 3]`` (the module's conventions)
    re-aligned to each query's patch. Returns ``(tracks, accepted [B, N, T])`` (with
    ``with_lost``, also ``lost [B, N, T]``: point-frames held and hidden,
    ``AnchorConfig.hold_still``) as
    :func:`objtrack_jax.post.anchor_tracks` returns them for each clip (the query frames hold
    the queries, accepted). Clips one at a time (``lax.map`` of
    :func:`objtrack_jax.post.anchor_clip`). ``config`` None: the validated defaults."""
    cfg = config if config is not None else anchor_config(True)
    num_frames = video.shape[1]
    q = jnp.asarray(queries, jnp.float32)
    t_q = jnp.clip(jnp.round(q[..., 0]), 0, num_frames - 1).astype(jnp.int32)

    def one(args):
        v, tq, xy, tr = args
        return post.anchor_clip(cfg, v.astype(jnp.float32), tq, xy, tr)

    out = jax.lax.map(one, (jnp.asarray(video), t_q, q[..., 2:0:-1], jnp.asarray(tracks)))
    return out if with_lost else out[:2]


def track(model: PIPsTracker, params: Any, video, queries, *, window: int, iters: int,
          carry: str = "pips2", point_chunk: int = 16,
          anchor: Union[None, bool, AnchorConfig] = False,
          vis_threshold: float = 0.0) -> dict:
    """Tracks ``queries`` through ``video``: a pure function of ``params``, ``video`` and
    ``queries`` (module docstring for shapes and conventions). ``model``, ``window``, ``iters``,
    ``carry``, ``point_chunk`` (points refined at once), ``anchor`` (True or an
    :class:`~objtrack_jax.anchor.AnchorConfig`: the anchoring stage, :func:`anchor_clips`) and
    ``vis_threshold`` (the visibility logit above which a point-frame is visible) are static:
    bind them with :func:`make_tracker` (or ``functools.partial``) before ``jax.jit`` /
    ``jax.vmap``."""
    b, num_frames, height, width, _ = video.shape
    if queries.ndim != 3 or queries.shape[0] != b or queries.shape[-1] != 3:
        raise ValueError(f"queries must be [B, N, 3] as (t, y, x) with B = {b} (the video's), got "
                         f"shape {tuple(queries.shape)}")
    check_inputs((b, max(num_frames, 2), height, width, 3), (b, max(num_frames, 2), 1, 2),
                 model.stride)
    n = queries.shape[1]
    m = inference_model(model, height, width)
    fmaps = m.apply({"params": params}, jnp.asarray(video, jnp.float32), method=PIPsTracker.encode)

    rows = b * n
    chunk = max(1, min(int(point_chunk), rows)) if rows else 1
    pad = -rows % chunk
    q = jnp.reshape(jnp.asarray(queries, jnp.float32), (rows, 3))
    b_idx = jnp.repeat(jnp.arange(b, dtype=jnp.int32), n)
    if pad:
        q = jnp.concatenate([q, jnp.repeat(q[:1], pad, 0)], 0)
        b_idx = jnp.concatenate([b_idx, jnp.repeat(b_idx[:1], pad, 0)], 0)
    t_q = jnp.clip(jnp.round(q[:, 0]), 0, num_frames - 1).astype(jnp.int32)
    xy = q[:, 2:0:-1]  # (x, y)

    def one_chunk(args):
        bi, tq, p = args
        fwd, fvis, has_vis = _direction(m, params, fmaps, bi, tq, p, num_frames - tq, window,
                                        iters, carry, 1)
        bwd, bvis, _ = _direction(m, params, fmaps, bi, tq, p, tq + 1, window, iters, carry, -1)
        f = jnp.arange(num_frames)[None]
        forward = f >= tq[:, None]
        rel = jnp.where(forward, f - tq[:, None], tq[:, None] - f)  # [P, T]
        tracks = jnp.where(forward[..., None], jnp.take_along_axis(fwd, rel[..., None], 1),
                           jnp.take_along_axis(bwd, rel[..., None], 1))
        tracks = jnp.where((f == tq[:, None])[..., None], p[:, None], tracks)  # the query, exactly
        logits = jnp.where(forward, jnp.take_along_axis(fvis, rel, 1),
                           jnp.take_along_axis(bvis, rel, 1))
        return tracks, logits

    split = lambda x: x.reshape((-1, chunk) + x.shape[1:])  # noqa: E731
    tracks, logits = jax.lax.map(one_chunk, (split(b_idx), split(t_q), split(xy)))
    tracks = tracks.reshape((-1, num_frames, 2))[:rows].reshape(b, n, num_frames, 2)
    logits = logits.reshape((-1, num_frames))[:rows].reshape(b, n, num_frames)
    cfg = anchor_config(anchor)
    accepted = lost = None
    if cfg is not None:
        tracks, accepted, lost = anchor_clips(video, queries, tracks, cfg, with_lost=True)
    if not model.visibility_head:
        return {"tracks": tracks, "occlusion": None, "visible": None}
    at_query = post.at_query_frame(t_q[:rows], num_frames).reshape(b, n, num_frames)
    visible, threshold = post.visibility(logits, vis_threshold, cfg, accepted, at_query, lost)
    return {"tracks": tracks, "occlusion": threshold - logits, "visible": visible}


def make_tracker(model: PIPsTracker,
                 settings: Union[None, Mapping, TrackingSettings] = None,
                 point_chunk: int = 16,
                 anchor: Union[None, bool, AnchorConfig] = None):
    """``fn(params, video, queries) -> dict``: :func:`track` with ``model`` and the window,
    iterations, carry, anchoring and visibility threshold of ``settings`` bound (a
    :class:`~objtrack_jax.settings.TrackingSettings` or the weights' ``info``; None: the defaults
    of weights that record nothing). ``anchor`` (None: ``settings.anchor``; True, False or an
    :class:`~objtrack_jax.anchor.AnchorConfig`, :func:`objtrack_jax.settings.anchor_config`)
    switches the anchoring stage on or off. Pure: wrap it in ``jax.jit`` / ``jax.vmap`` as needed."""
    s = resolve(settings)  # the one settings path (objtrack_jax.settings.resolve)
    use_anchor = s.anchor if anchor is None else anchor_config(anchor)

    def tracker(params, video, queries):
        return track(model, params, video, queries, window=s.window, iters=s.iters,
                     carry=s.carry, point_chunk=point_chunk, anchor=use_anchor,
                     vis_threshold=s.vis_threshold)

    return tracker


def as_protocol_tracker(fn, params):
    """``fn(params, video, queries)`` as the evaluation protocols' tracker, ``tracker(video
    [1, T, H, W, 3], queries [1, N, 3]) -> (tracks, occlusion)``
    (:func:`objtrack_jax.evaluation.evaluate`)."""
    def tracker(video, queries):
        out = fn(params, jnp.asarray(video), jnp.asarray(queries, jnp.float32))
        occ = out["occlusion"]
        visible = out["visible"]
        # occluded = not visible (the query frame counts as visible, as in the host loop)
        return np.asarray(out["tracks"]), (None if occ is None else ~np.asarray(visible))

    return tracker
