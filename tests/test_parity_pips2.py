"""Parity with the PyTorch PIPs++ reference fixture (``OBJTRACK_REFERENCE_DIR``).

Everything (iteration counts, window length, sizes) is read from the fixture arrays, so the
tests run unchanged on another fixture of the same layout. Relative error is
``max|ours - ref| / max|ref|`` over the compared array.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import PIPS2_REF_DIR, nhwc, rel, require_path
from objtrack_jax.convert.pips2 import load_torch_checkpoint
from objtrack_jax.convert.torch_pickle import resolve_checkpoint_path
from objtrack_jax.inference import track_long_video
from objtrack_jax.losses import sequence_loss
from objtrack_jax.models.tracker import PIPsTracker

FEAT_REL_TOL = 1e-4     # features / templates, relative
TRACK_PX_TOL = 1e-3     # every free-running iterate and the long video, in pixels
LOSS_REL_TOL = 1e-4     # sequence loss, relative (measured ~1e-7)
LAST_GRAD_REL_TOL = 1e-4   # last layer (dense) gradients
DEEP_GRAD_REL_TOL = 5e-3   # floor for encoder / first-layer gradients
# Deep gradients of this problem are ill-conditioned (InstanceNorm over a few timesteps,
# 3 iterations): on the shipped fixture our own float32 and float64 gradients differ by
# 1.0-1.6 % relative, so the float32 reference carries rounding noise of that size too.
# The deep tolerance is therefore max(DEEP_GRAD_REL_TOL, F32_NOISE_FACTOR * measured
# float32-vs-float64 difference of the same computation), measured in the test itself.
F32_NOISE_FACTOR = 3.0


@pytest.fixture(scope="module")
def ref():
    d = require_path(PIPS2_REF_DIR, "PIPs++ reference fixture directory")
    return dict(np.load(os.path.join(d, "pips2_reference_io.npz")))


@pytest.fixture(scope="module")
def loaded():
    d = require_path(PIPS2_REF_DIR, "PIPs++ reference fixture directory")
    model, params, info = load_torch_checkpoint(resolve_checkpoint_path(d))
    return model, params


@pytest.fixture(scope="module")
def single_out(ref, loaded):
    model, params = loaded
    iters = int(ref["single_iters"])
    fn = jax.jit(lambda p, r, t: model.apply({"params": p}, r, t, iters=iters))
    return fn(params, nhwc(ref["single_rgbs"]), jnp.asarray(ref["single_trajs_e0"]))


def test_parity_pips2_encoder(ref, loaded):
    model, params = loaded
    fm = model.apply({"params": params}, nhwc(ref["single_rgbs"]), method=PIPsTracker.encode)
    r = np.transpose(ref["single_fmaps"], (0, 1, 3, 4, 2))
    assert fm.shape == r.shape
    err = rel(fm, r)
    print(f"encoder fmaps relative error {err:.3e}")
    assert err <= FEAT_REL_TOL


def test_parity_pips2_iterates(ref, single_out):
    preds = np.asarray(single_out.iterates)
    assert preds.shape == ref["single_preds"].shape
    per_iter = np.abs(preds - ref["single_preds"]).reshape(preds.shape[0], -1).max(1)
    print("max |Δ| px per iterate:", per_iter)
    assert np.all(per_iter <= TRACK_PX_TOL)
    # Final output: last iterate with frame 0 re-locked to the query.
    final = ref["single_preds"][-1].copy()
    final[:, 0] = ref["single_trajs_e0"][:, 0]
    assert np.abs(np.asarray(single_out.tracks) - final).max() <= TRACK_PX_TOL


def test_parity_pips2_templates(ref, single_out):
    for i, name in enumerate(["feats1", "feats2", "feats4"]):
        err = rel(single_out.feats[i], ref[f"single_{name}"])
        print(f"{name} relative error {err:.3e}")
        assert err <= FEAT_REL_TOL, name


def _train_loss_fn(model, ref, dtype=jnp.float32):
    iters = int(ref["train_iters"])
    rgbs = nhwc(ref["single_rgbs"]).astype(dtype)
    e0 = jnp.asarray(ref["train_trajs_e0"], dtype)
    gt = jnp.asarray(ref["single_trajs_g"], dtype)
    valids = jnp.asarray(ref["train_valids"], dtype)

    def loss_fn(params):
        out = model.apply({"params": params}, rgbs, e0, iters=iters)
        return sequence_loss(out.iterates, gt, valids), out.iterates

    return loss_fn


TORCH_TO_FLAX = {
    "fnet.conv1.weight": (("fnet", "conv1", "conv", "kernel"), (3, 2, 0, 1)),
    "fnet.conv3.bias": (("fnet", "conv3", "conv", "bias"), None),
    "delta_block.first_block_conv.conv.weight": (
        ("delta_block", "first_block_conv", "conv", "kernel"), (2, 1, 0)),
    "delta_block.dense.weight": (("delta_block", "dense", "kernel"), (1, 0)),
    "delta_block.dense.bias": (("delta_block", "dense", "bias"), None),
}


def _grad_entry(grads, tname):
    path, perm = TORCH_TO_FLAX[tname]
    g = grads
    for p in path:
        g = g[p]
    g = np.asarray(g)
    return np.transpose(g, perm) if perm is not None else g


def test_parity_pips2_train_loss_and_grads(ref, loaded):
    model, params = loaded
    loss_fn = _train_loss_fn(model, ref)
    (loss, preds), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), params)
        grads64 = jax.jit(jax.grad(lambda p: _train_loss_fn(model, ref, jnp.float64)(p)[0]))(p64)
        grads64 = jax.tree_util.tree_map(np.asarray, grads64)
    assert np.abs(np.asarray(preds) - ref["train_preds"]).max() <= TRACK_PX_TOL
    err = rel(loss, ref["train_loss"])
    print(f"train loss ours {float(loss):.8f} ref {float(ref['train_loss']):.8f} rel {err:.3e}")
    assert err <= LOSS_REL_TOL
    grad_keys = [k for k in ref if k.startswith("grad/")]
    assert grad_keys, "fixture holds no gradients"
    for k in grad_keys:
        tname = k[len("grad/"):]
        g = _grad_entry(grads, tname)
        noise = rel(g, _grad_entry(grads64, tname))
        e = rel(g, ref[k])
        floor = LAST_GRAD_REL_TOL if tname.startswith("delta_block.dense") else DEEP_GRAD_REL_TOL
        tol = max(floor, F32_NOISE_FACTOR * noise)
        print(f"grad {tname}: relative error {e:.3e}, own f32-vs-f64 {noise:.3e} (tol {tol:.3e})")
        assert e <= tol, tname


def long_init(ref):
    """GT frame 0 scaled to the model resolution, repeated over time (PIPs++ protocol)."""
    g = ref["long_trajs_g"].astype(np.float64)
    h0, w0 = ref["long_rgbs"].shape[-2:]
    h1, w1 = ref["long_image_size"]
    g = g * np.array([w1 / w0, h1 / h0])
    return np.repeat(g[:, :1], g.shape[1], axis=1).astype(np.float32)


def test_parity_pips2_long_video(ref, loaded):
    model, params = loaded
    rgbs = np.transpose(ref["long_rgbs_resized"], (0, 1, 3, 4, 2))
    tr = track_long_video(model, params, rgbs, long_init(ref), window=int(ref["long_window"]),
                          iters=int(ref["long_iters"]))
    err = np.abs(tr - ref["long_trajs_e"]).max()
    print(f"long video max |Δ| {err:.3e} px")
    assert err <= TRACK_PX_TOL


def test_no_recompile_same_shapes(ref, loaded):
    model, params = loaded
    traces = []

    def fn(p, r, t):
        traces.append(1)
        return model.apply({"params": p}, r, t, iters=1).tracks

    jfn = jax.jit(fn)
    rgbs = nhwc(ref["single_rgbs"])
    t0 = jnp.asarray(ref["single_trajs_e0"])
    for k in range(3):
        jfn(params, rgbs + k, t0 + k).block_until_ready()
    assert len(traces) == 1
