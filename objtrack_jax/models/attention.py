"""Contextual attention: the MixAxialPOLA stack of GMFlowNet, as used by "Leveraging Object Priors
for Point Tracking" on top of the PIPs++ encoder.

Applied per frame to the stride-8, 128-channel feature map. Each of the ``depth`` blocks is a
pre-norm transformer block whose token mixer splits the channels into three groups:

* ``localAttn`` (POLA, patch-based overlapping attention), channels ``[0, C_local)``: every
  ``window_size``² query window attends to the ``(2n+1)·window_size``² patch made of itself and its
  ``n`` neighbouring windows on each side (n = ``neighbor_windows`` = 1 -> 21×21 = 441 keys), with a
  learned relative-position bias. Zero padding (window padding at the bottom/right, then
  ``n·window_size`` on every side for the neighbours) is *not* masked: padded keys/values equal the
  K/V biases, exactly as in the original.
* ``horizAttn``: multi-head attention along each image row (no positional bias, no output proj).
* ``vertiAttn``: the same along each image column.

The three results are concatenated ``[local | horizontal | vertical]``, projected (``proj``) and
added residually, followed by an MLP residual (exact-erf GELU); both residual branches use
per-image drop-path. A final LayerNorm closes the stack.

Layout: channels-last ``[Nimg, H, W, C]`` in and out (the PyTorch original is channels-first).
Parameter names mirror the PyTorch state dict (``blocks_0/localAttn/Wq/kernel`` <->
``blocks.0.localAttn.Wq.weight``), see :mod:`objtrack_jax.convert.attention`.

Intermediates (``self.sow('intermediates', ...)``, collect with ``mutable=['intermediates']``), per
block ``blocks_i``:

* ``norm1_out``  [Nimg, H, W, C]        LayerNorm1 output
* ``local_q``    [Nimg·nW, ws², C_l]    query windows (after window padding; image, window row,
  window column order; tokens row-major)
* ``local_kv``   [Nimg·nW, P², C_l]     neighbour patches fed to K/V (P = (2n+1)·ws; row-major)
* ``local_out``  [Nimg·nW, ws², C_l]    ``localAttn`` output after its ``proj``, before the merge
* ``horiz_out``  [Nimg, H, W, C_a]
* ``verti_out``  [Nimg, W, H, C_a]      (column-major, as the original before its transpose back)
* ``proj_out``   [Nimg, H, W, C]        block ``proj`` output (before the residual add)
* ``block_out``  [Nimg, H, W, C]        block output
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any


def trunc_normal_init(std: float = 0.02, lower: float = -2.0, upper: float = 2.0):
    """PyTorch ``trunc_normal_(std=std, a=lower, b=upper)``: bounds are absolute values, not stds."""

    def init(key, shape, dtype=jnp.float32):
        z = jax.random.truncated_normal(key, lower / std, upper / std, shape, jnp.float32)
        return (z * std).astype(dtype)

    return init


@functools.lru_cache(maxsize=None)
def relative_position_index(window_size: int = 7, neighbor_windows: int = 1) -> np.ndarray:
    """The POLA relative-position index, [ws², P²] int64 with P = (2n+1)·ws.

    Row ``qh·ws + qw`` (query position inside its window), column ``kh·P + kw`` (key position inside
    the neighbour patch). ``index = (qh − kh + P − 1)·(ws + P − 1) + (qw − kw + P − 1)``, i.e. the
    PyTorch ``relative_position_index`` buffer (for ws=7, n=1: ``(qh−kh+20)·27 + (qw−kw+20)``).
    """
    ws, p = window_size, (2 * neighbor_windows + 1) * window_size
    q = np.arange(ws)
    k = np.arange(p)
    dh = q[:, None, None, None] - k[None, None, :, None] + p - 1   # [qh, 1, kh, 1]
    dw = q[None, :, None, None] - k[None, None, None, :] + p - 1   # [1, qw, 1, kw]
    idx = dh * (ws + p - 1) + dw                                    # [qh, qw, kh, kw]
    idx = idx.reshape(ws * ws, p * p).astype(np.int64)
    idx.setflags(write=False)
    return idx


def num_bias_entries(window_size: int = 7, neighbor_windows: int = 1) -> int:
    """Rows of the relative-position bias table: (ws + P − 1)² (729 for ws=7, n=1)."""
    p = (2 * neighbor_windows + 1) * window_size
    return (window_size + p - 1) ** 2


def _dense(features: int, dtype: Dtype, name: str) -> nn.Dense:
    return nn.Dense(features, use_bias=True, dtype=dtype, param_dtype=jnp.float32,
                    kernel_init=trunc_normal_init(0.02), bias_init=nn.initializers.zeros,
                    name=name)


def _layer_norm(dtype: Dtype, name: str) -> nn.LayerNorm:
    # use_fast_variance=False: two-pass variance like PyTorch (E[x²]−E[x]² loses precision).
    return nn.LayerNorm(epsilon=1e-5, dtype=dtype, param_dtype=jnp.float32,
                        use_fast_variance=False, name=name)


def _multihead_attention(q, k, v, num_heads: int, bias=None):
    """Softmax attention over the second-to-last axis. q [..., Lq, C], k/v [..., Lk, C].

    Heads are contiguous channel groups (head h = channels h·d .. h·d+d−1); q is scaled by d^−½.
    ``bias`` broadcasts against the logits [..., heads, Lq, Lk]. Softmax is taken in float32.
    """
    *lead, lq, c = q.shape
    d = c // num_heads
    q = q.reshape(*lead, lq, num_heads, d) * jnp.asarray(d ** -0.5, q.dtype)
    k = k.reshape(*k.shape[:-1], num_heads, d)
    v = v.reshape(*v.shape[:-1], num_heads, d)
    logits = jnp.einsum("...qhd,...khd->...hqk", q, k).astype(jnp.float32)
    if bias is not None:
        logits = logits + bias.astype(jnp.float32)
    attn = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = jnp.einsum("...hqk,...khd->...qhd", attn, v)
    return out.reshape(*lead, lq, c)


class NeighborWindowAttention(nn.Module):
    """POLA: window queries attend to their window and its neighbours (``localAttn``).

    Input y [Nimg, H, W, C_l] (already layer-normed); output [Nimg, H, W, C_l].
    """

    num_heads: int = 4
    window_size: int = 7
    neighbor_windows: int = 1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, y):
        n, h, w, c = y.shape
        ws, nb = self.window_size, self.neighbor_windows
        k_win = 2 * nb + 1                     # neighbour windows per axis (3)
        p = k_win * ws                         # patch side (21)
        table = self.param("relative_position_bias_table", trunc_normal_init(0.02),
                           (num_bias_entries(ws, nb), self.num_heads), jnp.float32)

        # a. Pad bottom/right to multiples of the window (after LayerNorm: padded tokens are 0).
        pad_b, pad_r = (-h) % ws, (-w) % ws
        y = jnp.pad(y, ((0, 0), (0, pad_b), (0, pad_r), (0, 0)))
        hp, wp = h + pad_b, w + pad_r
        nh, nw = hp // ws, wp // ws

        # b. Query windows [Nimg·nW, ws², C] (image, window row, window column; row-major tokens).
        qwin = y.reshape(n, nh, ws, nw, ws, c).transpose(0, 1, 3, 2, 4, 5)
        qwin = qwin.reshape(n * nh * nw, ws * ws, c)

        # c. Keys/values: pad by n·ws on every side; each query window's (2n+1)² neighbour windows
        # are then gathered with static slices over window units (no per-window loop).
        pad = ((0, 0), (nb * ws, nb * ws), (nb * ws, nb * ws), (0, 0))
        kv_in = jnp.pad(y, pad)
        if self.is_mutable_collection("intermediates"):
            self.sow("intermediates", "local_q", qwin)
            self.sow("intermediates", "local_kv", _neighbour_patches(kv_in, nh, nw, ws, nb))

        # e. Project K/V once on the doubly padded map (zero tokens -> the biases, as in the
        # original, since nothing is masked), then gather: 9× fewer rows than projecting patches.
        q = _dense(c, self.dtype, "Wq")(qwin)
        k = _dense(c, self.dtype, "Wk")(kv_in)
        v = _dense(c, self.dtype, "Wv")(kv_in)
        kv = _neighbour_patches(jnp.concatenate([k, v], axis=-1), nh, nw, ws, nb)
        k, v = kv[..., :c], kv[..., c:]

        # f. Relative-position bias [heads, ws², P²] via a static (numpy) index.
        idx = relative_position_index(ws, nb)
        bias = jnp.take(table, jnp.asarray(idx.reshape(-1)), axis=0)
        bias = bias.reshape(ws * ws, p * p, self.num_heads).transpose(2, 0, 1)

        out = _multihead_attention(q, k, v, self.num_heads, bias=bias)
        out = _dense(c, self.dtype, "proj")(out)
        self.sow("intermediates", "local_out", out)

        # g. Merge windows and crop the padding.
        out = out.reshape(n, nh, nw, ws, ws, c).transpose(0, 1, 3, 2, 4, 5)
        return out.reshape(n, hp, wp, c)[:, :h, :w]


def _neighbour_patches(z, nh: int, nw: int, ws: int, nb: int):
    """Neighbour patches of a padded map z [Nimg, (nh+2nb)·ws, (nw+2nb)·ws, c].

    Returns [Nimg·nh·nw, P², c] (P = (2nb+1)·ws): patch (i, j) covers rows ws·i .. ws·i+P−1 and
    columns ws·j .. ws·j+P−1 of z, tokens row-major (kh·P + kw); this is ``F.unfold(kernel=P,
    stride=ws)`` in the original.
    """
    n, cz, k_win = z.shape[0], z.shape[-1], 2 * nb + 1
    p = k_win * ws
    z = z.reshape(n, nh + 2 * nb, ws, nw + 2 * nb, ws, cz)
    z = jnp.stack([z[:, di:di + nh] for di in range(k_win)], axis=2)
    # [n, nh, di, r, nw + 2nb, c, cz] -> [n, nh, di, r, nw, dj, c, cz]
    z = jnp.stack([z[:, :, :, :, dj:dj + nw] for dj in range(k_win)], axis=5)
    z = z.transpose(0, 1, 4, 2, 3, 5, 6, 7)  # [n, nh, nw, di, r, dj, c, cz]
    return z.reshape(n * nh * nw, p * p, cz)


class AxialAttention(nn.Module):
    """Multi-head self-attention along one spatial axis (``horizAttn`` / ``vertiAttn``).

    Input y [..., L, C]: attention over the L tokens of every sequence; separate Wq/Wk/Wv with
    biases, no positional bias, no output projection (``use_proj=False`` in the original).
    """

    num_heads: int = 2
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, y):
        c = y.shape[-1]
        q = _dense(c, self.dtype, "Wq")(y)
        k = _dense(c, self.dtype, "Wk")(y)
        v = _dense(c, self.dtype, "Wv")(y)
        return _multihead_attention(q, k, v, self.num_heads)


class Mlp(nn.Module):
    """fc1 (C -> hidden) -> exact-erf GELU -> fc2 (hidden -> C)."""

    hidden: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        x = _dense(self.hidden, self.dtype, "fc1")(x)
        x = nn.gelu(x, approximate=False)
        return _dense(c, self.dtype, "fc2")(x)


def drop_path(x, rate: float, deterministic: bool, rng=None):
    """Stochastic depth per sample (axis 0 = image): drop whole images, rescale by 1/keep."""
    if deterministic or rate == 0.0:
        return x
    keep = 1.0 - rate
    mask = jax.random.bernoulli(rng, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros((), x.dtype))


class MixAxialBlock(nn.Module):
    """One MixAxialPOLA block on x [Nimg, H, W, C] (see the module docstring)."""

    num_heads: int = 8
    axial_heads_per_axis: int = 2
    window_size: int = 7
    neighbor_windows: int = 1
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        c = x.shape[-1]
        if c % self.num_heads:
            raise ValueError(f"dim {c} is not divisible by num_heads {self.num_heads}")
        head_dim = c // self.num_heads
        local_heads = self.num_heads - 2 * self.axial_heads_per_axis
        if local_heads <= 0:
            raise ValueError(f"num_heads {self.num_heads} leaves no local heads with "
                             f"axial_heads_per_axis {self.axial_heads_per_axis}")
        c_l, c_a = local_heads * head_dim, self.axial_heads_per_axis * head_dim

        def dp(z):
            rng = None if deterministic or self.drop_path_rate == 0.0 else self.make_rng("dropout")
            return drop_path(z, self.drop_path_rate, deterministic, rng)

        shortcut = x
        y = _layer_norm(self.dtype, "norm1")(x)
        self.sow("intermediates", "norm1_out", y)
        y_local, y_horiz, y_verti = y[..., :c_l], y[..., c_l:c_l + c_a], y[..., c_l + c_a:]

        o_local = NeighborWindowAttention(local_heads, self.window_size, self.neighbor_windows,
                                          self.dtype, name="localAttn")(y_local)
        o_horiz = AxialAttention(self.axial_heads_per_axis, self.dtype, name="horizAttn")(y_horiz)
        self.sow("intermediates", "horiz_out", o_horiz)
        o_verti = AxialAttention(self.axial_heads_per_axis, self.dtype, name="vertiAttn")(
            y_verti.transpose(0, 2, 1, 3))                      # [Nimg, W, H, C_a]
        self.sow("intermediates", "verti_out", o_verti)
        o_verti = o_verti.transpose(0, 2, 1, 3)

        y = jnp.concatenate([o_local, o_horiz, o_verti], axis=-1)
        y = _dense(c, self.dtype, "proj")(y)
        self.sow("intermediates", "proj_out", y)
        x = shortcut + dp(y)

        y = _layer_norm(self.dtype, "norm2")(x)
        y = Mlp(int(c * self.mlp_ratio), self.dtype, name="mlp")(y)
        x = x + dp(y)
        self.sow("intermediates", "block_out", x)
        return x


class ContextualAttention(nn.Module):
    """The MixAxialPOLA attention stack (``fnet.1`` of the paper's model).

    Attributes:
      dim: channels C (128).
      depth: number of blocks (6).
      num_heads: heads of head_dim = dim/num_heads channels (8 -> 16 channels each).
      axial_heads_per_axis: heads given to each of the horizontal and vertical branches (2); the
        remaining ``num_heads − 2·axial_heads_per_axis`` heads (4) are local (POLA).
      window_size: POLA window (7).
      neighbor_windows: neighbour windows on each side of a query window (1 -> 3×3 windows).
      mlp_ratio: MLP hidden size / dim (4).
      drop_path_rate: stochastic-depth rate of the last block; block i uses
        ``linspace(0, rate, depth)[i]`` (block 0: none).
      dtype: compute dtype (parameters are always float32; softmax is computed in float32).

    ``__call__(x, deterministic=True)``: x [Nimg, H, W, dim] channels-last, any H, W; returns
    [Nimg, H, W, dim] after the final LayerNorm. With ``deterministic=False`` drop-path draws from
    the ``'dropout'`` rng stream.
    """

    dim: int = 128
    depth: int = 6
    num_heads: int = 8
    axial_heads_per_axis: int = 2
    window_size: int = 7
    neighbor_windows: int = 1
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.2
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        if x.ndim != 4 or x.shape[-1] != self.dim:
            raise ValueError(f"expected x [Nimg, H, W, {self.dim}] (channels-last), got {x.shape}")
        x = x.astype(self.dtype)
        rates = np.linspace(0.0, self.drop_path_rate, self.depth) if self.depth > 1 else [0.0]
        for i in range(self.depth):
            x = MixAxialBlock(self.num_heads, self.axial_heads_per_axis, self.window_size,
                              self.neighbor_windows, self.mlp_ratio, float(rates[i]), self.dtype,
                              name=f"blocks_{i}")(x, deterministic)
        return _layer_norm(self.dtype, "norm")(x)
