"""Hand-computed checks of the TAP-Vid and PIPs++ metrics, and parity with the PIPs++ fixture."""

import os
import warnings

import numpy as np
import pytest

from conftest import PIPS2_REF_DIR, require_path
from objtrack_jax import metrics

DELTAS = (1, 2, 4, 8, 16)


def _tapvid(query_t, gt_occ, gt, pred_occ, pred, mode, trackwise=False, **kw):
    """Wraps one video's arrays [n, T(, 2)] into a batch of 1 and calls tapvid_metrics."""
    gt = np.asarray(gt, np.float64)
    query = np.zeros((1, gt.shape[0], 3))
    query[0, :, 0] = query_t
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return metrics.tapvid_metrics(query, np.asarray(gt_occ, bool)[None], gt[None],
                                      np.asarray(pred_occ, bool)[None], np.asarray(pred, np.float64)[None],
                                      mode, get_trackwise_metrics=trackwise, **kw)


# ------------------------------------------------------------------------------------------ TAP-Vid


def test_tapvid_query_frame_excluded_first_and_strided():
    # One point, 4 frames, query at frame 1; the prediction is 100 px off at frames 0 and 1.
    gt = np.zeros((1, 4, 2))
    pred = gt.copy()
    pred[0, :2, 0] = 100.0
    occ = np.zeros((1, 4), bool)
    first = _tapvid([1], occ, gt, occ, pred, "first")  # scores frames 2, 3 only
    strided = _tapvid([1], occ, gt, occ, pred, "strided")  # scores frames 0, 2, 3
    for d in DELTAS:
        np.testing.assert_allclose(first[f"pts_within_{d}"], [1.0])
        np.testing.assert_allclose(strided[f"pts_within_{d}"], [2 / 3])
        np.testing.assert_allclose(strided[f"jaccard_{d}"], [2 / 4])  # TP 2, gt positives 3, FP 1
    np.testing.assert_allclose(first["occlusion_accuracy"], [1.0])
    assert list(first) == list(metrics.TAPVID_KEYS) and len(first) == 13


def test_tapvid_strict_threshold_at_boundary():
    # Errors of exactly 1, 2, 4, 8, 16 px (x only, exact in float) on frames 1..5; query frame 0.
    gt = np.zeros((1, 6, 2))
    pred = gt.copy()
    pred[0, 1:, 0] = DELTAS
    occ = np.zeros((1, 6), bool)
    out = _tapvid([0], occ, gt, occ, pred, "first")
    # within_δ is ‖e‖² < δ²: an error equal to δ does not count, so δ_k is hit by the errors < δ_k.
    for k, d in enumerate(DELTAS):
        np.testing.assert_allclose(out[f"pts_within_{d}"], [k / 5])
    np.testing.assert_allclose(out["average_pts_within_thresh"], [np.mean(np.arange(5) / 5)])


def test_tapvid_jaccard_with_false_positives():
    # Query frame 0; scored frames 1..4. GT visible at 1, 2 and occluded at 3, 4. The prediction
    # claims visibility everywhere: exact at 1, 3 px off at 2.
    gt = np.zeros((1, 5, 2))
    pred = gt.copy()
    pred[0, 2, 1] = 3.0
    gt_occ = np.array([[False, False, False, True, True]])
    pred_occ = np.zeros((1, 5), bool)
    out = _tapvid([0], gt_occ, gt, pred_occ, pred, "first")
    # δ ∈ {1, 2}: TP 1, FP 3 (frame 2 too far, frames 3 and 4 occluded), gt positives 2 → 1/5.
    # δ ∈ {4, 8, 16}: TP 2, FP 2 → 2/4.
    expected_j = {1: 0.2, 2: 0.2, 4: 0.5, 8: 0.5, 16: 0.5}
    expected_p = {1: 0.5, 2: 0.5, 4: 1.0, 8: 1.0, 16: 1.0}
    for d in DELTAS:
        np.testing.assert_allclose(out[f"jaccard_{d}"], [expected_j[d]])
        np.testing.assert_allclose(out[f"pts_within_{d}"], [expected_p[d]])
    np.testing.assert_allclose(out["average_jaccard"], [0.38])
    np.testing.assert_allclose(out["average_pts_within_thresh"], [0.8])
    np.testing.assert_allclose(out["occlusion_accuracy"], [0.5])


def test_tapvid_empty_denominators_no_warning():
    # Track 0: query at the last frame → nothing scored in 'first'. Track 1: never visible and
    # predicted occluded → no gt positives and no predicted positives.
    gt = np.zeros((2, 3, 2))
    occ = np.array([[False] * 3, [True] * 3])
    # 0/0 is nan, as in tapnet (which computes it with a warning).
    out = _tapvid([2, 0], occ, gt, occ, gt, "first", trackwise=True)
    for key, value in out.items():
        assert value.shape == (1, 2), key
        expected = [np.nan, 1.0] if key == "occlusion_accuracy" else [np.nan, np.nan]
        np.testing.assert_allclose(value[0], expected, err_msg=key)
    zeros = _tapvid([2, 0], occ, gt, occ, gt, "first", trackwise=True, empty_value=0.0)
    assert np.all(np.isfinite(zeros["pts_within_1"])) and zeros["occlusion_accuracy"][0, 0] == 0
    # Video-level: only track 1 is scored, it has no positives at all.
    video = _tapvid([2, 0], occ, gt, occ, gt, "first")
    np.testing.assert_allclose(video["occlusion_accuracy"], [1.0])
    assert np.isnan(video["average_jaccard"]).all()


def test_tapvid_shapes_and_video_pooling():
    rng = np.random.default_rng(0)
    b, n, t = 2, 5, 7
    gt = rng.uniform(0, 256, (b, n, t, 2))
    pred = gt + rng.normal(0, 4, gt.shape)
    gt_occ = rng.uniform(size=(b, n, t)) < 0.3
    pred_occ = rng.uniform(size=(b, n, t)) < 0.3
    query = np.zeros((b, n, 3))
    query[..., 0] = rng.integers(0, 3, (b, n))
    video = metrics.tapvid_metrics(query, gt_occ, gt, pred_occ, pred, "strided")
    tracks = metrics.tapvid_metrics(query, gt_occ, gt, pred_occ, pred, "strided", get_trackwise_metrics=True)
    assert all(v.shape == (b,) for v in video.values())
    assert all(v.shape == (b, n) for v in tracks.values())
    # Video values pool frames over all tracks: occlusion accuracy = scored agreements / scored frames.
    scored = np.arange(t)[None, None] != query[..., :1].astype(int)
    expected = ((pred_occ == gt_occ) & scored).sum((1, 2)) / scored.sum((1, 2))
    np.testing.assert_allclose(video["occlusion_accuracy"], expected)
    with pytest.raises(ValueError, match="query_mode"):
        metrics.tapvid_metrics(query, gt_occ, gt, pred_occ, pred, "last")
    with pytest.raises(ValueError, match="pred_tracks"):
        metrics.tapvid_metrics(query, gt_occ, gt, pred_occ, pred[:, :, :-1], "first")


def _tapvid_loops(query, gt_occ, gt, pred_occ, pred, mode):
    """Straight per-track, per-frame transcription of the definitions in docs/conventions.md (slow;
    for checking only)."""
    b, n, t = gt_occ.shape
    out = {k: np.zeros((b, n)) for k in metrics.TAPVID_KEYS}
    for i in range(b):
        for j in range(n):
            q = int(round(query[i, j, 0]))
            frames = [f for f in range(t) if (f > q if mode == "first" else f != q)]
            agree = sum(pred_occ[i, j, f] == gt_occ[i, j, f] for f in frames)
            out["occlusion_accuracy"][i, j] = agree / len(frames) if frames else np.nan
            for d in DELTAS:
                within = {f: np.sum((pred[i, j, f] - gt[i, j, f]) ** 2) < d * d for f in frames}
                vis = [f for f in frames if not gt_occ[i, j, f]]
                tp = sum(within[f] and not pred_occ[i, j, f] for f in vis)
                fp = sum(not pred_occ[i, j, f] and (gt_occ[i, j, f] or not within[f]) for f in frames)
                out[f"pts_within_{d}"][i, j] = sum(within[f] for f in vis) / len(vis) if vis else np.nan
                out[f"jaccard_{d}"][i, j] = tp / (len(vis) + fp) if len(vis) + fp else np.nan
    out["average_jaccard"] = np.mean([out[f"jaccard_{d}"] for d in DELTAS], axis=0)
    out["average_pts_within_thresh"] = np.mean([out[f"pts_within_{d}"] for d in DELTAS], axis=0)
    return out


@pytest.mark.parametrize("mode", ["first", "strided"])
def test_tapvid_trackwise_matches_loop_transcription(mode):
    rng = np.random.default_rng(2)
    b, n, t = 2, 6, 9
    gt = rng.uniform(0, 256, (b, n, t, 2))
    pred = gt + rng.normal(0, 5, gt.shape)
    gt_occ = rng.uniform(size=(b, n, t)) < 0.3
    pred_occ = rng.uniform(size=(b, n, t)) < 0.3
    query = np.zeros((b, n, 3))
    query[..., 0] = rng.integers(0, t, (b, n))
    ours = metrics.tapvid_metrics(query, gt_occ, gt, pred_occ, pred, mode, get_trackwise_metrics=True)
    expected = _tapvid_loops(query, gt_occ, gt, pred_occ, pred, mode)
    for key in metrics.TAPVID_KEYS:
        np.testing.assert_allclose(ours[key], expected[key], rtol=1e-12, err_msg=key)


# ------------------------------------------------------------------------------------------ PIPs++


def _pips(errors_x, valids, image_size=(256, 256), **kw):
    """PIPs++ metrics for one video whose error is ``errors_x`` [S, N] along x (gt at 0)."""
    errors_x = np.asarray(errors_x, np.float64)
    trajs_g = np.zeros((1, *errors_x.shape, 2))
    trajs_e = trajs_g.copy()
    trajs_e[0, ..., 0] = errors_x
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return metrics.pips_metrics(trajs_e, trajs_g, np.asarray(valids, np.float64)[None], image_size, **kw)


def test_pips_thresholds_skip_frame_zero_and_rescale():
    out = _pips([[100.0], [0.5], [3.0]], np.ones((3, 1)))
    denom = 2 + 1e-6
    np.testing.assert_allclose([out[f"d_{d}"][0] for d in DELTAS],
                               [100 / denom, 100 / denom, 200 / denom, 200 / denom, 200 / denom])
    np.testing.assert_allclose(out["d_avg"], [(2 * 100 + 3 * 200) / 5 / denom])
    # Rescaling to 256×256: a 2 px x-error in a 512-wide frame is 1 px; a 1 px y-error in a
    # 128-high frame is 2 px. Both sit exactly on a strict threshold.
    trajs_g = np.zeros((1, 2, 2, 2))
    trajs_e = trajs_g.copy()
    trajs_e[0, 1, 0, 0] = 2.0
    trajs_e[0, 1, 1, 1] = 1.0
    out = metrics.pips_metrics(trajs_e, trajs_g, np.ones((1, 2, 2)), (128, 512))
    np.testing.assert_allclose([out["d_1"][0], out["d_2"][0], out["d_4"][0]],
                               [0.0, 50 / (1 + 5e-7), 100 / (1 + 5e-7)])
    np.testing.assert_allclose(out["median_l2"], [(0.5 + 1.0) / 2])


def test_pips_survival_cumprod():
    # Point 0 is lost at frame 1 and never comes back although later errors are 0. Point 1 is far off
    # only at an invalid frame, and exactly at the threshold (not beyond it) at frame 2.
    errors = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 16.0], [0.0, 50.0]])
    valids = np.ones((4, 2))
    valids[3, 1] = 0
    out = _pips(errors, valids, survival_threshold=16.0)
    np.testing.assert_allclose(out["survival"], [100 * (1 + 4) / 8])
    np.testing.assert_allclose(_pips(errors, valids, survival_threshold=50.0)["survival"], [100.0])


def test_pips_median_l2_averaging_median_and_empty():
    # Point 0: 4 valid frames (even count) → (2 + 10) / 2 = 6, the invalid 1000 is ignored.
    # Point 1: 3 valid frames → 5. Point 2: no valid frame → left out of the mean.
    errors = np.array([[1.0, 3.0, 0.0], [10.0, 7.0, 0.0], [1000.0, 5.0, 0.0], [2.0, 9.0, 0.0],
                       [20.0, 1.0, 0.0]])
    valids = np.array([[1, 1, 0], [1, 1, 0], [0, 1, 0], [1, 0, 0], [1, 0, 0]], np.float64)
    out = _pips(errors, valids)
    np.testing.assert_allclose(out["median_l2"], [(6.0 + 5.0) / 2])
    # A video without any valid frame: d_* = 0, survival = 100, median_l2 = nan; no warning.
    empty = _pips(errors, np.zeros_like(valids))
    assert all(empty[f"d_{d}"][0] == 0.0 for d in DELTAS) and empty["survival"][0] == 100.0
    assert np.isnan(empty["median_l2"][0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean = metrics.average_metrics([out, empty])
    assert mean["median_l2"] == pytest.approx(5.5)  # the nan video is skipped
    assert mean["survival"] == pytest.approx((out["survival"][0] + 100.0) / 2)


def test_masked_median_matches_numpy():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(6, 9))
    mask = rng.uniform(size=values.shape) < 0.6
    mask[0] = False
    median, count = metrics.masked_median(values, mask, axis=1)
    for i in range(1, values.shape[0]):
        assert median[i] == pytest.approx(np.median(values[i][mask[i]]))
    assert count[0] == 0 and np.isnan(median[0])


def test_average_and_format_table():
    per_video = metrics.split_videos({"d_avg": np.array([10.0, 30.0]), "survival": np.array([50.0, 70.0])},
                                     names=["a", "b"])
    assert per_video[0] == {"video": "a", "d_avg": 10.0, "survival": 50.0}
    assert metrics.average_metrics(per_video) == {"d_avg": 20.0, "survival": 60.0}
    table = metrics.format_table(per_video, ["d_avg", "survival"], precision=1)
    lines = table.splitlines()
    assert lines[0].split() == ["video", "d_avg", "survival"]
    assert lines[2].split() == ["a", "10.0", "50.0"]
    assert lines[-1].split() == ["mean", "20.0", "60.0"]


# ------------------------------------------------------------------------------------------ fixture


def test_pips_metrics_parity_with_reference_long_video():
    path = require_path(os.path.join(PIPS2_REF_DIR, "pips2_reference_io.npz"), "PIPs++ reference fixture")
    with np.load(path) as ref:
        trajs_e, trajs_g, valids = ref["long_trajs_e"], ref["long_trajs_g"], ref["long_valids"]
        height, width = (int(s) for s in ref["long_image_size"])
        orig_h, orig_w = ref["long_rgbs"].shape[-2:]
        threshold = float(ref["long_survival_threshold"])
        expected = {k.split("/", 1)[1]: float(ref[k]) for k in ref.files if k.startswith("long_metric/")}
    assert set(expected) == set(metrics.PIPS_KEYS)
    # The estimates live at the model resolution, the ground truth at the original one: scale the
    # ground truth by (W_new/W_old, H_new/H_old) and evaluate at the model resolution.
    scale = np.array([width / orig_w, height / orig_h])
    ours = metrics.pips_metrics(trajs_e, trajs_g * scale, valids, (height, width), threshold)
    for key, value in expected.items():
        assert abs(ours[key][0] - value) <= 5e-6 * abs(value), (key, ours[key][0], value)
    # Equivalent (the 256-normalisation is per axis): estimates scaled back to the original frame.
    ours_orig = metrics.pips_metrics(trajs_e / scale, trajs_g, valids, (orig_h, orig_w), threshold)
    for key, value in expected.items():
        assert abs(ours_orig[key][0] - value) <= 5e-6 * abs(value), (key, ours_orig[key][0], value)


def test_pips_empty_input_is_nan_for_every_metric():
    """No points (or no frames): nothing to score, nan for every metric (the TAP-Vid metrics'
    0/0), skipped by the mean; no warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for shape in ((2, 5, 0), (1, 0, 3)):
            out = metrics.pips_metrics(np.zeros(shape + (2,)), np.zeros(shape + (2,)),
                                       np.ones(shape), image_size=(256, 256))
            assert set(out) == set(metrics.PIPS_KEYS)
            assert all(v.shape == (shape[0],) and np.isnan(v).all() for v in out.values())
        tap = metrics.tapvid_metrics(np.zeros((1, 0, 3)), np.zeros((1, 0, 4), bool),
                                     np.zeros((1, 0, 4, 2)), np.zeros((1, 0, 4), bool),
                                     np.zeros((1, 0, 4, 2)), "first")
    assert all(np.isnan(v).all() for v in tap.values())  # the same rule as TAP-Vid's
    one = metrics.pips_metrics(np.zeros((1, 3, 1, 2)), np.zeros((1, 3, 1, 2)), np.ones((1, 3, 1)),
                               image_size=(256, 256))
    empty = metrics.pips_metrics(np.zeros((1, 3, 0, 2)), np.zeros((1, 3, 0, 2)),
                                 np.ones((1, 3, 0)), image_size=(256, 256))
    mean = metrics.average_metrics([{k: v[0] for k, v in one.items()},
                                    {k: v[0] for k, v in empty.items()}])
    assert mean["d_avg"] == pytest.approx(100.0, abs=1e-3) and mean["survival"] == 100.0  # skipped
