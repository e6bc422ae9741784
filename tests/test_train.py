"""Training: configs, schedule, init tracks, the pure train step (determinism, overfitting a fixed
batch, non-finite detection) and a one-step end-to-end run of ``train_and_evaluate``.

Sizes are the smallest the real architecture accepts (128x128 frames, full-width PIPs++ layers);
only S, N, B and the iteration count are shrunk. A persistent compilation cache (per test module)
lets repeated compiles of the same program be reused.
"""

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from objtrack_jax.configs import (ablation_attention_only, ablation_objectness_only, common, objprior,
                     pips2_baseline)
from objtrack_jax import model_io
from objtrack_jax.settings import TrackingSettings, from_info, is_recorded
from objtrack_jax.models.tracker import tracker_from_config
from objtrack_jax.train import loop, optim
from objtrack_jax.train import state as state_lib
from objtrack_jax.train import step as step_lib

S, N = 4, 8  # frames and points of the fixed test batch


def tiny(module=pips2_baseline, **overrides):
    """The experiment's tiny variant shrunk to S=4, N=8, B=1, no eval, no progress bar."""
    c = module.get_config("tiny")
    c.data.clip_len, c.data.num_points, c.batch_size = S, N, 1
    c.eval.at_end = False
    c.progress_bar = False
    c.tensorboard = False
    for k, v in overrides.items():
        node = c
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = v
    return c


# ------------------------------------------------------------------------------------------------
# Configs, schedule, init tracks (no model)
# ------------------------------------------------------------------------------------------------


def test_experiment_configs():
    b = pips2_baseline.get_config()
    assert (b.optim.lr, b.batch_size, b.data.clip_len, b.data.num_points) == (5e-4, 4, 36, 128)
    assert tuple(b.data.crop_size) == (256, 384) and b.iters == 6
    assert not b.model.use_attention and b.loss.alpha == 0
    p = objprior.get_config()
    assert (p.optim.lr, p.batch_size, p.data.clip_len, p.data.num_points) == (5e-3, 2, 24, 128)
    assert tuple(p.data.crop_size) == (384, 512) and p.iters == 6
    assert p.model.use_attention and math.isclose(p.loss.alpha, 0.5 / 3)
    a = ablation_attention_only.get_config()
    assert a.model.use_attention and a.loss.alpha == 0
    o = ablation_objectness_only.get_config()
    assert not o.model.use_attention and math.isclose(o.loss.alpha, 0.5 / 3)
    for c in (b, p, a, o):
        assert (c.optim.weight_decay, c.optim.eps, c.optim.clip_norm) == (1e-6, 1e-8, 5.0)
        assert (c.mesh.data, c.mesh.model) == (-1, 1) and c.data.root == ""
    t = objprior.get_config("tiny")
    assert tuple(t.data.crop_size) == (128, 128) and (t.data.clip_len, t.data.num_points) == (8, 16)
    assert t.batch_size == 2 and t.iters <= 3 and t.max_steps <= 10
    with pytest.raises(ValueError, match="unknown config variant"):
        objprior.get_config("huge")


def test_one_cycle_schedule():
    c = pips2_baseline.get_config()
    c.max_steps = 900  # total 1000 steps, 100 warm-up
    sched = optim.make_schedule(c)
    lr = c.optim.lr
    np.testing.assert_allclose(float(sched(0)), lr / 25, rtol=1e-5)
    np.testing.assert_allclose(float(sched(100)), lr, rtol=1e-5)
    np.testing.assert_allclose(float(sched(50)), (lr / 25 + lr) / 2, rtol=1e-5)
    np.testing.assert_allclose(float(sched(1000)), lr / 25 / 1e4, rtol=1e-5)


def test_init_tracks_recipe():
    key = jax.random.PRNGKey(0)
    b, s, n, h, w = 3, 5, 64, 128, 160
    gt = jax.random.uniform(key, (b, s, n, 2)) * jnp.asarray([w - 1, h - 1])
    c = pips2_baseline.get_config().init_tracks
    out = np.asarray(step_lib.init_tracks(jax.random.PRNGKey(1), gt, (h, w), c))
    gt = np.asarray(gt)
    np.testing.assert_array_equal(out[:, 0], gt[:, 0])  # frame 0 = GT (the query)
    assert np.all(out[..., 0] >= 0) and np.all(out[..., 0] <= w - 1)
    assert np.all(out[..., 1] >= 0) and np.all(out[..., 1] <= h - 1)
    zero_vel = np.all(out == gt[:, :1], axis=(1, 2, 3))  # per example ('example' scope)
    assert 0 < zero_vel.sum() < b or b < 3  # both branches drawn (seeded)
    c.zero_vel_prob = 1.0
    out = np.asarray(step_lib.init_tracks(jax.random.PRNGKey(1), gt, (h, w), c))
    np.testing.assert_array_equal(out, np.broadcast_to(gt[:, :1], gt.shape))
    c.zero_vel_prob, c.random_blend = 0.0, False
    out = np.asarray(step_lib.init_tracks(jax.random.PRNGKey(1), gt, (h, w), c))
    np.testing.assert_array_equal(out, gt)


def test_batch_size_and_launch_checks():
    mesh = loop.make_mesh(pips2_baseline.get_config())
    loop.check_batch_size(jax.device_count(), mesh)
    if jax.device_count() > 1:
        with pytest.raises(ValueError, match="GLOBAL batch"):
            loop.check_batch_size(jax.device_count() + 1, mesh)
    assert not loop.multiprocess_launch_detected({})
    assert loop.multiprocess_launch_detected({"SLURM_NTASKS": "4"})
    assert not loop.multiprocess_launch_detected({"SLURM_NTASKS": "1"})
    assert loop.multiprocess_launch_detected({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"})


def test_gather_from_processes_single_process():
    mesh = loop.make_mesh(pips2_baseline.get_config())
    out = loop.gather_from_processes(np.asarray([3, -4], np.int32), mesh)
    assert out.shape == (1, 2) and out.dtype == np.int32
    np.testing.assert_array_equal(out, [[3, -4]])
    # (2 processes x 2 devices: exercised every step by the stop check of the 2x2 training run in
    # test_train_distributed.py)


def test_non_finite_message():
    with pytest.raises(FloatingPointError, match=r"grad_norm at step 7: .*loss=1\.5.*loss_seq=1\.5"):
        loop.check_finite({"loss": 1.5, "loss_seq": 1.5, "grad_norm": float("nan")}, 7)
    loop.check_finite({"loss": 1.5, "grad_norm": 2.0}, 7)


# ------------------------------------------------------------------------------------------------
# The train step on a fixed batch (one compile shared by the tests below)
# ------------------------------------------------------------------------------------------------


def fixed_batch():
    from objtrack_jax.data_pipelines import synthetic
    seq = synthetic.generate_sequence(seed=1, frames=S, size=(128, 128), num_points=64)
    ok = np.flatnonzero(seq["visibs"][0] & seq["visibs"][1])[:N]
    assert len(ok) == N
    return dict(rgbs=jnp.asarray(seq["rgbs"][None], jnp.float32),  # float: NaN-able
                trajs=jnp.asarray(seq["trajs_2d"][None][:, :, ok]),
                vis=jnp.asarray(seq["visibs"][None][:, :, ok], jnp.float32),
                valids=jnp.ones((1, S, N), jnp.float32),
                masks=jnp.asarray(seq["masks"][None], jnp.int32))


@pytest.fixture(scope="module")
def step_setup(compile_cache):
    # Paper loss (objectness on), PIPs++ encoder; deterministic zero-velocity init so the overfit
    # curve measures learning, a small constant-ish lr (Adam moves all 17.5M weights by ~lr).
    c = tiny(pips2_baseline, **{"loss.alpha": 0.5 / 3, "init_tracks.zero_vel_prob": 1.0,
                                "optim.lr": 5e-5, "optim.warmup_frac": 0.0, "max_steps": 100})
    model = tracker_from_config(c.model)
    tx, sched = optim.make_optimizer(c)
    mesh = loop.make_mesh(c)
    fn = jax.jit(functools.partial(step_lib.train_step, model=model, tx=tx, schedule=sched,
                                   config=c), donate_argnums=0)
    return dict(config=c, model=model, tx=tx, mesh=mesh, fn=fn, batch=fixed_batch())


def test_train_step_determinism(step_setup):
    st = step_setup
    outs = []
    for _ in range(2):
        state = state_lib.create_train_state(st["model"], st["tx"], st["mesh"], seed=3)
        state, metrics = st["fn"](state, st["batch"])
        outs.append((jax.device_get(metrics), jax.device_get(state.params), int(state.step)))
    (m0, p0, s0), (m1, p1, s1) = outs
    assert s0 == s1 == 1
    assert m0["loss"] == m1["loss"] and np.isfinite(m0["loss"])
    assert set(m0) >= {"loss", "loss_seq", "loss_obj", "masked_loss", "grad_norm", "param_norm", "lr"}
    np.testing.assert_allclose(m0["loss"], m0["loss_seq"] + m0["loss_obj"], rtol=1e-6)
    jax.tree.map(np.testing.assert_array_equal, p0, p1)


def test_loss_goes_down_on_a_fixed_batch(step_setup):
    st = step_setup
    state = state_lib.create_train_state(st["model"], st["tx"], st["mesh"], seed=0)
    losses = []
    for _ in range(20):
        state, metrics = st["fn"](state, st["batch"])
        losses.append(float(metrics["loss"]))
    print("overfit losses:", [round(v, 3) for v in losses])
    assert all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.8 * losses[0], losses
    assert min(losses[-5:]) < 0.7 * losses[0], losses


def test_non_finite_batch_is_caught(step_setup):
    st = step_setup
    state = state_lib.create_train_state(st["model"], st["tx"], st["mesh"], seed=0)
    batch = dict(st["batch"], rgbs=jnp.full(st["batch"]["rgbs"].shape, jnp.nan, jnp.float32))
    # (the loss itself is nan_to_num'ed like the official code; the gradient is not finite)
    state, metrics = st["fn"](state, batch)
    metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
    with pytest.raises(FloatingPointError, match="at step 1"):
        loop.check_finite(metrics, 1)


# ------------------------------------------------------------------------------------------------
# End to end
# ------------------------------------------------------------------------------------------------


def test_one_step_end_to_end(tmp_path, compile_cache):
    """objprior (attention + objectness) tiny at the ``:cpu`` model widths (2 attention blocks):
    data generated into the workdir, 1 step, checkpoint, logs, final evaluation on the held-out
    synthetic split."""
    c = tiny(objprior, max_steps=1, tensorboard=True, **{"eval.at_end": True,
                                                         "eval.max_frames": 8})
    c.model = common.apply_cpu(objprior.get_config()).model
    res = loop.train_and_evaluate(c, str(tmp_path))
    assert res["step"] == 1 and res["stopped_early"] is None
    for k in ("loss", "loss_seq", "loss_obj", "grad_norm", "param_norm", "lr", "steps_per_sec",
              "data_wait_s", "eval/d_avg", "eval/survival", "eval/median_l2"):
        assert k in res and np.isfinite(res[k]), k
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert rows[0]["step"] == 1 and "loss_obj" in rows[0] and "eval/d_avg" in rows[-1]
    assert os.listdir(tmp_path / "tensorboard")
    params, step = model_io.load_params(str(tmp_path))
    assert step == 1 and "attention" in params
    # `objtrack eval --checkpoint <workdir>` tracks at the run's own eval window / iterations
    _, _, winfo = model_io.load_model(str(tmp_path))
    settings = from_info(winfo)
    assert (settings.window, settings.iters) == (c.eval.window, c.eval.iters)
    assert winfo["inference"]["trained"]["clip_len"] == c.data.clip_len
    assert not is_recorded(winfo)

    # the workdir exported as shipped-style weights: stages add up, settings and results recorded
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "export_weights", os.path.join(os.path.dirname(__file__), "..", "scripts", "export_weights.py"))
    export = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export)
    prev = tmp_path / "prev.json"
    prev.write_text(json.dumps({"info": {"stages": [{"steps": 7, "cpu_hours": 0.5, "data": "x"}]}}))
    ev = tmp_path / "ev.json"
    ev.write_text(json.dumps({"mean": {"d_avg": 12.5, "survival": 40.0, "num_videos": 2, "seconds": 3},
                              "config": {"window": 8, "iters": 4, "resolution": [192, 256],
                                         "baseline": None, "split": "test"}}))
    out = str(tmp_path / "exported")
    export.main(["--workdir", str(tmp_path), "--out", out, "--previous", str(prev), "--data", "tiny",
                 "--short-side", "192", "--result", f"tiny_eval={ev}", "--refine-scale", "2"])
    info = json.load(open(os.path.join(out, "config.json")))["info"]
    assert (info["inference"]["refine_scale"], info["inference"]["refine_iters"]) == (2.0, 4)
    results = json.load(open(os.path.join(out, "results.json")))  # stages and results beside it
    training = results["training"]
    assert training["steps"] == 8 and [s["steps"] for s in training["stages"]] == [7, 1]
    assert info["inference"]["short_side"] == 192 and info["inference"]["window"] == 8
    rec = results["entries"]["tiny_eval"]
    assert rec["values"] == {"d_avg": 12.5, "survival": 40.0, "num_videos": 2}
    assert rec["settings"]["resolution"] == [192, 256]
    assert set(info) == {"inference"}  # config.json: what the code reads, no history
    model, params2, _ = model_io.load_model(out)
    assert model.use_attention and "attention" in params2
    with pytest.raises(SystemExit):  # the validated short side is not guessed
        export.main(["--workdir", str(tmp_path), "--out", out])


def test_training_dir_inference_settings(tmp_path):
    """A workdir's validated settings: its eval window / iterations, what it trained on, and the
    short side of the weights it warm-started from; a config without ``eval`` keeps the fallback."""
    cfg = {"eval": {"window": 8, "iters": 4}, "iters": 3,
           "data": {"clip_len": 8, "crop_size": [128, 160]},
           "init_from": model_io.weights_path()}
    got = model_io._training_dir_inference(cfg, str(tmp_path / "config.json"))
    shipped = from_info(model_io.load_pretrained()[2])
    assert got == {"window": 8, "iters": 4, "short_side": shipped.short_side,
                   "refine_scale": shipped.refine_scale, "refine_iters": shipped.refine_iters,
                   "trained": {"clip_len": 8, "iters": 3, "crop": [128, 160]}}
    assert is_recorded({"inference": got})
    cfg["init_from"] = ""
    assert "short_side" not in model_io._training_dir_inference(cfg, str(tmp_path / "c.json"))
    assert model_io._training_dir_inference({"model": {}}, str(tmp_path / "c.json")) is None
    assert from_info({"inference": None}) == TrackingSettings()  # weights that record nothing
    assert (TrackingSettings().window, TrackingSettings().iters) == (128, 16)  # PIPs++'s
    assert not is_recorded({"inference": None})


def test_metric_logger_tensorboard_scalars(tmp_path):
    """TensorBoard events through tf.summary.scalar: readable tags and values, same as the JSONL."""
    import tensorflow as tf

    logger = loop.MetricLogger(str(tmp_path), enabled=True, tensorboard=True)
    logger.write(3, {"loss": 1.5, "eval/d_avg": 20.0})
    logger.close()
    seen = {}
    for name in os.listdir(tmp_path / "tensorboard"):
        for ev in tf.compat.v1.train.summary_iterator(str(tmp_path / "tensorboard" / name)):
            for v in ev.summary.value:
                seen[v.tag] = (ev.step, float(tf.make_ndarray(v.tensor)))
    assert seen == {"loss": (3, 1.5), "eval/d_avg": (3, 20.0)}
    with open(tmp_path / "metrics.jsonl") as f:
        row = json.loads(f.readline())
    assert row["step"] == 3 and row["loss"] == 1.5


def test_parameter_average_is_kept_checkpointed_and_loaded(tmp_path, compile_cache):
    """optim.ema_decay > 0: the optimiser state carries the average of the parameters after each
    step (from zeros, divided by the sum of its weights, so it does not depend on the parameters
    the state was initialised with); load_params / load_model read it; resume continues it."""
    d = 0.5
    c = tiny(objprior, max_steps=2, **{"optim.ema_decay": d, "checkpoint.every_steps": 1,
                                       "checkpoint.async_save": False})
    res = loop.train_and_evaluate(c, str(tmp_path))
    assert res["step"] == 2
    p1, _ = model_io.load_params(str(tmp_path), step=1, ema=False)
    p2, _ = model_io.load_params(str(tmp_path), step=2, ema=False)
    avg, step = model_io.load_params(str(tmp_path))
    assert step == 2
    # weights (1 - d) d and (1 - d) for steps 1 and 2, normalised by their sum
    want = jax.tree.map(lambda a, b: ((1 - d) * d * a + (1 - d) * b) / ((1 - d) * d + (1 - d)),
                        p1, p2)
    for a, b, raw in zip(jax.tree.leaves(avg), jax.tree.leaves(want), jax.tree.leaves(p2)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(a, r) for a, r in zip(jax.tree.leaves(avg), jax.tree.leaves(p2)))
    avg1, _ = model_io.load_params(str(tmp_path), step=1)  # one step: the parameters themselves
    for a, b in zip(jax.tree.leaves(avg1), jax.tree.leaves(p1)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    _, params, _ = model_io.load_model(str(tmp_path))
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(avg)):
        np.testing.assert_array_equal(np.asarray(a), b)
    # a run without the average has none to read
    c0 = tiny(objprior, max_steps=1)
    loop.train_and_evaluate(c0, str(tmp_path / "plain"))
    with pytest.raises(ValueError, match="no parameter average"):
        model_io.load_params(str(tmp_path / "plain"), ema=True)
    with pytest.raises(ValueError, match="ema_decay"):
        optim.params_ema(1.0)
