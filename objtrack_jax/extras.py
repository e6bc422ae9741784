"""Optional dependencies ("extras") and the one-line error of a missing one.

``pip install objtrack_jax`` (or ``pip install .``) installs what tracking with the shipped weights
needs: JAX, Flax, NumPy, OpenCV, imageio-ffmpeg and tqdm. The rest comes with extras::

    pip install 'objtrack_jax[train]'   # objtrack train: TensorFlow, TFDS, orbax, TensorBoard, ...
    pip install 'objtrack_jax[data]'    # real-photo scenes (objtrack demo, synth --preset real)
    pip install 'objtrack_jax[dev]'     # tests, plots
    pip install 'objtrack_jax[export]'  # objtrack export: StableHLO serialization, SavedModel, ONNX
    pip install 'objtrack_jax[all]'

A feature whose extra is missing raises :class:`MissingExtraError` (a ``ModuleNotFoundError``)
whose message is one line naming the extra; ``objtrack`` prints it as ``objtrack <cmd>: error:``.
"""

from __future__ import annotations

import importlib
from typing import Optional

# Top-level module -> the extra that installs it (see [project.optional-dependencies] in
# pyproject.toml).
MODULE_EXTRA = {
    "tensorflow": "train",
    "tensorflow_datasets": "train",
    "tensorboard": "train",
    "orbax": "train",
    "ml_collections": "train",
    "optax": "train",
    "chex": "train",
    "absl": "train",
    "skimage": "data",
    "sklearn": "data",
    "PIL": "data",
    "flatbuffers": "export",
    "onnx": "export",
    "jax2onnx": "export",
    "onnxruntime": "export",
    "matplotlib": "dev",
    "pytest": "dev",
}


class MissingExtraError(ModuleNotFoundError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def install_hint(extra: str) -> str:
    return f"pip install 'objtrack_jax[{extra}]'"


def missing_extra_message(module: str, purpose: Optional[str] = None) -> Optional[str]:
    """The one-line message for a missing ``module`` (dotted names allowed), or None when no
    extra provides it."""
    top = module.split(".")[0]
    extra = MODULE_EXTRA.get(top)
    if extra is None:
        return None
    what = f"{purpose} needs" if purpose else "this needs"
    return (f"{what} the '{extra}' extra ({top} is not installed): {install_hint(extra)} "
            f"(or pip install -r requirements.txt in a checkout)")


def require(module: str, purpose: str):
    """``importlib.import_module(module)``, or :class:`MissingExtraError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        msg = missing_extra_message(e.name or module, purpose)
        if msg is None:
            raise
        raise MissingExtraError(msg, name=e.name) from e


def require_installed(modules, purpose: str) -> None:
    """Raises :class:`MissingExtraError` for the first of ``modules`` that is not installed,
    without importing any of them (``importlib.util.find_spec``)."""
    import importlib.util  # pylint: disable=import-outside-toplevel

    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a dotted name whose parent is missing
            found = False
        if not found:
            raise MissingExtraError(missing_extra_message(module, purpose), name=module)


def as_missing_extra(exc: BaseException) -> Optional[MissingExtraError]:
    """``exc`` if it is a MissingExtraError, a MissingExtraError for a ModuleNotFoundError of a
    module an extra provides, else None."""
    if isinstance(exc, MissingExtraError):
        return exc
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        msg = missing_extra_message(exc.name)
        if msg is not None:
            return MissingExtraError(msg, name=exc.name)
    return None
