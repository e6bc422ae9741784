"""Shipped weights, the zero-motion baseline, the reduced-width model and ``objtrack demo``."""

import json
import os

import jax
import numpy as np
import pytest

import objtrack_jax
from objtrack_jax import evaluation, model_io, settings
from objtrack_jax.models.tracker import tracker_from_config


def test_load_pretrained_shapes_and_info():
    assert "objprior_synth" in model_io.available()
    model, params, info = objtrack_jax.load_pretrained()
    assert info["name"] == "objprior_synth" and model.use_attention
    assert tuple(model.encoder_dims) == (32, 48, 64, 64)
    n = sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(params))
    assert 1_000_000 < n < 25_000_000  # well under the 100 MB budget in float32
    with open(os.path.join(model_io.weights_path(), "config.json")) as f:
        doc = json.load(f)
    info = doc["info"]
    # the validated settings that eval / track / demo default to
    assert {"window", "iters", "short_side", "trained"} <= set(info["inference"])
    assert settings.is_recorded({"inference": info["inference"]})
    assert settings.from_info(info) == settings.TrackingSettings(
        window=8, iters=4, short_side=192, refine_scale=2, refine_iters=4, anchor=True)
    assert model.visibility_head  # the shipped model predicts visibility (AJ / OA)
    with open(os.path.join(model_io.weights_path(), "results.json")) as f:
        shipped = json.load(f)  # the results and training stages live beside config.json
    res, training = shipped["entries"], shipped["training"]
    model_d_avg = res["real_eval_default"]["values"]["d_avg"]
    assert model_d_avg > 2 * res["real_eval_zero"]["values"]["d_avg"]
    assert training["steps"] == sum(s["steps"] for s in training["stages"])


def test_load_pretrained_unknown_name_lists_available():
    with pytest.raises(FileNotFoundError, match="objprior_synth"):
        objtrack_jax.load_pretrained("no_such_weights")


def test_reduced_widths_build_and_run():
    cfg = {"latent_dim": 32, "encoder_dims": [16, 24, 32, 32], "update_channels": [32, 64]}
    model = tracker_from_config(cfg)
    rgbs = np.zeros((1, 2, 128, 128, 3), np.float32)
    trajs = np.full((1, 2, 3, 2), 40.0, np.float32)
    params = model.init(jax.random.PRNGKey(0), rgbs, trajs, iters=1)["params"]
    assert params["fnet"]["conv1"]["conv"]["kernel"].shape == (7, 7, 3, 16)
    assert params["delta_block"]["basicblock_list_1"]["conv2"]["conv"]["kernel"].shape == (3, 64, 64)
    out = model.apply({"params": params}, rgbs, trajs, iters=2)
    assert out.tracks.shape == (1, 2, 3, 2) and np.all(np.isfinite(out.tracks))
    with pytest.raises(ValueError, match="4 stage widths"):
        tracker_from_config({"encoder_dims": [16, 32]}).init(jax.random.PRNGKey(0), rgbs, trajs, iters=1)


def test_float64_mode_needs_x64():
    with pytest.raises(ValueError, match="JAX_ENABLE_X64"):
        tracker_from_config({"dtype": "float64"})


def test_zero_baseline_holds_each_query():
    q = np.array([[0, 5.0, 7.0], [2, 1.0, 2.0]], np.float32)  # (t, y, x)
    tr, visible = evaluation.call_tracker(evaluation.baseline_tracker("zero"),
                                          np.zeros((4, 8, 8, 3), np.uint8), q)
    assert tr.shape == (2, 4, 2) and visible is None
    np.testing.assert_array_equal(tr[0], np.tile([7.0, 5.0], (4, 1)))
    np.testing.assert_array_equal(tr[1], np.tile([2.0, 1.0], (4, 1)))  # before its frame too


def test_demo_synthetic_beats_zero_motion(tmp_path):
    from objtrack_jax.demo import demo_main

    res = demo_main(["--out", str(tmp_path), "--scenes", "2", "--frames", "16", "--points", "32"])
    for name in ("demo.mp4", "demo.png", "demo.json"):
        assert (tmp_path / name).stat().st_size > 1000, name
    model, zero = res["mean"]["model"], res["mean"]["zero-motion"]
    # a tiny real-content case (evaluation photos under known motions): better than not moving
    assert model["d_avg"] > zero["d_avg"] and model["median_l2"] < zero["median_l2"]
    assert {"lucas-kanade", "dis-flow"} <= set(res["mean"])  # the baselines are shown beside it
    assert 0.0 <= model["occlusion_accuracy"] <= 1.0


def test_demo_on_user_video(tmp_path):
    from objtrack_jax.data_pipelines import synthetic
    from objtrack_jax.demo import demo_main
    from objtrack_jax.video_io import write_video

    seq = synthetic.generate_sequence(3, frames=6, size=(128, 160))
    video = str(tmp_path / "in.mp4")
    write_video(video, seq["rgbs"], fps=6)
    out = demo_main(["--video", video, "--out", str(tmp_path / "o"), "--grid", "4"])
    assert out["num_points"] == 16 and os.path.getsize(out["npz"]) > 0
    assert os.path.exists(str(tmp_path / "o" / "demo.png"))


def test_eval_cli_zero_baseline(tmp_path):
    from objtrack_jax.data_pipelines import synthetic
    from objtrack_jax.cli_eval import eval_main

    synthetic.generate_dataset(str(tmp_path), num_seqs={"test": 1}, frames=6, size=(128, 128),
                               num_points=32, progress=False, write_depths=False)
    res = eval_main(["--dataset", "synthetic", "--data-root", str(tmp_path), "--baseline", "zero",
                     "--no-progress", "--out", str(tmp_path / "z.json")])
    assert res["mean"]["num_videos"] == 1 and res["config"]["model"]["architecture"] == "baseline:zero"
    with pytest.raises(SystemExit):
        eval_main(["--dataset", "synthetic", "--baseline", "zero", "--checkpoint", "x"])


def test_encode_chunk_matches_unchunked():
    cfg = {"latent_dim": 32, "encoder_dims": [16, 24, 32, 32], "update_channels": [32, 64],
           "use_attention": True, "attention_depth": 1}
    model = tracker_from_config(cfg)
    rng = np.random.default_rng(0)
    rgbs = rng.uniform(0, 255, (1, 5, 128, 128, 3)).astype(np.float32)
    trajs = np.repeat(rng.uniform(10, 110, (1, 1, 4, 2)).astype(np.float32), 5, axis=1)
    params = model.init(jax.random.PRNGKey(0), rgbs, trajs, iters=1)["params"]
    a = model.apply({"params": params}, rgbs, trajs, iters=2)
    b = model.clone(encode_chunk=2).apply({"params": params}, rgbs, trajs, iters=2)
    assert np.abs(np.asarray(a.tracks) - np.asarray(b.tracks)).max() < 1e-3
    assert np.abs(np.asarray(a.feats[0]) - np.asarray(b.feats[0])).max() < 1e-4
