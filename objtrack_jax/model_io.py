"""Reading and writing model weights: the one home of checkpoint I/O.

:func:`load_model` returns ``(model, params, info)`` from any of:

* nothing (``checkpoint=None``): the weights shipped in ``objtrack_jax/weights/<name>/``
  (:func:`load_pretrained`; trained by this project on its synthetic data);
* a PyTorch ``.pth`` file, or a directory of ``model-<step>.pth`` files (highest step), in the
  PIPs++ or object-prior layout (:mod:`objtrack_jax.convert.pips2`, no torch needed);
* a training workdir (``<workdir>/config.json`` with a ``model`` section, orbax checkpoints in
  ``<workdir>/checkpoints/<step>``, latest step used; the ``checkpoints`` folder itself works too),
  read with :func:`load_params`;
* an inference directory written by :func:`save_inference_checkpoint`::

    <dir>/params.msgpack   flax.serialization.to_bytes(params)
    <dir>/config.json      {"model": tracker_config(model), "info": {...optional...}}

The model's hyperparameters are written and read only through
:func:`objtrack_jax.models.tracker.tracker_config` / ``tracker_from_config`` (the dataclass fields of
``PIPsTracker``), so every field survives a save/load round trip.
"""

from __future__ import annotations

import json
import os
import logging
from typing import Any, Optional, Sequence

import numpy as np

from objtrack_jax.settings import from_info

log = logging.getLogger(__name__)

PARAMS_FILE = "params.msgpack"
CONFIG_FILE = "config.json"
DEFAULT_WEIGHTS = "objprior_synth"
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")


# --------------------------------------------------------------------------------------------------
# Inference checkpoints (params.msgpack + config.json)
# --------------------------------------------------------------------------------------------------


def to_numpy(tree):
    """Host numpy copy of a params tree (drops device placement / sharding)."""
    import jax

    return jax.tree_util.tree_map(np.asarray, tree)


def save_inference_checkpoint(directory: str, model, params, extra: Optional[dict] = None) -> str:
    """Writes ``params.msgpack`` + ``config.json`` (module docstring); returns ``directory``.

    Each file is written to a temporary name and renamed into place (atomic per file); ``extra``
    (JSON-serialisable, e.g. how the weights were trained) is stored under ``"info"``.
    """
    from flax import serialization

    from objtrack_jax.models.tracker import tracker_config

    os.makedirs(directory, exist_ok=True)
    doc = {"model": tracker_config(model)}
    if extra:
        doc["info"] = extra
    for name, data in ((PARAMS_FILE, serialization.to_bytes(to_numpy(params))),
                       (CONFIG_FILE, json.dumps(doc, indent=2).encode())):
        path = os.path.join(directory, name)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".tmp", path)
    return directory


def _flat_shapes(tree, prefix: str = "") -> dict[str, tuple]:
    """``{'a/b/kernel': shape}`` of a nested mapping whose leaves have a shape (or are scalars)."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) or (hasattr(value, "items") and not hasattr(value, "shape")):
            out.update(_flat_shapes(value, name + "/"))
        else:
            out[name] = tuple(np.shape(value))
    return out


def param_tree_mismatches(target, raw, limit: int = 12) -> list[str]:
    """Differences between the parameter tree a model expects (``target``: shapes) and a loaded
    one (``raw``): missing and unexpected entries and differing shapes, one string each (at most
    ``limit`` per kind, then a count)."""
    want, got = _flat_shapes(target), _flat_shapes(raw)

    def listed(kind, items):
        items = sorted(items)
        more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
        return [f"{kind}: {', '.join(items[:limit])}{more}"] if items else []

    missing = set(want) - set(got)
    extra = set(got) - set(want)
    shapes = [f"{k} {got[k]} (model: {want[k]})" for k in set(want) & set(got) if want[k] != got[k]]
    return (listed("missing from the file", missing) + listed("not in the model", extra)
            + listed("shape differs", shapes))


# Model sizes that must be positive (the rest of the integer fields: >= 0).
_POSITIVE_FIELDS = ("stride", "latent_dim", "corr_levels", "attention_heads", "attention_window",
                    "encoder_dims", "update_channels")


def check_model_config(model_cfg, where: str) -> None:
    """``ValueError`` naming ``where`` (the file), the key and the value for a ``model`` section
    that no tracker can be built from: sizes that are not positive integers (``latent_dim: -64``),
    negative chunk settings, a non-boolean flag, a ``drop_path_rate`` outside [0, 1). Unknown
    keys and dtypes are left to :func:`objtrack_jax.models.tracker.tracker_from_config`."""
    if not isinstance(model_cfg, dict):
        raise ValueError(f"{where}: 'model' must be a JSON object of PIPsTracker settings, got "
                         f"{type(model_cfg).__name__}")

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    for key, value in model_cfg.items():
        minimum = 1 if key in _POSITIVE_FIELDS else 0
        if key in ("encoder_dims", "update_channels"):
            if value is None:
                continue
            if not isinstance(value, list) or not value or not all(
                    is_int(v) and v >= minimum for v in value):
                raise ValueError(f"{where}: model.{key} must be a non-empty list of positive "
                                 f"integers, got {value!r}")
        elif key in ("use_attention", "visibility_head", "unroll_iters"):
            if not isinstance(value, bool):
                raise ValueError(f"{where}: model.{key} must be true or false, got {value!r}")
        elif key == "drop_path_rate":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"{where}: model.{key} must be a number in [0, 1), got {value!r}")
        elif key in ("stride", "latent_dim", "corr_levels", "corr_radius", "attention_depth",
                     "attention_heads", "attention_window", "encode_chunk", "chunk_mb"):
            if not is_int(value) or value < minimum:
                raise ValueError(f"{where}: model.{key} must be an integer >= {minimum}, got "
                                 f"{value!r}")


def _load_msgpack_dir(directory: str):
    import jax
    import jax.numpy as jnp
    from flax import serialization

    from objtrack_jax.convert.pips2 import abstract_params
    from objtrack_jax.models.tracker import tracker_from_config

    cfg_path, params_path = os.path.join(directory, CONFIG_FILE), os.path.join(directory, PARAMS_FILE)
    try:
        with open(cfg_path) as f:
            cfg = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg_path}: not valid JSON ({e})") from e
    if not isinstance(cfg, dict):
        raise ValueError(f"{cfg_path}: expected a JSON object with a 'model' section, got "
                         f"{type(cfg).__name__}")
    model_cfg = cfg.get("model", cfg)
    check_model_config(model_cfg, cfg_path)
    try:
        model = tracker_from_config(model_cfg)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{cfg_path}: {e}") from e
    info = cfg.get("info") if isinstance(cfg.get("info"), dict) else {}
    from_info(info, where=cfg_path)  # the recorded tracking settings are checked on loading
    with open(params_path, "rb") as f:
        data = f.read()
    if not data:
        raise ValueError(f"{params_path}: empty file (0 bytes)")
    try:
        raw = serialization.msgpack_restore(data)
    except Exception as e:  # msgpack's own errors (ExtraData, FormatError, ...) are not ValueErrors
        raise ValueError(f"{params_path}: truncated or corrupt msgpack ({len(data)} bytes; "
                         f"{type(e).__name__}: {e})") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{params_path}: expected a parameter tree (a map), got {type(raw).__name__}")
    target = abstract_params(model)
    problems = param_tree_mismatches(target, raw)
    if problems:
        raise ValueError(f"{params_path} does not match the model that {cfg_path} builds "
                         f"({len(problems)} mismatch(es)): " + "; ".join(problems))
    params = serialization.from_state_dict(target, raw)
    params = jax.tree_util.tree_map(jnp.asarray, params)
    return model, params, {"architecture": "msgpack", "config": model_cfg,
                           "inference": info.get("inference")}


# --------------------------------------------------------------------------------------------------
# Training workdirs (orbax), read-only
# --------------------------------------------------------------------------------------------------


def _find_ema(tree):
    """The ``(ema_params, ema_weight)`` of a restored optimiser state (a run with
    ``optim.ema_decay`` > 0, :func:`objtrack_jax.train.optim.params_ema`), or None."""
    if isinstance(tree, dict):
        if "ema_params" in tree and "ema_weight" in tree:
            return tree["ema_params"], tree["ema_weight"]
        children = tree.values()
    elif hasattr(tree, "ema_params") and hasattr(tree, "ema_weight"):
        return tree.ema_params, tree.ema_weight
    elif isinstance(tree, (list, tuple)):
        children = tree
    else:
        return None
    for c in children:
        found = _find_ema(c)
        if found is not None:
            return found
    return None


def load_params(directory: str, step: Optional[int] = None,
                ema: Optional[bool] = None) -> tuple[Any, int]:
    """Loads ``(params, step)`` from a training checkpoint directory as host numpy arrays.

    Works with any device count (the saved shardings are ignored) and keeps the saved dtypes
    (float64 too, without ``jax_enable_x64``): for inspection, tests and exporting.
    ``directory`` may be a workdir (its ``checkpoints/`` is used) or the checkpoint root.
    ``ema``: None: the run's parameter average when it kept one (``optim.ema_decay`` > 0), its
    parameters otherwise; True: the average (an error when there is none); False: the parameters.
    """
    import jax
    import orbax.checkpoint as ocp

    if os.path.isdir(os.path.join(directory, "checkpoints")):
        directory = os.path.join(directory, "checkpoints")
    mngr = ocp.CheckpointManager(
        os.path.abspath(directory),
        item_handlers={"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler()})
    try:
        step = mngr.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {directory}")
        meta = mngr.item_metadata(step)["state"]
        dev = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        # 64-bit types on for the restore only: float64 checkpoints (model.dtype='float64') come
        # back as saved instead of being silently rounded to float32; other dtypes are unchanged.
        with jax.enable_x64(True):
            target = jax.tree.map(
                lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=dev), meta,
                is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "dtype"))
            out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
            params = jax.tree.map(np.asarray, out.state["params"])
            found = None if ema is False else _find_ema(out.state.get("opt_state"))
            if ema and found is None:
                raise ValueError(f"{directory} step {step}: no parameter average in the "
                                 "checkpoint (the run had optim.ema_decay = 0)")
            if found is not None:  # the average: sum of weighted parameters / sum of weights
                weight = float(np.asarray(found[1]))
                if not weight > 0:
                    raise ValueError(f"{directory} step {step}: the parameter average is empty")
                params = jax.tree.map(lambda a, p: (np.asarray(a, np.float64) / weight).astype(
                    p.dtype), found[0], params)
                log.info("%s step %d: the run's parameter average (optim.ema_decay)", directory,
                         step)
    finally:
        mngr.close()
    return params, int(step)


def _is_training_dir(path: str) -> bool:
    """A training workdir (has ``checkpoints/``) or its orbax root (has numeric step folders)."""
    if os.path.isdir(os.path.join(path, "checkpoints")):
        return True
    return any(n.isdigit() and os.path.isdir(os.path.join(path, n)) for n in os.listdir(path))


def _load_training_dir(path: str, step: Optional[int] = None):
    """Params of the latest (or ``step``) orbax checkpoint of a training run; the model from the
    run's ``config.json`` (its ``model`` section), looked up in ``path`` and its parent."""
    import jax
    import jax.numpy as jnp

    from objtrack_jax.models.tracker import tracker_from_config

    cfg_path = next((c for c in (os.path.join(path, CONFIG_FILE),
                                 os.path.join(os.path.dirname(os.path.abspath(path)), CONFIG_FILE))
                     if os.path.exists(c)), None)
    if cfg_path is None:
        raise ValueError(f"{path}: training checkpoint without a {CONFIG_FILE} (expected in the "
                         "workdir, next to checkpoints/) to say which model it holds")
    with open(cfg_path) as f:
        cfg = json.load(f)
    model_cfg = cfg.get("model", cfg)
    check_model_config(model_cfg, cfg_path)
    model = tracker_from_config(model_cfg)
    params, step = load_params(path, step)
    params = jax.tree_util.tree_map(jnp.asarray, params)
    return model, params, {"architecture": "train_checkpoint", "step": int(step),
                           "config": model_cfg, "inference": _training_dir_inference(cfg, cfg_path)}


def trained_settings(cfg: dict) -> dict:
    """What a training config trains on, as weights record it (``inference.trained``): clip length,
    refinement iterations and crop size (``None`` where the config lacks one)."""
    data = cfg.get("data") or {}
    return {"clip_len": data.get("clip_len"), "iters": cfg.get("iters"), "crop": data.get("crop_size")}


def _training_dir_inference(cfg: dict, cfg_path: str) -> Optional[dict]:
    """The tracking settings a training run validated at, in the shipped weights' ``inference``
    form: window and iterations of its ``eval`` section, what it trained on
    (:func:`trained_settings`), and the short side and second pass recorded by the weights it warm-started from
    (``init_from``, as given or relative to the run's config), if any. ``None`` for a config without
    an ``eval`` section (then the fallback applies)."""
    ev = cfg.get("eval")
    if not isinstance(ev, dict) or "window" not in ev or "iters" not in ev:
        return None
    out = {"window": int(ev["window"]), "iters": int(ev["iters"])}
    trained = trained_settings(cfg)
    if all(trained.values()):
        out["trained"] = trained
    init = cfg.get("init_from") or ""
    for parent_cfg in ([os.path.join(init, CONFIG_FILE),
                        os.path.join(os.path.dirname(cfg_path), init, CONFIG_FILE)] if init else []):
        if os.path.isfile(parent_cfg):
            try:
                with open(parent_cfg) as f:
                    parent = (json.load(f).get("info") or {}).get("inference") or {}
            except (OSError, ValueError):
                parent = {}
            if "short_side" in parent:
                out["short_side"] = int(parent["short_side"])
            for key in ("refine_scale", "refine_iters"):  # the parent's second pass, if any
                if parent.get(key):
                    out[key] = parent[key]
            break
    return out


# --------------------------------------------------------------------------------------------------
# Shipped weights
# --------------------------------------------------------------------------------------------------


def available() -> list[str]:
    """Names of the shipped weight sets."""
    if not os.path.isdir(WEIGHTS_DIR):
        return []
    return sorted(n for n in os.listdir(WEIGHTS_DIR)
                  if os.path.isfile(os.path.join(WEIGHTS_DIR, n, PARAMS_FILE)))


def weights_path(name: str = DEFAULT_WEIGHTS) -> str:
    """Folder of the shipped weights ``name``; FileNotFoundError naming what exists otherwise."""
    path = os.path.join(WEIGHTS_DIR, name)
    if not os.path.isfile(os.path.join(path, PARAMS_FILE)):
        have = available()
        raise FileNotFoundError(
            f"no shipped weights named {name!r} (looked for {path}/{PARAMS_FILE}); "
            f"available: {have if have else 'none (was the package installed without its data?)'}")
    return path


def load_pretrained(name: str = DEFAULT_WEIGHTS):
    """``(model, params, info)`` of the shipped weights ``name`` (default: the paper model)."""
    model, params, info = _load_msgpack_dir(weights_path(name))
    return model, params, {**info, "architecture": "pretrained", "name": name}


# --------------------------------------------------------------------------------------------------
# Any checkpoint
# --------------------------------------------------------------------------------------------------


def load_model(checkpoint: Optional[str] = None):
    """``(model, params, info)`` from ``checkpoint`` (module docstring lists the formats);
    ``None``: the shipped weights."""
    if checkpoint is None:
        return load_pretrained()
    path = os.fspath(checkpoint)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if os.path.isdir(path) and os.path.exists(os.path.join(path, PARAMS_FILE)):
        if not os.path.exists(os.path.join(path, CONFIG_FILE)):
            raise FileNotFoundError(f"{path}: has {PARAMS_FILE} but no {CONFIG_FILE} describing the model")
        return _load_msgpack_dir(path)
    is_torch = path.endswith(".pth") or (
        os.path.isdir(path) and any(n.startswith("model-") and n.endswith(".pth") for n in os.listdir(path)))
    if is_torch:
        from objtrack_jax.convert.pips2 import load_torch_checkpoint

        return load_torch_checkpoint(path)
    if os.path.isdir(path) and _is_training_dir(path):
        return _load_training_dir(path)
    raise ValueError(
        f"{path}: not a recognised checkpoint. Expected a PyTorch .pth file, a directory of "
        f"model-<step>.pth files, a directory with {PARAMS_FILE} + {CONFIG_FILE}, or a training "
        f"workdir (<workdir>/{CONFIG_FILE} + <workdir>/checkpoints/<step>/).")



def inference_settings(info: Optional[dict]) -> dict:
    """The tracking settings loaded weights were validated at, as a plain dict of
    :class:`~objtrack_jax.settings.TrackingSettings` fields (:func:`objtrack_jax.settings.from_info`,
    the one source): what ``settings=`` of every entry point accepts. What the weights were
    trained on: :func:`objtrack_jax.settings.recorded_inference` ``(info).get("trained")``."""
    return from_info(info).as_dict()
