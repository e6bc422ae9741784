"""Training losses: PIPs++ sequence loss, the paper's objectness (instance-mask) loss, and an
optional visibility BCE.

Conventions (docs/conventions.md, *Training*): tracks are full-resolution pixel
coordinates ``(x, y)``; ``B`` batch, ``S`` frames, ``N`` points, ``I`` recorded iterates.
Masked means are ``Σ(x·m) / (1e-6 + Σm)`` over every element (PIPs++ ``reduce_masked_mean``).
All functions are pure ``jnp`` and jit-friendly (shapes static, no host callbacks).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

EPS = 1e-6


def masked_mean(x, mask):
    """Σ(x·mask) / (EPS + Σmask) over all elements (broadcasting mask against x)."""
    mask = jnp.broadcast_to(mask, x.shape).astype(x.dtype)
    return jnp.sum(x * mask) / (EPS + jnp.sum(mask))


def _l1_mean_xy(a, b):
    """mean over the trailing (x, y) axis of |a − b|: [..., 2] -> [...]."""
    return jnp.mean(jnp.abs(a - b), axis=-1)


def sequence_loss(preds, trajs_g, valids, gamma: float = 0.8):
    """PIPs++ deep-supervision loss over the refinement iterates.

    Args:
      preds: [I, B, S, N, 2] predicted pixels after each iteration, *before* the frame-0 re-lock.
      trajs_g: [B, S, N, 2] ground-truth pixels.
      valids: [B, S, N] 0/1 (float) weights.
      gamma: iterate ``i`` (0-based) is weighted ``gamma**(I−1−i)``.

    Returns:
      scalar ``(1/I) Σ_i gamma**(I−1−i) · masked_mean(mean_xy|P_i − G|, valids)``.
      As the official code, ``nan_to_num`` is applied to preds, GT and the per-element loss.
    """
    preds = jnp.nan_to_num(jnp.asarray(preds))
    trajs_g = jnp.nan_to_num(jnp.asarray(trajs_g))
    valids = jnp.nan_to_num(jnp.asarray(valids))
    n_iters = preds.shape[0]
    per_elem = jnp.nan_to_num(_l1_mean_xy(preds, trajs_g[None]))             # [I, B, S, N]
    mask = valids.astype(per_elem.dtype)
    per_iter = jnp.sum(per_elem * mask, axis=(1, 2, 3)) / (EPS + jnp.sum(mask))  # [I]
    weights = jnp.asarray([gamma ** (n_iters - 1 - i) for i in range(n_iters)], per_iter.dtype)
    return jnp.sum(weights * per_iter) / n_iters


def _in_bounds(xy, height: int, width: int):
    """[..., 2] float pixels -> bool [...]: 0 <= x <= W−1 and 0 <= y <= H−1 (finite)."""
    x, y = xy[..., 0], xy[..., 1]
    return (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)


def _lookup(masks_flat, xy, width: int):
    """Instance id at integer pixel (x, y) per (b, s, n): masks_flat [B, S, H·W], xy int [B, S, N, 2]."""
    idx = xy[..., 1] * width + xy[..., 0]
    idx = jnp.clip(idx, 0, masks_flat.shape[-1] - 1)  # always in range here; clip for safety
    return jnp.take_along_axis(masks_flat, idx, axis=-1)


def objectness_loss(pred, trajs_g, valids, masks):
    """The paper's objectness regulariser (official ``mask_loss_parallel`` + masked L1).

    Args:
      pred: [B, S, N, 2] the FINAL prediction in pixels (frame 0 re-locked).
      trajs_g: [B, S, N, 2] ground truth in pixels.
      valids: [B, S, N] 0/1 (float) weights.
      masks: [B, S, H, W] instance ids (integer, or float ids as the official code passes them);
        H, W define the image bounds.

    Returns:
      ``(loss, aux)``: ``loss = Σ w·mean_xy|P − G| / (1e-6 + Σw)`` with
      ``w = valid·[id(P) ≠ id(G)]`` (no gradient through ``w``); 0 when nothing mismatches.
      ``aux = dict(mask_matches, matching_valids, masked_loss)`` with the first two [B, S, N].

    Mask lookup, exactly as the official code: a pair is excluded (``valids_loss = 0``) when the
    GT or the predicted point is out of bounds, tested on the floats (``x < 0 or x > W−1`` or the
    same for y; so ``x = W−1`` is in, ``W−0.5`` is out); the pixel is ``int(coord·valids_loss)``
    (truncation), so excluded points both read pixel (0, 0) and always "match". Deviation: a
    non-finite coordinate counts as out of bounds (the original's lookup is undefined there).
    """
    pred = jnp.asarray(pred)
    trajs_g = jnp.asarray(trajs_g)
    valids = jnp.nan_to_num(jnp.asarray(valids))
    masks = jnp.asarray(masks)
    height, width = masks.shape[-2:]

    p_sg = jax.lax.stop_gradient(pred)
    g_sg = jax.lax.stop_gradient(trajs_g)
    finite = jnp.all(jnp.isfinite(p_sg), -1) & jnp.all(jnp.isfinite(g_sg), -1)
    inb = _in_bounds(g_sg, height, width) & _in_bounds(p_sg, height, width) & finite
    valids_loss = jnp.where(inb, valids, 0.0).astype(p_sg.dtype)[..., None]    # [B, S, N, 1]
    xy_g = jnp.where(finite[..., None], g_sg * valids_loss, 0.0).astype(jnp.int32)  # truncation
    xy_p = jnp.where(finite[..., None], p_sg * valids_loss, 0.0).astype(jnp.int32)

    masks_flat = masks.reshape(*masks.shape[:-2], height * width)
    id_g = _lookup(masks_flat, xy_g, width)
    id_p = _lookup(masks_flat, xy_p, width)
    mask_matches = (id_g == id_p).astype(pred.dtype)
    matching_valids = jax.lax.stop_gradient((1.0 - mask_matches) * valids.astype(pred.dtype))

    dist = _l1_mean_xy(jnp.nan_to_num(pred), jnp.nan_to_num(trajs_g))               # [B, S, N]
    dist = jnp.where(matching_valids > 0, dist, 0.0)  # no 0·inf = NaN from excluded entries
    masked_loss = jnp.sum(dist * matching_valids) / (EPS + jnp.sum(matching_valids))
    aux = dict(mask_matches=mask_matches, matching_valids=matching_valids,
               masked_loss=masked_loss)
    return masked_loss, aux


def visibility_bce(logits, vis, valids):
    """Masked mean binary cross-entropy with logits (optional visibility head).

    Args:
      logits: [..., B, S, N] visibility logits (> 0 means visible); leading axes (e.g. iterates)
        broadcast against ``vis``/``valids``.
      vis: [B, S, N] 0/1 visibility targets.
      valids: [B, S, N] 0/1 weights.

    Returns:
      ``Σ valids·BCE(logits, vis) / (1e-6 + Σ valids)`` (Σ over every broadcast element).
    """
    logits = jnp.asarray(logits)
    vis = jnp.broadcast_to(jnp.asarray(vis, logits.dtype), logits.shape)
    valids = jnp.nan_to_num(jnp.asarray(valids, logits.dtype))
    # log(1+e^x) − x·z, stable form: max(x, 0) − x·z + log1p(e^−|x|)
    bce = jnp.maximum(logits, 0) - logits * vis + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    return masked_mean(bce, valids)


def total_loss(preds, pred_final, trajs_g, valids, masks=None, alpha: float = 0.5 / 3,
               gamma: float = 0.8, vis_logits=None, vis=None, vis_weight: float = 1.0):
    """``L = sequence_loss + alpha·objectness_loss [+ vis_weight·visibility_bce]``.

    Args:
      preds: [I, B, S, N, 2] iterates before the frame-0 re-lock (for the sequence loss).
      pred_final: [B, S, N, 2] final prediction, frame 0 re-locked (for the objectness loss).
      trajs_g: [B, S, N, 2]; valids: [B, S, N] (``nan_to_num`` is applied, as the official code).
      masks: [B, S, H, W] instance ids, or None to skip the objectness term.
      alpha: objectness weight; 0.5/3 ≈ 0.167 as the official code (the paper text says 0.15).
      gamma: iterate discount of the sequence loss.
      vis_logits, vis: optional visibility head logits and targets (see :func:`visibility_bce`);
        the term is added only when both are given.
      vis_weight: weight of the visibility term.

    Returns:
      ``(loss, terms)``; ``terms`` has ``loss``, ``loss_seq`` and, when computed, ``loss_obj``
      (= alpha·masked_loss), ``masked_loss``, ``mask_matches``, ``matching_valids``, ``loss_vis``.
    """
    valids = jnp.nan_to_num(jnp.asarray(valids))
    loss_seq = sequence_loss(preds, trajs_g, valids, gamma)
    loss = loss_seq
    terms = dict(loss_seq=loss_seq)
    if masks is not None:
        masked_loss, aux = objectness_loss(pred_final, trajs_g, valids, masks)
        loss_obj = alpha * masked_loss
        loss = loss + loss_obj
        terms.update(loss_obj=loss_obj, **aux)
    if vis_logits is not None and vis is not None:
        loss_vis = visibility_bce(vis_logits, vis, valids)
        loss = loss + vis_weight * loss_vis
        terms.update(loss_vis=loss_vis)
    terms["loss"] = loss
    return loss, terms
