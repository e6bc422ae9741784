"""Dense grids: one point per 4x4 px refined in chunks that share one encoding per window; chunked
== unchunked; the memory budget picks the chunk size."""

import jax
import numpy as np
import pytest

from objtrack_jax import inference
from objtrack_jax.memory import MAX_POINT_CHUNK, point_chunk_size
from objtrack_jax.tracking import grid_step_queries, track_queries



def test_grid_step_queries():
    q = grid_step_queries(4, 512, 896)
    assert q.shape == (128 * 224, 3) and q.shape[0] == 28672
    np.testing.assert_allclose(q[:2], [[0, 1.5, 1.5], [0, 1.5, 5.5]])
    np.testing.assert_allclose(q[-1], [0, 509.5, 893.5])


def test_budget_picks_point_chunks():
    sizes = [point_chunk_size(16, 128, mb) for mb in (64, 512, 4096, 10 ** 6)]
    assert sizes == sorted(sizes) and sizes[-1] == MAX_POINT_CHUNK and sizes[0] >= 8
    assert all(s & (s - 1) == 0 for s in sizes)  # powers of two: a few compiled shapes


def test_dense_grid_chunked_equals_unchunked_one_encoding_per_window(small_model, monkeypatch):
    model, params = small_model
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (12, 12, 3)).astype(np.uint8)
    big = np.kron(base, np.ones((8, 8, 1), np.uint8))
    video = np.stack([big[t:t + 64, t:t + 64] for t in range(7)])  # 64x64, 7 frames
    q = grid_step_queries(4, 64, 64)  # 256 points
    kw = dict(window=6, iters=1, resize_to=(128, 128), progress=False)
    whole = track_queries(model, params, video, q, chunk_size=len(q), **kw)
    encoded = []
    real = inference._encode_fn
    monkeypatch.setattr(inference, "_encode_fn", lambda m: (lambda p, rgbs: (
        encoded.append(rgbs.shape[1]), real(m)(p, rgbs))[1]))
    chunked = track_queries(model, params, video, q, chunk_size=32, **kw)  # 8 chunks
    assert len(encoded) == inference.num_windows(7, 6) == 2  # one encoding per window, 8 chunks
    for a, b in zip(whole, chunked):
        np.testing.assert_allclose(b, a, atol=1e-3)
    picked = track_queries(model, params, video, q, chunk_size=None, max_memory_mb=8, **kw)
    np.testing.assert_allclose(picked[0], whole[0], atol=1e-3)  # budget-picked: 64-point chunks
