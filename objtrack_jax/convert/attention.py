"""PyTorch ``MixAxialPOLAUpdate`` state dict -> :class:`ContextualAttention` parameters.

Name mapping (``prefix`` = ``'fnet.1.'`` in the paper's checkpoint):

=============================================  ============================================
PyTorch key (after ``prefix``)                 flax path (inside the module's ``params``)
=============================================  ============================================
``blocks.{i}.{norm1,norm2}.weight / .bias``    ``blocks_{i}/{norm1,norm2}/scale / bias``
``blocks.{i}.localAttn.{Wq,Wk,Wv,proj}.weight``  ``blocks_{i}/localAttn/{...}/kernel`` (transposed)
``blocks.{i}.localAttn.relative_position_bias_table``  ``blocks_{i}/localAttn/relative_position_bias_table``
``blocks.{i}.{horizAttn,vertiAttn}.{Wq,Wk,Wv}.*``  ``blocks_{i}/{horizAttn,vertiAttn}/{...}/{kernel,bias}``
``blocks.{i}.proj.*``, ``blocks.{i}.mlp.{fc1,fc2}.*``  ``blocks_{i}/proj/*``, ``blocks_{i}/mlp/{fc1,fc2}/*``
``norm.weight / .bias``                        ``norm/scale / bias``
=============================================  ============================================

Linear weights are stored ``[out, in]`` and become flax kernels ``[in, out]``. The int64
``blocks.{i}.localAttn.relative_position_index`` buffers are not parameters: they are checked
against :func:`objtrack_jax.models.attention.relative_position_index` and reported as consumed.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import jax
import numpy as np

from objtrack_jax.models.attention import ContextualAttention, relative_position_index


def _expected_shapes(module: ContextualAttention) -> dict:
    x = jax.ShapeDtypeStruct((1, module.window_size, module.window_size, module.dim), np.float32)
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)["params"]
    return jax.tree.map(lambda s: tuple(s.shape), shapes)


def _flatten(tree: Mapping, path=()) -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, path + (k,)))
        else:
            out[path + (k,)] = v
    return out


def _unflatten(flat: Mapping) -> dict:
    tree: dict = {}
    for path, v in flat.items():
        node = tree
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = v
    return tree


def torch_key(path: tuple, prefix: str = "fnet.1.") -> str:
    """The PyTorch state-dict key of a flax parameter path of :class:`ContextualAttention`."""
    parts = []
    for p in path[:-1]:
        m = re.fullmatch(r"blocks_(\d+)", p)
        parts.append(f"blocks.{m.group(1)}" if m else p)
    leaf = path[-1]
    parts.append({"kernel": "weight", "scale": "weight"}.get(leaf, leaf))
    return prefix + ".".join(parts)


def infer_depth(sd: Mapping[str, Any], prefix: str = "fnet.1.") -> int:
    pat = re.compile(re.escape(prefix) + r"blocks\.(\d+)\.")
    idx = {int(m.group(1)) for k in sd for m in [pat.match(k)] if m}
    if not idx:
        raise ValueError(f"no attention-stack keys '{prefix}blocks.<i>.*' in the state dict")
    return max(idx) + 1


def attention_params_from_torch(sd: Mapping[str, Any], prefix: str = "fnet.1.",
                                depth: int | None = None, **module_kwargs
                                ) -> tuple[dict, set[str]]:
    """Maps a PyTorch ``MixAxialPOLAUpdate`` state dict into ContextualAttention params.

    Args:
      sd: state dict (key -> numpy array), ``module.`` prefix already stripped.
      prefix: prefix of the attention stack's keys (``'fnet.1.'``; ``''`` for a bare stack).
      depth: number of blocks; inferred from the ``blocks.<i>.`` keys when None.
      **module_kwargs: other :class:`ContextualAttention` fields (dim, num_heads, ...) if they differ
        from the paper's defaults.

    Returns:
      ``(params, consumed)``: ``params`` is the module's parameter tree (what goes under
      ``{'params': ...}`` for a standalone ContextualAttention), float32 numpy arrays;
      ``consumed`` is the set of state-dict keys used (parameters and index buffers).

    Raises:
      ValueError: listing every missing key and every mis-shaped key (name, got, expected), or
        when a ``relative_position_index`` buffer differs from the index the module computes.
    """
    if depth is None:
        depth = infer_depth(sd, prefix)
    module = ContextualAttention(depth=depth, **module_kwargs)
    expected = _flatten(_expected_shapes(module))

    flat, consumed, missing, misshaped = {}, set(), [], []
    for path, shape in expected.items():
        key = torch_key(path, prefix)
        if key not in sd:
            missing.append(key)
            continue
        arr = np.asarray(sd[key])
        if path[-1] == "kernel" and arr.ndim == 2:
            arr = arr.T
        if tuple(arr.shape) != shape:
            torch_shape = shape[::-1] if path[-1] == "kernel" else shape
            misshaped.append(f"{key}: got {tuple(np.asarray(sd[key]).shape)}, "
                             f"expected {torch_shape}")
            continue
        flat[path] = np.ascontiguousarray(arr, dtype=np.float32)
        consumed.add(key)

    want_index = relative_position_index(module.window_size, module.neighbor_windows)
    bad_index = []
    for i in range(depth):
        key = f"{prefix}blocks.{i}.localAttn.relative_position_index"
        if key not in sd:
            continue  # a buffer, not a parameter: optional (e.g. persistent=False exports)
        got = np.asarray(sd[key])
        if got.shape != want_index.shape or not np.array_equal(got, want_index):
            where = (f"{int(np.sum(got != want_index))} of {want_index.size} entries differ"
                     if got.shape == want_index.shape else
                     f"shape {tuple(got.shape)}, expected {want_index.shape}")
            bad_index.append(f"{key}: {where}")
            continue
        consumed.add(key)

    problems = []
    if missing:
        problems.append("missing keys:\n  " + "\n  ".join(missing))
    if misshaped:
        problems.append("mis-shaped keys:\n  " + "\n  ".join(misshaped))
    if bad_index:
        problems.append("relative_position_index buffers that do not match the module's index "
                        "(a different window/patch layout or orientation):\n  "
                        + "\n  ".join(bad_index))
    if problems:
        raise ValueError(f"cannot convert the attention stack (prefix '{prefix}', depth {depth}):\n"
                         + "\n".join(problems))
    return _unflatten(flat), consumed
