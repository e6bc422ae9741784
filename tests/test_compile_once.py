"""Compile once, encode once: XLA compilations counted over videos of the same shape and over the
windows of a long video; the TAP-Vid protocol encodes each frame once for all query groups."""

import contextlib

import jax
import numpy as np
import pytest

from objtrack_jax import inference
from objtrack_jax.inference import track_windows
from objtrack_jax.models.tracker import tracker_from_config
from objtrack_jax.tracking import track_queries

SMALL = {"latent_dim": 32, "encoder_dims": [16, 24, 32, 32], "update_channels": [32, 64]}
_compiles = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, *a, **k: _compiles.append(name) if name.endswith("backend_compile_duration") else None)


@contextlib.contextmanager
def count_compiles():
    start = len(_compiles)
    box = []
    yield box
    box.append(len(_compiles) - start)


@pytest.fixture(scope="module")
def small_model():
    model = tracker_from_config(SMALL)
    rgbs = np.zeros((1, 2, 128, 128, 3), np.float32)
    params = model.init(jax.random.PRNGKey(0), rgbs, np.zeros((1, 2, 1, 2), np.float32), iters=1)
    return model, params["params"]


def _video(seed, t, hw=128):
    return np.random.default_rng(seed).integers(0, 256, (t, hw, hw, 3), dtype=np.uint8)


def test_no_recompilation_across_windows(small_model):
    model, params = small_model
    xy = np.random.default_rng(0).uniform(5, 120, (1, 1, 10, 2)).astype(np.float32)
    short = _video(0, 15)  # windows (0, 8), (7, 15): both refine programs (with/without carry)
    track_windows(model, params, short[None], np.repeat(xy, 15, 1), window=8, iters=2)
    long = _video(1, 64)  # 9 windows
    with count_compiles() as n:
        track_windows(model, params, long[None], np.repeat(xy, 64, 1), window=8, iters=2)
    assert n[0] == 0, f"{n[0]} compilations across the windows of a long video"


def test_tapvid_queries_compile_once_per_shape_and_encode_once(small_model, monkeypatch):
    model, params = small_model
    rng = np.random.default_rng(2)
    t = 20
    q = np.stack([rng.choice([0, 3, 9, 19], 24), rng.uniform(0, 127, 24), rng.uniform(0, 127, 24)], 1)
    encoded = []
    real = inference._encode_fn

    def counting(m):
        fn = real(m)
        return lambda p, rgbs: (encoded.append(rgbs.shape[1]), fn(p, rgbs))[1]

    # A fixed memory budget: the default is half the machine's memory, which would make the
    # chunking (and so the programs and their float rounding) depend on the machine.
    kw = dict(window=8, iters=2, resize_to=(128, 128), progress=False, max_memory_mb=2048)
    with count_compiles() as first:
        monkeypatch.setattr(inference, "_encode_fn", counting)
        tracks_a, _, _ = track_queries(model, params, _video(3, t), q, **kw)
        monkeypatch.setattr(inference, "_encode_fn", real)
    # 4 query groups x 2 directions share one encoding: every frame once (last chunk padded).
    assert t <= sum(encoded) < t + 8, encoded
    with count_compiles() as second:
        tracks_b, _, _ = track_queries(model, params, _video(4, t), q, **kw)
    assert second[0] == 0, f"second video of the same shape compiled {second[0]} programs"
    assert first[0] <= 16, first[0]  # measured 8: refine shapes x carry, encoder, eager slices
    # Encoding once changes nothing beyond float rounding: against per-window encoding.
    per_window, _, _ = track_queries(model, params, _video(3, t), q,
                                     **dict(kw, max_memory_mb=4))  # too small to share
    # random weights move points ~100 px: compare like the bucketing test below (rtol 1e-4)
    np.testing.assert_allclose(tracks_a, per_window, rtol=1e-4, atol=1e-3)


def test_tapvid_buckets_share_programs_across_videos_of_one_shape(small_model):
    """Two videos of one shape whose queries sit at different frames (so different short segment
    lengths): the second compiles nothing; bucketing (short segments padded to a window, masked)
    gives the unbucketed results."""
    model, params = small_model
    rng = np.random.default_rng(5)
    t = 20

    def queries(frames):
        f = np.repeat(frames, 6)
        return np.stack([f, rng.uniform(0, 127, f.size), rng.uniform(0, 127, f.size)], 1)

    kw = dict(window=8, iters=2, resize_to=(128, 128), progress=False, max_memory_mb=2048)
    qa, qb = queries([0, 3, 9, 19]), queries([1, 5, 14, 18])  # short backward 4 / 2, 6; forward 6, 2
    with count_compiles() as first:
        track_queries(model, params, _video(6, t), qa, **kw)
    with count_compiles() as second:
        bucketed = track_queries(model, params, _video(7, t), qb, **kw)
    assert first[0] <= 8, first[0]  # encoder + refine (no init / init / short, masked) per bucket
    assert second[0] == 0, f"second video of the same shape compiled {second[0]} programs"
    with count_compiles() as unbucketed_compiles:
        plain = track_queries(model, params, _video(7, t), qb, bucket=False, **kw)
    assert unbucketed_compiles[0] >= 2  # one program per new short length (2 and 6)
    np.testing.assert_allclose(bucketed[0], plain[0], rtol=1e-4, atol=1e-3)  # random weights: |x| ~ 100
    np.testing.assert_array_equal(bucketed[1], plain[1])  # None without a visibility head
