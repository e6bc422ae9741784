"""track_queries / grid_queries: query frames, forward-backward stitching, chunking, resizing.

Tiny on purpose: 128x128 model input, 4-frame windows, 1 refinement iteration, a few points. Every
call shares the same compiled shapes (4-frame windows, chunks padded to 8 points) where possible.
"""

import cv2
import jax
import numpy as np
import pytest

from conftest import PIPS2_REF_DIR, require_path
from objtrack_jax.convert.pips2 import abstract_params, load_torch_checkpoint
from objtrack_jax.inference import track_long_video
from objtrack_jax.settings import default_resolution
from objtrack_jax.tracking import grid_queries, resize_video, track_queries

SIZE = (128, 128)
KW = dict(window=4, iters=1, progress=False)


@pytest.fixture(scope="module")
def tracker():
    d = require_path(PIPS2_REF_DIR, "PIPs++ reference checkpoint")
    model, params, _ = load_torch_checkpoint(d)
    return model, params


def smooth_video(seed, frames, size, static=False):
    """Smooth random texture (upsampled noise), drifting by one pixel per frame unless static."""
    rng = np.random.default_rng(seed)
    h, w = size
    base = cv2.resize(rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3)).astype(np.uint8),
                      (w + 16, h + 16), interpolation=cv2.INTER_CUBIC)
    out = [base[8:8 + h, 8 + (0 if static else t):8 + (0 if static else t) + w] for t in range(frames)]
    return np.ascontiguousarray(np.stack(out))


def test_grid_queries_shape_and_layout():
    q = grid_queries(4, 100, 200, t=3)
    assert q.shape == (16, 3) and q.dtype == np.float32
    assert np.all(q[:, 0] == 3)
    # cell centres: (i + 0.5) * size / n - 0.5, row-major (y outer, x inner)
    np.testing.assert_allclose(q[:4, 2], [24.5, 74.5, 124.5, 174.5])
    np.testing.assert_allclose(q[::4, 1], [12, 37, 62, 87])
    q = grid_queries(3, 100, 200, margin=10)
    np.testing.assert_allclose(np.unique(q[:, 1]), [10, 49.5, 89])
    np.testing.assert_allclose(np.unique(q[:, 2]), [10, 99.5, 189])
    with pytest.raises(ValueError):
        grid_queries(0, 10, 10)


def test_default_resolution():
    assert default_resolution(540, 960) == (384, 680)
    assert default_resolution(960, 540) == (680, 384)
    h, w = default_resolution(50, 1000)
    assert h >= 128 and h % 8 == 0 and w % 8 == 0


def test_query_frame_returned_exactly(tracker):
    model, params = tracker
    video = smooth_video(0, 7, SIZE)
    q = np.array([[3, 40.3, 50.7], [0, 60.0, 30.25], [3, 90.1, 100.9], [6, 20.0, 20.0]], np.float32)
    tracks, visible, logits = track_queries(model, params, video, q, resize_to=SIZE, **KW)
    assert tracks.shape == (4, 7, 2) and tracks.dtype == np.float32
    assert visible is None and logits is None  # no visibility head: nothing is made up
    t = q[:, 0].astype(int)
    np.testing.assert_array_equal(tracks[np.arange(4), t], q[:, [2, 1]])
    assert np.all(np.isfinite(tracks))
    # the points did get tracked away from the query frame
    assert np.abs(tracks[0, 0] - q[0, [2, 1]]).max() > 0


def test_backward_equals_forward_on_reversed_video(tracker):
    model, params = tracker
    video = smooth_video(1, 7, SIZE)
    q_last = np.array([[6, 40.0, 50.0], [6, 70.5, 90.5]], np.float32)
    q_first = q_last.copy()
    q_first[:, 0] = 0
    back, _, _ = track_queries(model, params, video, q_last, resize_to=SIZE, **KW)
    fwd, _, _ = track_queries(model, params, video[::-1], q_first, resize_to=SIZE, **KW)
    np.testing.assert_array_equal(back, fwd[:, ::-1])


@pytest.mark.parametrize("carry", ["pips2", "paper"])
def test_frame0_queries_match_track_long_video(tracker, carry):
    """track_queries (frame-0 queries) is a thin layer over the engine that track_long_video runs."""
    model, params = tracker
    video = smooth_video(2, 7, SIZE)
    q = np.array([[0, 40.0, 50.0], [0, 70.5, 90.5], [0, 100.0, 20.0]], np.float32)
    tracks, _, _ = track_queries(model, params, video, q, resize_to=SIZE, carry=carry, **KW)
    # track_queries pads a chunk of 3 points to 8 (repeating the first); do the same here so the
    # two run identically shaped computations.
    xy = q[[0, 1, 2, 0, 0, 0, 0, 0]][:, [2, 1]]
    init = np.broadcast_to(xy, (1, 7, 8, 2))
    ref = track_long_video(model, params, video[None], init, window=4, iters=1, carry=carry)
    np.testing.assert_allclose(tracks, np.transpose(ref[0, :, :3], (1, 0, 2)), atol=1e-5, rtol=0)


def test_chunking_matches_one_chunk(tracker):
    """Points are independent: chunk size only changes float rounding (one window, so rounding
    is not amplified by the window chaining)."""
    model, params = tracker
    video = smooth_video(3, 4, SIZE)
    q = grid_queries(3, *SIZE)[:8]  # 8 points, frame 0
    one, _, _ = track_queries(model, params, video, q, resize_to=SIZE, chunk_size=256, **KW)
    many, _, _ = track_queries(model, params, video, q, resize_to=SIZE, chunk_size=4, **KW)
    np.testing.assert_allclose(many, one, atol=1e-3, rtol=0)


def test_resize_mapping_is_exact(tracker):
    """Tracking a 64x64 video at 128x128 == tracking the upsampled video, coordinates halved."""
    model, params = tracker
    small = smooth_video(4, 7, (64, 64))
    q = np.array([[0, 20.0, 30.0], [3, 40.5, 10.5], [6, 50.0, 50.0]], np.float32)
    tracks, _, _ = track_queries(model, params, small, q, resize_to=SIZE, **KW)
    big = resize_video(small, SIZE)
    q_big = q * np.array([1, 2, 2], np.float32)
    tracks_big, _, _ = track_queries(model, params, big, q_big, resize_to=SIZE, **KW)
    np.testing.assert_allclose(tracks, tracks_big / 2, atol=1e-5, rtol=0)


def test_static_video_stays_near_query(tracker):
    """Zero motion: tracks stay near the query in *input* pixels after the 2x resize round trip
    (a wrong mapping would be off by about the coordinate itself)."""
    model, params = tracker
    video = smooth_video(5, 7, (64, 64), static=True)
    q = grid_queries(4, 64, 64, t=3)
    tracks, _, _ = track_queries(model, params, video, q, resize_to=SIZE, **KW)
    err = np.abs(tracks - q[:, None, [2, 1]]).max()
    assert err < 3.0, err


def with_visibility_head(model, params, seed=0):
    """The reference model plus a randomly initialised visibility head (no init compile)."""
    model = model.clone(visibility_head=True)
    shapes = abstract_params(model)["delta_block"]["vis_dense"]
    keys = jax.random.split(jax.random.PRNGKey(seed), len(shapes))
    head = {k: 0.05 * jax.random.normal(key, v.shape, v.dtype) for key, (k, v) in zip(keys, shapes.items())}
    return model, {**params, "delta_block": {**params["delta_block"], "vis_dense": head}}


def test_visibility_head_gives_boolean_visibility(tracker):
    model, params = with_visibility_head(*tracker)
    video = smooth_video(6, 7, SIZE)
    q = np.array([[0, 40.0, 50.0], [3, 70.0, 90.0]], np.float32)
    tracks, visible, logits = track_queries(model, params, video, q, resize_to=SIZE, **KW)
    assert visible.shape == logits.shape == (2, 7) and visible.dtype == bool
    assert visible[0, 0] and visible[1, 3]  # the query frame is visible by definition
    mask = np.ones_like(visible)
    mask[0, 0] = mask[1, 3] = False
    np.testing.assert_array_equal(visible[mask], logits[mask] > 0)


def test_single_frame_and_validation(tracker):
    model, params = tracker
    video = smooth_video(7, 1, SIZE)
    q = np.array([[0, 10.0, 20.0]], np.float32)
    tracks, _, _ = track_queries(model, params, video, q, resize_to=SIZE, **KW)
    np.testing.assert_array_equal(tracks, [[[20.0, 10.0]]])
    video = smooth_video(7, 3, SIZE)
    with pytest.raises(ValueError, match="query frames"):
        track_queries(model, params, video, np.array([[3, 1.0, 1.0]]), resize_to=SIZE, **KW)
    with pytest.raises(ValueError, match=r"\[n, 3\]"):
        track_queries(model, params, video, np.zeros((2, 2)), resize_to=SIZE, **KW)
    with pytest.raises(ValueError, match="multiples of 8"):
        track_queries(model, params, video, q, resize_to=(130, 128), **KW)
