"""Tests of the training input pipeline (tiny clips: S=8, N=16, 64x80 crops)."""

import numpy as np
import pytest

from objtrack_jax.data_pipelines import pipeline, sources, transforms

S, N = 8, 16
CROP = (64, 80)
H0, W0 = 84, 120  # hand-built sequence size
ID_SCALE = 40  # the red channel of a pixel is ID_SCALE * its mask id


def _cfg(**aug):
    c = pipeline.default_data_config()
    c.clip_len, c.num_points, c.min_points, c.crop_size = S, N, 4, CROP
    c.clip_stride, c.frame_strides = 2, (1,)
    c.num_parallel_calls, c.prefetch = 2, 1
    a = c.aug
    for k in ("time_reverse_prob", "hflip_prob", "vflip_prob", "scale_prob", "xy_swap_prob",
              "color_prob", "blur_prob", "noise_prob", "eraser_prob"):
        a[k] = 0.0
    a.xy_swap = "none"
    for k, v in aug.items():
        a[k] = v
    return c


def _block_sequence(seed=0, frames=12, static=False):
    """Three textured rectangles sliding horizontally in separate bands over a static background.

    Returns the sequence dict, owner ids [N] and the colour code [N,2] of each point. Colours encode
    ids and positions: red = 40*id everywhere; green/blue are linear ramps in each layer's own
    coordinates (objects: 8*(y, x) inside the rectangle, background: 2*(y, x) of the image), so the
    colour bilinearly sampled at a correctly transformed track equals the point's code and a
    misplaced track by 0.5 px is detected. Tracks sit >= 6 px inside their rectangle (or in a static
    background area away from all objects), so they are never near an edge.
    """
    rng = np.random.default_rng(seed)
    bands = [(3, 27), (30, 54), (57, 81)]
    x_start, vx = [5, 70, 20], ([0, 0, 0] if static else [2, -2, 3])
    ow = 28
    rgbs = np.zeros((frames, H0, W0, 3), np.uint8)
    masks = np.ones((frames, H0, W0), np.uint8)
    del rng
    yy, xx = np.mgrid[:H0, :W0]
    bg_tex = np.stack([2 * yy, 2 * xx], -1).astype(np.uint8)
    yy, xx = np.mgrid[:24, :ow]
    obj_tex = [np.stack([8 * yy, 8 * xx], -1).astype(np.uint8) for _ in bands]
    trajs, owner, code = [], [], []
    for k, (y0, y1) in enumerate(bands):
        for oy in (6, 12, 17):
            for ox in (6, 11, 16, 21):
                trajs.append([[x_start[k] + vx[k] * t + ox, y0 + oy] for t in range(frames)])
                owner.append(k + 2)
                code.append((8 * oy, 8 * ox))
    for y in (10, 40, 70):
        for x in (108, 113):
            trajs.append([[x, y]] * frames)
            owner.append(1)
            code.append((2 * y, 2 * x))
    for t in range(frames):
        rgbs[t, :, :, 1:] = bg_tex
        for k, (y0, y1) in enumerate(bands):
            xa = x_start[k] + vx[k] * t
            masks[t, y0:y1, xa:xa + ow] = k + 2
            rgbs[t, y0:y1, xa:xa + ow, 1:] = obj_tex[k]
    rgbs[..., 0] = masks * ID_SCALE
    trajs = np.asarray(trajs, np.float32).transpose(1, 0, 2)
    vis = np.ones(trajs.shape[:2], bool)
    seq = dict(rgbs=rgbs, masks=masks, trajs=trajs, visibs=vis, valids=vis.copy())
    return seq, np.asarray(owner), np.asarray(code, np.float64)


def _bilinear(img, x, y):
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    x1, y1 = min(x0 + 1, img.shape[1] - 1), min(y0 + 1, img.shape[0] - 1)
    ax, ay = x - x0, y - y0
    img = img.astype(np.float64)
    return ((1 - ay) * ((1 - ax) * img[y0, x0] + ax * img[y0, x1])
            + ay * ((1 - ax) * img[y1, x0] + ax * img[y1, x1]))


def _clip(seq, start=0, frames=S):
    return dict(rgbs=seq["rgbs"][start:start + frames], masks=seq["masks"][start:start + frames],
                trajs=seq["trajs"][start:start + frames], vis=seq["visibs"][start:start + frames],
                valids=seq["valids"][start:start + frames])


# ------------------------------------------------------------------------------------------------
# Filters, FPS, padding
# ------------------------------------------------------------------------------------------------

def test_mask_edge_map():
    m = np.ones((6, 7), np.uint8)
    m[2:4, 3:5] = 2
    e = transforms.mask_edge_map(m)
    assert e[2, 3] and e[1, 2] and e[4, 5] and not e[0, 0] and not e[5, 0] and not e[1, 0]
    assert not transforms.mask_edge_map(np.ones((5, 5), np.uint8)).any()  # image border is no edge


def test_point_filter_hand_built():
    s, h, w = 8, 40, 40
    mask0 = np.ones((h, w), np.uint8)
    mask0[20:, :] = 2  # horizontal edge between rows 19 and 20
    base = np.stack([np.linspace(5, 12, s), np.full(s, 8.0)], -1)  # moves 7 px in x
    trajs = np.repeat(base[:, None], 8, 1).astype(np.float32)
    vis = np.ones((s, 8), bool)
    valids = np.ones((s, 8), bool)
    vis[1, 1] = False  # 1: occluded at frame 1
    vis[2:, 2] = False  # 2: visible in 2 frames < max(sqrt(8), 2) = 2.83
    vis[3:, 3] = False  # 3: visible in exactly 3 frames -> passes
    trajs[:, 4, 1] = 19.6  # 4: int(y) = 19 touches id 2 in its 3x3 window -> mask edge
    trajs[:, 5] = trajs[0, 5]  # 5: static -> motion filter
    valids[0, 6] = vis[0, 6] = False  # 6: invalid at frame 0
    trajs[5:, 7, 0] += 30  # 7: a 30 px jump between frames 4 and 5 (> 0.5 * 40 / 2)
    keep = transforms.point_filter(trajs, vis, valids, mask0, motion_min_px=1.0, motion_max_step_px=10)
    np.testing.assert_array_equal(keep, [1, 0, 0, 1, 0, 0, 0, 0])
    keep = transforms.point_filter(trajs, vis, valids, mask0, edge=False, motion_min_px=0.0)
    np.testing.assert_array_equal(keep, [1, 0, 0, 1, 1, 1, 0, 1])


def test_fps_deterministic_and_spread():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0, 0, 0], [100, 0, 0, 0], [0, 100, 0, 0], [0, 0, 50, 50.0]])
    feats = np.concatenate([c + rng.normal(size=(20, 4)) for c in centres])
    a = transforms.farthest_point_sampling(feats, 4, first=3)
    np.testing.assert_array_equal(a, transforms.farthest_point_sampling(feats, 4, first=3))
    assert sorted(i // 20 for i in a) == [0, 1, 2, 3]  # one point per cluster
    assert len(transforms.farthest_point_sampling(feats, 500)) == 80  # all, without repeats
    assert len(set(transforms.farthest_point_sampling(feats, 80).tolist())) == 80


def test_padding_when_few_points_survive():
    seq, _, _ = _block_sequence()
    c = _cfg()
    c.num_points = 64  # > 36 moving points
    ex = transforms.process_clip(_clip(seq), c, np.random.default_rng(0))
    k = int(ex["point_valid"].sum())
    assert 4 <= k < 64
    assert ex["point_valid"][:k].all() and not ex["point_valid"][k:].any()
    assert not ex["valids"][:, k:].any() and not ex["vis"][:, k:].any()
    assert not ex["trajs"][:, k:].any() and (ex["point_index"][k:] == -1).all()
    assert ex["valids"][:2, :k].all() and ex["vis"][:2, :k].all()


def test_clip_with_too_few_points_is_skipped_and_counted():
    good, _, _ = _block_sequence(0)
    bad, _, _ = _block_sequence(1, static=True)  # nothing moves: the motion filter removes everything
    c = _cfg()
    src = sources.in_memory_source([bad, good], c)
    maker = sources.ExampleMaker(src, c)
    exs = [maker(g) for g in range(len(src))]
    assert all(int(e["seq_index"]) == 1 for e in exs)
    assert sum(int(e["num_skipped"]) > 0 for e in exs) >= len(src) // 2 - 1
    assert transforms.process_clip(_clip(bad), c, np.random.default_rng(0)) is None
    c.max_retries = 0
    with pytest.raises(RuntimeError, match="min_points"):
        sources.ExampleMaker(sources.in_memory_source([bad], c), c)(0)


# ------------------------------------------------------------------------------------------------
# Shapes, determinism, augmentations
# ------------------------------------------------------------------------------------------------

def test_example_shapes_and_dtypes():
    seq, _, _ = _block_sequence()
    c = _cfg()
    c.aug = pipeline.default_data_config().aug
    c.aug.xy_swap = "none"
    ex = sources.ExampleMaker(sources.in_memory_source([seq], c), c)(3)
    want = dict(rgbs=((S, *CROP, 3), np.uint8), masks=((S, *CROP), np.int32),
                trajs=((S, N, 2), np.float32), vis=((S, N), np.float32), valids=((S, N), np.float32),
                point_valid=((N,), np.float32), point_index=((N,), np.int32))
    for k, (shape, dt) in want.items():
        assert ex[k].shape == shape and ex[k].dtype == dt, k
    assert set(pipeline.FIELDS) == set(ex)


def test_determinism_by_seed():
    seq, _, _ = _block_sequence()
    c = _cfg()
    c.aug = pipeline.default_data_config().aug
    c.aug.xy_swap = "none"
    src = sources.in_memory_source([seq], c)
    a = [sources.ExampleMaker(src, c)(g) for g in (0, 5, 17)]
    b = [sources.ExampleMaker(src, c)(g) for g in (17, 5, 0)][::-1]  # order-independent
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    c.seed = 1
    d = sources.ExampleMaker(src, c)(5)
    assert not all(np.array_equal(d[k], a[1][k]) for k in ("rgbs", "trajs"))


AUGS = {
    "none": {},
    "time_reverse": dict(time_reverse_prob=1.0),
    "hflip": dict(hflip_prob=1.0),
    "vflip": dict(vflip_prob=1.0),
    "scale_crop": dict(scale_prob=1.0, scale_range=(0.8, 1.3), aspect_range=(0.8, 1.25)),
    "xy_swap": dict(xy_swap="example", xy_swap_prob=1.0),
    "blur": dict(blur_prob=1.0, blur_frame_prob=1.0),
    "eraser": dict(eraser_prob=1.0, eraser_frame_prob=1.0, eraser_size=(0.2, 0.5)),
    "color_noise": dict(color_prob=1.0, noise_prob=1.0),
    "all": dict(time_reverse_prob=0.5, hflip_prob=0.5, vflip_prob=0.5, scale_prob=1.0,
                blur_prob=0.5, eraser_prob=1.0, color_prob=0.5, noise_prob=0.5),
}


@pytest.mark.parametrize("name", sorted(AUGS))
def test_augmentations_keep_masks_frames_and_tracks_aligned(name):
    seq, owner, code = _block_sequence()
    c = _cfg(**AUGS[name])
    if name == "xy_swap":
        c.crop_size = (64, 64)
    colour_kept = name not in ("color_noise", "all")  # "all" blurs after downscaling: edges bleed
    n_checked = 0
    for seed in range(3):
        ex = transforms.process_clip(_clip(seq, start=seed), c, np.random.default_rng(seed))
        k = int(ex["point_valid"].sum())
        own = owner[ex["point_index"][:k]]
        cod = code[ex["point_index"][:k]]
        h, w = ex["masks"].shape[1:]
        for t in range(S):
            for i in np.flatnonzero(ex["vis"][t, :k]):
                x, y = ex["trajs"][t, i]
                assert 0 <= x <= w - 1 and 0 <= y <= h - 1
                assert ex["masks"][t, int(y), int(x)] == own[i], (name, t, i)
                if colour_kept:
                    red = int(ex["rgbs"][t, int(round(y)), int(round(x)), 0])
                    assert abs(red - ID_SCALE * own[i]) <= 2
                if colour_kept and min(x, y, w - 1 - x, h - 1 - y) >= 6:  # blur reflects at the border
                    np.testing.assert_allclose(_bilinear(ex["rgbs"][t, ..., 1:], x, y), cod[i],
                                               atol=1.5,
                                               err_msg=f"{name} t={t} point={i}")
                n_checked += 1
        if name in ("none", "time_reverse", "hflip", "vflip", "xy_swap"):  # no resampling: exact
            np.testing.assert_array_equal(ex["rgbs"][..., 0], ex["masks"] * ID_SCALE)
    assert n_checked > 50


def test_eraser_hides_points_and_leaves_masks():
    seq, _, _ = _block_sequence()
    c = _cfg(eraser_prob=1.0, eraser_frame_prob=1.0, eraser_size=(0.4, 0.6))
    clip = _clip(seq)
    out = transforms.augment(clip, c, np.random.default_rng(0))
    ref = transforms.augment(clip, _cfg(), np.random.default_rng(0))  # same crop offsets drawn first
    np.testing.assert_array_equal(out["masks"], ref["masks"])
    np.testing.assert_array_equal(out["trajs"], ref["trajs"])
    assert (out["vis"] <= ref["vis"]).all() and out["vis"][1:].sum() < ref["vis"][1:].sum()
    np.testing.assert_array_equal(out["vis"][0], ref["vis"][0])  # frame 0 is never erased
    changed = np.any(out["rgbs"] != ref["rgbs"], -1)
    for t in range(1, S):  # every hidden point lies on a changed (erased) pixel
        for i in np.flatnonzero(ref["vis"][t] & ~out["vis"][t]):
            x, y = out["trajs"][t, i]
            assert changed[t, int(round(y)), int(round(x))]
    c.aug.eraser_mask_id = 200
    out2 = transforms.augment(clip, c, np.random.default_rng(0))
    assert (out2["masks"][1:] == 200).any() and not (out2["masks"][0] == 200).any()


def test_flips_time_reversal_and_xy_swap_are_exact():
    seq, _, _ = _block_sequence()
    clip = _clip(seq)
    h, w = H0, W0
    f = transforms.flip(clip, True, True)
    np.testing.assert_array_equal(f["rgbs"], clip["rgbs"][:, ::-1, ::-1])
    np.testing.assert_array_equal(f["masks"], clip["masks"][:, ::-1, ::-1])
    np.testing.assert_array_equal(f["trajs"][..., 0], w - 1 - clip["trajs"][..., 0])
    np.testing.assert_array_equal(f["trajs"][..., 1], h - 1 - clip["trajs"][..., 1])
    r = transforms.reverse_time(clip)
    for k in ("rgbs", "masks", "trajs", "vis", "valids"):
        np.testing.assert_array_equal(r[k], clip[k][::-1])
    sw = transforms.swap_xy(clip)
    np.testing.assert_array_equal(sw["rgbs"], clip["rgbs"].transpose(0, 2, 1, 3))
    np.testing.assert_array_equal(sw["masks"], clip["masks"].transpose(0, 2, 1))
    np.testing.assert_array_equal(sw["trajs"], clip["trajs"][..., ::-1])
    np.testing.assert_array_equal(transforms.swap_xy(sw)["rgbs"], clip["rgbs"])
    # Through `augment` with a full-size crop: the same exact maps.
    c = _cfg(hflip_prob=1.0, time_reverse_prob=1.0)
    c.crop_size = (h, w)
    out = transforms.augment(clip, c, np.random.default_rng(0))
    np.testing.assert_array_equal(out["rgbs"], clip["rgbs"][::-1, :, ::-1])
    np.testing.assert_array_equal(out["trajs"][..., 0], w - 1 - clip["trajs"][::-1, :, 0])
    np.testing.assert_array_equal(out["trajs"][..., 1], clip["trajs"][::-1, :, 1])
    # Batch-level swap on a batch (numpy; the same code works on jax arrays).
    batch = {k: np.stack([v, v]) for k, v in clip.items()}
    sb = transforms.swap_xy(batch)
    assert sb["rgbs"].shape == (2, S, w, h, 3) and sb["masks"].shape == (2, S, w, h)


def test_points_leaving_the_crop_become_invisible_but_stay_valid():
    seq, _, _ = _block_sequence()
    c = _cfg(scale_prob=1.0, scale_range=(1.2, 1.4))
    c.crop_size = (48, 64)
    clip = _clip(seq)
    n_in = n_out = 0
    for seed in range(4):
        out = transforms.augment(clip, c, np.random.default_rng(seed))
        inb = transforms.in_bounds(out["trajs"], 48, 64)
        n_in, n_out = n_in + inb.sum(), n_out + (~inb).sum()
        np.testing.assert_array_equal(out["valids"], clip["valids"])
        assert not out["vis"][~inb].any()
        np.testing.assert_array_equal(out["vis"][inb], clip["vis"][inb])
    assert n_in > 0 and n_out > 0


def test_scale_crop_track_mapping_matches_opencv_resampling():
    # A single bright pixel moved by the warp must land where the track mapping says.
    clip = dict(rgbs=np.zeros((1, 30, 40, 3), np.uint8), masks=np.zeros((1, 30, 40), np.uint8),
                trajs=np.array([[[13.0, 9.0]]], np.float32), vis=np.ones((1, 1), bool),
                valids=np.ones((1, 1), bool))
    clip["rgbs"][0, 9, 13] = 255
    out = transforms.scale_crop(clip, (50, 60), 2.0, 2.0, 3.0, 4.0)
    img = out["rgbs"][0, ..., 0].astype(float)
    yy, xx = np.mgrid[:50, :60]
    centroid = np.array([(img * xx).sum(), (img * yy).sum()]) / img.sum()
    np.testing.assert_allclose(centroid, out["trajs"][0, 0], atol=1e-3)


# ------------------------------------------------------------------------------------------------
# Streams: per-process blocks, resumability, global batches, directory source
# ------------------------------------------------------------------------------------------------

def test_global_example_index_blocks():
    gb, pc = 6, 3
    lb = pipeline.local_batch_size(gb, pc)
    got = [[pipeline.global_example_index(i, lb, gb, p) for i in range(4 * lb)] for p in range(pc)]
    flat = sorted(sum(got, []))
    assert flat == list(range(4 * gb))
    assert got[1][:lb] == [2, 3] and got[1][lb:2 * lb] == [8, 9]
    with pytest.raises(ValueError, match="not divisible"):
        pipeline.local_batch_size(6, 4)


def test_stream_is_resumable_and_seeded():
    seq, _, _ = _block_sequence()
    c = _cfg(hflip_prob=0.5, scale_prob=0.5, eraser_prob=0.5, xy_swap="batch", xy_swap_prob=0.5)
    c.crop_size = (64, 64)
    src = sources.in_memory_source([seq], c)
    it = pipeline.make_train_iterator(c, 2, source=src, process_index=0, process_count=1)
    full = [next(it) for _ in range(4)]
    assert it.state()["step"] == 4 and it.position == 4
    it.close()
    it2 = pipeline.make_train_iterator(c, 2, start_step=2, source=src, process_index=0,
                                       process_count=1)
    tail = [next(it2) for _ in range(2)]
    it2.close()
    for a, b in zip(full[2:], tail):
        assert set(a) == set(b)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    np.testing.assert_array_equal(np.concatenate([b["example_index"] for b in full]), np.arange(8))
    # The stream equals the per-example function (batching/parallelism change nothing).
    maker = sources.ExampleMaker(src, c)
    ex = maker(5)
    b = full[2]
    swapped = bool(b["xy_swapped"][0])
    if swapped:
        ex = transforms.swap_xy(ex)
    np.testing.assert_array_equal(b["rgbs"][1], ex["rgbs"])
    np.testing.assert_array_equal(b["trajs"][1], ex["trajs"])


def test_make_global_batch_single_process():
    import jax
    seq, _, _ = _block_sequence()
    c = _cfg()
    mesh = jax.make_mesh((jax.device_count(),), ("data",),
                         axis_types=(jax.sharding.AxisType.Explicit,))
    gb = 2 * jax.device_count()
    it = pipeline.make_train_iterator(c, gb, mesh=mesh, source=sources.in_memory_source([seq], c))
    batch = next(it)
    it.close()
    assert batch["rgbs"].shape == (gb, S, *CROP, 3)
    assert batch["trajs"].sharding.spec == jax.sharding.PartitionSpec("data")
    np.testing.assert_array_equal(np.asarray(batch["example_index"]), np.arange(gb))


def test_dir_source_matches_reader_clips(tmp_path):
    synthetic = pytest.importorskip("objtrack_jax.data_pipelines.synthetic")
    from objtrack_jax.data_pipelines import pointodyssey
    synthetic.generate_dataset(str(tmp_path), num_seqs={"train": 1}, frames=8, size=(64, 80),
                               num_points=48, progress=False, write_depths=False)
    c = _cfg()
    c.root, c.clip_len, c.clip_stride, c.frame_strides = str(tmp_path), 4, 2, (1, 2)
    c.crop_size = (48, 64)
    src = sources.dir_source(c)
    seq_dir = pointodyssey.list_sequences(str(tmp_path), "train")[0]
    for fs in (1, 2):
        ref = list(pointodyssey.iter_clips(seq_dir, 4, 2, frame_stride=fs))
        rows = [r for r in src.table if r[2] == fs]
        assert [int(r[1]) for r in rows] == [cl["start"] for cl in ref]
        for r, cl in zip(rows, ref):
            got = src.load(*(int(v) for v in r), 4)
            for k, k2 in (("rgbs", "rgbs"), ("masks", "masks"), ("trajs", "trajs"), ("vis", "visibs"),
                          ("valids", "valids")):
                np.testing.assert_array_equal(got[k], cl[k2])
    c.min_points = 1
    ex = sources.ExampleMaker(src, c)(0)
    assert ex["rgbs"].shape == (4, 48, 64, 3) and ex["point_valid"].sum() >= 1


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    synthetic = pytest.importorskip("objtrack_jax.data_pipelines.synthetic")
    root = str(tmp_path_factory.mktemp("synth"))
    synthetic.generate_dataset(root, num_seqs={"train": 2}, frames=12, size=(64, 80), num_points=64,
                               progress=False, write_depths=False)
    return root


def _tfds_cfg():
    c = _cfg(hflip_prob=0.5, scale_prob=0.5)
    c.source, c.clip_len, c.crop_size, c.frame_strides = "tfds", 4, (48, 64), (1, 2)
    c.min_points, c.shuffle_buffer, c.num_parallel_calls = 2, 8, 1
    return c


def test_tfds_tfrecord_stream_is_resumable(tiny_root, tmp_path):
    tp = pytest.importorskip("objtrack_jax.data_pipelines.tfds_pointodyssey")
    builder = tp.build(tiny_root, str(tmp_path / "tfds"), clip_len=8, clip_stride=4)
    c = _tfds_cfg()
    assert sources.tfds_source(c, builder) is None  # TFRecord: streamed
    it = pipeline.make_train_iterator(c, 2, builder=builder, process_index=0, process_count=1)
    full = [next(it) for _ in range(3)]
    st = it.state()
    it.close()
    assert full[0]["rgbs"].shape == (2, 4, 48, 64, 3) and full[0]["trajs"].shape == (2, 4, N, 2)
    assert st["raw_position"] == int(full[-1]["example_index"].max()) + 1
    mid = {"raw_position": int(full[0]["example_index"].max()) + 1}
    it2 = pipeline.make_train_iterator(c, 2, start_step=1, builder=builder, process_index=0,
                                       process_count=1, state=mid)
    tail = [next(it2) for _ in range(2)]
    it2.close()
    for a, b in zip(full[1:], tail):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_tfds_array_record_is_random_access(tiny_root, tmp_path):
    tp = pytest.importorskip("objtrack_jax.data_pipelines.tfds_pointodyssey")
    from tensorflow_datasets import download
    builder = tp.PointOdysseyClips(config=tp.make_config(8, 4), data_dir=str(tmp_path / "ar"),
                                   file_format="array_record")
    builder.download_and_prepare(download_config=download.DownloadConfig(manual_dir=tiny_root))
    c = _tfds_cfg()
    src = sources.tfds_source(c, builder)
    assert src is not None and len(src) == 4 * builder.info.splits["train"].num_examples  # 3+1 rows
    it = pipeline.make_train_iterator(c, 2, start_step=1, builder=builder, process_index=0,
                                      process_count=1)
    b = next(it)
    it.close()
    np.testing.assert_array_equal(b["example_index"], [2, 3])
    ex = sources.ExampleMaker(src, c)(3)
    for k in ("rgbs", "masks", "trajs", "vis"):
        np.testing.assert_array_equal(b[k][1], ex[k])
