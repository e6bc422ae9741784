"""Warm start (``config.init_from``): parameters of a checkpoint replace the fresh initialisation
wherever path and shape match; a part the checkpoint lacks (here the visibility head) keeps its
initialisation."""

import jax
import numpy as np
import pytest

from objtrack_jax.configs import pips2_baseline
from objtrack_jax import model_io
from objtrack_jax.models.tracker import tracker_from_config
from objtrack_jax.train import loop, optim
from objtrack_jax.train import state as state_lib


def _state(config, seed):
    """A train state of the config's model with random values (built from the abstract state:
    no compilation, so the test stays fast)."""
    model = tracker_from_config(config.model)
    tx, _ = optim.make_optimizer(config)
    mesh = jax.make_mesh((1, 1), ("data", "model"))
    abstract = state_lib.abstract_train_state(model, tx, mesh, seed)
    rng = np.random.default_rng(seed)
    return model, jax.tree.map(
        lambda s: jax.device_put(rng.standard_normal(s.shape).astype(s.dtype), s.sharding)
        if np.issubdtype(s.dtype, np.floating) else jax.device_put(np.zeros(s.shape, s.dtype),
                                                                   s.sharding), abstract)


def test_warm_start_loads_matching_params_and_keeps_new_heads(tmp_path):
    c = pips2_baseline.get_config("cpu")
    model_a, src = _state(c, seed=1)  # the "pretrained" weights: no visibility head
    model_io.save_inference_checkpoint(str(tmp_path / "src"), model_a, src.params)
    c.model.visibility_head = True
    _, fresh = _state(c, seed=2)
    warm = loop.warm_start(fresh, str(tmp_path / "src"))
    src_flat = dict(jax.tree_util.tree_flatten_with_path(src.params)[0])
    loaded = kept = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(warm.params)[0]:
        init = dict(jax.tree_util.tree_flatten_with_path(fresh.params)[0])[path]
        if path in src_flat and src_flat[path].shape == leaf.shape:
            np.testing.assert_array_equal(np.asarray(leaf), np.asarray(src_flat[path]))
            loaded += 1
        else:
            np.testing.assert_array_equal(np.asarray(leaf), np.asarray(init))
            kept += 1
    assert loaded > 50 and kept >= 1, (loaded, kept)
    assert int(warm.step) == 0


def test_warm_start_rejects_an_unrelated_checkpoint(tmp_path):
    c = pips2_baseline.get_config("cpu")
    model, state = _state(c, seed=0)
    model_io.save_inference_checkpoint(str(tmp_path / "src"), model, {"other": {"w": np.ones(3)}})
    with pytest.raises(Exception, match="src"):
        loop.warm_start(state, str(tmp_path / "src"))
