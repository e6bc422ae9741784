"""The PIPs++ tracker (optionally with the paper's contextual attention) as a Flax module.

Shapes and conventions (used throughout the library):
- ``rgbs``: ``[B, S, H, W, 3]`` float, values in [0, 255] (channels-last).
- tracks: ``[B, S, N, 2]`` (x, y) in input pixels, time-major like the PyTorch original
  (the TAP-Vid helpers use tapnet's ``[b, n, t, 2]``). x=0 is the centre of column 0.
- ``trajs_e0``: initial estimate ``[B, S, N, 2]``; frame 0 holds the query positions and is
  kept fixed ("locked") in the output.
- Internally coordinates are divided by the stride (8): feature-grid units.

Iterative refinement is a ``lax.scan`` (via ``nn.scan``) over iterations; each iteration
starts from ``stop_gradient(coords)``, so only the coordinates are cut from the gradient.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from objtrack_jax.models.correlation import build_pyramid, pyramid_correlation, sample_features
from objtrack_jax.models.encoder import ENCODER_DIMS, BasicEncoder
from objtrack_jax.models.layers import Dtype, acc_dtype
from objtrack_jax.models.update import UPDATE_CHANNELS, DeltaBlock, motion_features


class TrackerOutput(NamedTuple):
    """Result of one window.

    Attributes:
      tracks: ``[B, S, N, 2]`` final estimate in pixels, frame 0 re-locked to the query.
      iterates: ``[I, B, S, N, 2]`` pixels after each iteration, recorded *before* the
        frame-0 re-lock (these feed the sequence loss).
      feats: ``(feats1, feats2, feats4)``, each ``[B, S, N, C]``: the templates used in the
        last iteration, to carry into the next window of a long video.
      vis_logits: ``[B, S, N]`` visibility logits of the last iteration (visibility head),
        or ``None`` when the model has no visibility head.
    """

    tracks: jnp.ndarray
    iterates: jnp.ndarray
    feats: tuple
    vis_logits: Optional[jnp.ndarray] = None


MIN_SIZE = 128


def check_inputs(rgbs_shape, trajs_shape, stride: int = 8):
    """Raises ``ValueError`` for shapes the tracker cannot handle (never returns NaN)."""
    if len(rgbs_shape) != 5 or rgbs_shape[-1] != 3:
        raise ValueError(f"rgbs must be [B, S, H, W, 3] (channels-last RGB), got shape {tuple(rgbs_shape)}")
    b, s, h, w, _ = rgbs_shape
    if h % stride or w % stride:
        raise ValueError(f"frame size {h}x{w} (HxW) is not a multiple of the stride {stride}; "
                         "resize or pad the video first")
    if h < MIN_SIZE or w < MIN_SIZE:
        raise ValueError(f"frame size {h}x{w} (HxW) is below the minimum {MIN_SIZE}x{MIN_SIZE}: "
                         "with 4 pyramid levels the coarsest map would be under 2 px")
    if len(trajs_shape) != 4 or trajs_shape[-1] != 2:
        raise ValueError(f"trajs_e0 must be [B, S, N, 2] (x, y), got shape {tuple(trajs_shape)}")
    if trajs_shape[0] != b or trajs_shape[1] != s:
        raise ValueError(f"trajs_e0 shape {tuple(trajs_shape)} does not match rgbs shape "
                         f"{tuple(rgbs_shape)} in batch/frames")
    if s < 2:
        raise ValueError(f"need at least 2 frames per window, got S={s}")


def points_per_chunk(num_points: int, rows_per_point: int, width: int, itemsize: int,
                     chunk_bytes: int) -> int:
    """Points refined at once so that the update network's activations, about 12 live
    ``[rows, S, width]`` arrays (XLA:CPU buffer assignment), plus the ``[.., S, 718]`` input fit
    ``chunk_bytes``; a power of two, or all points. ``rows_per_point`` is ``B*S``."""
    if chunk_bytes <= 0:
        return num_points
    per_point = rows_per_point * (12 * width + 3 * 718) * itemsize
    fit = max(1, int(chunk_bytes) // per_point)
    return num_points if fit >= num_points else 1 << (fit.bit_length() - 1)


def _map_point_chunks(fn, module: nn.Module, args: tuple, axes: tuple, n: int, size: int):
    """``fn(module, *args)`` over chunks of ``size`` points (a rolled ``nn.scan``, one chunk's
    activations live at a time). ``args[i]`` has its point axis (length ``n``) at ``axes[i]``;
    ``fn`` returns ``(delta [B, S, n, 2], vis [B, S, n])``. Points must be independent."""
    num = -(-n // size)
    pad = num * size - n

    def split(x, ax):
        if pad:  # pad with copies of point 0 (finite, discarded below)
            first = jax.lax.slice_in_dim(x, 0, 1, axis=ax)
            x = jnp.concatenate([x, jnp.repeat(first, pad, axis=ax)], axis=ax)
        x = x.reshape(x.shape[:ax] + (num, size) + x.shape[ax + 1:])
        return jnp.moveaxis(x, ax, 0)

    xs = tuple(split(x, ax) for x, ax in zip(args, axes))

    def body(mdl, carry, xi):
        return carry, fn(mdl, *xi)

    scan = nn.scan(body, variable_broadcast="params", split_rngs={"params": False},
                   in_axes=0, out_axes=0)
    _, (delta, vis) = scan(module, None, xs)  # [G, B, S, size, ...]

    def merge(o):
        o = jnp.moveaxis(o, 0, 2)  # [B, S, G, size, ...]
        return o.reshape(o.shape[:2] + (num * size,) + o.shape[4:])[:, :, :n]

    return merge(delta), merge(vis)


class PIPsTracker(nn.Module):
    """PIPs++ with the optional contextual-attention stack and visibility head.

    Params tree: ``fnet`` (encoder), ``attention`` (when ``use_attention``), ``delta_block``.
    """

    stride: int = 8
    latent_dim: int = 128
    corr_levels: int = 4
    corr_radius: int = 3
    use_attention: bool = False
    attention_depth: int = 6
    attention_heads: int = 8
    attention_window: int = 7
    drop_path_rate: float = 0.2
    visibility_head: bool = False
    dtype: Dtype = jnp.float32
    # Widths (PIPs++ defaults); the shipped CPU-trained model uses smaller ones.
    encoder_dims: tuple = ENCODER_DIMS
    update_channels: tuple = UPDATE_CHANNELS
    unroll_iters: bool = True  # unroll the refinement scan (see refine)
    # Encode at most this many frames at once (0: all). An inference setting: it bounds the
    # encoder's activation memory on long windows; under jax.grad use 0 (XLA:CPU runs conv
    # gradients slowly inside loops, see refine).
    encode_chunk: int = 0
    # Working-set bound (MiB) of the refinement: the correlation's gathered 8x8 patches (all levels)
    # and the update network's activations are each computed in point chunks (rolled loops) that
    # fit it, so memory does not grow with N*S. Same arithmetic per point. 0: everything at once.
    # An inference setting like encode_chunk (objtrack_jax.memory.inference_model sets both).
    chunk_mb: int = 0
    # Sample the coarse correlation levels at their cell centres (correlation.level_coords)
    # instead of PIPs++'s coords / 2**l, which reads level l (2**l - 1)/2 cells down-right of the
    # point. A trained-in option: False reproduces PIPs++ (and every converted checkpoint).
    corr_centered: bool = False

    def setup(self):
        self.fnet = BasicEncoder(out_dim=self.latent_dim, stride=self.stride, dtype=self.dtype,
                                 dims=tuple(self.encoder_dims))
        if self.use_attention:
            from objtrack_jax.models.attention import ContextualAttention

            self.attention = ContextualAttention(
                dim=self.latent_dim, depth=self.attention_depth, num_heads=self.attention_heads,
                window_size=self.attention_window, drop_path_rate=self.drop_path_rate,
                dtype=self.dtype)
        self.delta_block = DeltaBlock(hidden=self.latent_dim, channels=tuple(self.update_channels),
                                      dtype=self.dtype, visibility_head=self.visibility_head)

    def encode(self, rgbs: jnp.ndarray, deterministic: bool = True) -> jnp.ndarray:
        """``[B, S, H, W, 3]`` in [0, 255] → feature maps ``[B, S, H/8, W/8, C]``."""
        b, s, h, w, _ = rgbs.shape
        x = 2.0 * (rgbs.astype(acc_dtype(self.dtype)) / 255.0) - 1.0
        x = x.reshape(b * s, h, w, 3)
        chunk = int(self.encode_chunk)
        if chunk <= 0 or b * s <= chunk:
            f = self._encode_frames(x, deterministic)
        else:
            # Inference memory saver: frames in chunks through a (rolled) scan, so only one chunk's
            # activations are live. Same results up to float32 rounding (every norm is per frame).
            pad = (-(b * s)) % chunk
            xs = jnp.pad(x, ((0, pad), (0, 0), (0, 0), (0, 0))).reshape((-1, chunk, h, w, 3))

            def body(mdl, carry, xi):
                return carry, mdl._encode_frames(xi, deterministic)

            scan = nn.scan(body, variable_broadcast="params",
                           split_rngs={"params": False, "dropout": True}, in_axes=0, out_axes=0)
            _, f = scan(self, None, xs)
            f = f.reshape((-1,) + f.shape[2:])[:b * s]
        return f.reshape((b, s) + f.shape[1:])

    def _encode_frames(self, x, deterministic: bool):
        f = self.fnet(x)
        if self.use_attention:
            f = self.attention(f, deterministic=deterministic)
        return f

    def refine(self, fmaps: jnp.ndarray, trajs_e0: jnp.ndarray, iters: int,
               feat_init: Optional[tuple] = None,
               num_valid: Optional[jnp.ndarray] = None) -> TrackerOutput:
        """Iterative refinement on precomputed ``fmaps`` (see :meth:`encode`).

        ``num_valid`` (int32, a scalar or one per batch element ``[B]``, may be traced): the
        window holds only ``num_valid`` real frames, then padding (any frames). The real frames'
        outputs equal those of the unpadded window up to float rounding (the update net's norms and convolutions are masked, the
        motion's last step repeated at the last real frame; correlation and templates are per
        frame and causal), so windows shorter than ``S`` share one compiled program
        (docs/conventions.md, *Long videos*)."""
        b, s, hf, wf, c = fmaps.shape
        stride = float(self.stride)
        fdt = acc_dtype(self.dtype)
        coords0 = trajs_e0.astype(fdt) / stride
        query0 = coords0[:, 0]
        pyramid = build_pyramid(fmaps, self.corr_levels)
        if feat_init is None:
            f1 = sample_features(fmaps[:, :1], coords0[:, :1])  # [B, 1, N, C]
            feats1 = jnp.broadcast_to(f1, (b, s) + f1.shape[2:])
            feats2_0 = feats4_0 = feats1
        else:
            feats1, feats2_0, feats4_0 = (jnp.asarray(f, fmaps.dtype) for f in feat_init)
        t = np.arange(s)
        if num_valid is not None:
            num_valid = jnp.broadcast_to(jnp.reshape(jnp.asarray(num_valid, jnp.int32), (-1,)),
                                         (b,))
        valid = None if num_valid is None else jnp.arange(s)[None, :] < num_valid[:, None]  # [B, S]
        idx2 = np.maximum(t - 2, 0)
        idx4 = np.maximum(t - 4, 0)
        radius = self.corr_radius
        latent = self.latent_dim
        chunk_bytes = int(self.chunk_mb) << 20
        n = trajs_e0.shape[2]
        size = points_per_chunk(n, b * s, max(self.update_channels), jnp.dtype(self.dtype).itemsize,
                                chunk_bytes)

        def point_step(delta_block, pyr, coords, templates):
            """Update of ``coords [B, S, n, 2]`` from ``templates [3, B, S, n, C]``."""
            nc = coords.shape[2]
            corr = pyramid_correlation(pyr, coords, templates, radius, chunk_bytes,
                                       centered=self.corr_centered)
            motion = motion_features(coords, latent, num_valid)
            x = jnp.concatenate([corr.astype(fdt), motion.astype(fdt)], axis=-1)  # [B, S, n, 718]
            x = jnp.transpose(x, (0, 2, 1, 3)).reshape(b * nc, s, x.shape[-1])
            mask = None if valid is None else jnp.repeat(valid, nc, axis=0)[:, :, None]
            delta, vis = delta_block(x, mask)
            delta = jnp.transpose(delta.reshape(b, nc, s, 2), (0, 2, 1, 3))
            vis = jnp.transpose(vis.reshape(b, nc, s), (0, 2, 1)) if vis is not None else \
                jnp.zeros((b, s, nc), fdt)
            return delta, vis

        def body(delta_block, carry, itr, bc):
            coords, _, _, _ = carry
            pyr, fm, f1, f2_0, f4_0, q0 = bc
            coords = jax.lax.stop_gradient(coords)
            sampled = sample_features(fm, coords)
            first = itr == 0
            f2 = jnp.where(first, f2_0, sampled[:, idx2])
            f4 = jnp.where(first, f4_0, sampled[:, idx4])
            templates = jnp.stack([f1, f2, f4])
            if size >= n:
                delta, vis = point_step(delta_block, pyr, coords, templates)
            else:
                delta, vis = _map_point_chunks(
                    lambda mdl, cc, tc: point_step(mdl, pyr, cc, tc), delta_block,
                    (coords, templates), (2, 3), n, size)
            coords = coords + delta
            pred = coords * stride
            coords = coords.at[:, 0].set(q0)
            return (coords, f2, f4, vis), pred

        # Fully unrolled: XLA:CPU runs the update net's convolution gradients ~70x slower inside a
        # while loop than unrolled (measured: 3.8 s vs 0.05 s per iteration for the reduced model),
        # and unrolling costs only compile time.
        scan = nn.scan(body, variable_broadcast="params", split_rngs={"params": False},
                       in_axes=(0, nn.broadcast), out_axes=0,
                       unroll=True if self.unroll_iters else 1)
        carry0 = (coords0, feats2_0, feats4_0, jnp.zeros((b, s, n), fdt))
        consts = (pyramid, fmaps, feats1, feats2_0, feats4_0, query0)
        if iters == 1 and self.unroll_iters:  # a length-1 scan still lowers to a while loop
            (coords, f2, f4, vis), pred = body(self.delta_block, carry0, jnp.asarray(0), consts)
            preds = pred[None]
        else:
            (coords, f2, f4, vis), preds = scan(self.delta_block, carry0, jnp.arange(iters), consts)
        return TrackerOutput(tracks=coords * stride, iterates=preds, feats=(feats1, f2, f4),
                             vis_logits=vis if self.visibility_head else None)

    def __call__(self, rgbs: jnp.ndarray, trajs_e0: jnp.ndarray, iters: int = 4,
                 feat_init: Optional[tuple] = None, deterministic: bool = True) -> TrackerOutput:
        check_inputs(rgbs.shape, trajs_e0.shape, self.stride)
        fmaps = self.encode(rgbs, deterministic=deterministic)
        return self.refine(fmaps, trajs_e0, iters, feat_init)


# The model's hyperparameters are the dataclass fields of PIPsTracker, and only those: exported
# weights (model_io.save_inference_checkpoint), loaded checkpoints and the training configs
# (configs/common.py) all go through the two functions below, so a new field cannot be dropped.
_MODULE_FIELDS = ("parent", "name")  # flax.linen bookkeeping, not hyperparameters
_DTYPES = ("float32", "bfloat16", "float64")


def tracker_fields() -> tuple[str, ...]:
    """Names of the :class:`PIPsTracker` hyperparameters (its dataclass fields), in order."""
    return tuple(f.name for f in dataclasses.fields(PIPsTracker) if f.name not in _MODULE_FIELDS)


def _plain(value):
    """A JSON-friendly copy of a field value: tuples of ints as lists, dtypes by name."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    return np.dtype(value).name


def tracker_config(model: Optional[PIPsTracker] = None) -> dict:
    """Every hyperparameter of ``model`` (default: a default ``PIPsTracker``) as a JSON-friendly
    dict (``dtype`` by name, widths as lists); :func:`tracker_from_config` inverts it."""
    model = PIPsTracker() if model is None else model
    return {k: _plain(getattr(model, k)) for k in tracker_fields()}


def tracker_from_config(cfg: Any) -> PIPsTracker:
    """Builds a :class:`PIPsTracker` from a ``model`` ConfigDict or dict (missing keys: the class
    defaults; unknown keys: ``ValueError`` naming them)."""
    cfg = dict(cfg.items()) if hasattr(cfg, "items") else dict(vars(cfg))
    fields = tracker_fields()
    unknown = sorted(set(cfg) - set(fields))
    if unknown:
        raise ValueError(f"unknown model setting(s) {unknown}; PIPsTracker has {list(fields)}")
    dtype = cfg.get("dtype", "float32")
    dtype = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    if dtype not in _DTYPES:
        raise ValueError(f"model.dtype must be 'float32', 'bfloat16' or 'float64', got {dtype!r}")
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("model.dtype='float64' needs 64-bit JAX: set JAX_ENABLE_X64=1 (or "
                         "jax.config.update('jax_enable_x64', True) before creating arrays)")
    kwargs = {}
    for f in dataclasses.fields(PIPsTracker):
        if f.name not in cfg or f.name in _MODULE_FIELDS:
            continue
        value = cfg[f.name]
        if f.name == "dtype":
            value = jnp.dtype(dtype)
        elif isinstance(f.default, tuple):  # widths: None means the default
            value = f.default if value is None else tuple(int(d) for d in value)
        kwargs[f.name] = value
    return PIPsTracker(**kwargs)
