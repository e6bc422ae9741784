"""Motion embedding and the PIPs++ update network (a 1D ResNet over time, per point)."""

from __future__ import annotations

from typing import Sequence

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


def motion_features(coords: jnp.ndarray, dim: int) -> jnp.ndarray:
    """``coords [B, S, N, 2]`` → embedded forward flow ``[B, S, N, dim + 2]`` (last step repeated)."""
    flow = coords[:, 1:] - coords[:, :-1]
    flow = jnp.concatenate([flow, flow[:, -1:]], axis=1)
    return sincos_motion_embedding(flow, dim)


def _time_norm(x):
    return instance_norm(x, axes=(1,))


class ResBlock1D(nn.Module):
    """[IN→ReLU (skipped for block 0)] → conv → IN → ReLU → conv, + channel-padded shortcut."""

    features: int
    first: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        y = x if self.first else nn.relu(_time_norm(x))
        y = TorchConv(self.features, (3,), 1, self.dtype, name="conv1")(y)
        y = nn.relu(_time_norm(y))
        y = TorchConv(self.features, (3,), 1, self.dtype, name="conv2")(y)
        cin = x.shape[-1]
        if cin != self.features:
            before = (self.features - cin) // 2
            x = jnp.pad(x, [(0, 0), (0, 0), (before, self.features - cin - before)])
        return y + x


class DeltaBlock(nn.Module):
    """``[M, S, in]`` per-point time series → ``([M, S, 2], vis)``.

    The first output is the coordinate update (grid units). ``vis`` is ``[M, S]`` visibility
    logits when ``visibility_head`` is set (a Dense on the last block's features), else None.
    """

    hidden: int = 128
    channels: Sequence[int] = UPDATE_CHANNELS
    dtype: Dtype = jnp.float32
    visibility_head: bool = False

    @nn.compact
    def __call__(self, x):
        x = TorchConv(self.hidden, (3,), 1, self.dtype, name="first_block_conv")(x.astype(self.dtype))
        x = nn.relu(x)
        for i, ch in enumerate(self.channels):
            x = ResBlock1D(ch, first=(i == 0), dtype=self.dtype, name=f"basicblock_list_{i}")(x)
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
