"""Experiment configs (``objtrack train --config NAME``); they need the ``[train]`` extra."""

from objtrack_jax.extras import require_installed as _require_installed

_require_installed(("ml_collections",), "the training configs")
