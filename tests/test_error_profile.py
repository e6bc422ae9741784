"""scripts/error_profile.py: the error breakdown by frames since the query and by motion."""

import importlib.util
import os

import numpy as np
import pytest


def _module():
    spec = importlib.util.spec_from_file_location(
        "error_profile", os.path.join(os.path.dirname(__file__), "..", "scripts", "error_profile.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_profile_reports_lag_bias_and_precision():
    mod = _module()
    rng = np.random.default_rng(0)
    t, n = 9, 200
    speed = rng.uniform(0.5, 40.0, size=(n, 1))  # px per frame along x
    disp = np.zeros((t, n, 2))
    disp[..., 0] = (np.arange(t)[:, None] * speed[None, :, 0])
    # a tracker that moves at 0.5x the true speed and is 0.3 px low
    err = -0.5 * disp
    err[..., 1] += 0.3
    valid = np.ones((t, n))
    valid[:, :10] = 0  # invisible points are left out
    out = mod.profile([err], [disp], [valid])
    offsets = [r["frames_after_query"] for r in out["by_offset"]]
    assert offsets == [1, 2, 4, 8]
    row = out["by_offset"][0]
    assert row["points"] == n - 10
    assert row["mean_signed_err_xy"][1] == pytest.approx(0.3, abs=1e-6)
    assert row["mean_signed_err_xy"][0] == pytest.approx(-0.5 * speed[10:, 0].mean(), rel=1e-4)
    for b in out["by_motion"]:
        assert b["slope"] == pytest.approx(0.5, abs=1e-6)
    # the 1-px share: |err| < 1 needs 0.5 * speed and the 0.3 offset small
    e1 = np.hypot(0.5 * speed[10:, 0], 0.3)
    assert row["within_1px_pct"] == pytest.approx(np.mean(e1 < 1) * 100, abs=0.01)


def test_rejects_a_folder_without_the_split(tmp_path, capsys):
    mod = _module()
    with pytest.raises(SystemExit):
        mod.main(["--data-root", str(tmp_path), "--split", "test"])
    assert "no 'test' split folder" in capsys.readouterr().err


def test_profile_runs_at_the_short_side(tmp_path):
    """End to end on a tiny real-content split: the videos are resized to the short side asked
    for (default: the shipped weights'), and the errors are measured in those pixels."""
    from objtrack_jax.data_pipelines import synthetic

    mod = _module()
    synthetic.generate_dataset(str(tmp_path), num_seqs={"test": 1}, frames=6, size=(96, 128),
                               num_points=32, preset="real-eval", progress=False,
                               write_depths=False)
    out = mod.main(["--data-root", str(tmp_path), "--baseline", "zero", "--short-side", "192"])
    assert out["config"]["short_side"] == 192 and out["config"]["videos"] == 1
    native = mod.main(["--data-root", str(tmp_path), "--baseline", "zero", "--short-side", "0"])
    assert native["config"]["short_side"] == "native"
    double = mod.main(["--data-root", str(tmp_path), "--baseline", "zero", "--short-side", "384"])
    # zero motion: the error is the true displacement, in pixels of the resized video (aspect
    # kept: 192x256 and 384x512, so exactly twice as many pixels)
    for a, b in zip(out["by_offset"], double["by_offset"]):
        assert b["median_gt_motion_px"] == pytest.approx(2 * a["median_gt_motion_px"], rel=2e-3)
        assert b["median_err_px"] == pytest.approx(2 * a["median_err_px"], rel=2e-3)
