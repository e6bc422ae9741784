"""The weights shipped inside the package (trained by this project on its synthetic data).

``objtrack_jax/weights/<name>/`` holds ``params.msgpack`` + ``config.json`` (the inference format of
:func:`objtrack_jax.evaluation.save_inference_checkpoint`); ``config.json`` also records how the
weights were trained (``info``: config, steps, data, wall time, held-out metrics).

    import objtrack_jax
    model, params, info = objtrack_jax.load_pretrained()
"""

from __future__ import annotations

import os

DEFAULT = "objprior_synth"
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")


def available() -> list[str]:
    """Names of the shipped weight sets."""
    if not os.path.isdir(WEIGHTS_DIR):
        return []
    return sorted(n for n in os.listdir(WEIGHTS_DIR)
                  if os.path.isfile(os.path.join(WEIGHTS_DIR, n, "params.msgpack")))


def weights_path(name: str = DEFAULT) -> str:
    """Folder of the shipped weights ``name``; FileNotFoundError naming what exists otherwise."""
    path = os.path.join(WEIGHTS_DIR, name)
    if not os.path.isfile(os.path.join(path, "params.msgpack")):
        have = available()
        raise FileNotFoundError(
            f"no shipped weights named {name!r} (looked for {path}/params.msgpack); "
            f"available: {have if have else 'none (was the package installed without its data?)'}")
    return path


def load_pretrained(name: str = DEFAULT):
    """``(model, params, info)`` of the shipped weights ``name`` (default: the paper model)."""
    from objtrack_jax.evaluation import load_model

    model, params, info = load_model(weights_path(name))
    return model, params, {**info, "architecture": "pretrained", "name": name}
