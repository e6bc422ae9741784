"""Model I/O (objtrack_jax.model_io) and the one list of model hyperparameters (tracker_config)."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import PIPS2_REF_DIR, require_path
from objtrack_jax import model_io
from objtrack_jax.convert.pips2 import load_torch_checkpoint
from objtrack_jax.models.tracker import (PIPsTracker, tracker_config, tracker_fields,
                                         tracker_from_config)


@pytest.fixture(scope="module")
def tracker():
    d = require_path(PIPS2_REF_DIR, "PIPs++ reference checkpoint")
    model, params, _ = load_torch_checkpoint(d)
    return model, params


def _non_default_model() -> PIPsTracker:
    """A PIPsTracker with every hyperparameter changed from its default."""
    changed = {}
    for f in dataclasses.fields(PIPsTracker):
        if f.name not in tracker_fields():
            continue
        d = f.default
        if f.name == "dtype":
            changed[f.name] = jnp.bfloat16
        elif isinstance(d, bool):
            changed[f.name] = not d
        elif isinstance(d, int):
            changed[f.name] = d + 1
        elif isinstance(d, float):
            changed[f.name] = d / 2
        elif isinstance(d, tuple):
            changed[f.name] = tuple(int(x) // 2 for x in d)
        else:
            raise AssertionError(f"test does not know how to change field {f.name!r} ({d!r})")
    return PIPsTracker(**changed)


def test_tracker_config_round_trip_keeps_every_field():
    model = _non_default_model()
    cfg = json.loads(json.dumps(tracker_config(model)))  # what config.json stores
    assert set(cfg) == set(tracker_fields())
    back = tracker_from_config(cfg)
    for name in tracker_fields():
        assert getattr(back, name) == getattr(model, name), name
        assert getattr(back, name) != getattr(PIPsTracker(), name), name
    assert back == model


def test_tracker_from_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown model setting.*latent_dims"):
        tracker_from_config({"latent_dims": 64})


def test_training_config_lists_every_field():
    from objtrack_jax.configs import common

    assert set(common.get_base_config().model.keys()) == set(tracker_fields())
    assert tracker_from_config(common.get_base_config().model) == PIPsTracker()


def test_saved_config_keeps_every_field(tmp_path):
    model = _non_default_model()
    params = {"w": np.zeros(3, np.float32)}
    model_io.save_inference_checkpoint(str(tmp_path), model, params, extra={"note": "x"})
    with open(tmp_path / model_io.CONFIG_FILE) as f:
        doc = json.load(f)
    assert tracker_from_config(doc["model"]) == model and doc["info"] == {"note": "x"}


def test_load_model_formats(tmp_path, tracker):
    model, params = tracker
    loaded, _, info = model_io.load_model(PIPS2_REF_DIR)
    assert info["architecture"] == "pips2" and loaded == model
    ckpt = model_io.save_inference_checkpoint(str(tmp_path / "ckpt"), model, params)
    m2, p2, info2 = model_io.load_model(ckpt)
    assert m2 == model and info2["architecture"] == "msgpack"
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(p2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(FileNotFoundError):
        model_io.load_model(str(tmp_path / "missing"))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ValueError, match="not a recognised checkpoint"):
        model_io.load_model(str(tmp_path / "empty"))


def test_load_model_without_checkpoint_is_the_shipped_weights():
    model, _, info = model_io.load_model()
    assert info["architecture"] == "pretrained" and info["name"] == model_io.DEFAULT_WEIGHTS
    assert model == tracker_from_config(info["config"])


def test_load_model_training_workdir(tmp_path, tracker):
    """A training workdir: <workdir>/config.json + orbax checkpoints/<step> (train/checkpoint.py)."""
    from objtrack_jax.train import checkpoint as train_checkpoint

    model, params = tracker
    workdir = tmp_path / "run"
    ckpt = train_checkpoint.Checkpointer(str(workdir / "checkpoints"), every_steps=1, async_save=False)
    ckpt.save(7, {"params": params, "step": np.int32(7)}, {"step": 7}, force=True)
    ckpt.close()
    model_io.save_inference_checkpoint(str(tmp_path / "tmpcfg"), model, params)
    os.replace(tmp_path / "tmpcfg" / "config.json", workdir / "config.json")
    for path in (workdir, workdir / "checkpoints"):
        m2, p2, info = model_io.load_model(str(path))
        assert m2 == model and info["step"] == 7
        a, b = jax.tree_util.tree_leaves(params)[0], jax.tree_util.tree_leaves(p2)[0]
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
