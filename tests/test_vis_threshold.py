"""The visibility threshold (TrackingSettings.vis_threshold): recorded with the weights, checked,
and applied the same way by the host loop, the functional API, the online tracker and exports."""

import numpy as np
import pytest

from objtrack_jax.settings import TrackingSettings, from_info
from objtrack_jax.tracking import run_tracking


def _video(frames=6, size=(128, 128), seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    h, w = size
    base = cv2.resize(rng.integers(0, 256, (h // 8 + 4, w // 8 + 4, 3)).astype(np.uint8),
                      (w + 32, h + 32), interpolation=cv2.INTER_CUBIC)
    return np.stack([base[8:8 + h, 2 * t:2 * t + w] for t in range(frames)])


QUERIES = np.array([[0, 30.0, 40.0], [2, 64.5, 80.25], [0, 90.0, 90.0]], np.float32)


@pytest.mark.parametrize("value", ["high", float("inf"), float("nan"), None, True])
def test_bad_values_are_refused(value):
    with pytest.raises(ValueError, match="vis_threshold"):
        TrackingSettings(vis_threshold=value)


def test_recorded_with_the_weights():
    assert TrackingSettings().vis_threshold == 0.0
    s = from_info({"inference": {"window": 8, "iters": 4, "vis_threshold": 2.5}})
    assert s.vis_threshold == 2.5 and "logit 2.5" in s.describe()
    with pytest.raises(ValueError, match="w/config.json.*vis_threshold"):
        from_info({"inference": {"vis_threshold": "x"}}, where="w/config.json")


def test_host_loop_and_functional_apply_it(small_model):
    import jax

    from objtrack_jax.functional import make_tracker

    model, params = small_model
    video = _video()
    base = TrackingSettings(window=8, iters=1, resolution=(128, 128))
    tracks0, vis0, logits = run_tracking(model, params, video, QUERIES, base)
    thr = float(np.median(logits))  # splits this clip's point-frames in two
    tracks1, vis1, logits1 = run_tracking(model, params, video, QUERIES,
                                          base.replace(vis_threshold=thr))
    np.testing.assert_array_equal(tracks0, tracks1)
    np.testing.assert_array_equal(logits, logits1)
    at_query = np.zeros_like(vis1)
    at_query[np.arange(len(QUERIES)), QUERIES[:, 0].astype(int)] = True
    np.testing.assert_array_equal(vis1, (logits1 > thr) | at_query)
    assert (vis1 != vis0).any()  # the median of this random model's logits is not 0

    out = jax.jit(make_tracker(model, base.replace(vis_threshold=thr)))(
        params, video[None], QUERIES[None])
    occ = np.asarray(out["occlusion"][0])
    np.testing.assert_allclose(thr - occ, logits, atol=1e-3)  # occlusion = threshold - logit
    np.testing.assert_array_equal(np.asarray(out["visible"][0]), (thr - occ > thr) | at_query)


def test_online_tracker_takes_it_from_the_settings(small_model):
    from objtrack_jax.online import OnlineTracker

    model, params = small_model
    s = TrackingSettings(window=4, iters=1, resolution=(128, 128), vis_threshold=1.5)
    tracker = OnlineTracker(model, params, (128, 128), capacity=8, settings=s)
    assert tracker.core.vis_threshold == 1.5
    assert OnlineTracker(model, params, (128, 128), capacity=8,
                         settings=s.replace(vis_threshold=0.0)).core.vis_threshold == 0.0


def test_host_loop_with_anchoring_hides_unmatched_hesitant_points(small_model):
    """With anchoring, a point-frame whose patch was found neither from the query nor from the
    previous frame is visible only above AnchorConfig.hide_logit (anchor.fuse_visibility)."""
    from objtrack_jax import anchor, post

    model, params = small_model
    video = _video()
    base = TrackingSettings(window=8, iters=1, resolution=(128, 128))
    # the random model's logits sit near 0: shift the threshold so both rules matter
    thr = float(np.quantile(run_tracking(model, params, video, QUERIES, base)[2], 0.25))
    net, vis0, logits = run_tracking(model, params, video, QUERIES, base.replace(vis_threshold=thr))
    tracks, vis, logits1 = run_tracking(model, params, video, QUERIES,
                                        base.replace(vis_threshold=thr, anchor=True))
    np.testing.assert_array_equal(logits, logits1)
    _, accepted, _ = post.anchor_tracks(video, net, QUERIES)
    firm = anchor.firm_threshold(anchor.AnchorConfig(), thr)
    want = anchor.fuse_visibility(logits > thr, logits > firm, accepted)
    want[np.arange(len(QUERIES)), QUERIES[:, 0].astype(int)] = True
    np.testing.assert_array_equal(vis, want)
    assert not (vis & ~vis0).any()  # anchoring only ever hides
