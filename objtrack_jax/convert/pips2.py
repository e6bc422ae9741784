"""PyTorch PIPs++ / object-prior state dict → Flax params for :class:`PIPsTracker`.

Two key layouts are recognised (``module.`` prefixes are stripped by the reader):
- ``pips2``: aharley/pips2 — encoder under ``fnet.*``.
- ``objprior``: RehgLab/tracking_objectness — encoder under ``fnet.0.*``, the contextual
  attention stack under ``fnet.1.*``.
Both have ``delta_block.*``; ``norm.*`` (an unused GroupNorm) and ``inout_classifier.*``
(unused by the official losses) are known and ignored.

Weight layouts: Conv2d ``[out, in, kh, kw]`` → HWIO, Conv1d ``[out, in, k]`` → WIO,
Linear ``[out, in]`` → ``[in, out]``.
"""

from __future__ import annotations

import os
import re
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from objtrack_jax.convert.torch_pickle import load_state_dict

IGNORED_PREFIXES = ("norm.", "inout_classifier.")


class CheckpointMismatchError(ValueError):
    """Raised when a state dict does not fit the model; the message lists every problem."""


def detect_architecture(sd: dict) -> str:
    if "fnet.0.conv1.weight" in sd:
        return "objprior"
    if "fnet.conv1.weight" in sd:
        return "pips2"
    sample = sorted(sd)[:8]
    raise CheckpointMismatchError(
        "cannot tell the architecture: expected 'fnet.conv1.weight' (PIPs++) or "
        f"'fnet.0.conv1.weight' (object-prior model); first keys are {sample}")


def attention_depth_from_keys(sd: dict) -> int:
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"fnet\.1\.blocks\.(\d+)\.", k))}
    return max(blocks) + 1 if blocks else 0


def _torch_key(path: tuple, enc_prefix: str) -> Optional[str]:
    """Flax param path → PyTorch key (None for parameters the PyTorch model lacks)."""
    top, rest = path[0], list(path[1:])
    leaf = rest[-1]
    suffix = {"kernel": "weight", "bias": "bias"}[leaf]
    mods = [m for m in rest[:-1] if m != "conv"] if top == "fnet" else rest[:-1]
    if top == "fnet":
        parts = []
        for m in mods:
            mm = re.fullmatch(r"layer(\d)_(\d)", m)
            if mm:
                parts += [f"layer{mm.group(1)}", mm.group(2)]
            elif m == "downsample":
                parts += ["downsample", "0"]
            else:
                parts.append(m)
        return enc_prefix + ".".join(parts + [suffix])
    if top == "delta_block":
        if mods and mods[0] == "vis_dense":
            return None
        parts = []
        for m in mods:
            mm = re.fullmatch(r"basicblock_list_(\d+)", m)
            parts += ["basicblock_list", mm.group(1)] if mm else [m]
        return "delta_block." + ".".join(parts + [suffix])
    raise KeyError(path)


def _to_flax(arr: np.ndarray, leaf: str) -> np.ndarray:
    if leaf == "kernel":
        if arr.ndim == 4:
            return np.transpose(arr, (2, 3, 1, 0))
        if arr.ndim == 3:
            return np.transpose(arr, (2, 1, 0))
        if arr.ndim == 2:
            return arr.T
    return arr


def params_from_state_dict(sd: dict, model, init_params: Any = None) -> dict:
    """Maps a (prefix-stripped) state dict onto ``model``'s parameter tree.

    ``init_params`` gives values for parameters the PyTorch model does not have (e.g. a
    visibility head); without it they are created by ``model.init``.
    Raises :class:`CheckpointMismatchError` listing missing, unknown and mis-shaped keys.
    """
    arch = detect_architecture(sd)
    enc_prefix = "fnet.0." if arch == "objprior" else "fnet."
    if (arch == "objprior") != bool(model.use_attention):
        raise CheckpointMismatchError(
            f"checkpoint is a '{arch}' model but the tracker has use_attention="
            f"{model.use_attention}; build the model with load_checkpoint() or set use_attention")
    shapes = abstract_params(model)
    flat = traverse_util.flatten_dict(shapes)
    out, consumed, missing, misshaped, new_params = {}, set(), [], [], []
    for path, sds in flat.items():
        if path[0] == "attention":
            continue
        key = _torch_key(path, enc_prefix)
        if key is None:
            new_params.append(path)
            continue
        if key not in sd:
            missing.append(key)
            continue
        val = _to_flax(np.asarray(sd[key], np.float32), path[-1])
        if val.shape != tuple(sds.shape):
            misshaped.append(f"{key}: got {tuple(sd[key].shape)}, expected (torch layout) "
                             f"{_torch_shape(sds.shape, path[-1])}")
        consumed.add(key)
        out[path] = val
    if model.use_attention:
        from objtrack_jax.convert.attention import attention_params_from_torch

        try:
            attn, attn_keys = attention_params_from_torch(sd, prefix="fnet.1.",
                                                          depth=model.attention_depth)
        except ValueError as e:
            raise CheckpointMismatchError(f"attention stack: {e}") from e
        consumed |= set(attn_keys)
        for p, v in traverse_util.flatten_dict(attn).items():
            out[("attention",) + tuple(p)] = np.asarray(v)
        expected_attn = {p for p in flat if p[0] == "attention"}
        if set(k for k in out if k[0] == "attention") != expected_attn:
            raise CheckpointMismatchError("attention stack converter produced a tree that does "
                                          "not match the model's attention parameters")
    unknown = sorted(k for k in sd if k not in consumed and not k.startswith(IGNORED_PREFIXES))
    if missing or unknown or misshaped:
        msg = [f"checkpoint does not match the {arch} model:"]
        if missing:
            msg.append(f"  missing keys ({len(missing)}): {missing}")
        if unknown:
            msg.append(f"  unknown keys ({len(unknown)}): {unknown}")
        if misshaped:
            msg.append(f"  mis-shaped keys ({len(misshaped)}): {misshaped}")
        raise CheckpointMismatchError("\n".join(msg))
    if new_params:
        if init_params is None:
            init_params = init_params_for(model, jax.random.PRNGKey(0))
        init_flat = traverse_util.flatten_dict(init_params)
        for p in new_params:
            out[p] = np.asarray(init_flat[p])
    return traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in out.items()})


def _torch_shape(shape, leaf):
    shape = tuple(shape)
    if leaf == "kernel":
        if len(shape) == 4:
            return (shape[3], shape[2], shape[0], shape[1])
        if len(shape) == 3:
            return (shape[2], shape[1], shape[0])
        if len(shape) == 2:
            return (shape[1], shape[0])
    return shape


def _dummy_inputs(model, n_points: int = 2):
    rgbs = jnp.zeros((1, 2, 128, 128, 3), jnp.float32)
    trajs = jnp.zeros((1, 2, n_points, 2), jnp.float32)
    return rgbs, trajs


def abstract_params(model) -> dict:
    rgbs, trajs = _dummy_inputs(model)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), rgbs, trajs, iters=1))
    return shapes["params"]


def init_params_for(model, rng) -> dict:
    rgbs, trajs = _dummy_inputs(model)
    return jax.jit(lambda r: model.init(r, rgbs, trajs, iters=1))(rng)["params"]


def load_torch_checkpoint(path: str | os.PathLike, dtype: str = "float32",
                          visibility_head: bool = False):
    """Reads a PyTorch checkpoint file/dir and returns ``(model, params, info)``.

    The architecture (PIPs++ or the object-prior model, and the attention depth) is
    detected from the keys.
    """
    from objtrack_jax.models.tracker import PIPsTracker

    sd = load_state_dict(path)
    arch = detect_architecture(sd)
    kw = {}
    if arch == "objprior":
        kw = dict(use_attention=True, attention_depth=attention_depth_from_keys(sd))
    model = PIPsTracker(dtype=jnp.dtype(dtype), visibility_head=visibility_head, **kw)
    params = params_from_state_dict(sd, model)
    n = sum(int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(params))
    return model, params, {"architecture": arch, "num_params": n, **kw}


def _from_flax(arr: np.ndarray, leaf: str) -> np.ndarray:
    if leaf == "kernel":
        if arr.ndim == 4:
            return np.transpose(arr, (3, 2, 0, 1))
        if arr.ndim == 3:
            return np.transpose(arr, (2, 1, 0))
        if arr.ndim == 2:
            return arr.T
    return arr


def state_dict_from_params(params: dict, model) -> dict[str, np.ndarray]:
    """Inverse of :func:`params_from_state_dict`: Flax params (or grads) → PyTorch keys/layout.

    Works for any pytree shaped like the params (e.g. gradients). Parameters the PyTorch
    model does not have (the visibility head) are left out.
    """
    enc_prefix = "fnet.0." if model.use_attention else "fnet."
    out = {}
    for path, val in traverse_util.flatten_dict(params).items():
        val = np.asarray(val)
        if path[0] == "attention":
            from objtrack_jax.convert.attention import torch_key as attn_key

            key = attn_key(tuple(path[1:]), prefix="fnet.1.")
            if path[-1] == "scale":
                out[key] = val
            else:
                out[key] = _from_flax(val, path[-1])
            continue
        key = _torch_key(path, enc_prefix)
        if key is not None:
            out[key] = _from_flax(val, path[-1])
    return out
