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
    from configs import objprior
    from objtrack_jax.train import loop

    c = objprior.get_config("tiny")
    c.data.root = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere.*does not exist"):
        loop.train_and_evaluate(c, str(tmp_path / "w"))


def test_train_library_workdir_is_a_file(tmp_path):
    from configs import objprior
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
            if shape[0]:
                assert out["d_avg"][0] == 0.0  # no valid frame: PIPs++'s 1e-6 denominator
                assert np.isnan(out["survival"][0]) and np.isnan(out["median_l2"][0])


# ------------------------------------------------------------------------------------------------
# Training checkpoints
# ------------------------------------------------------------------------------------------------


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


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    old = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    cc.reset_cache()
    yield
    jax.config.update("jax_compilation_cache_dir", old[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", old[1])
    cc.reset_cache()


@pytest.mark.slow  # two short training runs (~90 s on 2 busy cores)
def test_training_resumes_from_older_checkpoint_when_newest_is_corrupt(tmp_path, caplog,
                                                                       compile_cache):
    """Two checkpoints (steps 1 and 2), the newest corrupted: the rerun warns, resumes from step
    1, trains to step 3, and the corrupt step 2 is still on disk."""
    from configs import common, pips2_baseline
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
