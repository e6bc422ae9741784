"""Shared test helpers: where the reference fixtures live, and skipping when absent."""

import os

import jax
import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED_DIR = os.environ.get("OBJTRACK_SHARED_DIR", os.path.join(HERE, "..", "..", "shared"))
PIPS2_REF_DIR = os.environ.get("OBJTRACK_REFERENCE_DIR", os.path.join(SHARED_DIR, "reference", "pips2"))
OBJPRIOR_REF_DIR = os.environ.get(
    "OBJTRACK_OBJPRIOR_REFERENCE_DIR", os.path.join(SHARED_DIR, "reference", "objprior"))
CAMEL_MP4 = os.path.join(SHARED_DIR, "data", "camel.mp4")


def require_path(path: str, what: str) -> str:
    """Skips the calling test, with a reason, when a shared fixture is missing."""
    if not os.path.exists(path):
        pytest.skip(f"{what} not found at {os.path.abspath(path)} (set the environment variable "
                    "that points to it, see tests/conftest.py)")
    return path


def rel(a, b) -> float:
    """Relative error max|a - b| / max|b| over the whole array (docs/conventions.md)."""
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def nhwc(x):
    """Fixture video ``[B, S, 3, H, W]`` → ``[B, S, H, W, 3]`` jax array."""
    import jax.numpy as jnp
    import numpy as np

    return jnp.asarray(np.transpose(x, (0, 1, 3, 4, 2)))


SMALL_TRACKER = {"latent_dim": 32, "encoder_dims": [16, 24, 32, 32], "update_channels": [32, 64],
                 "visibility_head": True}


@pytest.fixture(scope="module")
def small_model():
    """A small tracker with a visibility head and its initial params (one per test module)."""
    from objtrack_jax.models.tracker import tracker_from_config

    model = tracker_from_config(SMALL_TRACKER)
    params = model.init(jax.random.PRNGKey(0), np.zeros((1, 2, 128, 128, 3), np.float32),
                        np.zeros((1, 2, 1, 2), np.float32), iters=1)
    return model, params["params"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A per-module folder for the persistent XLA compilation cache (subprocesses can share it)."""
    return str(tmp_path_factory.mktemp("jax_cache"))


@pytest.fixture(scope="module")
def compile_cache(cache_dir):
    """Turns the persistent compilation cache on in ``cache_dir`` for this module's in-process
    compiles (programs over 0.5 s), restoring the previous settings afterwards."""
    from jax.experimental.compilation_cache import compilation_cache as cc

    old = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    cc.reset_cache()
    yield
    jax.config.update("jax_compilation_cache_dir", old[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", old[1])
    cc.reset_cache()
