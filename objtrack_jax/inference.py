"""Long-video inference with the PIPs++ windowing protocol (SPEC §4).

Windows of ``window`` frames; window k+1 starts at ``start_k + window - 1`` (one frame of
overlap); the last window is shifted back to end at the last frame. Each window is run with
the current estimate as its initialisation; its final output (frame 0 re-locked) is written
back and every later frame is set to the window's last estimate (zero-velocity fill).
Templates are carried across windows:

- ``carry='pips2'`` (PIPs++ test code): feats1 (the frame-0 template) for the whole video,
  feats2/feats4 from the previous window, sliced to the new length, for iteration 0.
- ``carry='paper'`` (the object-prior test code): feats2 = feats4 = feats1 when carrying.
- ``carry='none'``: every window starts from its own frame-0 templates.

The jitted window function is cached per (model, iters), so windows of equal shape never
recompile.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from objtrack_jax.models.tracker import PIPsTracker, TrackerOutput, check_inputs


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


@functools.lru_cache(maxsize=32)
def _window_fn(model: PIPsTracker, iters: int, with_init: bool) -> Callable:
    def run(params, rgbs, trajs, feat_init):
        return model.apply({"params": params}, rgbs, trajs, iters=iters,
                           feat_init=feat_init if with_init else None)

    return jax.jit(run)


def track_window(model: PIPsTracker, params: Any, rgbs, trajs_e0, iters: int,
                 feat_init: Optional[tuple] = None) -> TrackerOutput:
    """One jitted window (cached compile)."""
    fn = _window_fn(model, int(iters), feat_init is not None)
    return fn(params, rgbs, trajs_e0, feat_init)


def track_long_video(model: PIPsTracker, params: Any, rgbs, trajs_e0, *, window: int = 128,
                     iters: int = 16, carry: str = "pips2", progress: bool = False,
                     return_vis: bool = False):
    """Tracks through a video of any length with the PIPs++ protocol.

    Args:
      rgbs: ``[B, T, H, W, 3]`` frames in [0, 255] (numpy or jax; float or uint8).
      trajs_e0: ``[B, T, N, 2]`` initial estimate in pixels; frame 0 holds the queries.
      window: S_max, frames per window.
      carry: ``'pips2'``, ``'paper'`` or ``'none'`` (see module docstring).
    Returns:
      ``[B, T, N, 2]`` numpy tracks (and ``[B, T, N]`` visibility logits when ``return_vis``
      and the model has a visibility head).
    """
    if carry not in ("pips2", "paper", "none"):
        raise ValueError(f"carry must be 'pips2', 'paper' or 'none', got {carry!r}")
    rgbs = np.asarray(rgbs)
    trajs = np.array(trajs_e0, dtype=np.float32, copy=True)
    check_inputs(rgbs.shape, trajs.shape, model.stride)
    t_total = rgbs.shape[1]
    vis = np.zeros(trajs.shape[:3], np.float32)
    feat_init = None
    wins = window_starts(t_total, window)
    it = wins
    if progress:
        from tqdm import tqdm

        it = tqdm(wins, desc="windows", unit="win")
    for start, end in it:
        s_local = end - start
        if feat_init is not None:
            feat_init = tuple(f[:, :s_local] for f in feat_init)
            if carry == "paper":
                feat_init = (feat_init[0],) * 3
        out = track_window(model, params, jnp.asarray(rgbs[:, start:end], jnp.float32),
                           jnp.asarray(trajs[:, start:end]), iters, feat_init)
        trajs[:, start:end] = np.asarray(out.tracks)
        trajs[:, end:] = trajs[:, end - 1:end]
        if out.vis_logits is not None:
            vis[:, start:end] = np.asarray(out.vis_logits)
        feat_init = None if carry == "none" else out.feats
    if return_vis:
        return trajs, vis
    return trajs
