"""Still and slow content: the generator's still/slow regime, the filter that keeps still points,
the enter/leave path of the procedural objects, the centred coarse correlation levels and the
still-clip drift report."""

import importlib.util
import os

import jax.numpy as jnp
import numpy as np
import pytest

from objtrack_jax.data_pipelines import pipeline, real_scenes, scene_common, transforms
from objtrack_jax.models.correlation import build_pyramid, level_coords, pyramid_correlation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _speeds(seq):
    tr = seq["trajs_2d"]
    return np.linalg.norm(tr[1:] - tr[:-1], axis=-1).mean(0)  # [N] px/frame


def test_still_share_zero_leaves_the_stream_unchanged():
    a = real_scenes.generate_sequence(3, frames=6, size=(64, 96), num_points=32)
    b = real_scenes.generate_sequence(3, frames=6, size=(64, 96), num_points=32, still_share=0.0,
                                      flicker=0.0)
    np.testing.assert_array_equal(a["rgbs"], b["rgbs"])
    np.testing.assert_array_equal(a["trajs_2d"], b["trajs_2d"])


def test_still_regime_has_still_and_slow_points():
    fast = np.concatenate([_speeds(real_scenes.generate_sequence(
        s, frames=12, size=(96, 128), num_points=64)) for s in range(4)])
    slow = np.concatenate([_speeds(real_scenes.generate_sequence(
        s, frames=12, size=(96, 128), num_points=64, still_share=1.0)) for s in range(4)])
    assert np.mean(slow == 0.0) > 0.2  # exactly still points exist
    assert np.median(slow) < 0.5 * np.median(fast)
    assert np.mean(fast == 0.0) < 0.05


def test_slow_regime_scales():
    rng = np.random.default_rng(0)
    cams, objs = zip(*(real_scenes.slow_regime(rng, 1.0, 4) for _ in range(200)))
    cams, objs = np.array(cams), np.concatenate(objs)
    assert 0.3 < np.mean(cams == 0) < 0.7 and cams.max() <= 0.1
    assert 0.3 < np.mean(objs == 0) < 0.7 and objs.max() <= 0.3


def test_flicker_changes_only_brightness_statistics():
    a = real_scenes.generate_sequence(5, frames=10, size=(64, 96), num_points=16, still_share=1.0)
    b = real_scenes.generate_sequence(5, frames=10, size=(64, 96), num_points=16, still_share=1.0,
                                      flicker=0.05)
    np.testing.assert_array_equal(a["trajs_2d"], b["trajs_2d"])  # same scene and motion
    assert not np.array_equal(a["rgbs"], b["rgbs"])


def test_filter_still_share_keeps_still_points():
    s, n = 8, 40
    trajs = np.zeros((s, n, 2), np.float32) + np.array([30.0, 20.0], np.float32)
    trajs[:, n // 2:, 0] += np.arange(s)[:, None] * 2.0  # half move 2 px/frame, half are still
    clip = dict(trajs=trajs, vis=np.ones((s, n), bool), valids=np.ones((s, n), bool),
                rgbs=np.zeros((s, 64, 64, 3), np.uint8), masks=np.zeros((s, 64, 64), np.int32))
    cfg = pipeline.default_data_config()
    cfg.num_points = n
    cfg.filters.edge = False
    kept_off = [transforms.select_points(dict(clip), cfg, np.random.default_rng(i))[1]
                for i in range(10)]
    assert kept_off == [n // 2] * 10  # the 1-px motion filter drops every still point
    cfg.filters.still_share = 0.5
    kept = [transforms.select_points(dict(clip), cfg, np.random.default_rng(i))[1]
            for i in range(40)]
    assert set(kept) == {n // 2, n}  # some clips keep the still points, some do not
    cfg.filters.still_share = 1.0
    assert transforms.select_points(dict(clip), cfg, np.random.default_rng(0))[1] == n


def test_entering_objects_travel():
    """An object that enters or leaves must cross the frame border (start and end were once the
    same array, so about half of them did not move)."""
    travel = []
    for seed in range(60):
        rng = np.random.default_rng(seed)
        objs = scene_common.make_objects(rng, 12, (96, 128), 4, 0, np.ones(12),
                                         np.broadcast_to(np.array([63.5, 47.5]), (12, 2)),
                                         np.array([63.5, 47.5]))
        for o in objs:
            d = o.affine[-1, :, 2] - o.affine[0, :, 2]
            travel.append(np.hypot(*d))
    travel = np.array(travel)
    # without the alias, no object is left with a near-zero path: wobble alone moves < ~15 px
    assert np.mean(travel < 3.0) < 0.05


def test_level_coords_centres():
    p = jnp.array([[10.0, 6.0]])
    np.testing.assert_allclose(level_coords(p, 0, True), p)
    np.testing.assert_allclose(level_coords(p, 1, False), p / 2)
    np.testing.assert_allclose(level_coords(p, 1, True), (p - 0.5) / 2)
    np.testing.assert_allclose(level_coords(p, 3, True), (p - 3.5) / 8)


def test_centred_levels_peak_at_the_point():
    """On a map whose features are a one-hot at one cell, the centred level-2 correlation window
    is symmetric about the point; PIPs++'s mapping is not."""
    h = w = 32
    c = 8
    fm = np.zeros((1, 1, h, w, c), np.float32)
    fm[0, 0, 12:16, 20:24, 0] = 1.0  # one level-2 cell (rows 3, cols 5) = 4x4 level-0 cells
    pyr = build_pyramid(jnp.asarray(fm), 3)
    point = jnp.array([[[[21.5, 13.5]]]])  # the centre of that block in level-0 cells
    tmpl = jnp.zeros((1, 1, 1, 1, c)).at[..., 0].set(1.0)

    def level2(centered):
        out = pyramid_correlation(pyr, point, tmpl, 1, 0, centered=centered)
        return np.asarray(out).reshape(3, 3, 3)[2]  # [i (x), j (y)]

    on, off = level2(True), level2(False)
    assert np.argmax(on) == 4  # the window centre
    np.testing.assert_allclose(on, on[::-1, ::-1], atol=1e-6)
    assert not np.allclose(off, off[::-1, ::-1], atol=1e-3)


def _load_script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "scripts", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_still_drift_report_measures_a_known_drift():
    sd = _load_script("still_drift")
    video = sd.still_clip(0, 5, (64, 96))
    assert video.shape == (5, 64, 96, 3) and video.dtype == np.uint8
    assert not np.array_equal(video[0], video[1])  # fresh noise on every frame
    q = sd.grid(3, (64, 96))
    drift = np.array([-0.5, -1.0])
    steps = np.arange(200)[None, :, None] * drift
    tracks = q[:, None, [2, 1]] + steps
    rep = sd.drift_report(tracks, q)
    rows = {r["frame"]: r for r in rep["by_frame"]}
    assert rows[99]["mean_dx"] == pytest.approx(-49.5) and rows[99]["mean_dy"] == pytest.approx(-99)
    assert rows[7]["median_px"] == pytest.approx(7 * np.hypot(0.5, 1.0), abs=1e-3)
    assert rep["jitter_px"] == pytest.approx(np.hypot(0.5, 1.0), abs=1e-3)


def test_drift_metrics():
    from objtrack_jax.metrics import drift_metrics

    s, n = 120, 4
    g = np.zeros((s, n, 2)) + np.arange(s)[:, None, None] * 0.5  # the truth moves
    e = g + np.arange(s)[:, None, None] * np.array([0.1, 0.0])  # drifts 0.1 px/frame in x
    v = np.ones((s, n))
    v[100, 0] = 0
    m = drift_metrics(e, g, v)
    assert m["drift_med_50"] == pytest.approx(5.0) and m["drift_med_100"] == pytest.approx(10.0)
    assert "drift_med_200" not in m  # beyond the video
    assert m["jitter"] == pytest.approx(0.1)
    assert np.isnan(drift_metrics(e, g, np.zeros((s, n)))["jitter"])
    with pytest.raises(ValueError, match="valids"):
        drift_metrics(e, g, v[:, :2])


def test_camel_static_selection():
    cs = _load_script("camel_static")
    q = np.array([[0, 10.0, 20.0], [0, 30.0, 40.0], [0, 50.0, 60.0]])
    lk = np.repeat(q[:, None, [2, 1]], 5, axis=1)
    lk[1, 3] += 2.0  # moved 2.8 px once: not static
    alive = np.ones((3, 5), bool)
    alive[2, 4] = False  # lost: not static
    np.testing.assert_array_equal(cs.static_points(lk, alive, q, 1.0), [0])
    tracks = lk[:1] + np.array([1.0, -2.0])
    rep = cs.displacement_summary(tracks, q[:1])
    assert rep["median_px"] == pytest.approx(np.hypot(1, 2), abs=1e-3)
    assert rep["mean_dx"] == 1.0 and rep["mean_dy"] == -2.0


def test_visibility_calibration():
    cv = _load_script("calibrate_visibility")
    rng = np.random.default_rng(0)
    visible = rng.uniform(size=2000) < 0.9
    # an informative head whose logits all sit above 0: the default threshold finds no occlusion
    logits = np.where(visible, 4.0, 2.0) + rng.normal(0, 0.5, 2000)
    rep = cv.calibrate(logits, visible)
    assert rep["auc"] > 0.98
    assert rep["default"]["occluded_recall"] == 0.0
    assert rep["best"]["occluded_recall"] > 90 and 2.0 < rep["best"]["threshold"] < 4.0
    assert cv.auc(np.array([1.0, 2.0]), np.array([1.0, 0.0])) == pytest.approx(0.875)
    noise = cv.calibrate(rng.normal(size=2000), visible)
    assert abs(noise["auc"] - 0.5) < 0.06
