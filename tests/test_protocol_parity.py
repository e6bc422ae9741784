"""Protocol parity: ``objtrack eval --protocol pips`` against the numbers of the original PIPs++
TAP-Vid script (aharley/pips2 ``test_on_tap.py``, run unmodified on CPU) on the fixture in
``../shared/reference/protocol`` (its README says how it was made).

Every per-video metric must match within 1e-3 and the query counts exactly, for each run of the
fixture, with the ``objtrack eval`` flags the fixture lists for it. The fixture is read through
``OBJTRACK_PROTOCOL_REFERENCE_DIR`` (default ``../shared/reference/protocol``); the weights are the
random-init PIPs++ checkpoint of ``OBJTRACK_REFERENCE_DIR`` (``../shared/reference/pips2``).

Both runs are part of the suite: ``windows8`` (four 8-frame windows at 256x448, 4 iterations) and
``default`` (one 128-frame window at 512x896, 16 iterations: minutes of CPU, marked slow;
``OBJTRACK_PROTOCOL_FULL=0`` skips it, saying so).
"""

import json
import os

import pytest

from conftest import PIPS2_REF_DIR, SHARED_DIR, require_path

PROTOCOL_REF_DIR = os.environ.get(
    "OBJTRACK_PROTOCOL_REFERENCE_DIR", os.path.join(SHARED_DIR, "reference", "protocol"))
METRICS = ("d_1", "d_2", "d_4", "d_8", "d_16", "d_avg", "survival", "median_l2")
TOL = 1e-3
FULL = os.environ.get("OBJTRACK_PROTOCOL_FULL", "1") != "0"


def _reference() -> dict:
    path = require_path(os.path.join(PROTOCOL_REF_DIR, "protocol_ref.json"),
                        "protocol-parity fixture (protocol_ref.json)")
    require_path(os.path.join(PROTOCOL_REF_DIR, "tapvid_davis.pkl"), "protocol-parity pickle")
    with open(path) as f:
        return json.load(f)


def _checkpoint() -> str:
    return require_path(os.path.join(PIPS2_REF_DIR, "model-000000000.pth"),
                        "random-init PIPs++ checkpoint")


def _run(name: str) -> dict:
    return next(r for r in _reference()["runs"] if r["name"] == name)


def _check_run(name: str, tmp_path) -> None:
    from objtrack_jax import cli_eval

    run = _run(name)
    out = tmp_path / f"{name}.json"
    cli_eval.eval_main(["--dataset", "tapvid_davis", "--data-root", PROTOCOL_REF_DIR,
                        "--checkpoint", _checkpoint(), "--out", str(out), "--no-progress",
                        *run["objtrack_flags"]])
    with open(out) as f:
        got = json.load(f)
    rows = {r["video"]: r for r in got["per_video"]}
    assert sorted(rows) == sorted(run["per_video"]), "videos evaluated"
    worst = {}
    for video, ref in run["per_video"].items():
        row = rows[video]
        assert row["num_points"] == ref["num_points"], f"{name}/{video}: query count"
        assert row["num_frames"] == ref["num_frames"], f"{name}/{video}: frame count"
        for k in METRICS:
            worst[f"{video}/{k}"] = abs(row[k] - ref[k])
    bad = {k: v for k, v in worst.items() if not v <= TOL}
    assert not bad, f"{name}: per-video metrics off by more than {TOL}: {bad}"
    for k in METRICS:  # the mean over videos, as the script's pools average them
        assert abs(got["mean"][k] - run["mean"][k]) <= TOL, f"{name}: mean {k}"


def test_protocol_parity_windows8(tmp_path):
    """Four 8-frame windows (the last shifted back), template carry, 256x448, 4 iterations."""
    _check_run("windows8", tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not FULL, reason="OBJTRACK_PROTOCOL_FULL=0: test_on_tap.py's defaults (one "
                                     "128-frame window at 512x896, 16 iterations) not run")
def test_protocol_parity_default(tmp_path):
    """test_on_tap.py's own settings: S=128, 16 iterations, 512x896."""
    _check_run("default", tmp_path)

