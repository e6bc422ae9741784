"""The pure training step: ``train_step(state, batch) -> (state, metrics)``.

Per step (everything on device, inside one jitted function):

1. ``key = fold_in(state.rng, state.step)`` (split into init-track and dropout keys), so the
   randomness of step ``k`` is the same however the run was interrupted and resumed.
2. Initial tracks (docs/conventions.md, *Training*; :func:`init_tracks`).
3. Forward pass (``deterministic=False``: drop-path is active in the attention stack), loss =
   :func:`objtrack_jax.losses.total_loss` (sequence loss on all iterates + ``alpha`` x objectness on
   the final prediction + optional visibility BCE).
4. Gradient, global-norm clipping and AdamW (the optimiser chain of :mod:`.optim`).

The batch-level x/y swap is applied by the input pipeline
(``data_pipelines.pipeline``, ``aug.xy_swap='batch'``), so it is not repeated here.

Batch: ``rgbs`` [B,S,H,W,3] (uint8 or float in [0,255]), ``trajs`` [B,S,N,2] GT pixels, ``valids``
and ``vis`` [B,S,N] (0/1), ``masks`` [B,S,H,W] instance ids (only read when ``loss.alpha > 0``).
Metrics are float32 scalars: ``loss`` and every loss term, ``grad_norm`` (before clipping),
``param_norm``, ``lr`` (of this step).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax

from objtrack_jax.losses import total_loss
from objtrack_jax.models.tracker import PIPsTracker
from objtrack_jax.train.state import TrainState

# Batch entries the step reads (the pipeline's batches carry more bookkeeping fields).
BATCH_KEYS = ("rgbs", "trajs", "vis", "valids", "masks")
SCALAR_TERMS = ("loss", "loss_seq", "loss_obj", "masked_loss", "loss_vis")


def init_tracks(key, trajs_g, image_hw, cfg) -> jnp.ndarray:
    """Initial tracks ``[B,S,N,2]`` from the GT ``trajs_g`` (pixels).

    Per point: uniform random positions per frame in ``[0, W-1] x [0, H-1]`` blended with the GT by
    ``c ~ U(0, 1)`` (``rand*c + gt*(1-c)``, one ``c`` per point); with probability
    ``cfg.zero_vel_prob`` (drawn per ``cfg.zero_vel_scope``: 'example', 'point' or 'step') replaced
    by the zero-velocity init (frame-0 GT repeated). Frame 0 is always the GT (the query).
    ``cfg.random_blend=False`` uses the GT itself instead of the random blend.
    """
    b, s, n, _ = trajs_g.shape
    h, w = image_hw
    k_pos, k_c, k_zv = jax.random.split(key, 3)
    gt = trajs_g.astype(jnp.float32)
    if cfg.random_blend:
        scale = jnp.asarray([w - 1, h - 1], jnp.float32)
        rand = jax.random.uniform(k_pos, (b, s, n, 2), jnp.float32) * scale
        c = jax.random.uniform(k_c, (b, 1, n, 1), jnp.float32)
        blended = rand * c + gt * (1.0 - c)
    else:
        blended = gt
    zero_vel = jnp.broadcast_to(gt[:, :1], gt.shape)
    scope = cfg.zero_vel_scope
    shapes = {"example": (b, 1, 1, 1), "point": (b, 1, n, 1), "step": (1, 1, 1, 1)}
    if scope not in shapes:
        raise ValueError(f"init_tracks.zero_vel_scope must be one of {sorted(shapes)}, got {scope!r}")
    use_zv = jax.random.uniform(k_zv, shapes[scope]) < cfg.zero_vel_prob
    out = jnp.where(use_zv, zero_vel, blended)
    return out.at[:, 0].set(gt[:, 0])


def loss_fn(params, model: PIPsTracker, batch: Mapping[str, jax.Array], trajs_e0, key, config):
    """``(loss, terms)`` of one forward pass (terms: scalar loss terms only)."""
    rgbs = batch["rgbs"].astype(jnp.float32)
    out = model.apply({"params": params}, rgbs, trajs_e0, iters=config.iters, deterministic=False,
                      rngs={"dropout": key})
    masks = batch.get("masks") if config.loss.alpha > 0 else None
    use_vis = model.visibility_head and out.vis_logits is not None
    loss, terms = total_loss(out.iterates, out.tracks, batch["trajs"], batch["valids"], masks=masks,
                             alpha=config.loss.alpha, gamma=config.loss.gamma,
                             vis_logits=out.vis_logits if use_vis else None,
                             vis=batch.get("vis") if use_vis else None,
                             vis_weight=config.loss.vis_weight)
    return loss, {k: v for k, v in terms.items() if k in SCALAR_TERMS}


def train_step(state: TrainState, batch: Mapping[str, jax.Array], *, model: PIPsTracker, tx,
               schedule, config) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimiser step. Pure: bind ``model/tx/schedule/config`` with ``functools.partial``."""
    key = jax.random.fold_in(state.rng, state.step)
    k_init, k_drop = jax.random.split(key)
    h, w = batch["rgbs"].shape[2:4]
    trajs_e0 = init_tracks(k_init, batch["trajs"], (h, w), config.init_tracks)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, terms), grads = grad_fn(state.params, model, batch, trajs_e0, k_drop, config)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(terms)
    metrics["grad_norm"] = optax.global_norm(grads)
    metrics["param_norm"] = optax.global_norm(params)
    metrics["lr"] = jnp.asarray(schedule(state.step), jnp.float32)
    metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, metrics


def select_batch(batch: Mapping[str, Any], config) -> dict:
    """The entries of a pipeline batch that :func:`train_step` reads (masks only when used)."""
    keys = [k for k in BATCH_KEYS if k != "masks" or config.loss.alpha > 0]
    return {k: batch[k] for k in keys}
