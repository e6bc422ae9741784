"""The second, finer tracking pass (``track_queries(refine_scale=...)``, ``track_windows(keep_init=True)``)."""

import argparse

import numpy as np
import pytest

import objtrack_jax
from objtrack_jax.data_pipelines import real_scenes
from objtrack_jax import inference, model_io
from objtrack_jax.cli_args import refine_scale_arg
from objtrack_jax.models.tracker import TrackerOutput
from objtrack_jax.settings import from_info, refine_size
from objtrack_jax.tracking import track_queries


def test_refine_size():
    assert refine_size((192, 256), 2) == (384, 512)
    assert refine_size((192, 344), 2.5) == (480, 864)  # sides rounded to multiples of 8
    for off in (None, 0, 1, 1.0):
        assert refine_size((192, 256), off) is None
    for bad in (0.5, -2, float("nan"), float("inf"), 9):
        with pytest.raises(ValueError, match="refine_scale must be 0 .one pass. or between 1 and 8"):
            refine_size((192, 256), bad)


def test_refine_scale_flag():
    assert refine_scale_arg("2") == 2.0 and refine_scale_arg("0") == 0.0
    for bad, msg in (("0.5", "must be 0"), ("9", "must be 0"), ("two", "expected a number")):
        with pytest.raises(argparse.ArgumentTypeError, match=msg):
            refine_scale_arg(bad)


def test_keep_init_starts_every_window_from_the_init(monkeypatch):
    """keep_init=True: each window starts from the given tracks (a refinement pass); False (the
    PIPs++ protocol): the frames after a window start from its last position."""
    model, params, _ = objtrack_jax.load_pretrained()
    model = model.clone(visibility_head=False)
    calls = []

    def fake_refine_fn(m, iters, with_init, masked=False):
        def run(params, fmaps, trajs, feat_init, num_valid):
            calls.append(np.asarray(trajs).copy())
            fields = {f: None for f in TrackerOutput._fields}
            fields["tracks"] = trajs + 1.0  # one px right and down per window
            return TrackerOutput(**fields)
        return run

    monkeypatch.setattr(inference, "_refine_fn", fake_refine_fn)
    monkeypatch.setattr(inference, "_encode_fn", lambda m: (lambda p, rgbs: rgbs[..., :1]))
    video = np.zeros((1, 15, 128, 128, 3), np.float32)  # windows of 8: frames 0-7 and 7-14
    init = np.zeros((1, 15, 1, 2), np.float32)
    init[0, :, 0, 0] = np.arange(15) * 10.0  # a track moving 10 px per frame
    kept, _ = inference.track_windows(model, params, video, init, window=8, iters=1, keep_init=True)
    second = calls[-1][0, :, 0, 0]
    np.testing.assert_allclose(second[0], init[0, 7, 0, 0] + 1.0)  # refined by window 1
    np.testing.assert_allclose(second[1:], init[0, 8:, 0, 0])  # the init, kept
    x = init[0, :, 0, 0]
    np.testing.assert_allclose(kept[0, :, 0, 0], np.r_[x[:7] + 1, x[7] + 2, x[8:] + 1])
    calls.clear()
    inference.track_windows(model, params, video, init, window=8, iters=1, keep_init=False)
    np.testing.assert_allclose(calls[-1][0, :, 0, 0], init[0, 7, 0, 0] + 1.0)  # last position


@pytest.fixture(scope="module")
def real_scene():
    return real_scenes.generate_sequence(5, frames=12, size=(128, 160), num_points=128,
                                         photos="eval")


def test_refine_pass_on_real_content(real_scene):
    """On a tiny real-content scene (evaluation photos under known motions) the shipped weights'
    second pass keeps the queries, the visibility and the shapes, and tracks more precisely than
    the first pass alone."""
    model, params, info = objtrack_jax.load_pretrained()
    seq = real_scene
    keep = np.flatnonzero(seq["visibs"][0] & seq["valids"][0])[:32]
    gt = seq["trajs_2d"][:, keep]
    q = np.stack([np.zeros(keep.size), gt[0, :, 1], gt[0, :, 0]], -1).astype(np.float32)
    q[::4, 0] = 5  # some queries in the middle: backward and forward segments
    q[::4, 1:] = gt[5, ::4][:, ::-1]
    kw = dict(window=8, iters=4, resize_to=(128, 160), progress=False)
    one, vis1, _ = track_queries(model, params, seq["rgbs"], q, **kw)
    two, vis2, _ = track_queries(model, params, seq["rgbs"], q, refine_scale=2, **kw)
    assert two.shape == one.shape and np.all(np.isfinite(two))
    t = q[:, 0].astype(int)
    np.testing.assert_array_equal(two[np.arange(len(q)), t], q[:, [2, 1]])
    np.testing.assert_array_equal(vis1, vis2)  # visibility comes from the first pass
    assert np.abs(two - one).max() > 0.1

    def err(tracks):
        e = np.linalg.norm(tracks - np.swapaxes(gt, 0, 1), axis=-1)
        return float(np.median(e[np.swapaxes(seq["valids"][:, keep], 0, 1) > 0]))

    assert err(two) < err(one), (err(two), err(one))
    settings = from_info(info)
    assert settings.refine_scale == 2 and settings.refine_iters == 4
