"""The functional API (objtrack_jax.functional): pure, jit- and vmap-able, in tapnet's conventions,
and equal to the host loop on the same frames and settings.

Tiny: the small random-weight tracker of conftest, 128x128 frames, 2 iterations.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from objtrack_jax import evaluation
from objtrack_jax.functional import as_protocol_tracker, make_tracker
from objtrack_jax.settings import TrackingSettings
from objtrack_jax.tracking import run_tracking


def _video(seed, frames, size=(128, 128)):
    """Smooth random texture drifting right by 2 px per frame."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = size
    base = cv2.resize(rng.integers(0, 256, (h // 8 + 4, w // 8 + 4, 3)).astype(np.uint8),
                      (w + 32, h + 32), interpolation=cv2.INTER_CUBIC)
    return np.stack([base[8:8 + h, 2 * t:2 * t + w] for t in range(frames)])


QUERIES = np.array([[0, 30.0, 40.0], [2, 64.5, 80.25], [5, 100.0, 20.0], [2, 10.0, 110.0],
                    [0, 90.0, 90.0]], np.float32)


@pytest.mark.parametrize("frames, window", [(6, 8), (11, 4)])
def test_equals_the_host_loop(small_model, frames, window):
    """One window (6 frames, window 8) and several (11 frames, window 4: carried templates, the
    last window shifted back), queries at frames 0, 2 and 5, both directions, two videos."""
    model, params = small_model
    chex.clear_trace_counter()  # the counter is per function code, across parametrized cases
    s = TrackingSettings(window=window, iters=2, resolution=(128, 128))
    videos = np.stack([_video(0, frames), _video(1, frames)])
    queries = np.stack([QUERIES, QUERIES[::-1] + np.array([0, 3.0, -2.0], np.float32)])
    fn = jax.jit(chex.assert_max_traces(make_tracker(model, s), n=1))
    out = fn(params, videos, queries)
    assert out["tracks"].shape == (2, 5, frames, 2) and out["occlusion"].shape == (2, 5, frames)
    for b in range(2):
        host, visible, logits = run_tracking(model, params, videos[b], queries[b], s)
        err = float(np.abs(np.asarray(out["tracks"][b]) - host).max())
        print(f"T={frames} window={window}: functional vs host loop max |diff| {err:.2e} px")
        tol = 1e-3
        if frames > window:
            # Several windows: float rounding grows through the carried windows (random
            # weights). The bound is the host loop's own spread: its two programs (segments
            # side by side, masked; one group at a time, full windows unmasked) differ by as much.
            other, _, _ = run_tracking(model, params, videos[b], queries[b], s.replace(bucket=False))
            spread = float(np.abs(other - host).max())
            print(f"  host loop bucket=True vs False: {spread:.2e} px")
            tol = max(tol, 2 * spread)
        assert err <= tol
        np.testing.assert_allclose(-np.asarray(out["occlusion"][b]), logits, atol=max(tol, 1e-3) * 10)
        if frames <= window:
            np.testing.assert_array_equal(np.asarray(out["visible"][b]), visible)
    t = QUERIES[:, 0].astype(int)
    np.testing.assert_array_equal(np.asarray(out["tracks"][0])[np.arange(5), t], QUERIES[:, [2, 1]])
    assert np.abs(np.asarray(out["tracks"][0, 0, -1]) - QUERIES[0, [2, 1]]).max() > 0.1  # moved
    # same shapes, new values: no retrace (chex raises on a second trace)
    fn(params, videos[::-1].copy(), queries + np.array([0, 1.0, 1.0], np.float32))


def test_vmap_over_a_leading_axis(small_model):
    model, params = small_model
    chex.clear_trace_counter()
    fn = make_tracker(model, TrackingSettings(window=8, iters=1))
    videos = np.stack([_video(2, 5), _video(3, 5)])[:, None]  # [K=2, B=1, T, H, W, 3]
    queries = np.stack([QUERIES[:3], QUERIES[2:]])[:, None].copy()
    queries[..., 0] = np.minimum(queries[..., 0], 4)
    batched = jax.jit(jax.vmap(chex.assert_max_traces(fn, n=1), in_axes=(None, 0, 0)))
    out = batched(params, videos, queries)
    assert out["tracks"].shape == (2, 1, 3, 5, 2)
    for k in range(2):
        one = jax.jit(fn)(params, videos[k], queries[k])
        np.testing.assert_allclose(out["tracks"][k], one["tracks"], atol=1e-4)


def test_bad_queries_shape(small_model):
    model, params = small_model
    fn = make_tracker(model, TrackingSettings(window=8, iters=1))
    with pytest.raises(ValueError, match=r"queries must be \[B, N, 3\]"):
        fn(params, jnp.zeros((1, 3, 128, 128, 3)), jnp.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match="multiple of the stride"):
        fn(params, jnp.zeros((1, 3, 130, 128, 3)), jnp.zeros((1, 4, 3)))


def test_functional_tracker_through_the_protocols(small_model, tmp_path):
    """The functional API is scored by the evaluation's any-tracker entry point like the host
    loop is (same metrics up to float rounding)."""
    from objtrack_jax.data_pipelines import synthetic

    model, params = small_model
    synthetic.generate_dataset(str(tmp_path), num_seqs={"test": 1}, frames=5, size=(128, 128),
                               num_points=16, progress=False, write_depths=False)
    s = TrackingSettings(window=8, iters=1)
    fn = jax.jit(make_tracker(model, s))
    kw = dict(protocol="tapvid", max_points=6, progress=False)
    _, mean_fn = evaluation.evaluate("synthetic", str(tmp_path), as_protocol_tracker(fn, params), **kw)
    _, mean_host = evaluation.evaluate("synthetic", str(tmp_path), model, params, settings=s, **kw)
    for k in ("average_pts_within_thresh", "average_jaccard", "occlusion_accuracy"):
        assert mean_fn[k] == pytest.approx(mean_host[k], abs=1e-6), k


def _drifted_truth(queries, frames, per_frame=(0.15, -0.25)):
    """Ground truth of :func:`_video` (content moves 2 px left per frame) for ``queries
    [N, 3]``, plus a bias growing with the distance from each query frame (the drift the
    anchoring removes; up to ~2.5 px here)."""
    t = np.arange(frames)[None]
    t_q = queries[:, :1]
    truth = np.stack([queries[:, 2:3] - 2.0 * (t - t_q), np.broadcast_to(queries[:, 1:2],
                                                                         (len(queries), frames))],
                     -1)
    bias = np.abs(t - t_q)[..., None] * np.asarray(per_frame)
    return truth.astype(np.float32), (truth + bias).astype(np.float32)


def test_anchor_clips_equals_anchor_tracks():
    """The pure anchoring stage (two scans, templates taken at the query frames) equals the
    host driver objtrack_jax.post.anchor_tracks on each clip of a batch, in both directions
    from queries at frames 0, 2 and 5; it removes the drift; it runs under jax.vmap."""
    from objtrack_jax import post
    from objtrack_jax.functional import anchor_clips

    frames = 9
    videos = np.stack([_video(4, frames), _video(5, frames)])
    queries = np.stack([QUERIES, QUERIES[::-1] + np.array([0, 3.0, 12.0], np.float32)])
    queries[..., 2] = np.clip(queries[..., 2], 30, 120)  # in view for all 9 frames (x - 2t)
    pairs = [_drifted_truth(q, frames) for q in queries]
    est = np.stack([p[1] for p in pairs])
    got, ok = jax.jit(anchor_clips)(videos, queries, est)
    # vmap-able: over a leading axis (one clip per batch), the same up to float rounding
    mapped, mapped_ok = jax.jit(jax.vmap(anchor_clips))(videos[:, None], queries[:, None],
                                                         est[:, None])
    err = float(np.abs(np.asarray(mapped[:, 0]) - np.asarray(got)).max())
    print(f"vmap vs jit: max |diff| {err:.2e} px")
    assert err <= 1e-3
    np.testing.assert_array_equal(np.asarray(mapped_ok[:, 0]), np.asarray(ok))
    for b in range(2):
        ref, ref_ok, _ = post.anchor_tracks(videos[b], est[b], queries[b])
        err = float(np.abs(np.asarray(got[b]) - ref).max())
        print(f"clip {b}: anchor_clips vs anchor_tracks max |diff| {err:.2e} px, "
              f"accepted {ref_ok.mean():.2f}")
        assert err <= 1e-4
        np.testing.assert_array_equal(np.asarray(ok[b]), ref_ok)
        before = np.linalg.norm(est[b] - pairs[b][0], axis=-1)
        after = np.linalg.norm(np.asarray(got[b]) - pairs[b][0], axis=-1)
        assert ref_ok.mean() > 0.8 and before.max() > 2.0
        assert np.median(after[ref_ok]) < 0.1, np.median(after[ref_ok])


def test_make_tracker_anchors_as_the_settings_say(small_model):
    """Weights whose settings record ``anchor`` get the anchoring stage from make_tracker: the
    tracks equal objtrack_jax.post.anchor_tracks applied to the network's tracks (the same
    tracker with ``anchor=False``)."""
    from objtrack_jax import anchor, post

    model, params = small_model
    info = {"inference": {"window": 8, "iters": 2, "anchor": True}}
    frames = 6
    videos = np.stack([_video(6, frames)])
    queries = QUERIES[None].copy()
    plain = jax.jit(make_tracker(model, info, anchor=False))(params, videos, queries)
    out = jax.jit(make_tracker(model, info))(params, videos, queries)
    net = np.asarray(plain["tracks"][0])
    ref, ok, _ = post.anchor_tracks(videos[0], net, queries[0])
    err = float(np.abs(np.asarray(out["tracks"][0]) - ref).max())
    moved = float(np.abs(ref - net).max())
    print(f"make_tracker anchored vs anchor_tracks on its network tracks: max |diff| {err:.2e} px; "
          f"anchoring moved points by up to {moved:.2f} px, accepted {ok.mean():.2f}")
    assert err <= 1e-4
    assert moved > 0.05
    # visibility: where the patch was not found, the firm threshold (AnchorConfig.hide_logit)
    firm = anchor.firm_threshold(anchor.AnchorConfig(), 0.0)
    want = np.where(ok, 0.0, firm) + np.asarray(plain["occlusion"][0])
    np.testing.assert_allclose(np.asarray(out["occlusion"][0]), want, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out["visible"][0]),
                                  (np.asarray(out["occlusion"][0]) < 0)
                                  | (np.arange(frames)[None] == queries[0, :, :1].round()))
    with pytest.raises(ValueError, match="anchor must be"):
        make_tracker(model, info, anchor="yes")
