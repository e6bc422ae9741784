"""Template anchoring (objtrack_jax.anchor): sub-pixel re-alignment of tracks to the query patch.

Content: a smooth random texture moved by known sub-pixel translations (exact ground truth); the
"network" estimates are the truth plus a slowly growing bias (the drift the anchoring removes).
"""

import argparse

import cv2
import numpy as np
import pytest

from objtrack_jax import anchor, post
from objtrack_jax.settings import TrackingSettings, from_info

H, W, T = 96, 128, 24


def texture(seed=0, h=H + 40, w=W + 40):
    rng = np.random.default_rng(seed)
    img = rng.uniform(0, 255, (h // 4, w // 4, 3)).astype(np.float32)
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(img, (0, 0), 1.2)


def moving_clip(shifts, seed=0):
    """Frames of the texture translated by ``shifts [T, 2]`` (x, y) px; a point at p in frame 0
    is at p + shifts[t] in frame t."""
    base = texture(seed)
    frames = []
    for dx, dy in shifts:
        m = np.float32([[1, 0, dx - 20], [0, 1, dy - 20]])
        frames.append(cv2.warpAffine(base, m, (W, H), flags=cv2.INTER_CUBIC,
                                     borderMode=cv2.BORDER_REFLECT))
    return np.clip(np.stack(frames), 0, 255)


def grid_queries(t=0, n=5):
    ys, xs = np.meshgrid(np.linspace(20, H - 21, n), np.linspace(20, W - 21, n), indexing="ij")
    return np.stack([np.full(ys.size, t, np.float32), ys.ravel(), xs.ravel()], 1).astype(np.float32)


def truth_tracks(queries, shifts):
    t0 = int(queries[0, 0])
    xy = queries[:, [2, 1]]
    return (xy[:, None] + (shifts - shifts[t0])[None]).astype(np.float32)


@pytest.fixture(scope="module")
def slow_clip():
    rng = np.random.default_rng(1)
    shifts = np.cumsum(rng.uniform(-0.4, 0.4, (T, 2)), 0)
    shifts -= shifts[0]
    return moving_clip(shifts), shifts


def drifted(truth, t0=0, per_frame=(-0.15, -0.25)):
    """The truth plus a bias growing with the distance from the query frame (up to ~6 px)."""
    d = np.abs(np.arange(truth.shape[1]) - t0)[None, :, None] * np.asarray(per_frame)
    return (truth + d).astype(np.float32)


def test_removes_drift_to_subpixel(slow_clip):
    video, shifts = slow_clip
    q = grid_queries()
    truth = truth_tracks(q, shifts)
    est = drifted(truth)
    out, ok, score = post.anchor_tracks(video, est, q)
    err_before = np.linalg.norm(est - truth, axis=-1)
    err = np.linalg.norm(out - truth, axis=-1)
    assert err_before[:, -1].min() > 5.0
    assert ok.mean() > 0.95, ok.mean()
    assert np.median(err) < 0.05 and err.max() < 0.3, (np.median(err), err.max())
    assert score[ok].min() >= anchor.AnchorConfig().min_score
    np.testing.assert_array_equal(out[:, 0], q[:, [2, 1]])  # the query frame keeps the query


def test_brightness_change_does_not_move_points(slow_clip):
    video, shifts = slow_clip
    q = grid_queries()
    truth = truth_tracks(q, shifts)
    gain = 1.0 + 0.15 * np.sin(np.arange(T))[:, None, None, None]
    lit = np.clip(video * gain * 0.8 + 12.0, 0, 255)
    out, ok, _ = post.anchor_tracks(lit, drifted(truth), q)
    assert ok.mean() > 0.95
    assert np.median(np.linalg.norm(out - truth, axis=-1)) < 0.08


def test_occluded_point_keeps_the_network_motion_and_last_correction(slow_clip):
    video, shifts = slow_clip
    q = grid_queries()
    truth = truth_tracks(q, shifts)
    est = drifted(truth)
    hidden = video.copy()
    x, y = truth[12, 10:16].mean(0).round().astype(int)  # the centre point, frames 10-15
    hidden[10:16, y - 12:y + 13, x - 12:x + 13] = texture(seed=7)[:25, :25]  # another texture
    out, ok, score = post.anchor_tracks(hidden, est, q)
    assert not ok[12, 10:16].any(), score[12, 10:16]
    assert ok[12, 9]
    # hidden: the network's estimate moved by the correction accepted at frame 9
    np.testing.assert_allclose(out[12, 10:16], est[12, 10:16] + (out[12, 9] - est[12, 9]),
                               atol=1e-4)
    err_net = np.linalg.norm(est[12, 10:16] - truth[12, 10:16], axis=-1)
    err = np.linalg.norm(out[12, 10:16] - truth[12, 10:16], axis=-1)
    assert (err < err_net).all(), (err, err_net)
    assert ok[12, 16:].all()  # found again once uncovered (the carried correction)
    # keep_correction off: the network's estimate itself
    cfg = anchor.AnchorConfig(keep_correction=False)
    out2, ok2, _ = post.anchor_tracks(hidden, est, q, cfg)
    np.testing.assert_array_equal(out2[12, 10:16], est[12, 10:16])
    np.testing.assert_array_equal(ok2, ok)


def test_flat_patch_is_not_moved():
    video = np.full((6, H, W, 3), 128.0, np.float32)
    q = grid_queries(n=2)
    est = np.repeat(q[:, None, [2, 1]], 6, 1) + 1.5
    est[:, 0] = q[:, [2, 1]]
    out, ok, _ = post.anchor_tracks(video, est, q)
    assert not ok[:, 1:].any()
    np.testing.assert_array_equal(out[:, 1:], est[:, 1:])


def test_queries_after_frame_zero_refine_both_directions(slow_clip):
    video, shifts = slow_clip
    q = np.concatenate([grid_queries(t=9, n=3), grid_queries(t=0, n=2)])
    truth = np.concatenate([truth_tracks(q[:9], shifts), truth_tracks(q[9:], shifts)])
    est = np.concatenate([drifted(truth[:9], t0=9), drifted(truth[9:])])
    out, ok, _ = post.anchor_tracks(video, est, q)
    err = np.linalg.norm(out - truth, axis=-1)
    assert ok.mean() > 0.95
    assert err[:9, :9].max() < 0.3 and err[:9, 10:].max() < 0.3  # backward and forward of t=9
    np.testing.assert_array_equal(out[:9, 9], q[:9, [2, 1]])


def test_same_result_for_any_chunking(slow_clip):
    video, shifts = slow_clip
    q = np.concatenate([grid_queries(t=5, n=3), grid_queries(t=0, n=3)])
    est = drifted(np.concatenate([truth_tracks(q[:9], shifts), truth_tracks(q[9:], shifts)]),
                  per_frame=(0.3, -0.2))
    a = post.anchor_tracks(video, est, q, chunk=16)
    b = post.anchor_tracks(video, est, q, chunk=5)
    np.testing.assert_allclose(a[0], b[0], atol=1e-4)
    np.testing.assert_array_equal(a[1], b[1])


def test_empty_inputs():
    video = np.zeros((3, H, W, 3), np.uint8)
    out, ok, score = post.anchor_tracks(video, np.zeros((0, 3, 2), np.float32),
                                          np.zeros((0, 3), np.float32))
    assert out.shape == (0, 3, 2) and ok.shape == (0, 3) and score.shape == (0, 3)


@pytest.mark.parametrize("kw,word", [({"radius": 0}, "radius"), ({"levels": 1.5}, "levels"),
                                     ({"min_score": 2.0}, "min_score"),
                                     ({"max_shift": 0.0}, "max_shift"),
                                     ({"keep_correction": 1}, "keep_correction")])
def test_config_checked(kw, word):
    with pytest.raises(ValueError, match=word):
        anchor.AnchorConfig(**kw)


def test_setting_is_recorded_and_checked():
    assert TrackingSettings().anchor is None  # weights that record nothing: PIPs++ as it is
    assert from_info({"inference": {"window": 8, "iters": 4, "anchor": True}}).anchor == \
        anchor.AnchorConfig()  # config.json's "anchor": true, the validated configuration
    with pytest.raises(ValueError, match="anchor"):
        TrackingSettings(anchor="yes")
    with pytest.raises(ValueError, match="config.json.*anchor"):
        from_info({"inference": {"anchor": 1}}, where="w/config.json")
    assert "anchored" in TrackingSettings(anchor=True).describe()


def test_cli_flag():
    from objtrack_jax.cli_args import add_refine_args

    p = argparse.ArgumentParser()
    add_refine_args(p)
    assert p.parse_args([]).anchor is None  # the weights' setting
    assert p.parse_args(["--no-anchor"]).anchor is False
    assert p.parse_args(["--anchor"]).anchor is True


def test_track_queries_anchors_when_set(slow_clip, small_model):
    """The engine applies it after the network (random weights: the network's tracks are poor,
    the anchored ones sit on the truth wherever the patch matches)."""
    from objtrack_jax.tracking import track_queries

    video, shifts = slow_clip
    video = np.clip(cv2.resize(video.reshape(T * H, W, 3), (W * 2, T * H * 2)), 0, 255)
    video = video.reshape(T, 2 * H, 2 * W, 3)[:10]
    q = grid_queries(n=3) * np.float32([1, 2, 2])
    truth = truth_tracks(q, 2 * shifts[:10])
    model, params = small_model
    base = TrackingSettings(window=8, iters=1, resolution=(2 * H, 2 * W))
    off, _, _ = track_queries(model, params, video, q, settings=base, progress=False)
    on, _, _ = track_queries(model, params, video, q, settings=base.replace(anchor=True),
                             progress=False)
    ref, ok, _ = post.anchor_tracks(video, off, q)
    np.testing.assert_allclose(on, ref, atol=1e-5)
    err_on = np.linalg.norm(on - truth, axis=-1)
    assert np.median(err_on[ok]) < 0.1


def test_visibility_fusion():
    """A point-frame whose patch was not found stays visible only where the network is firm."""
    cfg = anchor.AnchorConfig()
    assert anchor.firm_threshold(cfg, 0.0) == cfg.hide_logit == 3.0
    assert anchor.firm_threshold(cfg, 5.0) == 5.0  # never below the visibility threshold
    assert anchor.firm_threshold(anchor.AnchorConfig(hide_logit=None), 0.0) is None
    logits = np.array([-1.0, 1.0, 4.0, -1.0, 1.0, 4.0])
    accepted = np.array([True, True, True, False, False, False])
    vis = anchor.fuse_visibility(logits > 0, logits > 3.0, accepted)
    assert vis.tolist() == [False, True, True, False, False, True]
    with pytest.raises(ValueError, match="hide_logit"):
        anchor.AnchorConfig(hide_logit=float("nan"))


def passing_occluder(frames=36, seed=3):
    """A still textured scene (fresh noise each frame) crossed by a 25x25 textured square moving
    left to right over rows 36-60 at 6 px/frame (frames 6-26). Returns ``(video, queries, truth,
    net, covered, i)``: the network's estimate ``net`` of point ``i`` (63.5, 47.5) is dragged along
    with the square while it covers the point and stays where the square left it (the drag
    measured on camel.mp4); ``covered [T]`` flags the frames the square hides that point."""
    rng = np.random.default_rng(seed)
    base = texture(seed)[20:20 + H, 20:20 + W]
    block = texture(seed=11)[:25, :25]
    video = np.repeat(base[None], frames, 0) + rng.normal(0, 2, (frames, H, W, 3))
    q = grid_queries()
    truth = np.repeat(q[:, None, [2, 1]], frames, 1).astype(np.float32)
    net = truth.copy()
    covered = np.zeros(frames, bool)
    i = int(np.argmin(np.abs(q[:, 2] - 64) + np.abs(q[:, 1] - 48)))
    px = q[i, 2]
    drag = 0.0
    for t in range(frames):
        cx = -20 + 6 * (t - 6) if t >= 6 else -100
        x0 = cx - 12
        if -25 < x0 < W:
            video[t, 36:61, max(x0, 0):max(min(x0 + 25, W), 0)] = \
                block[:, max(-x0, 0):max(min(25, W - x0), 0)]
        covered[t] = abs(cx - px) <= 12 + 5  # the point's patch (radius 5) overlaps the square
        if covered[t]:
            drag = min(cx - px + 12, 30.0) if t > 0 and covered[t - 1] else 0.0
        net[i, t, 0] += drag
    return np.clip(video, 0, 255).astype(np.float32), q, truth, net, covered, i


def test_point_under_a_passing_occluder_is_held_hidden_and_refound():
    """A still point crossed by an occluder that drags the network's estimate off with it is
    reported hidden while covered, stays where it is, and is found again once uncovered."""
    video, q, truth, net, covered, i = passing_occluder()
    cfg = anchor.AnchorConfig(hold_still=4)
    out, ok, score = post.anchor_tracks(video, net, q, cfg)
    err = np.linalg.norm(out[i] - truth[i], axis=-1)
    net_err = np.linalg.norm(net[i] - truth[i], axis=-1)
    assert net_err[~covered & (np.arange(len(covered)) > 20)].min() > 20  # the network is dragged
    hidden = score[i] == anchor.LOST_SCORE
    assert hidden[covered].mean() >= 0.8, (hidden, covered)
    assert not hidden[~covered].any()
    assert err.max() < 2.0, err
    after = np.flatnonzero(~covered & (np.arange(len(covered)) > 6))
    assert ok[i, after].all() and err[after].max() < 1.0, (ok[i], err)
    # the visibility the tracker reports: hidden while covered, even where the network is firm
    firm = np.ones_like(ok)
    vis = anchor.fuse_visibility(np.ones_like(ok), firm, ok, score == anchor.LOST_SCORE)
    assert not vis[i, covered].mean() > 0.2 and vis[i, after].all()
    # the other points, never covered, are untouched by the rule
    base, base_ok, _ = post.anchor_tracks(video, net, q)
    others = np.flatnonzero(np.abs(q[:, 1] - q[i, 1]) > 12 + 5)  # rows the square never crosses
    np.testing.assert_allclose(out[others], base[others], atol=1e-4)


def test_occluder_drags_the_point_without_the_rule():
    """The failure the rule removes: with ``hold_still`` off the output follows the network's
    estimate, dragged off by the occluder, and the point is never found again."""
    video, q, truth, net, covered, i = passing_occluder()
    out, ok, score = post.anchor_tracks(video, net, q)
    err = np.linalg.norm(out[i] - truth[i], axis=-1)
    assert err[-1] > 20 and not (score == anchor.LOST_SCORE).any()


def test_hold_still_checked():
    for kw, word in (({"hold_still": -1}, "hold_still"), ({"hold_still": 2.5}, "hold_still"),
                     ({"still_px": 0.0}, "still_px"), ({"still_px": float("nan")}, "still_px")):
        with pytest.raises(ValueError, match=word):
            anchor.AnchorConfig(**kw)
