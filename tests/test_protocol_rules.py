"""The PIPs++ test scripts' point selection and marking, one hand-made case per rule
(docs/conventions.md, *Evaluation protocols and metrics*, cites each rule's source line).

PointOdyssey: ``datasets/pointodysseydataset_fullseq.py`` (aharley/pips2 8b5bd9ec) through
:func:`pointodyssey.pips_eval_points`; CroHD: ``datasets/crohddataset.py`` through
:func:`crohd.load_gt_dense` / :func:`crohd.pips_select_heads`; TAP-Vid: ``test_on_tap.py``'s ground
truth; and the metric with CroHD's negative valids.
"""

import cv2
import numpy as np
import pytest

from objtrack_jax import evaluation, metrics
from objtrack_jax.data_pipelines import crohd, pointodyssey, tapvid

# --------------------------------------------------------------------------------------------------
# PointOdyssey
# --------------------------------------------------------------------------------------------------

H, W = 540, 960


def _po_points(num_frames=12, num_points=1, x=100.0, y=100.0):
    trajs = np.zeros((num_frames, num_points, 2), np.float32)
    trajs[..., 0], trajs[..., 1] = x, y
    ones = np.ones((num_frames, num_points), bool)
    return trajs, ones.copy(), ones.copy()


def _po_select(trajs, visibs, valids, n=256):
    return pointodyssey.pips_eval_points(trajs, visibs, valids, (H, W), n)


def test_po_one_pixel_border():
    """x < 1 or x > W - 2 (same for y) is neither visible nor valid; the edges themselves are in."""
    xs = [0.99, 1.0, W - 2.0, W - 1.99]
    trajs, vis, val = _po_points(num_points=4)
    trajs[:, :, 0] = xs
    sel = _po_select(trajs, vis, val)
    np.testing.assert_array_equal(sel["index"], [1, 2])
    trajs, vis, val = _po_points(num_points=4)
    trajs[5, :, 1] = [0.99, 1.0, H - 2.0, H - 1.99]
    sel = _po_select(trajs, vis, val)
    np.testing.assert_array_equal(sel["index"], [0, 1, 2, 3])
    np.testing.assert_array_equal(sel["valids"][5], [False, True, True, False])
    np.testing.assert_array_equal(sel["visibs"][5], [False, True, True, False])
    assert sel["valids"][[0, 4, 6]].all()


def test_po_good_at_frame0_and_in_eight_frames():
    trajs, vis, val = _po_points(num_frames=12, num_points=5)
    vis[0, 0] = False            # annotated but occluded at frame 0: dropped
    val[0, 1] = False            # visible but not annotated at frame 0: dropped
    vis[8:, 2] = False           # good in exactly 8 frames: kept
    val[7:, 3] = False           # good in 7 frames: dropped
    vis[8:, 4] = True            # good everywhere: kept
    sel = _po_select(trajs, vis, val)
    np.testing.assert_array_equal(sel["index"], [2, 4])
    # occluded frames stay valid: the metric scores them (annotated = valid)
    assert sel["valids"][:, 0].all() and not sel["visibs"][8:, 0].any()


def test_po_largest_step_under_512_px():
    trajs, vis, val = _po_points(num_points=4)
    trajs[6, 0, 0] = 100 + 511.0          # one step of 511 px (and back): kept
    trajs[6, 1, 0] = 100 + 512.0          # 512 px: dropped
    trajs[6, 2] = 0.0                     # a frame not annotated (non-finite -> 0): the jump to
    val[6, 2] = vis[6, 2] = False         # (0, 0) still counts (~141 px here: kept)
    trajs[:6, 3] = 700.0                  # ... and here ~990 px: dropped
    trajs[6, 3] = 0.0
    val[6, 3] = vis[6, 3] = False
    sel = _po_select(trajs, vis, val)
    np.testing.assert_array_equal(sel["index"], [0, 2])


def test_po_clamp_and_truncated_linspace():
    trajs, vis, val = _po_points(num_frames=12, num_points=8)
    trajs[:, 0, 0] = 100.0 + 100.0 * np.arange(12)   # leaves the frame at t = 9 (x = 1000),
    sel = _po_select(trajs, vis, val, n=3)             # good in 9 frames: kept, then clamped
    # int(linspace(0, 7, 3)) = [0, 3, 7] (rounding would take 4)
    np.testing.assert_array_equal(sel["index"], [0, 3, 7])
    np.testing.assert_array_equal(sel["trajs"][9:, 0, 0], [W + 32] * 3)
    assert not sel["valids"][9:, 0].any() and sel["valids"][:9, 0].all()
    sel = _po_select(*_po_points(num_points=6), n=4)
    np.testing.assert_array_equal(sel["index"], [0, 1, 3, 5])  # int(linspace(0, 5, 4))
    sel = _po_select(*_po_points(num_points=6), n=256)
    np.testing.assert_array_equal(sel["index"], np.arange(6))  # fewer than N: all, no padding
    trajs, vis, val = _po_points(num_points=2)
    vis[0] = False
    assert _po_select(trajs, vis, val)["index"].size == 0


def test_po_bad_input():
    trajs, vis, val = _po_points()
    with pytest.raises(ValueError, match=r"trajs must be \[T, N, 2\]"):
        _po_select(trajs[..., 0], vis, val)
    with pytest.raises(ValueError, match="must be"):
        _po_select(trajs, vis[:, :0], val)


def _write_po_sequence(root, trajs, visibs, valids, size=(64, 96)):
    seq = root / "test" / "seq0"
    (seq / "rgbs").mkdir(parents=True)
    for t in range(trajs.shape[0]):
        cv2.imwrite(str(seq / "rgbs" / f"rgb_{t:05d}.jpg"), np.full(size + (3,), 10 * t, np.uint8))
    np.savez(seq / "anno.npz", trajs_2d=trajs, visibs=visibs, valids=valids)
    return str(root)


def test_po_records_follow_the_selection(tmp_path):
    """The evaluator's PointOdyssey records: selected points, their marks, scaled ground truth."""
    t, n = 10, 5
    trajs = np.tile(np.array([20.0, 30.0], np.float32), (t, n, 1))
    trajs[:, :, 0] += np.arange(n) * 10
    visibs = np.ones((t, n), bool)
    valids = np.ones((t, n), bool)
    visibs[0, 1] = False                          # not visible at frame 0: dropped
    trajs[4, 2] = [0.5, 30.0]                     # on the 1-px border at frame 4: invalid there
    trajs[3, 3] = np.nan                          # not annotated at frame 3: invalid there
    root = _write_po_sequence(tmp_path, trajs, visibs, valids)
    rec = next(evaluation.iter_records("pointodyssey", root, size=(128, 192)))
    assert rec["trajs"].shape == (t, 4, 2) and rec["query_ok"].all()
    np.testing.assert_allclose(rec["trajs"][0, :, 0], (20 + 10 * np.array([0, 2, 3, 4])) * 2)
    assert not rec["valids"][4, 1] and not rec["valids"][3, 2]
    assert rec["valids"].sum() == t * 4 - 2
    assert next(evaluation.iter_records("pointodyssey", root, size=(128, 192),
                                        num_points=2))["trajs"].shape == (t, 2, 2)
    every = next(evaluation.iter_records("pointodyssey", root, size=(128, 192),
                                         pips_selection=False))  # the TAP-Vid protocol's records
    assert every["trajs"].shape == (t, n, 2) and every["valids"][4, 2]


# --------------------------------------------------------------------------------------------------
# CroHD
# --------------------------------------------------------------------------------------------------


def _gt_file(tmp_path, rows):
    seq = tmp_path / "HT21-01"
    (seq / "gt").mkdir(parents=True)
    with open(seq / "gt" / "gt.txt", "w") as f:
        for r in rows:
            f.write(",".join(str(v) for v in r) + "\n")
    return str(seq)


def test_crohd_dense_table(tmp_path):
    rows = [(1, 2, 100, 200, 10, 20, 1, 1, 1),
            (2, 2, 110, 200, 10, 20, 0, 1, 0.5),   # conf 0: still annotated
            (3, 4, 300, 300, 4, 6, 1, 1, 0)]       # the last row's frame is the length
    gt = crohd.load_gt_dense(_gt_file(tmp_path, rows))
    assert gt["trajs"].shape == (3, 4, 2)           # ids 1..4 as columns, 1 and 3 never annotated
    np.testing.assert_allclose(gt["trajs"][0, 1], [105, 210])
    np.testing.assert_allclose(gt["trajs"][2, 3], [302, 303])
    np.testing.assert_array_equal(gt["valids"][:, 1], [1, 1, -1])
    np.testing.assert_array_equal(gt["visibs"][:, 1], [1, 0.5, 0])
    assert (gt["valids"][:, [0, 2]] == -1).all() and (gt["trajs"][:, 0] == 0).all()


def test_crohd_dense_table_bad_input(tmp_path):
    seq = _gt_file(tmp_path, [(3, 1, 0, 0, 1, 1, 1, 1, 1), (2, 1, 0, 0, 1, 1, 1, 1, 1)])
    with pytest.raises(crohd.CrohdError, match="lies after the last row's frame 2"):
        crohd.load_gt_dense(seq)
    seq = _gt_file(tmp_path / "b", [(1, 1, 0, 0, 1, 1)])
    with pytest.raises(crohd.CrohdError, match="expected rows of 9"):
        crohd.load_gt_dense(seq)


CRO = (1080, 1920)


def _heads(num_frames=6, num_heads=1, x=500.0, y=500.0, step=40.0):
    trajs = np.zeros((num_frames, num_heads, 2))
    trajs[..., 0] = x + step * np.arange(num_frames)[:, None]
    trajs[..., 1] = y
    return trajs, np.ones((num_frames, num_heads), np.float32), np.ones((num_frames, num_heads),
                                                                          np.float32)


def test_crohd_border_in_stored_pixels():
    """x < 32 or x > W - 32 (same for y), in the stored 1920x1080 pixels, invalidates the frame."""
    trajs, val, vis = _heads(num_heads=4, step=0.0)
    trajs[:, :, 0] = [[31.9, 32.0, 1920 - 32.0, 1920 - 31.9]]
    trajs[5, :, 1] = 1080 - 31.9                 # every head leaves at frame 5 (548 px of motion)
    sel = crohd.pips_select_heads(trajs, val, vis, CRO)
    np.testing.assert_array_equal(sel["index"], [1, 2])
    np.testing.assert_array_equal(sel["valids"][:, 0], [1, 1, 1, 1, 1, 0])
    # the invisible (out-of-border) last frame repeats the previous position
    np.testing.assert_allclose(sel["trajs"][5, 0], sel["trajs"][4, 0])


def test_crohd_visible_and_valid_at_frames_0_and_1():
    trajs, val, vis = _heads(num_heads=5)
    vis[0, 0] = 0
    vis[1, 1] = 0
    val[0, 2] = -1
    val[1, 3] = -1
    vis[2:, 4] = 0                                # visible at 0 and 1 only: kept
    sel = crohd.pips_select_heads(trajs, val, vis, CRO)
    np.testing.assert_array_equal(sel["index"], [4])
    np.testing.assert_allclose(sel["trajs"][:, 0], trajs[[0, 1, 1, 1, 1, 1], 4])


def test_crohd_motion_summed_over_all_frames():
    trajs, val, vis = _heads(num_heads=3, step=0.0)
    trajs[1:, 0, 0] += 150.0                      # 150 px in total: dropped (must exceed 150)
    trajs[1:, 1, 0] += 151.0                      # 151 px: kept
    trajs[3, 2] = 0.0                             # static but unannotated at frame 3 ((0, 0)):
    val[3, 2], vis[3, 2] = -1, 0                  # the jump there and back counts: kept
    sel = crohd.pips_select_heads(trajs, val, vis, CRO)
    np.testing.assert_array_equal(sel["index"], [1, 2])
    np.testing.assert_array_equal(sel["valids"][:, 1], [1, 1, 1, 0, 1, 1])  # border: 0, not -1
    np.testing.assert_allclose(sel["trajs"][3, 1], [500, 500])              # filled forward


def test_crohd_negative_valids_pass_through():
    """valids = -1 (not annotated) is kept as is; only the border turns it into 0."""
    trajs, val, vis = _heads()
    val[4, 0] = -1                               # in-bounds but not annotated (hand-made)
    sel = crohd.pips_select_heads(trajs, val, vis, CRO)
    np.testing.assert_array_equal(sel["valids"][:, 0], [1, 1, 1, 1, -1, 1])


def test_negative_valids_enter_the_metric_as_in_the_script():
    """PIPs++'s formulas with valids -1: d_δ = Σ v·[e<δ] / (1e-6 + Σ v) over t ≥ 1,
    survival = mean cumprod(1 − [e>16]·v), median over v > 0."""
    err = np.array([0.0, 0.5, 20.0, 0.5])            # 256-scale errors along x
    valid = np.array([1.0, 1.0, -1.0, 1.0])
    gt = np.zeros((1, 4, 1, 2))
    est = gt.copy()
    est[0, :, 0, 0] = err
    m = metrics.pips_metrics(est, gt, valid[None, :, None], image_size=(256, 256))
    assert m["d_1"][0] == pytest.approx(100 * 2 / (1e-6 + 1))    # (1 + 0·(-1) + 1) / (1 - 1 + 1)
    assert m["d_avg"][0] == pytest.approx(100 * 2 / (1e-6 + 1))
    assert m["survival"][0] == pytest.approx(100 * (1 + 1 + 2 + 2) / 4)  # 1 - 1·(-1) = 2
    assert m["median_l2"][0] == pytest.approx(0.5)


def _write_ht21(root, rows, num_frames, size=(120, 400)):
    seq = root / "HT21" / "train" / "HT21-01"
    (seq / "img1").mkdir(parents=True)
    (seq / "gt").mkdir()
    for i in range(num_frames):
        cv2.imwrite(str(seq / "img1" / f"{i + 1:06d}.jpg"), np.full(size + (3,), i % 256, np.uint8))
    np.savetxt(seq / "gt" / "gt.txt", np.array(rows), delimiter=",", fmt="%g")
    return str(root)


def test_crohd_clip_records(tmp_path):
    """The evaluator's CroHD records (clips of >= 128 frames): selected heads, float valids,
    ground truth scaled to the output frame."""
    t = 130
    rows = []
    for i in range(t):
        rows.append((i + 1, 1, 40 + 2 * i, 50, 10, 20, 1, 1, 1))   # moves 258 px: kept
        rows.append((i + 1, 2, 200, 55, 10, 10, 1, 1, 1))          # static: dropped
    rows.append((t, 3, 100, 60, 4, 4, 1, 1, 0))                    # one row, invisible: dropped
    root = _write_ht21(tmp_path, rows, t)
    rec = next(evaluation.iter_records("crohd", root, size=(128, 160)))
    assert rec["video"].shape == (t, 128, 160, 3) and rec["query_ok"].all()
    assert rec["trajs"].shape == (t, 1, 2) and rec["name"] == "HT21-01:0"
    np.testing.assert_allclose(rec["trajs"][:, 0, 0], (45 + 2 * np.arange(t)) * 160 / 400,
                               rtol=1e-6)
    np.testing.assert_allclose(rec["trajs"][:, 0, 1], 60 * 128 / 120, rtol=1e-6)
    assert rec["valids"].dtype == np.float32 and (rec["valids"] == 1).all()


# --------------------------------------------------------------------------------------------------
# TAP-Vid
# --------------------------------------------------------------------------------------------------


def test_tapvid_pips_ground_truth_and_float_frames(tmp_path):
    """test_on_tap.py: p·(W−1, H−1) of the stored frame, then ×(w/W, h/H); frames float."""
    import pickle

    rng = np.random.default_rng(0)
    points = rng.uniform(0, 1, (3, 4, 2)).astype(np.float32)
    occluded = np.zeros((3, 4), bool)
    occluded[2, 0] = True                         # not visible at frame 0: not a query
    video = rng.integers(0, 256, (4, 30, 50, 3), dtype=np.uint8)
    path = tmp_path / "tapvid_davis.pkl"
    path.write_bytes(pickle.dumps({"v": dict(video=video, points=points, occluded=occluded)}))
    rec = next(evaluation.iter_records("tapvid_davis", str(path), size=(128, 136)))
    want = points * [49, 29] * np.float32([136 / 50, 128 / 30])
    np.testing.assert_allclose(rec["trajs"], np.transpose(want, (1, 0, 2)), rtol=1e-6)
    np.testing.assert_array_equal(rec["query_ok"], [True, True, False])
    assert rec["video"].dtype == np.float32
    assert not np.allclose(rec["video"], np.round(rec["video"]))  # not rounded to integers
    fixed = next(evaluation.iter_records("tapvid_davis", str(path), size=(128, 136),
                                         corrected=True))
    np.testing.assert_allclose(fixed["trajs"], np.transpose(points * [136, 128] - 0.5, (1, 0, 2)),
                               rtol=1e-6, atol=1e-5)


def test_tapvid_resize_taps_match_torch_formula():
    """Source index (i + 0.5)·(n_in/n_out) − 0.5 clamped at 0; the last sample repeats."""
    ramp = np.arange(5, dtype=np.float32)[None, :, None].repeat(2, 0).repeat(3, 2)  # [2, 5, 3]
    up = tapvid.resize_video_bilinear(ramp, (2, 12), as_float=True)
    src = np.maximum((np.arange(12) + 0.5) * 5 / 12 - 0.5, 0)
    np.testing.assert_allclose(up[0, :, 0], np.minimum(src, 4), atol=1e-6)
    u8 = np.full((2, 3, 3), 255, np.uint8)
    assert tapvid.resize_video_bilinear(u8, (7, 7), as_float=True).max() == 255.0


@pytest.mark.parametrize("dataset", ["pointodyssey", "crohd"])
def test_records_skip_when_nothing_is_selected(tmp_path, dataset):
    if dataset == "pointodyssey":
        trajs, vis, val = _po_points(num_frames=4, num_points=2)  # fewer than 8 good frames
        root = _write_po_sequence(tmp_path, trajs, vis, val)
        assert list(evaluation.iter_records(dataset, root, size=(128, 192))) == []
    else:  # a 130-frame clip whose only head does not move
        root = _write_ht21(tmp_path, [(i + 1, 1, 100, 50, 4, 4, 1, 1, 1) for i in range(130)], 130,
                           size=(64, 160))
        assert list(evaluation.iter_records(dataset, root, size=(128, 128))) == []
