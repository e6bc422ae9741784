"""evaluate() under both protocols and the eval/track CLI entry points.

Tiny: synthetic sequences of 6 frames at 128x128, a 7-frame TAP-Vid-DAVIS pickle written here, 4-frame
windows, 1 refinement iteration, at most 8 points per video.
"""

import json
import os
import pickle

import cv2
import jax
import numpy as np
import pytest

from conftest import PIPS2_REF_DIR, require_path
from objtrack_jax.data_pipelines import synthetic
from objtrack_jax import cli_eval, evaluation, model_io
from objtrack_jax.convert.pips2 import abstract_params, load_torch_checkpoint
from objtrack_jax.metrics import PIPS_KEYS, TAPVID_KEYS
from objtrack_jax.video_io import read_video, write_video

KW = dict(window=4, iters=1, progress=False, max_points=8)


@pytest.fixture(scope="module")
def tracker():
    d = require_path(PIPS2_REF_DIR, "PIPs++ reference checkpoint")
    model, params, _ = load_torch_checkpoint(d)
    return model, params


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synth"))
    synthetic.generate_dataset(root, num_seqs={"test": 2}, frames=6, size=(128, 128), num_points=32,
                               progress=False, write_depths=False)
    return root


@pytest.fixture(scope="module")
def davis_pickle(tmp_path_factory):
    rng = np.random.default_rng(0)
    data = {}
    for name in ("bear", "camel"):
        video = np.stack([cv2.resize(rng.integers(0, 256, (12, 16, 3)).astype(np.uint8), (128, 96),
                                     interpolation=cv2.INTER_CUBIC)] * 7)
        points = rng.uniform(0.1, 0.9, (5, 1, 2)).repeat(7, axis=1).astype(np.float32)
        occluded = np.zeros((5, 7), bool)
        occluded[1, :3] = True   # first visible at frame 3 (4-frame segments both ways)
        occluded[2, 4] = True
        data[name] = dict(video=video, points=points, occluded=occluded)
    path = str(tmp_path_factory.mktemp("davis") / "tapvid_davis.pkl")
    with open(path, "wb") as f:
        pickle.dump(data, f)
    return path


def test_synthetic_pips_protocol(tracker, synth_root):
    model, params = tracker
    rows, mean = evaluation.evaluate("synthetic", synth_root, model, params, protocol="pips", **KW)
    assert [r["video"] for r in rows] == ["seq_0000", "seq_0001"]
    for r in rows:
        assert set(PIPS_KEYS) <= set(r) and r["num_frames"] == 6 and 0 < r["num_points"] <= 8
        assert all(np.isfinite(r[k]) for k in PIPS_KEYS)
    assert mean["num_videos"] == 2
    np.testing.assert_allclose(mean["d_avg"], np.mean([r["d_avg"] for r in rows]))
    rows50, _ = evaluation.evaluate("synthetic", synth_root, model, params, protocol="pips",
                                    survival_threshold=50.0, max_videos=1, **KW)
    assert len(rows50) == 1 and rows50[0]["survival"] >= rows[0]["survival"]
    assert rows50[0]["d_avg"] == rows[0]["d_avg"]


def test_synthetic_tapvid_protocol_strided(tracker, synth_root):
    model, params = tracker
    rows, mean = evaluation.evaluate("synthetic", synth_root, model, params, protocol="tapvid",
                                     query_mode="strided", resolution=(128, 128), **KW)
    assert len(rows) == 2
    for r in rows:
        assert set(TAPVID_KEYS) <= set(r)
        # no visibility head -> occlusion-dependent metrics are not available (never made up)
        assert r["average_jaccard"] is None and r["occlusion_accuracy"] is None
        assert r["jaccard_4"] is None
        assert 0.0 <= r["average_pts_within_thresh"] <= 1.0
    assert mean["average_jaccard"] is None and mean["average_pts_within_thresh"] is not None


def test_tapvid_davis_pickle(tracker, davis_pickle):
    model, params = tracker
    rows, mean = evaluation.evaluate("tapvid_davis", davis_pickle, model, params, protocol="tapvid",
                                     resolution=(128, 128), **KW)
    assert [r["video"] for r in rows] == ["bear", "camel"]
    assert all(r["num_frames"] == 7 and r["num_points"] == 5 for r in rows)
    assert rows[0]["average_jaccard"] is None and rows[0]["pts_within_16"] is not None
    # the PIPs++ protocol on the same pickle: frame-0 visible points only (track 1 starts at 3)
    rows, _ = evaluation.evaluate("tapvid_davis", os.path.dirname(davis_pickle), model, params,
                                  protocol="pips", resolution=(128, 128), **KW)
    assert all(r["num_points"] == 4 for r in rows) and set(PIPS_KEYS) <= set(rows[0])


def with_visibility_head(model, params, seed=0):
    """The reference model plus a randomly initialised visibility head (no init compile)."""
    model = model.clone(visibility_head=True)
    shapes = abstract_params(model)["delta_block"]["vis_dense"]
    keys = jax.random.split(jax.random.PRNGKey(seed), len(shapes))
    head = {k: 0.05 * jax.random.normal(key, v.shape, v.dtype) for key, (k, v) in zip(keys, shapes.items())}
    return model, {**params, "delta_block": {**params["delta_block"], "vis_dense": head}}


def test_visibility_head_reports_jaccard(tracker, davis_pickle):
    model, params = with_visibility_head(*tracker)
    rows, _ = evaluation.evaluate("tapvid_davis", davis_pickle, model, params, protocol="tapvid",
                                  resolution=(128, 128), max_videos=1, **KW)
    assert len(rows) == 1
    assert all(isinstance(rows[0][k], float) for k in TAPVID_KEYS)


def test_evaluate_rejects_bad_arguments(tracker, tmp_path):
    model, params = tracker
    with pytest.raises(ValueError, match="unknown dataset"):
        evaluation.evaluate("kitti", str(tmp_path), model, params)
    with pytest.raises(ValueError, match="protocol"):
        evaluation.evaluate("synthetic", str(tmp_path), model, params, protocol="x")
    with pytest.raises(FileNotFoundError):
        evaluation.evaluate("pointodyssey", str(tmp_path / "nope"), model, params)


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def test_track_main_writes_outputs(tmp_path, capsys):
    ckpt = require_path(PIPS2_REF_DIR, "PIPs++ reference checkpoint")
    rng = np.random.default_rng(1)
    base = cv2.resize(rng.integers(0, 256, (20, 20, 3)).astype(np.uint8), (160, 160),
                      interpolation=cv2.INTER_CUBIC)
    frames = np.stack([base[t:t + 120, t:t + 136] for t in range(5)])  # 120x136: needs resizing
    src = write_video(str(tmp_path / "in.mp4"), frames, fps=10)
    out = str(tmp_path / "res" / "out.mp4")
    res = cli_eval.track_main([src, "--grid", "3", "--checkpoint", ckpt, "--out", out,
                               "--resolution", "128x128", "--window", "4", "--iters", "1",
                               "--no-progress"])
    for key in ("video", "npz", "png"):
        assert os.path.getsize(res[key]) > 0
    assert res["png"].endswith("out.png") and res["npz"].endswith("out.npz")
    npz = np.load(res["npz"])
    assert npz["tracks"].shape == (9, 5, 2) and not bool(npz["has_visibility"])
    assert "visible" not in npz.files
    assert read_video(out).shape == (5, 120, 136, 3)
    printed = capsys.readouterr().out
    assert "tracked 9 points x 5 frames" in printed

    queries = tmp_path / "q.txt"
    queries.write_text("0, 30, 40\n4 60.5 70.5\n")
    res = cli_eval.track_main([src, "--queries", str(queries), "--checkpoint", ckpt,
                               "--out", str(tmp_path / "q.mp4"), "--resolution", "128x128",
                               "--window", "4", "--iters", "1", "--no-progress"])
    tracks = np.load(res["npz"])["tracks"]
    np.testing.assert_array_equal(tracks[[0, 1], [0, 4]], [[40, 30], [70.5, 60.5]])


def test_cli_without_checkpoint_errors_clearly(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(model_io, "WEIGHTS_DIR", str(tmp_path / "no_weights"))
    (tmp_path / "video.mp4").write_bytes(b"")  # exists: the video is checked before the model
    with pytest.raises(SystemExit):
        cli_eval.track_main([str(tmp_path / "video.mp4"), "--out", str(tmp_path / "o.mp4")])
    assert "no shipped weights named" in capsys.readouterr().err


def test_eval_main_synthetic(tmp_path, synth_root, capsys):
    ckpt = require_path(PIPS2_REF_DIR, "PIPs++ reference checkpoint")
    out = str(tmp_path / "results.json")
    common = ["--dataset", "synthetic", "--data-root", synth_root, "--checkpoint", ckpt,
              "--window", "4", "--iters", "1", "--max-points", "8", "--no-progress"]
    res = cli_eval.eval_main(common + ["--out", out])
    printed = capsys.readouterr().out
    assert "d_avg" in printed and "seq_0001" in printed and "mean" in printed
    with open(out) as f:
        saved = json.load(f)
    assert len(saved["per_video"]) == 2 and saved["mean"]["num_videos"] == 2
    assert saved["config"]["dataset"] == "synthetic" and saved["config"]["window"] == 4
    assert saved["mean"]["d_avg"] == pytest.approx(res["mean"]["d_avg"])

    cli_eval.eval_main(common + ["--protocol", "tapvid", "--resolution", "128x128",
                                 "--max-videos", "1", "--out", out])
    printed = capsys.readouterr().out
    assert "n/a" in printed and "average_pts_within_thresh" in printed
    with open(out) as f:
        saved = json.load(f)
    assert saved["mean"]["average_jaccard"] is None


def test_training_eval_equals_objtrack_eval(tmp_path):
    """The periodic evaluation of train/loop.py and `objtrack eval` on the same weights and data
    give identical metrics (same queries, frames, resolution, windows)."""
    from objtrack_jax.configs import objprior
    from objtrack_jax.models.tracker import tracker_from_config
    from objtrack_jax.train import loop

    root = str(tmp_path / "data")
    synthetic.generate_dataset(root, num_seqs={"val": 2}, frames=10, size=(128, 160), num_points=48,
                               progress=False, write_depths=False)
    model = tracker_from_config({"latent_dim": 32, "encoder_dims": [16, 24, 32, 32],
                                 "update_channels": [32, 64]})
    params = model.init(jax.random.PRNGKey(0), np.zeros((1, 2, 128, 128, 3), np.float32),
                        np.full((1, 2, 1, 2), 40.0, np.float32), iters=1)["params"]
    c = objprior.get_config("tiny")
    c.eval.update(dict(num_videos=2, max_frames=8, max_points=12, window=4, iters=1))
    in_training = loop.evaluate(model, params, c, root)
    ckpt = model_io.save_inference_checkpoint(str(tmp_path / "ckpt"), model, params)
    cli = cli_eval.eval_main(["--dataset", "pointodyssey", "--data-root", root, "--split", "val",
                              "--checkpoint", ckpt, "--window", "4", "--iters", "1",
                              "--max-videos", "2", "--max-points", "12", "--max-frames", "8",
                              "--resolution", "128x160", "--no-progress"])
    assert cli["mean"]["num_videos"] == 2 and all(r["num_frames"] == 8 for r in cli["per_video"])
    assert all(r["num_points"] == 12 for r in cli["per_video"])
    assert in_training == {f"eval/{k}": cli["mean"][k] for k in PIPS_KEYS}


def test_still_metrics_in_the_pips_protocol(tmp_path):
    """``still=True`` (``objtrack eval --still``) adds the static benchmark's drift, jitter and
    occlusion rates; checked on a zero-motion tracker against the annotations directly."""
    from objtrack_jax import metrics
    from objtrack_jax.data_pipelines import pointodyssey

    root = str(tmp_path / "data")
    synthetic.generate_dataset(root, num_seqs={"test": 1}, frames=52, size=(128, 128),
                               num_points=24, progress=False, write_depths=False)

    def hold_xy(video, queries):  # tapnet conventions: every point stays at its query, visible
        q = np.asarray(queries)[0]
        return np.repeat(q[:, None, [2, 1]], video.shape[1], 1)[None], np.zeros((1, len(q),
                                                                                 video.shape[1]))

    rows, mean = evaluation.evaluate("synthetic", root, hold_xy, protocol="pips", still=True,
                                     progress=False)
    assert set(evaluation.STILL_KEYS) - {"drift_med_100", "drift_med_199", "drift_p90_199"} \
        <= set(rows[0])
    seq = pointodyssey.list_sequences(root, "test")[0]
    anno = pointodyssey.load_annotations(seq)
    ok = anno["visibs"][0]
    g, vis, val = anno["trajs"][:, ok], anno["visibs"][:, ok], anno["valids"][:, ok]
    e = np.repeat(g[:1], len(g), 0)
    want = metrics.drift_metrics(e, g, val, (50,))
    assert rows[0]["drift_med_50"] == pytest.approx(want["drift_med_50"], abs=1e-4)
    assert rows[0]["jitter"] == pytest.approx(want["jitter"], abs=1e-4)
    counted = val > 0
    assert rows[0]["occlusion_accuracy"] == pytest.approx(100 * np.mean(vis[counted]), abs=1e-6)
    assert rows[0]["occlusion_recall"] in (0.0, None)
    plain, _ = evaluation.evaluate("synthetic", root, hold_xy, protocol="pips", progress=False)
    assert "jitter" not in plain[0]
