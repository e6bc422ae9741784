"""Correlation pyramid, sampled only at the (2r+1)² window of each level (never a full volume).

Conventions (docs/conventions.md, *The model*):
- Pixel coordinates ``(x, y)`` in feature-grid units, x=0 the centre of the first column
  (``align_corners=True``). Level ``l`` is sampled at ``coords / 2**l + offset``.
- Level ``l+1`` = 2×2 average pool (stride 2, floor) of level ``l``.
- corr = <template, feature> / sqrt(C), bilinearly sampled, zero outside the map.
- Window index ``k = i*(2r+1) + j`` has x-offset ``i-r`` and y-offset ``j-r`` (x slow).

Because bilinear sampling is linear, sampling the correlation map equals correlating the
template with the bilinearly sampled features. All window offsets are integers, so the
(2r+1)² samples share one pair of fractional weights and read a (2r+2)² integer patch:
we gather that patch once, take (2r+2)² dot products per template, and blend.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def build_pyramid(fmaps: jnp.ndarray, num_levels: int) -> list[jnp.ndarray]:
    """``fmaps [..., H, W, C]`` → list of ``num_levels`` maps, each 2×2-average-pooled."""
    pyramid = [fmaps]
    for _ in range(num_levels - 1):
        f = pyramid[-1]
        h, w = f.shape[-3] // 2, f.shape[-2] // 2
        f = f[..., : 2 * h, : 2 * w, :]
        f = f.reshape(f.shape[:-3] + (h, 2, w, 2, f.shape[-1]))
        pyramid.append(jnp.mean(f, axis=(-4, -2)))
    return pyramid


def _patch_indices(c: jnp.ndarray, size: int, radius: int):
    """Integer patch origins, fractional weights and in-bounds masks along one axis."""
    c0 = jnp.floor(c)
    frac = c - c0
    idx = c0.astype(jnp.int32)[..., None] - radius + jnp.arange(2 * radius + 2, dtype=jnp.int32)
    inb = (idx >= 0) & (idx < size)
    return jnp.clip(idx, 0, size - 1), frac, inb


def window_correlation(fmap: jnp.ndarray, coords: jnp.ndarray, templates: jnp.ndarray,
                       radius: int) -> jnp.ndarray:
    """Correlation windows for one frame and one level.

    Args:
      fmap: ``[H, W, C]`` feature map of one level.
      coords: ``[N, 2]`` (x, y) at this level's resolution.
      templates: ``[K, N, C]`` K templates per point.
      radius: window radius r.
    Returns:
      ``[K, N, (2r+1)**2]`` correlations, window index ``i*(2r+1)+j`` (x-offset i-r, y-offset j-r).
    """
    h, w, c = fmap.shape
    xi, fx, xin = _patch_indices(coords[:, 0], w, radius)  # [N, P]
    yi, fy, yin = _patch_indices(coords[:, 1], h, radius)
    patch = fmap[yi[:, :, None], xi[:, None, :]]  # [N, P(y), P(x), C]
    adt = jnp.promote_types(patch.dtype, jnp.float32)
    scale = 1.0 / jnp.sqrt(jnp.asarray(c, adt))
    corr = jnp.einsum("nyxc,knc->knyx", patch, templates.astype(patch.dtype),
                      preferred_element_type=adt) * scale
    corr = corr * (yin[:, :, None] & xin[:, None, :]).astype(corr.dtype)
    fx = fx[None, :, None, None]
    fy = fy[None, :, None, None]
    top = corr[..., :-1, :-1] * (1 - fx) + corr[..., :-1, 1:] * fx
    bot = corr[..., 1:, :-1] * (1 - fx) + corr[..., 1:, 1:] * fx
    win = top * (1 - fy) + bot * fy  # [K, N, 2r+1 (y=j), 2r+1 (x=i)]
    win = jnp.swapaxes(win, -1, -2)  # [..., i, j]
    return win.reshape(win.shape[:2] + (-1,))


def pyramid_correlation(pyramid: list[jnp.ndarray], coords: jnp.ndarray, templates: jnp.ndarray,
                        radius: int) -> jnp.ndarray:
    """Correlation features of K templates against every level, for a batch of frames.

    Args:
      pyramid: list of ``[B, S, H_l, W_l, C]`` maps.
      coords: ``[B, S, N, 2]`` grid-unit (level 0) coordinates.
      templates: ``[K, B, S, N, C]``.
    Returns:
      ``[B, S, N, K * L * (2r+1)**2]``, ordered template-major, then level, then window.
    """
    outs = []
    for lvl, fmap in enumerate(pyramid):
        f = jax.vmap(jax.vmap(window_correlation, in_axes=(0, 0, 1, None)),
                     in_axes=(0, 0, 1, None))
        c = f(fmap, coords / (2.0 ** lvl), templates, radius)  # [B, S, K, N, W]
        outs.append(c)
    out = jnp.stack(outs, axis=3)  # [B, S, K, L, N, W]
    b, s, k, l, n, wn = out.shape
    out = jnp.transpose(out, (0, 1, 4, 2, 3, 5))
    return out.reshape(b, s, n, k * l * wn)


def sample_features_border(fmap: jnp.ndarray, coords: jnp.ndarray) -> jnp.ndarray:
    """Bilinear sampling of ``fmap [H, W, C]`` at ``coords [N, 2]`` with border clamping."""
    h, w, _ = fmap.shape
    x = jnp.clip(coords[:, 0], 0.0, w - 1.0)
    y = jnp.clip(coords[:, 1], 0.0, h - 1.0)
    x0 = jnp.floor(x)
    y0 = jnp.floor(y)
    fx = (x - x0)[:, None]
    fy = (y - y0)[:, None]
    x0 = x0.astype(jnp.int32)
    y0 = y0.astype(jnp.int32)
    x1 = jnp.minimum(x0 + 1, w - 1)
    y1 = jnp.minimum(y0 + 1, h - 1)
    f = fmap.astype(jnp.promote_types(fmap.dtype, jnp.float32))
    top = f[y0, x0] * (1 - fx) + f[y0, x1] * fx
    bot = f[y1, x0] * (1 - fx) + f[y1, x1] * fx
    return (top * (1 - fy) + bot * fy).astype(fmap.dtype)


def sample_features(fmaps: jnp.ndarray, coords: jnp.ndarray) -> jnp.ndarray:
    """``fmaps [B, S, H, W, C]`` sampled at ``coords [B, S, N, 2]`` → ``[B, S, N, C]``."""
    return jax.vmap(jax.vmap(sample_features_border))(fmaps, coords)
