"""Synthetic PointOdyssey-layout generator: shapes, exact ground truth, determinism, on-disk layout."""

import os

import cv2
import numpy as np
import pytest

from objtrack_jax.data_pipelines import pointodyssey, synthetic

SIZE = (48, 64)
FRAMES = 6


@pytest.fixture(scope="module")
def seq():
    return synthetic.generate_sequence(seed=3, frames=FRAMES, size=SIZE, num_objects=4, num_points=80)


def test_shapes_and_dtypes(seq):
    t, (h, w), n = FRAMES, SIZE, 80
    expected = dict(rgbs=((t, h, w, 3), np.uint8), masks=((t, h, w), np.uint8),
                    depths=((t, h, w), np.float32), trajs_2d=((t, n, 2), np.float32),
                    visibs=((t, n), np.bool_), valids=((t, n), np.bool_), instance_ids=((n,), np.uint8),
                    trajs_3d=((t, n, 3), np.float32), intrinsics=((t, 3, 3), np.float32),
                    extrinsics=((t, 4, 4), np.float32))
    for key, (shape, dtype) in expected.items():
        assert seq[key].shape == shape, key
        assert seq[key].dtype == dtype, key
    assert seq["valids"].all()
    # background 1, objects 2..5; 0 (PointOdyssey's "unknown") is never written
    assert seq["masks"].min() >= synthetic.BACKGROUND_ID
    assert set(np.unique(seq["instance_ids"])) <= {1, 2, 3, 4, 5}
    assert (seq["instance_ids"] == synthetic.BACKGROUND_ID).any()
    assert (seq["distractor_of"] > 0).sum() == 1  # one distractor copying another object's look


def test_visibility_follows_depth_order(seq):
    h, w = SIZE
    x, y = seq["trajs_2d"][..., 0], seq["trajs_2d"][..., 1]
    in_img = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    assert not (seq["visibs"] & ~in_img).any(), "points outside the image must not be visible"
    t_idx = np.broadcast_to(np.arange(FRAMES)[:, None], x.shape)
    xi, yi = np.round(x).astype(int).clip(0, w - 1), np.round(y).astype(int).clip(0, h - 1)
    front = seq["masks"][t_idx, yi, xi]
    owner = np.broadcast_to(seq["instance_ids"][None], x.shape)
    vis = seq["visibs"]
    np.testing.assert_array_equal(front[vis], owner[vis])
    # An in-image point that is not visible is covered by a layer nearer to the camera.
    hidden = in_img & ~vis
    assert hidden.any() and vis.any()
    front_depth = seq["depths"][t_idx, yi, xi]
    assert (front_depth[hidden] < seq["trajs_3d"][..., 2][hidden]).all()


def test_objects_move_and_occlusions_change(seq):
    obj = seq["instance_ids"] != synthetic.BACKGROUND_ID
    motion = np.linalg.norm(seq["trajs_2d"][-1] - seq["trajs_2d"][0], axis=-1)
    assert np.median(motion[obj]) > 0.5
    assert (seq["visibs"][1:] != seq["visibs"][:-1]).any()


def test_deterministic_by_seed():
    a = synthetic.generate_sequence(seed=11, frames=3, size=(32, 40), num_points=20)
    b = synthetic.generate_sequence(seed=11, frames=3, size=(32, 40), num_points=20)
    c = synthetic.generate_sequence(seed=12, frames=3, size=(32, 40), num_points=20)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not np.array_equal(a["rgbs"], c["rgbs"])


def test_write_sequence_roundtrip(tmp_path, seq):
    seq_dir = str(tmp_path / "train" / "s")
    synthetic.write_sequence(seq_dir, seq)
    frames = pointodyssey.load_frames(seq_dir, range(FRAMES))
    assert np.abs(frames.astype(int) - seq["rgbs"]).mean() < 8  # JPEG quality 95
    np.testing.assert_array_equal(pointodyssey.load_masks(seq_dir, range(FRAMES)), seq["masks"])
    anno = pointodyssey.load_annotations(seq_dir)
    np.testing.assert_array_equal(anno["trajs"], seq["trajs_2d"])
    np.testing.assert_array_equal(anno["visibs"], seq["visibs"])
    d16 = cv2.imread(os.path.join(seq_dir, "depths", "depth_00002.png"), cv2.IMREAD_UNCHANGED)
    assert d16.dtype == np.uint16
    np.testing.assert_allclose(d16 / 65535.0 * 1000.0, seq["depths"][2], atol=1000 / 65535)
    with np.load(os.path.join(seq_dir, "anno.npz")) as npz:
        assert {"trajs_2d", "visibs", "valids", "trajs_3d", "intrinsics", "extrinsics",
                "instance_ids"} <= set(npz.files)


def test_generate_dataset_layout_and_split_seeds(tmp_path):
    kw = dict(frames=3, size=(32, 40), num_points=16, progress=False)
    summary = synthetic.generate_dataset(str(tmp_path / "a"), num_seqs={"train": 2, "val": 1}, **kw)
    assert summary["splits"] == {"train": ["seq_0000", "seq_0001"], "val": ["seq_0000"]}
    assert os.path.exists(tmp_path / "a" / "train" / "seq_0001" / "rgbs" / "rgb_00002.jpg")
    assert os.path.exists(tmp_path / "a" / "val" / "seq_0000" / "masks" / "mask_00000.png")
    # A sequence depends only on (seed, split, index): fewer sequences give the same first one.
    synthetic.generate_dataset(str(tmp_path / "b"), num_seqs={"train": 1}, **kw)
    a = np.load(tmp_path / "a" / "train" / "seq_0000" / "anno.npz")["trajs_2d"]
    b = np.load(tmp_path / "b" / "train" / "seq_0000" / "anno.npz")["trajs_2d"]
    v = np.load(tmp_path / "a" / "val" / "seq_0000" / "anno.npz")["trajs_2d"]
    np.testing.assert_array_equal(a, b)
    assert a.shape != v.shape or not np.array_equal(a, v)


def test_main_cli(tmp_path, capsys):
    summary = synthetic.main(["--out", str(tmp_path), "--num-seqs", "1", "--frames", "3",
                              "--size", "32x40", "--seed", "5"])
    assert summary["splits"]["train"] == ["seq_0000"] and len(summary["splits"]["val"]) == 1
    assert "train=1" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        synthetic.main(["--out", str(tmp_path), "--size", "32by40"])
