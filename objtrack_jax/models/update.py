"""Motion embedding and the PIPs++ update network (a 1D ResNet over time, per point)."""

from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from objtrack_jax.models.layers import Dtype, TorchConv, acc_dtype, instance_norm

UPDATE_CHANNELS = (128, 128, 256, 256, 512, 512, 1024, 1024)


def sincos_motion_embedding(flow: jnp.ndarray, dim: int) -> jnp.ndarray:
    """Sin-cos embedding of 2D motion ``[..., 2]`` → ``[..., dim + 2]``.

    ``K = dim // 4`` frequencies ``w_k = 1 / 10000**(k / (K - 1))``; output order
    ``[sin(x w), cos(x w), sin(y w), cos(y w), x, y]``.
    """
    k = dim // 4
    freqs = jnp.asarray(1.0 / (10000.0 ** (np.arange(k, dtype=np.float64) / (k - 1))),
                        jnp.promote_types(flow.dtype, jnp.float32))
    fx = flow[..., 0:1] * freqs
    fy = flow[..., 1:2] * freqs
    return jnp.concatenate([jnp.sin(fx), jnp.cos(fx), jnp.sin(fy), jnp.cos(fy), flow], axis=-1)


def motion_features(coords: jnp.ndarray, dim: int,
                    num_valid: Optional[jnp.ndarray] = None) -> jnp.ndarray:
    """``coords [B, S, N, 2]`` → embedded forward flow ``[B, S, N, dim + 2]`` (last step repeated).

    ``num_valid`` (traced int32, a scalar or ``[B]``): only the first ``num_valid`` frames are
    real (a window padded in time); the last real frame repeats the step before it, as an
    unpadded window's."""
    flow = coords[:, 1:] - coords[:, :-1]
    flow = jnp.concatenate([flow, flow[:, -1:]], axis=1)
    if num_valid is not None:
        nv = jnp.reshape(jnp.asarray(num_valid), (-1, 1))  # [B or 1, 1]
        last = (jnp.arange(coords.shape[1])[None, :] == nv - 1)[:, :, None, None]
        flow = jnp.where(last, jnp.concatenate([flow[:, :1], flow[:, :-1]], axis=1), flow)
    return sincos_motion_embedding(flow, dim)


def _time_norm(x, mask=None):
    return instance_norm(x, axes=(1,), mask=mask)


def _masked(x, mask):
    """Zeroes the padded frames before a convolution over time, so that a padded window's real
    frames see the zeros of an unpadded window's border."""
    return x if mask is None else x * mask.astype(x.dtype)


class ResBlock1D(nn.Module):
    """[IN→ReLU (skipped for block 0)] → conv → IN → ReLU → conv, + channel-padded shortcut."""

    features: int
    first: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, mask=None):
        y = x if self.first else nn.relu(_time_norm(x, mask))
        y = TorchConv(self.features, (3,), 1, self.dtype, name="conv1")(_masked(y, mask))
        y = nn.relu(_time_norm(y, mask))
        y = TorchConv(self.features, (3,), 1, self.dtype, name="conv2")(_masked(y, mask))
        cin = x.shape[-1]
        if cin != self.features:
            before = (self.features - cin) // 2
            x = jnp.pad(x, [(0, 0), (0, 0), (before, self.features - cin - before)])
        return y + x


class DeltaBlock(nn.Module):
    """``[M, S, in]`` per-point time series → ``([M, S, 2], vis)``.

    The first output is the coordinate update (grid units). ``vis`` is ``[M, S]`` visibility
    logits when ``visibility_head`` is set (a Dense on the last block's features), else None.
    ``mask`` ``[1 or rows, S, 1]`` (1 = real frame): a window padded in time; the real frames'
    outputs equal the unpadded window's (every norm over real frames only, zeros at every convolution's
    padded input), the padded frames' are to be dropped.
    """

    hidden: int = 128
    channels: Sequence[int] = UPDATE_CHANNELS
    dtype: Dtype = jnp.float32
    visibility_head: bool = False

    @nn.compact
    def __call__(self, x, mask=None):
        x = TorchConv(self.hidden, (3,), 1, self.dtype, name="first_block_conv")(
            _masked(x.astype(self.dtype), mask))
        x = nn.relu(x)
        for i, ch in enumerate(self.channels):
            x = ResBlock1D(ch, first=(i == 0), dtype=self.dtype, name=f"basicblock_list_{i}")(x, mask)
        x = nn.relu(x)
        bound = 1.0 / np.sqrt(x.shape[-1])
        init = nn.initializers.uniform(2 * bound)
        fdt = acc_dtype(self.dtype)
        dense = nn.Dense(2, dtype=fdt, param_dtype=jnp.float32,
                         kernel_init=lambda k, s, d=jnp.float32: init(k, s, d) - bound,
                         bias_init=lambda k, s, d=jnp.float32: init(k, s, d) - bound,
                         name="dense")
        x = x.astype(fdt)
        vis = None
        if self.visibility_head:
            vis = nn.Dense(1, dtype=fdt, name="vis_dense")(x)[..., 0]
        return dense(x), vis
