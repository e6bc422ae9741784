"""Real-photo scenes (data_pipelines/real_scenes.py) and the classical baselines (baselines.py)."""

import os

import cv2
import numpy as np
import pytest

from objtrack_jax.data_pipelines import pointodyssey, real_scenes, synthetic
from objtrack_jax import baselines, evaluation


def _sample(img, pts):
    x = pts[:, 0:1].astype(np.float32)
    y = pts[:, 1:2].astype(np.float32)
    return cv2.remap(img.astype(np.float32), x, y, cv2.INTER_LINEAR)[:, 0]


def test_photo_sets_are_disjoint_and_load():
    assert not set(real_scenes.TRAIN_PHOTOS) & set(real_scenes.EVAL_PHOTOS)
    for which in ("train", "eval"):
        photos = real_scenes.photo_set(which)
        assert len(photos) >= 4
        for p in photos:
            assert p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 and min(p.shape[:2]) >= 100
    with pytest.raises(ValueError, match="'train' or 'eval'"):
        real_scenes.photo_set("test")


def test_sequence_layout_and_determinism():
    a = real_scenes.generate_sequence(3, frames=6, size=(64, 96), num_points=40)
    b = real_scenes.generate_sequence(3, frames=6, size=(64, 96), num_points=40)
    assert a["rgbs"].shape == (6, 64, 96, 3) and a["rgbs"].dtype == np.uint8
    assert a["masks"].shape == (6, 64, 96) and a["trajs_2d"].shape == (6, 40, 2)
    assert a["visibs"].shape == a["valids"].shape == (6, 40)
    assert set(np.unique(a["instance_ids"])) <= set(np.unique(a["masks"]))
    for k in ("rgbs", "masks", "trajs_2d", "visibs"):
        np.testing.assert_array_equal(a[k], b[k])
    c = real_scenes.generate_sequence(4, frames=6, size=(64, 96), num_points=40)
    assert not np.array_equal(a["rgbs"], c["rgbs"])
    # a visible point lies on its own layer's mask
    t, n = np.nonzero(a["visibs"])
    x = np.round(a["trajs_2d"][t, n, 0]).astype(int)
    y = np.round(a["trajs_2d"][t, n, 1]).astype(int)
    np.testing.assert_array_equal(a["masks"][t, y, x], a["instance_ids"][n])


@pytest.mark.parametrize("seed", [0, 1])
def test_ground_truth_follows_the_pixels(seed):
    """Without photometric changes, the colour under a visible track stays the colour it had at
    frame 0 (error far below the error against a shuffled pairing)."""
    seq = real_scenes.generate_sequence(seed, frames=8, size=(96, 128), num_points=128,
                                        realism=False, procedural_share=0.0)
    rgbs, tr, vis = seq["rgbs"], seq["trajs_2d"], seq["visibs"]
    errs, shuffled = [], []
    for t in range(1, 8):
        m = vis[0] & vis[t]
        if m.sum() < 10:
            continue
        a, b = _sample(rgbs[0], tr[0][m]), _sample(rgbs[t], tr[t][m])
        errs.append(np.abs(a - b).mean())
        shuffled.append(np.abs(a - np.roll(b, 1, 0)).mean())
    assert errs, "no visible tracks"
    assert np.mean(errs) < 0.25 * np.mean(shuffled), (np.mean(errs), np.mean(shuffled))


def test_homography_path_starts_at_identity_and_is_smooth():
    rng = np.random.default_rng(0)
    h = real_scenes.homography_path(rng, 10, (120, 160))
    np.testing.assert_allclose(h[0], np.eye(3), atol=1e-12)
    c = np.array([[80.0, 60.0]])
    pos = np.stack([real_scenes._apply_h(h[t], c)[0] for t in range(10)])
    step = np.linalg.norm(np.diff(pos, axis=0), axis=-1)
    assert step.max() < 20.0


def test_presets_write_pointodyssey_layout(tmp_path):
    summary = synthetic.main(["--out", str(tmp_path), "--preset", "real-tiny", "--no-progress"])
    assert sorted(summary["splits"]) == ["test", "train"]
    seqs = pointodyssey.list_sequences(str(tmp_path), "train")
    assert len(seqs) == 2
    anno = pointodyssey.load_annotations(seqs[0])
    assert anno["trajs"].shape == (8, 32, 2)
    assert pointodyssey.num_frames(seqs[0]) == 8
    assert synthetic.PRESETS["real-eval"]["photos"] == "eval"


def _shifted_video(dx=1.5, dy=-0.75, frames=5, size=(96, 128)):
    photo = real_scenes.photo_set("eval")[0]
    h, w = size
    out = []
    for t in range(frames):
        m = np.float32([[1, 0, 200 + dx * t], [0, 1, 150 + dy * t]])
        out.append(cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP))
    # content moves by -(dx, dy) per frame in image coordinates
    return np.stack(out), np.array([-dx, -dy])


@pytest.mark.parametrize("name", ["lk", "dis"])
def test_flow_baselines_recover_a_known_translation(name):
    video, vel = _shifted_video()
    rng = np.random.default_rng(0)
    pts = np.stack([rng.uniform(30, 98, 20), rng.uniform(25, 70, 20)], -1)  # (x, y) at t=2
    queries = np.concatenate([np.full((20, 1), 2.0), pts[:, ::-1]], -1)  # (t, y, x)
    tracks, visible = baselines.track(name, video, queries)
    assert tracks.shape == (20, 5, 2)
    expected = pts[:, None] + (np.arange(5) - 2)[None, :, None] * vel
    err = np.abs(tracks - expected)
    assert np.median(err) < 0.3, np.median(err)
    np.testing.assert_allclose(tracks[:, 2], pts, atol=1e-4)  # the query frame is the query
    if name == "lk":
        assert visible.shape == (20, 5) and visible.mean() > 0.8
    else:
        assert visible is None


def test_zero_baseline_and_errors():
    video = np.zeros((3, 32, 32, 3), np.uint8)
    tracks, vis = baselines.track("zero", video, np.array([[1.0, 4.0, 5.0]]))
    np.testing.assert_array_equal(tracks, [[[5, 4]] * 3])
    assert vis is None
    with pytest.raises(ValueError, match="unknown baseline 'sift'"):
        baselines.track("sift", video, np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        baselines.track("lk", video, np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"query frames must be in \[0, 2\]"):
        baselines.track("lk", video, np.array([[5.0, 1.0, 1.0]]))


def test_evaluate_baselines_on_real_scenes(tmp_path):
    synthetic.generate_dataset(str(tmp_path), num_seqs={"test": 2}, frames=8, size=(96, 128),
                               num_points=48, preset="real-eval", progress=False,
                               write_depths=False)
    rows = {}
    for name in ("zero", "lk", "dis"):
        per_video, mean = evaluation.evaluate("synthetic", str(tmp_path), name, None,
                                              split="test", progress=False)
        assert len(per_video) == 2 and np.isfinite(mean["d_avg"])
        rows[name] = mean
    assert os.path.isdir(tmp_path / "test")
    # on real content the flow baselines beat not moving
    assert rows["lk"]["d_avg"] > rows["zero"]["d_avg"]
    assert rows["dis"]["d_avg"] > rows["zero"]["d_avg"]


@pytest.mark.parametrize("flag,value,expected", [("--num-seqs", "-1", "--num-seqs: -1 is not allowed"),
                                                 ("--frames", "1", "--frames: 1 is not allowed"),
                                                 ("--preset", "nope", "invalid choice: 'nope'")])
def test_synth_rejects_bad_counts(tmp_path, capsys, flag, value, expected):
    with pytest.raises(SystemExit) as e:
        synthetic.main(["--out", str(tmp_path), flag, value])
    assert e.value.code == 2
    assert expected in capsys.readouterr().err
    assert not os.listdir(tmp_path)
