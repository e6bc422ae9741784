"""Training (the ``[train]`` extra): state, optimiser, train step, loop, checkpoints."""

from objtrack_jax.extras import require_installed as _require_installed

_require_installed(("ml_collections", "optax", "orbax.checkpoint", "tensorflow"), "training")
