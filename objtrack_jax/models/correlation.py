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


def window_correlation(fmaps: jnp.ndarray, frame: jnp.ndarray, coords: jnp.ndarray,
                       templates: jnp.ndarray, radius: int) -> jnp.ndarray:
    """Correlation windows of P point-frames against one level.

    Args:
      fmaps: ``[F, H, W, C]`` feature maps of one level (F frames).
      frame: ``[P]`` int32 frame of each point-frame (index into ``fmaps``).
      coords: ``[P, 2]`` (x, y) at this level's resolution.
      templates: ``[K, P, C]`` K templates per point-frame.
      radius: window radius r.
    Returns:
      ``[K, P, (2r+1)**2]`` correlations, window index ``i*(2r+1)+j`` (x-offset i-r, y-offset j-r).
    """
    _, h, w, c = fmaps.shape
    xi, fx, xin = _patch_indices(coords[:, 0], w, radius)  # [P, 2r+2]
    yi, fy, yin = _patch_indices(coords[:, 1], h, radius)
    patch = fmaps[frame[:, None, None], yi[:, :, None], xi[:, None, :]]  # [P, y, x, C]
    adt = jnp.promote_types(patch.dtype, jnp.float32)
    scale = 1.0 / jnp.sqrt(jnp.asarray(c, adt))
    corr = jnp.einsum("nyxc,knc->knyx", patch, templates.astype(patch.dtype),
                      preferred_element_type=adt) * scale
    corr = corr * (yin[:, :, None] & xin[:, None, :]).astype(corr.dtype)
    fx = fx[None, :, None, None]
    fy = fy[None, :, None, None]
    top = corr[..., :-1, :-1] * (1 - fx) + corr[..., :-1, 1:] * fx
    bot = corr[..., 1:, :-1] * (1 - fx) + corr[..., 1:, 1:] * fx
    win = top * (1 - fy) + bot * fy  # [K, P, 2r+1 (y=j), 2r+1 (x=i)]
    win = jnp.swapaxes(win, -1, -2)  # [..., i, j]
    return win.reshape(win.shape[:2] + (-1,))


# Default bound on the patches gathered at once (all levels together): 64 MiB.
CORR_CHUNK_BYTES = 64 << 20


def corr_chunk_size(num_levels: int, channels: int, radius: int, itemsize: int,
                    chunk_bytes: int) -> int:
    """Point-frames per chunk so that the gathered patches of all levels fit ``chunk_bytes``."""
    per = num_levels * (2 * radius + 2) ** 2 * channels * itemsize
    return max(1, int(chunk_bytes) // per)


def level_coords(coords: jnp.ndarray, level: int, centered: bool = False) -> jnp.ndarray:
    """Level-0 grid coordinates → coordinates on pyramid level ``level``.

    PIPs++ samples level ``l`` at ``coords / 2**l``. With floor 2×2 pooling, cell ``i`` of level
    ``l`` averages level-0 cells ``i*2**l .. i*2**l + 2**l - 1``, whose centre is
    ``i*2**l + (2**l - 1)/2``: the PIPs++ mapping therefore reads each coarse level
    ``(2**l - 1)/2`` level-0 cells down-right of the point (0.5, 1.5, 3.5 cells on levels 1-3).
    ``centered=True`` maps the point onto the cell centres instead,
    ``(coords - (2**l - 1)/2) / 2**l``: a model option (``PIPsTracker.corr_centered``) that needs
    weights trained with it; off for PyTorch parity.
    """
    f = 2.0 ** level
    if centered and level:
        return (coords - (f - 1.0) / 2.0) / f
    return coords / f


def pyramid_correlation(pyramid: list[jnp.ndarray], coords: jnp.ndarray, templates: jnp.ndarray,
                        radius: int, chunk_bytes: int = CORR_CHUNK_BYTES,
                        centered: bool = False) -> jnp.ndarray:
    """Correlation features of K templates against every level, for a batch of frames.

    The ``B*S*N`` point-frames are processed in chunks (a ``lax.map``) sized so that the
    ``[chunk, L, 2r+2, 2r+2, C]`` gathered patches stay under ``chunk_bytes``; the arithmetic of
    every point-frame is the same whatever the chunking. ``chunk_bytes <= 0``: one chunk.

    Args:
      pyramid: list of ``[B, S, H_l, W_l, C]`` maps.
      coords: ``[B, S, N, 2]`` grid-unit (level 0) coordinates.
      templates: ``[K, B, S, N, C]``.
      centered: sample the coarse levels at their cell centres (:func:`level_coords`).
    Returns:
      ``[B, S, N, K * L * (2r+1)**2]``, ordered template-major, then level, then window.
    """
    b, s, n = coords.shape[:3]
    k, c = templates.shape[0], templates.shape[-1]
    num_levels = len(pyramid)
    maps = [f.reshape((b * s,) + f.shape[2:]) for f in pyramid]  # [B*S, H_l, W_l, C]
    total = b * s * n
    frame = jnp.repeat(jnp.arange(b * s, dtype=jnp.int32), n)  # [B*S*N]
    xy = coords.reshape(total, 2)
    tmpl = jnp.moveaxis(templates.reshape(k, total, c), 1, 0)  # [P, K, C]

    def corr_chunk(args):
        fr, p, t = args  # [P], [P, 2], [P, K, C]
        t = jnp.moveaxis(t, 1, 0)
        outs = [window_correlation(fm, fr, level_coords(p, lvl, centered), t, radius)
                for lvl, fm in enumerate(maps)]  # each [K, P, W]
        out = jnp.stack(outs, axis=1)  # [K, L, P, W]
        return jnp.moveaxis(out, 2, 0).reshape(fr.shape[0], -1)  # [P, K*L*W]

    chunk = total if chunk_bytes <= 0 else corr_chunk_size(
        num_levels, c, radius, jnp.dtype(pyramid[0].dtype).itemsize, chunk_bytes)
    if chunk >= total:
        out = corr_chunk((frame, xy, tmpl))
    else:
        num = -(-total // chunk)
        pad = num * chunk - total

        def split(x):
            x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
            return x.reshape((num, chunk) + x.shape[1:])

        out = jax.lax.map(corr_chunk, (split(frame), split(xy), split(tmpl)))
        out = out.reshape((num * chunk,) + out.shape[2:])[:total]
    return out.reshape(b, s, n, -1)


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
