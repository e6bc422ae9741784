"""Bad input: every case gets a clear error naming the offending thing (never a traceback, a NaN
or a silently wrong answer), and training survives a corrupt checkpoint.

CLI cases call ``objtrack_jax.cli.main(argv)`` in-process (with capsys) and assert the exit status,
the ``objtrack <cmd>: error:`` line and that no traceback is printed; a few run the real
``objtrack`` entry point in a subprocess. Inputs are tiny; no case compiles the model except the
training-resume test.
"""

import glob
import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest

from objtrack_jax import cli, metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "objprior.py") + ":tiny"


def run_cli(capsys, *argv):
    """``(exit status, stdout, stderr)`` of ``objtrack *argv`` run in-process."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_cli_error(capsys, argv, *needles, cmd=None):
    """The command fails with exit 2, one ``objtrack <cmd>: error:`` message naming ``needles``
    and no traceback; returns stderr."""
    try:
        code, _, err = run_cli(capsys, *argv)
    except SystemExit as e:  # argparse errors inside a subcommand
        code, err = e.code, capsys.readouterr().err
    cmd = cmd or argv[0]
    assert code == 2, err
    assert "Traceback" not in err, err
    assert f"objtrack {cmd}: error:" in err, err
    for needle in needles:
        assert str(needle) in err, (needle, err)
    return err


# ------------------------------------------------------------------------------------------------
# The one error path
# ------------------------------------------------------------------------------------------------


def test_unknown_command(capsys):
    code, _, err = run_cli(capsys, "trak", "video.mp4")
    assert code == 2 and "'trak'" in err and "track" in err and "Traceback" not in err


def test_debug_flag_and_env_show_the_exception(tmp_path, monkeypatch, capsys):
    missing = str(tmp_path / "missing.pth")
    assert_cli_error(capsys, ["convert", missing, "--out", str(tmp_path / "o")], missing)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        cli.main(["--debug", "convert", missing, "--out", str(tmp_path / "o")])
    monkeypatch.setenv("OBJTRACK_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        cli.main(["convert", missing, "--out", str(tmp_path / "o")])


def test_internal_error_is_one_line_with_hint(monkeypatch, capsys):
    def boom(cmd, argv):
        raise TypeError("unexpected thing in _dispatch")

    monkeypatch.setattr(cli, "_dispatch", boom)
    code, _, err = run_cli(capsys, "convert", "x")
    assert code == 1 and "internal error: TypeError: unexpected thing" in err and "--debug" in err
    assert "Traceback" not in err


# ------------------------------------------------------------------------------------------------
# objtrack train: flags and config
# ------------------------------------------------------------------------------------------------


def test_train_unknown_config_key_names_nearest(tmp_path, capsys):
    err = assert_cli_error(capsys, ["train", "--config", CONFIG, "--workdir", str(tmp_path / "w"),
                                    "--config.optim.lrr=1e-3"], "optim.lrr", "optim.lr")
    assert "nearest valid keys" in err
    assert not (tmp_path / "w").exists()  # nothing started


def test_train_unknown_config_section(tmp_path, capsys):
    assert_cli_error(capsys, ["train", "--config", CONFIG, "--workdir", str(tmp_path / "w"),
                              "--config.optimiser.lr=1"], "optimiser.lr", "optim")


def test_train_bad_config_value(tmp_path, capsys):
    assert_cli_error(capsys, ["train", "--config", CONFIG, "--workdir", str(tmp_path / "w"),
                              "--config.optim.lr=fast"], "optim.lr", "fast")


def test_train_missing_config_file(tmp_path, capsys):
    assert_cli_error(capsys, ["train", "--config", "configs/nope.py", "--workdir", str(tmp_path)],
                     "configs/nope.py", "not found")


def test_train_workdir_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert_cli_error(capsys, ["train", "--config", CONFIG, "--workdir", str(f)], str(f), "is a file")


def test_train_missing_flags_and_extra_args(tmp_path, capsys):
    assert_cli_error(capsys, ["train", "--workdir", str(tmp_path)], "--config")
    assert_cli_error(capsys, ["train", "--config", CONFIG], "--workdir")
    assert_cli_error(capsys, ["train", "--config", CONFIG, "--workdir", str(tmp_path), "extra"],
                     "unexpected arguments: extra")


def test_train_data_root_missing(tmp_path):
    from objtrack_jax.configs import objprior
    from objtrack_jax.train import loop

    c = objprior.get_config("tiny")
    c.data.root = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere.*does not exist"):
        loop.train_and_evaluate(c, str(tmp_path / "w"))


def test_train_library_workdir_is_a_file(tmp_path):
    from objtrack_jax.configs import objprior
    from objtrack_jax.train import loop

    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        loop.train_and_evaluate(objprior.get_config("tiny"), str(f))


def test_train_subprocess_no_traceback(tmp_path):
    """The real entry points end-to-end: one line on stderr, exit 2."""
    for entry in (["-m", "objtrack_jax.cli"], ["-m", "objtrack_jax.train.main"]):
        args = [sys.executable, *entry] + (["train"] if entry[1] == "objtrack_jax.cli" else [])
        proc = subprocess.run(args + ["--config", CONFIG, "--workdir", str(tmp_path / "w"),
                                      "--config.batch_sise=2"],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and "batch_sise" in proc.stderr, proc.stderr
        assert "batch_size" in proc.stderr, proc.stderr


# ------------------------------------------------------------------------------------------------
# Metrics: tapnet's values exactly
# ------------------------------------------------------------------------------------------------


def _tapvid(query_t, gt_occ, gt, pred_occ, pred, mode="first", **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no floating-point warnings
        q = np.zeros((1, len(query_t), 3), np.float32)
        q[0, :, 0] = query_t
        return metrics.tapvid_metrics(q, np.asarray(gt_occ)[None], np.asarray(gt)[None],
                                      np.asarray(pred_occ)[None], np.asarray(pred)[None], mode, **kw)


def test_tapvid_exact_threshold_float32():
    """A float32 prediction whose float32 squared distance is exactly 16² is not within 16 (tapnet
    computes ``sum(square(pred - gt)) < 16²`` in float32); in float64 it would be 255.99999."""
    g, p = np.float32("1.2817765"), np.float32("17.281776")
    assert np.square(p - g) == 256.0 and np.square(np.float64(p) - np.float64(g)) < 256.0
    t = 3
    gt = np.zeros((1, t, 2), np.float32)
    pred = np.zeros((1, t, 2), np.float32)
    gt[0, :, 0], pred[0, :, 0] = g, p
    pred[0, 0, 0] = g  # the query frame (not scored)
    vis = np.zeros((1, t), bool)
    out = _tapvid([0], vis, gt, vis, pred)
    # By hand, tapnet's way: frames 1, 2 scored, both visible, both exactly 16 px away (float32).
    assert out["pts_within_16"][0] == 0.0 and out["pts_within_8"][0] == 0.0
    assert out["jaccard_16"][0] == 0.0 / (2 + 2)  # TP 0, gt positives 2, FP 2
    assert out["average_pts_within_thresh"][0] == 0.0 and out["occlusion_accuracy"][0] == 1.0
    # The same values in float64 are within 16 (255.99999 < 256): 2/2 and TP 2 / (2 + 0).
    out64 = _tapvid([0], vis, gt.astype(np.float64), vis, pred.astype(np.float64))
    assert out64["pts_within_16"][0] == 1.0 and out64["jaccard_16"][0] == 1.0
    assert out["pts_within_16"].dtype == np.float64


def test_tapvid_empty_denominators_are_nan_like_tapnet():
    # Track 0: visible nowhere on scored frames, predicted visible on frame 1 -> pts_within 0/0
    # = nan, jaccard 0 / (0 + 1) = 0. Track 1: query at the last frame -> nothing scored: all 0/0.
    gt = np.zeros((2, 3, 2), np.float32)
    gt_occ = np.array([[False, True, True], [False, False, False]])
    pred_occ = np.array([[False, False, True], [False, False, False]])
    out = _tapvid([0, 2], gt_occ, gt, pred_occ, gt, get_trackwise_metrics=True)
    for d in (1, 2, 4, 8, 16):
        assert np.isnan(out[f"pts_within_{d}"][0, 0]) and out[f"jaccard_{d}"][0, 0] == 0.0
        assert np.isnan(out[f"pts_within_{d}"][0, 1]) and np.isnan(out[f"jaccard_{d}"][0, 1])
    assert out["occlusion_accuracy"][0, 0] == 0.5 and np.isnan(out["occlusion_accuracy"][0, 1])
    assert np.isnan(out["average_jaccard"][0, 1]) and out["average_jaccard"][0, 0] == 0.0
    # Video level: track 0 alone is scored -> the same numbers; the mean over videos skips nan.
    video = _tapvid([0, 2], gt_occ, gt, pred_occ, gt)
    assert np.isnan(video["pts_within_1"][0]) and video["jaccard_1"][0] == 0.0
    assert metrics.average_metrics([{"a": np.array([np.nan, 0.5])}, {"a": 1.0}]) == {"a": 0.75}
    assert np.isnan(metrics.average_metrics([{"a": np.nan}])["a"])


def test_tapvid_query_frame_outside_video():
    gt = np.zeros((1, 3, 2))
    occ = np.zeros((1, 3), bool)
    with pytest.raises(ValueError, match=r"query frames .* \[0, 2\], got \[-1, -1\]"):
        _tapvid([-1], occ, gt, occ, gt)
    with pytest.raises(ValueError, match=r"query frames .* \[0, 2\], got \[3, 3\]"):
        _tapvid([3], occ, gt, occ, gt)
    with pytest.raises(ValueError, match="query_points has a non-finite value"):
        _tapvid([np.nan], occ, gt, occ, gt)


def test_pips_metrics_empty_inputs_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for shape in [(1, 8, 0, 2), (1, 0, 4, 2), (0, 8, 4, 2)]:
            z = np.zeros(shape)
            out = metrics.pips_metrics(z, z, np.ones(shape[:3]), (256, 256))
            assert all(v.shape == (shape[0],) for v in out.values())
            if shape[0]:  # no points or no frames: nan for every metric (one rule, TAP-Vid's)
                assert all(np.isnan(v[0]) for v in out.values())


# ------------------------------------------------------------------------------------------------
# Training checkpoints
# ------------------------------------------------------------------------------------------------


# A restore that fails inside orbax (truncated or mismatched arrays) leaves orbax's asyncio
# readers unfinished; they are reported when garbage-collected ("Event loop is closed",
# "_read_array_index_and_device_put"), in whichever test runs then. The tests below collect them
# before they end (_collect_orbax_leftovers) and ignore exactly that report.
_orbax_leftovers = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _collect_orbax_leftovers():
    import gc

    gc.collect()


def _corrupt_orbax_step(step_dir):
    """Truncates every array data file of a checkpoint (an interrupted copy, a bad disk)."""
    files = [f for f in glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True)
             if os.path.isfile(f)]
    assert files, step_dir
    for f in files:
        with open(f, "rb") as fh:
            data = fh.read()
        with open(f, "wb") as fh:
            fh.write(data[: len(data) // 2])


def _two_checkpoints(directory):
    import jax.numpy as jnp

    from objtrack_jax.train import checkpoint as ckpt_lib

    ck = ckpt_lib.Checkpointer(directory, every_steps=1, async_save=False)
    for s in (1, 2):
        ck.save(s, {"w": jnp.full((3,), float(s)), "step": jnp.asarray(s)}, {"step": s})
    ck.close()


@_orbax_leftovers
def test_restore_falls_back_to_newest_good_checkpoint(tmp_path, caplog):
    import jax
    import jax.numpy as jnp

    from objtrack_jax.train import checkpoint as ckpt_lib

    directory = str(tmp_path / "checkpoints")
    _two_checkpoints(directory)
    _corrupt_orbax_step(os.path.join(directory, "2"))
    ck = ckpt_lib.Checkpointer(directory, every_steps=1, async_save=False)
    abstract = {"w": jax.ShapeDtypeStruct((3,), jnp.float32), "step": jax.ShapeDtypeStruct((), jnp.int32)}
    with caplog.at_level(logging.WARNING, logger="objtrack_jax.train.checkpoint"):
        state, data_state, step = ckpt_lib.restore_or_init(ck, abstract, lambda: None)
    assert step == 1 and data_state == {"step": 1} and float(state["w"][0]) == 1.0
    assert "checkpoint step 2" in caplog.text and "cannot be restored" in caplog.text
    assert os.path.isdir(str(tmp_path / "checkpoints_unrestorable" / "2" / "state"))  # kept
    # The resumed run can write step 2 again.
    assert ck.save(2, {"w": jnp.zeros(3), "step": jnp.asarray(2)}, {"step": 2})
    ck.close()
    _collect_orbax_leftovers()


@_orbax_leftovers
def test_restore_fails_clearly_when_nothing_restores(tmp_path):
    import jax
    import jax.numpy as jnp

    from objtrack_jax.train import checkpoint as ckpt_lib

    directory = str(tmp_path / "checkpoints")
    _two_checkpoints(directory)
    ck = ckpt_lib.Checkpointer(directory, every_steps=1, async_save=False)
    wrong = {"w": jax.ShapeDtypeStruct((5,), jnp.float32), "step": jax.ShapeDtypeStruct((), jnp.int32)}
    with pytest.raises(ValueError, match="no checkpoint can be restored.*step 2.*step 1"):
        ckpt_lib.restore_or_init(ck, wrong, lambda: None)
    ck.close()
    assert sorted(os.listdir(directory)) == ["1", "2"]  # nothing moved or deleted
    _collect_orbax_leftovers()


@_orbax_leftovers
@pytest.mark.slow  # two short training runs (~90 s on 2 busy cores)
def test_training_resumes_from_older_checkpoint_when_newest_is_corrupt(tmp_path, caplog,
                                                                       compile_cache):
    """Two checkpoints (steps 1 and 2), the newest corrupted: the rerun warns, resumes from step
    1, trains to step 3, and the corrupt step 2 is still on disk."""
    from objtrack_jax.configs import common, pips2_baseline
    from objtrack_jax.train import loop

    def config(max_steps):
        c = pips2_baseline.get_config("tiny")
        c.model = common.apply_cpu(pips2_baseline.get_config()).model
        c.data.clip_len, c.data.num_points, c.batch_size = 4, 8, 1
        c.iters, c.max_steps = 1, max_steps
        c.eval.at_end, c.eval_every, c.progress_bar, c.tensorboard = False, 0, False, False
        c.checkpoint.every_steps, c.checkpoint.async_save = 1, False
        return c

    workdir = str(tmp_path / "run")
    loop.train_and_evaluate(config(2), workdir)
    ckpts = os.path.join(workdir, "checkpoints")
    assert sorted(os.listdir(ckpts)) == ["1", "2"]
    _corrupt_orbax_step(os.path.join(ckpts, "2"))
    with caplog.at_level(logging.WARNING, logger="objtrack_jax.train.checkpoint"):
        res = loop.train_and_evaluate(config(3), workdir)
    assert res["start_step"] == 1 and res["step"] == 3, res
    assert "checkpoint step 2" in caplog.text and "resuming from step 1" in caplog.text
    assert os.path.isdir(os.path.join(workdir, "checkpoints_unrestorable", "2", "state"))
    assert "3" in os.listdir(ckpts)
    _collect_orbax_leftovers()


# ------------------------------------------------------------------------------------------------
# Checkpoints and weights: objtrack convert, model_io
# ------------------------------------------------------------------------------------------------


def test_convert_empty_pth(tmp_path, capsys):
    pth = tmp_path / "model-000001.pth"
    pth.write_bytes(b"")
    assert_cli_error(capsys, ["convert", str(pth), "--out", str(tmp_path / "o")], str(pth), "empty file")
    assert not (tmp_path / "o").exists()


def test_convert_truncated_zip_is_not_called_legacy(tmp_path, capsys):
    pth = tmp_path / "model.pth"
    with zipfile.ZipFile(pth, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00." * 200)
        zf.writestr("archive/data/0", os.urandom(4096))
    data = pth.read_bytes()
    pth.write_bytes(data[: len(data) // 2])
    err = assert_cli_error(capsys, ["convert", str(pth), "--out", str(tmp_path / "o")], str(pth),
                           "truncated or corrupt zip archive")
    assert "legacy" not in err


def test_convert_not_a_checkpoint_and_legacy(tmp_path, capsys):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"hello, this is text\n" * 10)
    assert_cli_error(capsys, ["convert", str(junk), "--out", str(tmp_path / "o")], str(junk),
                     "not a PyTorch checkpoint", "b'hello, t'")
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19." + b"\x00" * 64)
    assert_cli_error(capsys, ["convert", str(legacy), "--out", str(tmp_path / "o")], str(legacy),
                     "legacy (pre-1.6")


def test_torch_pickle_corrupt_member(tmp_path):
    from objtrack_jax.convert import torch_pickle

    pth = tmp_path / "bad.pth"
    with zipfile.ZipFile(pth, "w") as zf:
        zf.writestr("archive/data.pkl", b"not a pickle at all")
    with pytest.raises(ValueError, match=r"bad\.pth: corrupt PyTorch checkpoint archive"):
        torch_pickle.load_torch_pickle(str(pth))


@pytest.fixture()
def weights_copy(tmp_path):
    """A copy of the shipped weights folder (params.msgpack + config.json) to damage."""
    from objtrack_jax import model_io

    dst = tmp_path / "weights"
    shutil.copytree(model_io.weights_path(), dst)
    return dst


def _edit_msgpack(folder, edit):
    from flax import serialization

    path = folder / "params.msgpack"
    tree = serialization.msgpack_restore(path.read_bytes())
    edit(tree)
    path.write_bytes(serialization.msgpack_serialize(tree))


def test_msgpack_missing_and_extra_subtrees_are_listed(weights_copy):
    from objtrack_jax import model_io

    def edit(tree):
        tree.pop("attention")
        tree["leftover_head"] = {"kernel": np.zeros((3, 3), np.float32)}

    _edit_msgpack(weights_copy, edit)
    with pytest.raises(ValueError) as e:
        model_io.load_model(str(weights_copy))
    msg = str(e.value)
    assert "params.msgpack does not match the model" in msg and "config.json" in msg
    assert "missing from the file: attention/" in msg and "not in the model: leftover_head/kernel" in msg


def test_msgpack_shape_mismatch_is_listed(weights_copy, capsys):
    cfg = json.loads((weights_copy / "config.json").read_text())
    cfg["model"]["latent_dim"] = 32  # a stale config.json
    (weights_copy / "config.json").write_text(json.dumps(cfg))
    err = assert_cli_error(capsys, ["track", str(weights_copy), "--checkpoint", str(weights_copy)],
                           "shape differs", "(model: ", "config.json")
    assert err.count("Traceback") == 0


def test_msgpack_truncated_and_empty(weights_copy):
    from objtrack_jax import model_io

    path = weights_copy / "params.msgpack"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=r"params\.msgpack: truncated or corrupt msgpack"):
        model_io.load_model(str(weights_copy))
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"params\.msgpack: empty file"):
        model_io.load_model(str(weights_copy))


def test_config_json_invalid_or_unknown_setting(weights_copy):
    from objtrack_jax import model_io

    cfg_path = weights_copy / "config.json"
    good = cfg_path.read_text()
    cfg_path.write_text(good[: len(good) // 2])
    with pytest.raises(ValueError, match=r"config\.json: not valid JSON"):
        model_io.load_model(str(weights_copy))
    cfg = json.loads(good)
    cfg["model"]["latent_dims"] = 64
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"config\.json: unknown model setting.*latent_dims"):
        model_io.load_model(str(weights_copy))


def test_missing_checkpoint_cli(tmp_path, capsys):
    missing = str(tmp_path / "nope")
    assert_cli_error(capsys, ["eval", "--dataset", "synthetic", "--checkpoint", missing], missing)


# ------------------------------------------------------------------------------------------------
# Videos and frames
# ------------------------------------------------------------------------------------------------


def _frames(t=3, h=64, w=80, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (t, h, w, 3), dtype=np.uint8)


def _frame_folder(tmp_path, ext=".png", t=3):
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(_frames(t)):
        cv2.imwrite(str(folder / f"f_{i:03d}{ext}"), f)
    return folder


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_truncated_frame_image_is_named(tmp_path, ext):
    from objtrack_jax import video_io

    folder = _frame_folder(tmp_path, ext)
    bad = folder / f"f_001{ext}"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    kind = "JPEG" if ext == ".jpg" else "PNG"
    with pytest.raises(ValueError, match=f"f_001\\{ext}: truncated {kind}"):
        video_io.read_video(str(folder))


def test_empty_frame_image_is_named(tmp_path):
    from objtrack_jax import video_io

    folder = _frame_folder(tmp_path, ".png")
    (folder / "f_002.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"f_002\.png: empty image file"):
        video_io.read_video(str(folder))


def _truncated_avi(tmp_path, frames=20):
    from objtrack_jax import video_io

    path = str(tmp_path / "clip.avi")
    assert video_io.write_video(path, _frames(frames, 64, 80), fps=10, fourcc="MJPG") == path
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    return path


def test_truncated_video_warns_with_both_counts_or_errors_when_strict(tmp_path, caplog):
    from objtrack_jax import video_io

    path = _truncated_avi(tmp_path)
    with caplog.at_level(logging.WARNING, logger="objtrack_jax.video_io"):
        frames = video_io.read_video(path)
    n = len(frames)
    assert 0 < n < 20 and f"decoded {n} frames but its header reports 20" in caplog.text
    with pytest.raises(ValueError, match=f"decoded {n} frames but its header reports 20.*strict"):
        video_io.read_video(path, strict=True)


def test_track_cli_strict_truncated_video(tmp_path, capsys, cached_model):
    path = _truncated_avi(tmp_path)
    assert_cli_error(capsys, ["track", path, "--strict", "--out", str(tmp_path / "o.mp4")],
                     "clip.avi", "header reports 20")


def test_dataset_truncated_jpeg_is_named(tmp_path):
    from objtrack_jax.data_pipelines import pointodyssey, synthetic

    synthetic.generate_dataset(str(tmp_path), num_seqs={"test": 1}, frames=3, size=(32, 40),
                               num_points=4, progress=False, write_depths=False)
    seq = pointodyssey.list_sequences(str(tmp_path), "test")[0]
    bad = os.path.join(seq, "rgbs", "rgb_00001.jpg")
    data = open(bad, "rb").read()
    with open(bad, "wb") as f:
        f.write(data[: len(data) - 40])
    with pytest.raises(pointodyssey.DataError, match=r"rgb_00001\.jpg: truncated JPEG"):
        pointodyssey.load_frames(seq, [0, 1, 2])


def test_eval_annotation_frame_count_mismatch_is_the_training_error(tmp_path):
    from objtrack_jax.data_pipelines import pointodyssey, synthetic
    from objtrack_jax import evaluation

    synthetic.generate_dataset(str(tmp_path), num_seqs={"test": 1}, frames=3, size=(32, 40),
                               num_points=4, progress=False, write_depths=False)
    seq = pointodyssey.list_sequences(str(tmp_path), "test")[0]
    os.remove(os.path.join(seq, "rgbs", "rgb_00002.jpg"))  # 2 frames, 3 annotated
    with pytest.raises(pointodyssey.DataError) as train_err:
        list(pointodyssey.iter_clips(seq, 2, 1))
    with pytest.raises(pointodyssey.DataError) as eval_err:
        list(evaluation.iter_records("synthetic", str(tmp_path), split="test"))
    assert str(eval_err.value) == str(train_err.value)
    assert "annotations have 3 frames but rgbs/ holds 2" in str(eval_err.value)


# ------------------------------------------------------------------------------------------------
# Pixels, queries and options (library)
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    from objtrack_jax import model_io

    return model_io.load_model(None)


@pytest.fixture()
def cached_model(shipped, monkeypatch):
    """CLI commands get the shipped weights without re-reading them."""
    from objtrack_jax import model_io

    monkeypatch.setattr(model_io, "load_model", lambda checkpoint=None: shipped)
    return shipped


def _track(model, params, video, queries, **kw):
    from objtrack_jax.tracking import track_queries

    return track_queries(model, params, video, queries, progress=False, **kw)


def test_non_finite_pixels_name_the_frame(shipped):
    model, params, _ = shipped
    video = _frames(4, 128, 128).astype(np.float32)
    video[2, 5, 5, 1] = np.nan
    with pytest.raises(ValueError, match=r"video frame 2 has non-finite pixel values"):
        _track(model, params, video, np.array([[0, 10.0, 10.0]]))


def test_float_pixels_out_of_range(shipped):
    model, params, _ = shipped
    video = _frames(2, 128, 128).astype(np.float32) * 2
    with pytest.raises(ValueError, match=r"must lie in \[0, 255\], got \[0, 50"):
        _track(model, params, video, np.array([[0, 10.0, 10.0]]))


def test_unit_range_float_frames_warn_and_are_rescaled(caplog):
    from objtrack_jax.tracking import _check_video

    video = _frames(2, 16, 16)
    with caplog.at_level(logging.WARNING, logger="objtrack_jax.tracking"):
        out = _check_video(video.astype(np.float32) / 255.0)
    assert "looks [0, 1]-scaled; multiplying by 255" in caplog.text
    np.testing.assert_allclose(out, video.astype(np.float32), atol=1e-3)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="objtrack_jax.tracking"):
        _check_video(video.astype(np.float32))  # [0, 255] floats: no warning
    assert "scaled" not in caplog.text


def test_query_outside_image(shipped):
    model, params, _ = shipped
    video = _frames(3, 128, 160)
    with pytest.raises(ValueError, match=r"query 1 .*\(0, 20, 170\) lies outside the 128x160 image"):
        _track(model, params, video, np.array([[0, 10.0, 10.0], [0, 20.0, 170.0]]))
    with pytest.raises(ValueError, match=r"query 0 is at frame 5; query frames must lie in \[0, 2\]"):
        _track(model, params, video, np.array([[5, 10.0, 10.0]]))
    with pytest.raises(ValueError, match=r"query 0 .* non-finite"):
        _track(model, params, video, np.array([[0, np.nan, 10.0]]))


@pytest.mark.parametrize("kw, needle", [({"iters": 0}, "iters must be >= 1"),
                                        ({"window": 1}, "window must be >= 2"),
                                        ({"chunk_size": 0}, "chunk_size must be >= 1")])
def test_tracking_options(shipped, kw, needle):
    model, params, _ = shipped
    with pytest.raises(ValueError, match=needle):
        _track(model, params, _frames(3, 128, 128), np.array([[0, 10.0, 10.0]]), **kw)


def test_memory_estimate_refuses_before_allocating(shipped):
    from objtrack_jax.tracking import estimate_tracking_bytes

    model, params, _ = shipped
    video = _frames(3, 128, 128)
    # 10^8 queries only as a broadcast view (no real allocation); refused by the estimate.
    queries = np.broadcast_to(np.array([[0, 10.0, 10.0]]), (10**8, 3))
    with pytest.raises(MemoryError, match=r"tracking 100000000 points .* needs an estimated [0-9.]+ GiB"):
        _track(model, params, video, queries, resize_to=(128, 128))
    assert estimate_tracking_bytes(10**8, 3, 128, 128, (128, 128), 16, 64) > 10**10


# ------------------------------------------------------------------------------------------------
# objtrack track / eval: options and data roots (errors before any compilation)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag, value, needle", [
    ("--grid", "0", "must be >= 1"),
    ("--grid", "-3", "-3 is not allowed"),
    ("--iters", "0", "must be >= 1"),
    ("--window", "1", "must be >= 2"),
    ("--chunk-size", "0", "must be >= 1"),
    ("--max-frames", "0", "must be >= 1"),
    ("--resolution", "130x128", "multiples of 8"),
    ("--resolution", "64x64", ">= 128"),
    ("--resolution", "big", "expected HxW"),
])
def test_track_options_rejected_at_start_up(tmp_path, capsys, monkeypatch, flag, value, needle):
    from objtrack_jax import model_io

    monkeypatch.setattr(model_io, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    folder = _frame_folder(tmp_path)
    err = assert_cli_error(capsys, ["track", str(folder), flag, value], flag, needle)
    assert "usage:" in err


@pytest.mark.parametrize("flag, value, needle", [
    ("--window", "1", "must be >= 2"), ("--iters", "-1", "must be >= 1"),
    ("--resolution", "250x250", "multiples of 8"), ("--max-points", "0", "must be >= 1")])
def test_eval_options_rejected_at_start_up(capsys, monkeypatch, flag, value, needle):
    from objtrack_jax import model_io

    monkeypatch.setattr(model_io, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    assert_cli_error(capsys, ["eval", "--dataset", "synthetic", flag, value], flag, needle)


def test_eval_data_root_is_a_split_folder(tmp_path, capsys, monkeypatch):
    from objtrack_jax.data_pipelines import synthetic
    from objtrack_jax import model_io

    monkeypatch.setattr(model_io, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    synthetic.generate_dataset(str(tmp_path), num_seqs={"test": 1}, frames=2, size=(32, 40),
                               num_points=4, progress=False, write_depths=False)
    split = str(tmp_path / "test")
    assert_cli_error(capsys, ["eval", "--dataset", "pointodyssey", "--data-root", split],
                     split, "is a split folder", f"pass its parent {tmp_path}")


def test_eval_missing_data_root(tmp_path, capsys, monkeypatch):
    from objtrack_jax import model_io

    monkeypatch.setattr(model_io, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    missing = str(tmp_path / "po")
    assert_cli_error(capsys, ["eval", "--dataset", "pointodyssey", "--data-root", missing],
                     missing, "does not exist")


def test_track_missing_video_before_model(tmp_path, capsys, monkeypatch):
    from objtrack_jax import model_io

    monkeypatch.setattr(model_io, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    missing = str(tmp_path / "missing.mp4")
    assert_cli_error(capsys, ["track", missing], missing, "not found")


def test_track_bad_queries_file(tmp_path, capsys, cached_model):
    folder = _frame_folder(tmp_path)
    q = tmp_path / "q.txt"
    q.write_text("0 1\n0 2\n")
    assert_cli_error(capsys, ["track", str(folder), "--queries", str(q)], "q.txt",
                     "rows of (t, y, x)")
    q.write_text("0 1 x\n")
    assert_cli_error(capsys, ["track", str(folder), "--queries", str(q)], "q.txt",
                     "cannot read queries")


def test_track_queries_outside_image_cli(tmp_path, capsys, cached_model):
    folder = _frame_folder(tmp_path)  # 3 frames of 64x80
    q = tmp_path / "q.txt"
    q.write_text("0, 10, 10\n0, 70, 10\n")
    assert_cli_error(capsys, ["track", str(folder), "--queries", str(q)], "query 1",
                     "outside the 64x80 image")


def test_track_grid_frame_outside_video(tmp_path, capsys, cached_model):
    folder = _frame_folder(tmp_path)
    assert_cli_error(capsys, ["track", str(folder), "--grid-frame", "3"], "--grid-frame 3",
                     "valid: 0..2")


def test_track_huge_grid_refused_with_estimate(tmp_path, capsys, cached_model):
    folder = _frame_folder(tmp_path)
    assert_cli_error(capsys, ["track", str(folder), "--grid", "200000"], "--grid 200000",
                     "needs an estimated", "GiB")


def test_track_subprocess_no_traceback(tmp_path):
    folder = _frame_folder(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "objtrack_jax.cli", "track", str(folder),
                           "--resolution", "100x100"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "--resolution" in proc.stderr and "multiples of 8" in proc.stderr


def test_train_data_root_is_a_split_folder(tmp_path):
    from objtrack_jax.configs import objprior
    from objtrack_jax.data_pipelines import pointodyssey, synthetic
    from objtrack_jax.train import loop

    synthetic.generate_dataset(str(tmp_path / "po"), num_seqs={"train": 1}, frames=2, size=(32, 40),
                               num_points=4, progress=False, write_depths=False)
    c = objprior.get_config("tiny")
    c.data.root = str(tmp_path / "po" / "train")
    with pytest.raises(pointodyssey.DataError, match=r"train: this is a split folder.*pass its parent"):
        loop.train_and_evaluate(c, str(tmp_path / "w"))


def test_track_video_library_checks(tmp_path, shipped, caplog):
    """objtrack_jax.video_tracking.track_video (behind objtrack demo --video): the same checks."""
    from objtrack_jax.video_tracking import track_video

    model, params, _ = shipped
    folder = _frame_folder(tmp_path)
    with pytest.raises(MemoryError, match=r"200000x200000 grid .* needs an estimated"):
        track_video(model, params, str(folder), grid=200000, echo=None)
    with pytest.raises(ValueError, match=r"grid frame 7 outside the video's 3 frames"):
        track_video(model, params, str(folder), grid_frame=7, echo=None)
    with pytest.raises(ValueError, match=r"header reports 20.*strict"):
        track_video(model, params, _truncated_avi(tmp_path), strict=True, echo=None)


def test_eval_json_writes_nan_as_null():
    from objtrack_jax.cli_eval import _nan_to_none

    row = {"video": "v", "pts_within_1": float("nan"), "d_avg": np.float64(3.5),
           "per": [np.float64("nan"), 1.0]}
    text = json.dumps(_nan_to_none(row), allow_nan=False)
    assert json.loads(text) == {"video": "v", "pts_within_1": None, "d_avg": 3.5, "per": [None, 1.0]}


def test_interrupt_is_one_line(monkeypatch, capsys):
    def stop(cmd, argv):
        raise KeyboardInterrupt("interrupted at step 3; checkpoint saved")

    monkeypatch.setattr(cli, "_dispatch", stop)
    code, _, err = run_cli(capsys, "train")
    assert code == 130 and "objtrack train: interrupted (interrupted at step 3" in err
    assert "Traceback" not in err


def test_demo_missing_video(tmp_path, capsys, cached_model):
    missing = str(tmp_path / "none.mp4")
    assert_cli_error(capsys, ["demo", "--video", missing, "--out", str(tmp_path / "o")], missing,
                     "not found")


# ------------------------------------------------------------------------------------------------
# Every run bounded (objtrack_jax.limits): a hard limit or the time budget, before any work
# ------------------------------------------------------------------------------------------------


def test_track_grid_1000_is_refused_naming_the_limit_and_estimate(tmp_path, capsys, cached_model):
    folder = _frame_folder(tmp_path)
    err = assert_cli_error(capsys, ["track", str(folder), "--grid", "1000"],
                           "--grid 1000 gives 1,000,000 points", "needs an estimated",
                           "the limit is 65,536 (limits.MAX_POINTS)", "--grid-step")
    assert len(err.strip().splitlines()) == 1, err
    assert not os.path.exists("tracks.npz")


def test_track_prints_the_estimate_and_refuses_a_run_over_the_time_budget(tmp_path, capsys,
                                                                          cached_model):
    folder = _frame_folder(tmp_path)
    code, out, err = run_cli(capsys, "track", str(folder), "--grid", "200", "--max-minutes",
                             "0.01", "--out", str(tmp_path / "t.mp4"))
    assert code == 2, err
    assert "objtrack track: 40,000 points x 3 frames estimated at about" in out, out
    assert "time budget 0.01 min (--max-minutes)" in out
    assert err.startswith("objtrack track: error: tracking 40,000 points through 3 frames is "
                          "estimated at about") and "raise --max-minutes" in err, err
    assert not (tmp_path / "t.npz").exists()


@pytest.mark.parametrize("flag, value, needle", [
    ("--window", "1000000000", "--window 1000000000 frames; the limit is 256 (limits.MAX_WINDOW)"),
    ("--iters", "1000000", "--iters 1000000 iterations per window; the limit is 64 "
                           "(limits.MAX_ITERS)"),
    ("--refine-iters", "100000", "--refine-iters 100000 iterations per window"),
    ("--resolution", "32768x32768", "--resolution 32768x32768 has a side of 32,768 px; the limit "
                                    "is 4,096 (limits.MAX_SIDE)"),
])
def test_track_settings_over_a_hard_limit(tmp_path, capsys, cached_model, flag, value, needle):
    folder = _frame_folder(tmp_path)
    assert_cli_error(capsys, ["track", str(folder), flag, value], needle)


def test_eval_and_demo_check_the_limits(tmp_path, capsys, cached_model):
    assert_cli_error(capsys, ["eval", "--dataset", "synthetic", "--iters", "1000000"],
                     "limits.MAX_ITERS")
    assert_cli_error(capsys, ["demo", "--out", str(tmp_path), "--window", "100000"],
                     "--window 100000 frames", "limits.MAX_WINDOW")
    folder = _frame_folder(tmp_path)
    assert_cli_error(capsys, ["demo", "--out", str(tmp_path), "--video", str(folder), "--grid",
                              "300"], "--grid 300 gives 90,000 points", "limits.MAX_POINTS")


def test_library_entry_points_check_the_hard_limits(shipped):
    from objtrack_jax.online import OnlineTracker

    model, params, info = shipped
    video, q = _frames(3, 128, 128), np.array([[0, 10.0, 10.0]])
    with pytest.raises(ValueError, match=r"^window 1000000000 frames; the limit is 256 "
                                         r"\(limits.MAX_WINDOW\); use a smaller window"):
        _track(model, params, video, q, window=10**9)
    with pytest.raises(ValueError, match=r"^iters 1000000 iterations per window; the limit is 64"):
        _track(model, params, video, q, iters=10**6)
    with pytest.raises(ValueError, match=r"limits.MAX_WINDOW"):
        OnlineTracker(model, params, (128, 128), 4, window=10**9, iters=4)
    with pytest.raises(ValueError, match=r"100,000 query slots \(capacity\); the limit is 65,536"):
        OnlineTracker(model, params, (128, 128), 100_000, window=8, iters=4)


def test_estimate_follows_the_work_and_the_budget_refuses(shipped, caplog):
    from objtrack_jax import limits
    from objtrack_jax.settings import TrackingSettings

    model = shipped[0]
    s = TrackingSettings(window=8, iters=4, short_side=192)
    one = limits.estimate(model, 1024, 24, 192, 256, s)
    assert one.parts["refine"] > 0 and one.parts["encode"] > 0 and one.parts["anchor"] == 0
    more = limits.estimate(model, 1024, 24, 192, 256, s.replace(iters=16))
    np.testing.assert_allclose(more.parts["refine"], 4 * one.parts["refine"], rtol=1e-3)
    assert more.parts["encode"] == one.parts["encode"]
    longer = limits.estimate(model, 1024, 48 * 7 + 1, 192, 256, s)  # 48 windows, not 4
    np.testing.assert_allclose(longer.parts["encode"], 12 * one.parts["encode"], rtol=1e-3)
    assert limits.estimate(model, 10**9, 24, 192, 256, s, {0: 10**9}).bytes > 10**12  # no alloc
    hour = limits.estimate(model, 4096, 30 * 60, 1080, 1920, s.replace(refine_scale=2))
    assert hour.seconds > 30 * 60
    with pytest.raises(ValueError, match=r"over the time budget of 30 min \(--max-minutes\); "
                                         r"raise --max-minutes"):
        limits.check_budget(hour, limits.DEFAULT_MAX_MINUTES)
    limits.check_budget(hour, None)  # no budget
    with caplog.at_level(logging.WARNING, logger="objtrack_jax.limits"):
        limits.check_run(model, 4096, 30 * 60, 1080, 1920, s.replace(refine_scale=2), warn=True)
    assert "is estimated at about" in caplog.text and "--max-minutes" in caplog.text
