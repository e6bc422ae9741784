"""Data-parallel training gives the same parameters on 1 device, 4 devices and 2 processes x 2
devices, and a run stopped mid-way (``max_steps_this_run`` or SIGTERM) and resumed ends exactly
where an uninterrupted run ends.

Multi-device runs are subprocesses of the real entry point (``python -m objtrack_jax.train.main``)
with fake CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count``); the two-process run
passes ``--config.distributed.*`` (coordinator on 127.0.0.1, gloo CPU collectives). All runs read
the same pre-generated synthetic tree, so they see the same global batches (the pipeline is a pure
function of (seed, global example index), independent of the process count). The model is the
PIPs++ architecture at the reduced widths of the ``:cpu`` config (same layers, ~4x cheaper).

Tolerances: the device-count comparison runs in the float64 mode (``model.dtype=float64``) and
requires max|delta| <= 1e-8 on every parameter after each of the 3 steps (measured on this CPU:
7.6e-12 for 4 devices, 5.7e-12 for 2x2). One flipped sign in the first AdamW update (what a
wrong shard, a missing gradient all-reduce or different data produce, on ~40 % of the weights)
moves a weight by 2 x lr_0 = 4e-5. Why float64: in float32 the per-device batch changes XLA's
rounding (~1e-6 relative on the features), the random-init update network amplifies that, and
AdamW's first steps are ~lr x sign(g), so float32 runs differ by up to 3e-4 after 3 steps
(measured 1 vs 4 devices) -- the size of a few sign flips, which would not tell a bug from
rounding. The float32 path on several devices is exercised by the SIGTERM resume test (2 devices).
Resuming replays the same program on the same data: params must be bit-identical.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from objtrack_jax.configs import common, pips2_baseline
from objtrack_jax import model_io
from objtrack_jax.train import loop

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PARAM_ATOL = 1e-8  # float64 runs, any device layout (see the module docstring)


def _reduced_widths() -> dict:
    """The ``:cpu`` config's model widths (the architecture of the shipped weights)."""
    m = common.apply_cpu(common.get_base_config()).model
    return {"latent_dim": m.latent_dim, "encoder_dims": tuple(m.encoder_dims),
            "update_channels": tuple(m.update_channels)}


WIDTHS = _reduced_widths()
RUN_FLAGS = ["--config.batch_size=4", "--config.data.clip_len=4", "--config.data.num_points=8",
             "--config.progress_bar=False", "--config.tensorboard=False",
             "--config.eval.at_end=False", "--config.checkpoint.every_steps=100",
             *(f"--config.model.{k}={v}" for k, v in WIDTHS.items())]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from objtrack_jax.data_pipelines import synthetic
    s = pips2_baseline.get_config("tiny").synthetic
    root = str(tmp_path_factory.mktemp("synth"))
    synthetic.generate_dataset(root, num_seqs={"train": s.num_train, "val": s.num_val},
                               frames=s.frames, size=tuple(s.size), seed=s.seed,
                               num_points=s.num_points, progress=False, write_depths=False)
    return root


def _env(n_devices, cache_dir):
    return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n_devices}",
                JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2",
                JAX_COMPILATION_CACHE_DIR=cache_dir, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5",
                PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _launch(workdir, data_root, n_devices, cache_dir, extra=()):
    cmd = [sys.executable, "-m", "objtrack_jax.train.main",
           "--config", os.path.join(ROOT, "configs", "pips2_baseline.py") + ":tiny",
           "--workdir", str(workdir), f"--config.data.root={data_root}", *RUN_FLAGS, *extra]
    return subprocess.Popen(cmd, env=_env(n_devices, cache_dir), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(procs, timeout=420):
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=timeout)[0].decode(errors="replace"))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return logs


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _flat(params) -> np.ndarray:
    return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(params)])


@pytest.mark.slow
def test_distributed_1_device_4_devices_2_processes_same_params(tmp_path, data_root, cache_dir):
    """Same global batches, same init -> the same parameters after each of 3 steps on 1 device,
    4 devices (one process) and 2 processes x 2 devices (float64, |delta| <= PARAM_ATOL)."""
    steps = ["--config.max_steps=3", "--config.iters=1", "--config.checkpoint.every_steps=1",
             "--config.checkpoint.keep=5", "--config.model.dtype=float64"]
    workdirs = {}
    for name, n_dev in (("1dev", 1), ("4dev", 4)):
        workdirs[name] = tmp_path / name
        logs = _finish([_launch(workdirs[name], data_root, n_dev, cache_dir, steps)])
        assert "'step': 3" in logs[0], logs[0][-3000:]
    port = _free_port()
    workdirs["2x2"] = tmp_path / "2x2"
    procs = [_launch(workdirs["2x2"], data_root, 2, cache_dir, steps + [
        "--config.distributed.initialize=on",
        f"--config.distributed.coordinator_address=127.0.0.1:{port}",
        "--config.distributed.num_processes=2", f"--config.distributed.process_id={i}"])
        for i in range(2)]
    logs = _finish(procs)
    for i, p in enumerate(procs):
        assert p.returncode == 0, f"process {i} failed:\n{logs[i][-4000:]}"
    assert "2 process(es)" in logs[0] and "'data': 4" in logs[0], logs[0][-3000:]

    ref = {k: _flat(model_io.load_params(str(workdirs["1dev"]), k)[0]) for k in (1, 2, 3)}
    assert ref[3].dtype == np.float64
    moved = float(np.abs(ref[3] - ref[1]).max())
    assert moved > 1e3 * PARAM_ATOL, moved  # training moved the weights far beyond the tolerance
    for name in ("4dev", "2x2"):
        rows = [json.loads(line) for line in open(workdirs[name] / "metrics.jsonl")]
        assert [r["step"] for r in rows] == [1, 2, 3]
        for k in (1, 2, 3):
            params, step = model_io.load_params(str(workdirs[name]), k)
            d = np.abs(_flat(params) - ref[k])
            print(f"{name} vs 1 device after step {k}: max|diff| {d.max():.3g}, "
                  f"L2 rel {np.linalg.norm(d) / np.linalg.norm(ref[k]):.3g} "
                  f"(steps 1->3 moved weights by up to {moved:.3g})")
            assert step == k
            assert d.max() <= PARAM_ATOL, (name, k, d.max())


def _tiny(max_steps, **kw):
    c = pips2_baseline.get_config("tiny")
    c.data.clip_len, c.data.num_points, c.batch_size = 4, 8, 1
    c.model.update(WIDTHS)
    c.max_steps = max_steps
    c.progress_bar = False
    c.tensorboard = False
    c.eval.at_end = False
    for k, v in kw.items():
        c[k] = v
    return c


def test_resume_after_max_steps_this_run_matches_uninterrupted(tmp_path, data_root, compile_cache):
    full = _tiny(4)
    full.data.root = data_root
    res = loop.train_and_evaluate(full, str(tmp_path / "full"))
    assert res["step"] == 4 and res["stopped_early"] is None
    part = _tiny(4, max_steps_this_run=2, log_every=2)  # (logging does not change the numerics)
    part.data.root = data_root
    res1 = loop.train_and_evaluate(part, str(tmp_path / "split"))
    assert res1["step"] == 2 and res1["stopped_early"] == "max_steps_this_run"
    res2 = loop.train_and_evaluate(part, str(tmp_path / "split"))  # resumes at 2, runs 2 more
    assert res2["start_step"] == 2 and res2["step"] == 4
    # Logged losses are means over the log window: (l1 + l2) / 2 and (l3 + l4) / 2.
    full_rows = [json.loads(line) for line in open(tmp_path / "full" / "metrics.jsonl")]
    split_rows = [json.loads(line) for line in open(tmp_path / "split" / "metrics.jsonl")]
    per_step = {r["step"]: r for r in full_rows}
    assert sorted(per_step) == [1, 2, 3, 4] and [r["step"] for r in split_rows] == [2, 4]
    for r in split_rows:
        k = r["step"]
        for name in ("loss", "loss_seq", "grad_norm"):
            np.testing.assert_allclose(r[name], (per_step[k - 1][name] + per_step[k][name]) / 2,
                                       rtol=1e-6, err_msg=name)
        assert r["lr"] == per_step[k]["lr"] and r["param_norm"] == per_step[k]["param_norm"]
    a, step_a = model_io.load_params(str(tmp_path / "full"))
    b, step_b = model_io.load_params(str(tmp_path / "split"))
    assert step_a == step_b == 4
    jax.tree.map(np.testing.assert_array_equal, a, b)


# Killed-and-resumed runs: 2 devices, float32, checkpoint every step (async), 6 steps.
KILL_STEPS = 6
KILL_FLAGS = [f"--config.max_steps={KILL_STEPS}", "--config.batch_size=2", "--config.log_every=1",
              "--config.checkpoint.every_steps=1", "--config.checkpoint.keep=2"]


@pytest.fixture(scope="module")
def uninterrupted_params(tmp_path_factory, data_root, cache_dir):
    work = tmp_path_factory.mktemp("uninterrupted")
    logs = _finish([_launch(work, data_root, 2, cache_dir, KILL_FLAGS)])
    assert f"'step': {KILL_STEPS}" in logs[0], logs[0][-3000:]
    params, step = model_io.load_params(str(work))
    assert step == KILL_STEPS
    return params


def _finalized_steps(workdir) -> list[int]:
    """Steps whose checkpoint orbax has finalized (renamed from its temporary directory)."""
    d = workdir / "checkpoints"
    return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if d.is_dir() else []


def _resume_and_compare(work, data_root, cache_dir, stopped_at, uninterrupted_params):
    logs = _finish([_launch(work, data_root, 2, cache_dir, KILL_FLAGS)])
    assert (f"'start_step': {stopped_at}" in logs[0]
            and f"'step': {KILL_STEPS}" in logs[0]), logs[0][-3000:]
    b, step_b = model_io.load_params(str(work))
    assert step_b == KILL_STEPS
    jax.tree.map(np.testing.assert_array_equal, uninterrupted_params, b)


def _launch_held(work, data_root, cache_dir, mode, step, marker):
    """The 2-device killed-run launch through ``blocked_save_main.py`` (``mode`` 'pause' or
    'finalize' at checkpoint ``step``, ``marker`` written once the run is held there)."""
    cmd = [sys.executable, os.path.join(HERE, "blocked_save_main.py"), mode, str(step),
           str(marker), "--",
           "--config", os.path.join(ROOT, "configs", "pips2_baseline.py") + ":tiny",
           "--workdir", str(work), f"--config.data.root={data_root}", *RUN_FLAGS, *KILL_FLAGS]
    return subprocess.Popen(cmd, env=_env(2, cache_dir), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def _wait_for(marker, proc, timeout=600) -> bool:
    """Waits until ``marker`` exists (True) or the process ends or ``timeout`` passes (False).
    The timeout only bounds a hung run; no result depends on how fast the run gets there."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not marker.exists():
        time.sleep(0.05)
    return marker.exists()


PAUSE_STEP = 4  # the killed runs are held just before saving this step


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_resume_after_kill_matches_uninterrupted(tmp_path, data_root, cache_dir, sig,
                                                 uninterrupted_params):
    """SIGTERM: the step in flight finishes, a final checkpoint is written, exit status 143.
    SIGKILL (no chance to clean up): the rerun resumes from the last finalized checkpoint. Either
    way the resumed run ends bit-identical to the uninterrupted one.

    No race with the training loop or the writer: the run is held just before saving step
    ``PAUSE_STEP`` with every earlier checkpoint finished (``blocked_save_main.py pause``) and
    the signal is sent only then, so the checkpoints on disk are known exactly however slowly
    the machine runs. (A SIGKILL during an asynchronous save: the next test.)"""
    work, marker = tmp_path / "killed", tmp_path / "paused"
    proc = _launch_held(work, data_root, cache_dir, "pause", PAUSE_STEP, marker)
    held = _wait_for(marker, proc)
    if held:
        proc.send_signal(getattr(signal, sig))
    log = _finish([proc])[0]
    assert held, f"the run never reached the save of step {PAUSE_STEP}:\n{log[-3000:]}"
    expected_rc = 143 if sig == "SIGTERM" else -signal.SIGKILL
    assert proc.returncode == expected_rc, (proc.returncode, log[-3000:])
    _, stopped_at = model_io.load_params(str(work))
    print(f"{sig}: checkpoints left {sorted(os.listdir(work / 'checkpoints'))}, resuming at "
          f"{stopped_at}")
    if sig == "SIGTERM":
        # The held step completes and is saved (its save was the next thing the loop did).
        assert stopped_at == PAUSE_STEP and _finalized_steps(work)[-1] == PAUSE_STEP, stopped_at
        assert "Traceback" not in log, log[-3000:]
    else:
        # keep=2: the two checkpoints before the held step, nothing else finalized.
        assert _finalized_steps(work) == [PAUSE_STEP - 2, PAUSE_STEP - 1], _finalized_steps(work)
        assert stopped_at == PAUSE_STEP - 1, stopped_at
    _resume_and_compare(work, data_root, cache_dir, stopped_at, uninterrupted_params)


def test_sigkill_during_async_save_resumes_from_previous_checkpoint(
        tmp_path, data_root, cache_dir, uninterrupted_params):
    """SIGKILL while checkpoint 3 is being written (its data on disk in orbax's temporary
    directory, not yet renamed): the rerun ignores the partial checkpoint, resumes from step 2
    and ends bit-identical to the uninterrupted run. ``blocked_save_main.py finalize`` holds the
    rename of step 3 forever, so the kill lands mid-save deterministically."""
    work, marker = tmp_path / "mid_save", tmp_path / "save_of_3_blocked"
    proc = _launch_held(work, data_root, cache_dir, "finalize", 3, marker)
    blocked = _wait_for(marker, proc)
    if blocked:
        proc.send_signal(signal.SIGKILL)
    log = _finish([proc])[0]
    assert blocked, f"checkpoint 3 was never reached:\n{log[-3000:]}"
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, log[-3000:])
    tmp_dir = marker.read_text()
    assert os.path.isdir(tmp_dir) and os.listdir(tmp_dir), tmp_dir  # the partial save is there
    assert _finalized_steps(work) == [1, 2]
    _, stopped_at = model_io.load_params(str(work))
    assert stopped_at == 2
    _resume_and_compare(work, data_root, cache_dir, 2, uninterrupted_params)
