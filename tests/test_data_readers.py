"""Dataset readers on tiny fixtures in each real layout: PointOdyssey (v1.2 and old), its TFDS
builder, TAP-Vid (DAVIS, RGB-Stacking, RoboTAP, Kinetics) and CroHD (HT21)."""

import logging
import os
import pickle
import shutil

import cv2
import numpy as np
import pytest

from objtrack_jax.data_pipelines import crohd, pointodyssey, synthetic, tapvid

PO_FRAMES, PO_SIZE = 6, (32, 40)


# ----------------------------------------------------------------------------------------------
# PointOdyssey
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def po_seq():
    return synthetic.generate_sequence(seed=7, frames=PO_FRAMES, size=PO_SIZE, num_points=30)


@pytest.fixture()
def po_root(tmp_path, po_seq):
    """<root>/train/{new,old}: one v1.2 sequence and the same one with an old annotations.npz."""
    root = tmp_path / "po"
    new = root / "train" / "new"
    synthetic.write_sequence(str(new), po_seq, write_depths=False)
    old = root / "train" / "old"
    shutil.copytree(new, old)
    os.remove(old / "anno.npz")
    codes = np.where(po_seq["visibs"], 1, 0).astype(np.uint8)
    codes[:, 0] = 2  # point 0: out of view / invalid everywhere
    np.savez(old / "annotations.npz", trajs_2d=po_seq["trajs_2d"], visibilities=codes)
    return root


def test_list_sequences(po_root):
    seqs = pointodyssey.list_sequences(str(po_root), "train")
    assert [os.path.basename(s) for s in seqs] == ["new", "old"]
    assert pointodyssey.list_splits(str(po_root)) == ["train"]
    with pytest.raises(pointodyssey.DataError, match="split folder"):
        pointodyssey.list_sequences(str(po_root), "val")


def test_iter_clips_interface(po_root, po_seq):
    seq_dir = str(po_root / "train" / "new")
    clips = list(pointodyssey.iter_clips(seq_dir, clip_len=3, clip_stride=2, frame_stride=1))
    assert [c["start"] for c in clips] == [0, 2]
    clips = list(pointodyssey.iter_clips(seq_dir, clip_len=2, clip_stride=1, frame_stride=3))
    assert [c["start"] for c in clips] == [0, 1, 2]
    c = clips[1]
    h, w = PO_SIZE
    n = po_seq["trajs_2d"].shape[1]
    assert c["rgbs"].shape == (2, h, w, 3) and c["rgbs"].dtype == np.uint8
    assert c["masks"].shape == (2, h, w) and c["masks"].dtype == np.uint8
    assert c["trajs"].shape == (2, n, 2) and c["trajs"].dtype == np.float32
    assert c["visibs"].dtype == np.bool_ and c["valids"].shape == (2, n)
    assert (c["seq_name"], c["start"], c["frame_stride"]) == ("new", 1, 3)
    np.testing.assert_array_equal(c["trajs"], po_seq["trajs_2d"][[1, 4]])
    np.testing.assert_array_equal(c["masks"], po_seq["masks"][[1, 4]])
    # masks aligned with tracks: a visible point sits on its owner's id
    s, p = np.nonzero(c["visibs"])
    xy = np.round(c["trajs"][s, p]).astype(int)
    np.testing.assert_array_equal(c["masks"][s, xy[:, 1], xy[:, 0]], po_seq["instance_ids"][p])
    no_masks = next(pointodyssey.iter_clips(seq_dir, 2, 2, load_masks=False))
    assert "masks" not in no_masks


def test_old_annotations(po_root, po_seq):
    anno = pointodyssey.load_annotations(str(po_root / "train" / "old"))
    assert not anno["valids"][:, 0].any() and not anno["visibs"][:, 0].any()
    np.testing.assert_array_equal(anno["visibs"][:, 1:], po_seq["visibs"][:, 1:])
    assert anno["valids"][:, 1:].all()


def test_non_finite_tracks_become_invalid(tmp_path):
    trajs = np.ones((3, 4, 2), np.float32)
    trajs[1, 2, 0] = np.nan
    trajs[2, 3, 1] = np.inf
    np.savez(tmp_path / "anno.npz", trajs_2d=trajs, visibs=np.ones((3, 4)), valids=np.ones((3, 4)))
    anno = pointodyssey.load_annotations(str(tmp_path))
    assert not anno["valids"][1, 2] and not anno["visibs"][2, 3] and anno["valids"].sum() == 10
    assert anno["trajs"][1, 2, 0] == 0 and anno["trajs"][2, 3, 1] == 0
    assert np.isfinite(anno["trajs"]).all()


def test_mask_unknown_fill(tmp_path):
    os.makedirs(tmp_path / "masks")
    m = np.full((40, 40), 5, np.uint8)
    m[:, :20] = 9
    few, many = m.copy(), m.copy()
    few[0, :5] = 0                    # 5 unknown pixels: kept as 0
    many[10:12] = 0                   # two 2-px lines: 160 > 128 unknown pixels,
    many[25:27] = 0                   # filled from the 7x7 median blur
    cv2.imwrite(str(tmp_path / "masks" / "mask_00000.png"), few)
    cv2.imwrite(str(tmp_path / "masks" / "mask_00001.png"), many)
    out = pointodyssey.load_masks(str(tmp_path), [0, 1])
    np.testing.assert_array_equal(out[0], few)
    np.testing.assert_array_equal(out[1], np.where(many == 0, cv2.medianBlur(many, 7), many))
    assert (out[1] != 0).all() and out[1][10, 5] == 9 and out[1][26, 30] == 5


def test_bad_inputs_raise_clear_errors(po_root):
    seq_dir = po_root / "train" / "new"
    # mask of the wrong size
    cv2.imwrite(str(seq_dir / "masks" / "mask_00001.png"), np.ones((10, 10), np.uint8))
    with pytest.raises(pointodyssey.DataError, match=r"mask_00001\.png.*expected 40x32"):
        list(pointodyssey.iter_clips(str(seq_dir), 2, 2))
    # corrupt frame
    (seq_dir / "rgbs" / "rgb_00003.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(pointodyssey.DataError, match=r"rgb_00003\.jpg.*could not decode"):
        pointodyssey.load_frames(str(seq_dir), [3])
    # missing frame -> count mismatch / gap
    os.remove(seq_dir / "rgbs" / "rgb_00005.jpg")
    with pytest.raises(pointodyssey.DataError, match=r"annotations have 6 frames but rgbs/ holds 5"):
        list(pointodyssey.iter_clips(str(seq_dir), 2, 2))
    os.remove(seq_dir / "rgbs" / "rgb_00002.jpg")
    with pytest.raises(pointodyssey.DataError, match=r"rgb_00002\.jpg: missing frame"):
        pointodyssey.num_frames(str(seq_dir))
    # missing keys
    np.savez(seq_dir / "anno.npz", trajs_2d=np.zeros((6, 2, 2)))
    with pytest.raises(pointodyssey.DataError, match=r"anno\.npz: missing key\(s\) \['visibs', 'valids'\]"):
        pointodyssey.load_annotations(str(seq_dir))
    np.savez(seq_dir / "anno.npz", trajs_2d=np.zeros((6, 2, 2)), visibs=np.zeros((6, 3)),
             valids=np.zeros((6, 2)))
    with pytest.raises(pointodyssey.DataError, match="do not match trajs_2d"):
        pointodyssey.load_annotations(str(seq_dir))


def test_skip_bad_counts_and_logs(po_root, caplog):
    old = po_root / "train" / "old"
    (old / "rgbs" / "rgb_00004.jpg").write_bytes(b"garbage")  # breaks clip starting at 4
    np.savez(po_root / "train" / "new" / "anno.npz", trajs_2d=np.zeros((2, 1, 2)))  # bad sequence
    stats = {}
    with caplog.at_level(logging.WARNING, logger="objtrack_jax.data_pipelines.pointodyssey"):
        clips = list(pointodyssey.iter_split_clips(str(po_root), "train", 2, 2, skip_bad=True,
                                                   stats=stats))
    assert [(c["seq_name"], c["start"]) for c in clips] == [("old", 0), ("old", 2)]
    assert stats["skipped_sequences"] == 1 and stats["skipped_clips"] == 1 and stats["clips"] == 2
    assert "skipped 1 clips and 1 sequences" in caplog.text and "rgb_00004.jpg" in caplog.text


def test_tfds_builder_roundtrip(tmp_path):
    tfds_po = pytest.importorskip("objtrack_jax.data_pipelines.tfds_pointodyssey")
    root = tmp_path / "root"
    synthetic.generate_dataset(str(root), num_seqs={"train": 1, "val": 1}, frames=4, size=(32, 40),
                               num_points=12, progress=False)
    builder = tfds_po.build(str(root), str(tmp_path / "tfds"), clip_len=2, clip_stride=2)
    assert set(builder.info.splits.keys()) == {"train", "val"}
    assert builder.info.splits["train"].num_examples == 2
    got = sorted(builder.as_dataset(split="train").as_numpy_iterator(), key=lambda e: e["start"])
    want = list(pointodyssey.iter_clips(str(root / "train" / "seq_0000"), 2, 2))
    for g, w in zip(got, want):
        assert g["seq_name"].decode() == w["seq_name"] and g["start"] == w["start"]
        for key in ("rgbs", "masks", "trajs", "visibs", "valids"):
            np.testing.assert_array_equal(g[key], w[key], err_msg=key)


# ----------------------------------------------------------------------------------------------
# TAP-Vid
# ----------------------------------------------------------------------------------------------

def _tapvid_entry(rng, t=7, h=24, w=32, n=5):
    video = rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)
    points = rng.uniform(0, 1, (n, t, 2)).astype(np.float32)
    occluded = rng.uniform(size=(n, t)) < 0.3
    occluded[0] = True            # never visible: dropped by 'first'
    occluded[1, :3] = True        # first visible at t=3
    occluded[1, 3:] = False
    return dict(video=video, points=points, occluded=occluded)


def test_davis_first_and_pixel_conventions(tmp_path):
    rng = np.random.default_rng(0)
    data = {"bear": _tapvid_entry(rng), "cows": _tapvid_entry(rng, t=6)}
    path = tmp_path / "tapvid_davis.pkl"
    path.write_bytes(pickle.dumps(data))
    videos = list(tapvid.iter_davis(str(path), query_mode="first"))
    assert [v["name"] for v in videos] == ["bear", "cows"]
    v = videos[0]
    assert v["video"].shape == (7, 256, 256, 3) and v["video"].dtype == np.uint8
    assert v["source_size"] == (24, 32)
    assert v["target_points"].shape == (4, 7, 2) and v["occluded"].shape == (4, 7)
    assert v["query_points"].shape == (4, 3)
    np.testing.assert_array_equal(v["track_ids"], [1, 2, 3, 4])
    np.testing.assert_allclose(v["target_points"], data["bear"]["points"][1:] * 256, rtol=1e-6)
    assert v["query_points"][0, 0] == 3
    q = v["query_points"].astype(int)
    for i in range(4):  # the query is the track at its first visible frame, as (t, y, x)
        t0 = q[i, 0]
        assert not v["occluded"][i, t0] and v["occluded"][i, :t0].all()
        np.testing.assert_allclose(v["query_points"][i, 1:], v["target_points"][i, t0, ::-1])
    # PIPs++: (W - 1, H - 1) of the stored 24x32 frame, then scaled to the 256x256 output
    pips = next(tapvid.iter_davis(str(path), convention="pips"))
    np.testing.assert_allclose(pips["target_points"],
                               data["bear"]["points"][1:] * [31 * 256 / 32, 23 * 256 / 24], rtol=1e-6)
    native = next(tapvid.iter_davis(str(path), convention="pips", resolution=None))
    np.testing.assert_allclose(native["target_points"], data["bear"]["points"][1:] * [31, 23],
                               rtol=1e-6)
    centres = next(tapvid.iter_davis(str(path), convention="centres"))
    np.testing.assert_allclose(centres["target_points"], data["bear"]["points"][1:] * 256 - 0.5,
                               rtol=1e-6, atol=1e-5)


def test_strided_queries():
    rng = np.random.default_rng(1)
    tracks = rng.uniform(0, 10, (3, 11, 2)).astype(np.float32)
    occ = np.zeros((3, 11), bool)
    occ[0, 5] = True
    occ[2, 0] = True
    q = tapvid.sample_queries_strided(tracks, occ)
    # frames 0, 5, 10; visible: t0 -> {0,1}, t5 -> {1,2}, t10 -> {0,1,2}
    np.testing.assert_array_equal(q["query_points"][:, 0], [0, 0, 5, 5, 10, 10, 10])
    np.testing.assert_array_equal(q["track_ids"], [0, 1, 1, 2, 0, 1, 2])
    assert q["target_points"].shape == (7, 11, 2)
    np.testing.assert_array_equal(q["query_points"][3, 1:], tracks[2, 5, ::-1])


def test_resize_is_half_pixel_bilinear_without_antialias():
    ramp = np.tile(np.arange(8, dtype=np.float32)[None, :, None], (4, 1, 3))
    up = tapvid.resize_video_bilinear(ramp, (4, 16), as_float=True)
    # out x=j samples source (j+0.5)/2-0.5, clamped to [0, 7]
    np.testing.assert_allclose(up[0, :, 0], np.clip((np.arange(16) + 0.5) / 2 - 0.5, 0, 7))
    img = np.random.default_rng(2).uniform(0, 255, (2, 30, 50, 3)).astype(np.float32)
    for size in ((256, 256), (12, 20)):  # up and down
        got = tapvid.resize_video_bilinear(img, size, as_float=True)
        ref = np.stack([cv2.resize(f, size[::-1], interpolation=cv2.INTER_LINEAR) for f in img])
        np.testing.assert_allclose(got, ref, atol=1e-3)


def test_rgb_stacking_robotap_kinetics(tmp_path):
    rng = np.random.default_rng(3)
    (tmp_path / "rgbs.pkl").write_bytes(pickle.dumps([_tapvid_entry(rng), _tapvid_entry(rng)]))
    names = [v["name"] for v in tapvid.iter_rgb_stacking(str(tmp_path / "rgbs.pkl"), resolution=None)]
    assert names == ["0", "1"]
    robo = tmp_path / "robotap"
    robo.mkdir()
    (robo / "robotap_split0.pkl").write_bytes(pickle.dumps({"a": _tapvid_entry(rng)}))
    (robo / "robotap_split1.pkl").write_bytes(pickle.dumps({"b": _tapvid_entry(rng)}))
    vids = list(tapvid.iter_tapvid("robotap", str(robo), query_mode="strided"))
    assert [v["name"] for v in vids] == ["a", "b"]
    # Kinetics shard: video as a list of JPEG bytes
    smooth = np.stack([cv2.GaussianBlur(f, (0, 0), 3)
                       for f in rng.integers(0, 256, (5, 24, 32, 3), dtype=np.uint8)])
    entry = _tapvid_entry(rng, t=5)
    entry["video"] = [cv2.imencode(".jpg", f[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 98])[1].tobytes()
                      for f in smooth]
    kin = tmp_path / "kinetics"
    kin.mkdir()
    (kin / "0000_of_0010.pkl").write_bytes(pickle.dumps([entry]))
    (kin / "ignored.pkl").write_bytes(b"")
    (v,) = list(tapvid.iter_kinetics(str(kin), resolution=(48, 64)))
    assert v["name"] == "0000_of_0010.pkl:0" and v["video"].shape == (5, 48, 64, 3)
    ref = tapvid.resize_video_bilinear(smooth, (48, 64))
    assert np.abs(v["video"].astype(int) - ref).mean() < 3


def test_tapvid_bad_input(tmp_path):
    rng = np.random.default_rng(4)
    entry = _tapvid_entry(rng)
    entry["points"] = entry["points"][:, :5]
    (tmp_path / "d.pkl").write_bytes(pickle.dumps({"bad": entry}))
    with pytest.raises(tapvid.TapVidError, match=r"d\.pkl\['bad'\]: points have shape \(5, 5, 2\), expected \[N, 7, 2\]"):
        list(tapvid.iter_davis(str(tmp_path / "d.pkl")))
    with pytest.raises(tapvid.TapVidError, match="file not found"):
        list(tapvid.iter_davis(str(tmp_path / "missing.pkl")))


# ----------------------------------------------------------------------------------------------
# CroHD
# ----------------------------------------------------------------------------------------------

@pytest.fixture()
def ht21_root(tmp_path):
    seq = tmp_path / "HT21" / "train" / "HT21-01"
    (seq / "img1").mkdir(parents=True)
    (seq / "gt").mkdir()
    h, w, t = 120, 400, 10
    for i in range(t):
        cv2.imwrite(str(seq / "img1" / f"{i + 1:06d}.jpg"), np.full((h, w, 3), 20 * i, np.uint8))
    rows = []
    for i in range(t):
        rows.append((i + 1, 7, 10 + 35 * i, 50, 10, 20, 1, 1, 1.0))   # moves 35 px / frame
        rows.append((i + 1, 3, 200, 60, 10, 10, 1, 1, 1.0))           # static: dropped
        if i >= 2:
            rows.append((i + 1, 5, 390 - 40 * i, 20, 4, 4, 1, 1, 0.0))  # appears at frame 3
    np.savetxt(seq / "gt" / "gt.txt", np.array(rows), delimiter=",", fmt="%g")
    return tmp_path


def test_crohd_gt_and_clips(ht21_root):
    seq_dir = crohd.list_sequences(str(ht21_root))[0]
    gt = crohd.load_gt(seq_dir)
    np.testing.assert_array_equal(gt["track_ids"], [3, 5, 7])
    assert gt["trajs"].shape == (10, 3, 2)
    np.testing.assert_allclose(gt["trajs"][4, 2], [10 + 35 * 4 + 5, 60])  # box centre, 1-based frames
    assert not gt["valids"][:2, 1].any() and gt["valids"][2:, 1].all()
    assert gt["visibs"][:, 2].all() and not gt["visibs"][:, 1].any()
    assert crohd.clip_ranges(10, clip_len=8, clip_stride=4, min_len=5) == [(0, 8), (4, 10)]
    # PIPs++'s rules (tests/test_protocol_rules.py pins each): clip 0 is skipped because head 7
    # starts 17 px from the left edge, inside the 32-px border; 3 is static; 5 lies within 32 px
    # of the top
    clips = list(crohd.iter_clips(str(ht21_root), clip_len=8, clip_stride=4, min_len=5))
    assert [c["start"] for c in clips] == [4]
    np.testing.assert_array_equal(clips[0]["track_ids"], [7])
    c = clips[0]
    assert c["rgbs"].shape == (6, 120, 400, 3) and c["size"] == (120, 400)
    np.testing.assert_allclose(c["trajs"][:, 0], [[10 + 35 * i + 5, 60] for i in range(4, 10)])
    np.testing.assert_array_equal(c["valids"][:, 0], 1.0)
    small = next(crohd.iter_clips(str(ht21_root), clip_len=8, clip_stride=4, min_len=5,
                                  resize_to=(60, 100), load_rgbs=False))
    np.testing.assert_allclose(small["trajs"], c["trajs"] * [0.25, 0.5])
    assert "rgbs" not in small and small["frame_paths"][0].endswith("000005.jpg")


def test_crohd_bad_input(ht21_root):
    seq = ht21_root / "HT21" / "train" / "HT21-01"
    with open(seq / "gt" / "gt.txt", "a") as f:
        f.write("11,7,1,1,2,2,1,1,1\n")
    with pytest.raises(crohd.CrohdError, match=r"gt\.txt: frame numbers 1\.\.11 outside the 10 frames"):
        crohd.load_gt(str(seq))
    os.remove(seq / "img1" / "000004.jpg")
    with pytest.raises(crohd.CrohdError, match=r"000004\.jpg: missing frame"):
        crohd.num_frames(str(seq))
