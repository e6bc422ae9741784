"""The PIPs++ per-frame feature encoder (``BasicEncoder``, stride 8, 128 channels).

conv7x7/2 → IN → ReLU → four stages of two residual blocks (64/1, 96/2, 128/2, 128/2);
the four stage outputs are resized (bilinear, align_corners=True) to H/8×W/8, concatenated
[H/2, H/4, H/8, H/16] (416 ch) → conv3x3 (256) → IN → ReLU → conv1x1 (128).
InstanceNorms have eps 1e-5 and no affine parameters.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from objtrack_jax.models.layers import Dtype, TorchConv, instance_norm, resize_bilinear_align_corners

_SPATIAL = (1, 2)
ENCODER_DIMS = (64, 96, 128, 128)


class ResidualBlock(nn.Module):
    """conv3x3(s)→IN→ReLU→conv3x3→IN→ReLU; shortcut 1x1 conv(s)+IN when s≠1."""

    features: int
    strides: int = 1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        y = TorchConv(self.features, (3, 3), self.strides, self.dtype, name="conv1")(x)
        y = nn.relu(instance_norm(y, _SPATIAL))
        y = TorchConv(self.features, (3, 3), 1, self.dtype, name="conv2")(y)
        y = nn.relu(instance_norm(y, _SPATIAL))
        if self.strides != 1:
            x = TorchConv(self.features, (1, 1), self.strides, self.dtype, name="downsample")(x)
            x = instance_norm(x, _SPATIAL)
        return nn.relu(x + y)


class BasicEncoder(nn.Module):
    """Maps normalised frames ``[N, H, W, 3]`` in [-1, 1] to ``[N, H/8, W/8, out_dim]``."""

    out_dim: int = 128
    stride: int = 8
    dtype: Dtype = jnp.float32
    # Widths of the stem and the four stages (PIPs++: 64/96/128/128). Smaller widths give the
    # reduced CPU-trainable model of the shipped weights; parameter names do not change.
    dims: Sequence[int] = ENCODER_DIMS

    @nn.compact
    def __call__(self, x):
        n, h, w, _ = x.shape
        x = x.astype(self.dtype)
        dims = tuple(self.dims)
        if len(dims) != 4:
            raise ValueError(f"encoder dims must list the 4 stage widths, got {dims}")
        x = TorchConv(dims[0], (7, 7), 2, self.dtype, name="conv1")(x)
        x = nn.relu(instance_norm(x, _SPATIAL))
        outs = []
        for i, (feat, stride) in enumerate(zip(dims, (1, 2, 2, 2))):
            x = ResidualBlock(feat, stride, self.dtype, name=f"layer{i + 1}_0")(x)
            x = ResidualBlock(feat, 1, self.dtype, name=f"layer{i + 1}_1")(x)
            outs.append(x)
        out_hw = (h // self.stride, w // self.stride)
        x = jnp.concatenate([resize_bilinear_align_corners(o, out_hw) for o in outs], axis=-1)
        x = TorchConv(self.out_dim * 2, (3, 3), 1, self.dtype, name="conv2")(x)
        x = nn.relu(instance_norm(x, _SPATIAL))
        x = TorchConv(self.out_dim, (1, 1), 1, self.dtype, name="conv3")(x)
        return x
