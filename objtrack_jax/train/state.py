"""Training state and its sharded creation.

The state is built abstractly first (``jax.eval_shape``: shapes/dtypes only, no FLOPs, no memory),
its shardings are derived (replicated over the mesh: the model is small and trained data-parallel),
and only then materialised with ``jax.jit(init, out_shardings=...)``, so every device receives its
copy directly. The abstract state (with shardings) is also the restore target of checkpoints.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P

from objtrack_jax.models.tracker import MIN_SIZE, PIPsTracker


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training (besides the data position).

    Attributes:
      step: int32 scalar, number of optimiser steps taken.
      params: model parameters (float32, whatever the compute dtype).
      opt_state: optax state (float32).
      rng: uint32[2] base key; the key of step ``k`` is ``fold_in(rng, k)``, so it never changes.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array


def _dummy_inputs(model: PIPsTracker):
    rgbs = jnp.zeros((1, 2, MIN_SIZE, MIN_SIZE, 3), jnp.float32)
    trajs = jnp.zeros((1, 2, 2, 2), jnp.float32)
    return rgbs, trajs


def make_init_fn(model: PIPsTracker, tx):
    """``init(seed) -> TrainState``; parameter and training keys derive from ``seed``."""

    def init(seed):
        key = jax.random.PRNGKey(seed)
        k_params, k_train = jax.random.split(key)
        rgbs, trajs = _dummy_inputs(model)
        params = model.init(k_params, rgbs, trajs, iters=1)["params"]
        # float32 parameters and optimizer state, except in the float64 verification mode.
        pdt = jnp.float64 if jnp.dtype(model.dtype) == jnp.float64 else jnp.float32
        params = jax.tree.map(lambda x: x.astype(pdt), params)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                          rng=k_train)

    return init


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def abstract_train_state(model: PIPsTracker, tx, mesh, seed: int = 0) -> TrainState:
    """The state as ``jax.ShapeDtypeStruct`` leaves carrying their (replicated) shardings."""
    shapes = jax.eval_shape(make_init_fn(model, tx), seed)
    rep = replicated(mesh)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep), shapes)


def state_shardings(abstract_state) -> Any:
    """Pytree of shardings matching ``abstract_state``."""
    return jax.tree.map(lambda s: s.sharding, abstract_state)


def create_train_state(model: PIPsTracker, tx, mesh, seed: int = 0) -> TrainState:
    """Materialises a fresh state, replicated over ``mesh`` (built abstractly first)."""
    abstract = abstract_train_state(model, tx, mesh, seed)
    init = jax.jit(make_init_fn(model, tx), static_argnums=0,
                   out_shardings=state_shardings(abstract))
    return init(int(seed))


def param_count(params) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
