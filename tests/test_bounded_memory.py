"""Bounded-memory inference: chunked correlation / refinement equal the unchunked ones, and the
compiled forward's scratch memory stops growing with the number of points."""

import jax
import jax.numpy as jnp
import numpy as np

from objtrack_jax.models.correlation import build_pyramid, pyramid_correlation
from objtrack_jax.models.tracker import PIPsTracker, tracker_from_config

SMALL = {"latent_dim": 32, "encoder_dims": [16, 24, 32, 32], "update_channels": [32, 64],
         "visibility_head": True}


def test_chunked_pyramid_correlation_matches_one_chunk():
    rng = np.random.default_rng(0)
    fmaps = jnp.asarray(rng.normal(size=(2, 3, 16, 20, 8)), jnp.float32)
    pyr = build_pyramid(fmaps, 3)
    coords = jnp.asarray(rng.uniform(-3, 22, (2, 3, 7, 2)), jnp.float32)  # some outside the map
    tmpl = jnp.asarray(rng.normal(size=(3, 2, 3, 7, 8)), jnp.float32)
    whole = pyramid_correlation(pyr, coords, tmpl, 2, chunk_bytes=0)
    per = 3 * 36 * 8 * 4  # one point-frame's patches over 3 levels
    for points in (1, 5, 41):  # 42 point-frames: uneven chunks are padded
        chunked = pyramid_correlation(pyr, coords, tmpl, 2, chunk_bytes=points * per)
        np.testing.assert_allclose(np.asarray(chunked), np.asarray(whole), rtol=1e-6, atol=1e-6)


def test_chunked_refinement_matches_unchunked():
    model = tracker_from_config(SMALL)
    rng = np.random.default_rng(1)
    rgbs = rng.uniform(0, 255, (1, 6, 128, 128, 3)).astype(np.float32)
    trajs = np.repeat(rng.uniform(5, 120, (1, 1, 13, 2)).astype(np.float32), 6, axis=1)
    params = model.init(jax.random.PRNGKey(0), rgbs, trajs, iters=1)["params"]
    a = model.apply({"params": params}, rgbs, trajs, iters=3)
    # 1 MiB: 4 points per update chunk (13 -> 4 chunks, padded), correlation in 8 chunks.
    small = model.clone(chunk_mb=1, encode_chunk=2, unroll_iters=False)
    b = small.apply({"params": params}, rgbs, trajs, iters=3)
    np.testing.assert_allclose(np.asarray(b.tracks), np.asarray(a.tracks), atol=1e-3)
    np.testing.assert_allclose(np.asarray(b.iterates), np.asarray(a.iterates), atol=1e-3)
    np.testing.assert_allclose(np.asarray(b.vis_logits), np.asarray(a.vis_logits), atol=1e-3)
    # encoder features in chunks of 2 frames: the convolutions run at another batch size (another
    # oneDNN kernel), so float32 rounding relative to the value's size (measured 6e-5 of ~1.8)
    for fa, fb in zip(a.feats, b.feats):
        np.testing.assert_allclose(np.asarray(fb), np.asarray(fa), atol=1e-4, rtol=2e-4)


def _temp_mb(model, n, s=8, hw=128):
    rgbs = jax.ShapeDtypeStruct((1, s, hw, hw, 3), jnp.float32)
    trajs = jax.ShapeDtypeStruct((1, s, n, 2), jnp.float32)
    params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 128, 128, 3)),
                                               jnp.zeros((1, 2, 1, 2)), iters=1))["params"]
    fwd = jax.jit(lambda p, r, t: model.apply({"params": p}, r, t, iters=2).tracks)
    return fwd.lower(params, rgbs, trajs).compile().memory_analysis().temp_size_in_bytes / 2 ** 20


def test_forward_scratch_memory_bounded_in_points():
    """Full-width PIPs++: the unchunked scratch grows by the [N, S, 8, 8, C] patches and the update
    net's activations per point; chunked, only the O(N*S*C) templates/coordinates remain."""
    model = PIPsTracker(unroll_iters=False)
    bounded = model.clone(chunk_mb=16, encode_chunk=1)
    grow = _temp_mb(bounded, 2048) - _temp_mb(bounded, 256)
    grow_unchunked = _temp_mb(model, 2048) - _temp_mb(model, 256)
    per_point_frame = grow * 2 ** 20 / (1792 * 8)
    assert per_point_frame < 8 * 128 * 4, per_point_frame  # a few C-vectors per point-frame
    assert grow < 0.2 * grow_unchunked, (grow, grow_unchunked)
