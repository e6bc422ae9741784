"""Contextual attention (MixAxialPOLA stack): structure, vectorised gathering, weight mapping and
parity with the original PyTorch code (reference/objprior fixture)."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import OBJPRIOR_REF_DIR, require_path
from objtrack_jax.convert.attention import attention_params_from_torch
from objtrack_jax.models import attention as attn
from objtrack_jax.models.attention import ContextualAttention

TOL = 1e-4  # relative: max|ours − ref| / max|ref|


def rel_err(ours, ref):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    diff = np.abs(ours - ref).max()
    return diff / np.abs(ref).max(), diff


def tiny(**kw):
    cfg = dict(dim=32, depth=2, num_heads=8, axial_heads_per_axis=2, window_size=3)
    cfg.update(kw)
    return ContextualAttention(**cfg)


def jit_init(m, x):
    return jax.jit(m.init)(jax.random.PRNGKey(0), x)["params"]


def jit_apply(m, params, x, **kw):
    mutable = kw.pop("mutable", False)
    rngs = kw.pop("rngs", None)
    fn = jax.jit(lambda p, x, r: m.apply({"params": p}, x, rngs=r, mutable=mutable, **kw))
    return fn(params, x, rngs)


# ----------------------------------------------------------------------------- structure


def test_parameter_count_is_exact():
    x = jax.ShapeDtypeStruct((1, 7, 7, 128), jnp.float32)
    shapes = jax.eval_shape(ContextualAttention().init, jax.random.PRNGKey(0), x)["params"]
    assert sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes)) == 1_048_024
    blk = shapes["blocks_0"]
    assert blk["localAttn"]["relative_position_bias_table"].shape == (729, 4)
    assert blk["localAttn"]["Wq"]["kernel"].shape == (64, 64)
    assert blk["horizAttn"]["Wv"]["kernel"].shape == (32, 32)
    assert "proj" not in blk["horizAttn"] and "proj" not in blk["vertiAttn"]
    assert blk["mlp"]["fc1"]["kernel"].shape == (128, 512)
    assert set(shapes) == {f"blocks_{i}" for i in range(6)} | {"norm"}


def test_relative_position_index_formula():
    idx = attn.relative_position_index(7, 1)
    assert idx.shape == (49, 441) and idx.min() == 0 and idx.max() == 728
    for qh, qw, kh, kw in [(0, 0, 0, 0), (6, 2, 13, 20), (3, 3, 10, 10), (1, 5, 20, 0)]:
        assert idx[qh * 7 + qw, kh * 21 + kw] == (qh - kh + 20) * 27 + (qw - kw + 20)
    # Same displacement -> same bias entry; query at the window centre, key at itself -> centre.
    assert idx[3 * 7 + 3, 10 * 21 + 10] == 13 * 27 + 13


def test_init_statistics_match_original():
    params = jit_init(tiny(dim=64, depth=1), jnp.zeros((1, 3, 3, 64)))
    b = params["blocks_0"]
    np.testing.assert_array_equal(b["norm1"]["scale"], 1.0)
    np.testing.assert_array_equal(b["norm1"]["bias"], 0.0)
    np.testing.assert_array_equal(b["localAttn"]["Wk"]["bias"], 0.0)
    fc1 = np.asarray(b["mlp"]["fc1"]["kernel"])
    assert abs(fc1.std() - 0.02) < 2e-3 and abs(fc1.mean()) < 2e-3
    assert all(l.dtype == jnp.float32 for l in jax.tree.leaves(params))


def _naive_patches(z, ws, nb):
    """Loop reference for the neighbour-patch gather: z already padded by nb·ws on each side."""
    n, hh, ww, c = z.shape
    nh, nw, p = hh // ws - 2 * nb, ww // ws - 2 * nb, (2 * nb + 1) * ws
    out = []
    for b in range(n):
        for i in range(nh):
            for j in range(nw):
                out.append(z[b, i * ws:i * ws + p, j * ws:j * ws + p].reshape(p * p, c))
    return np.stack(out)


@pytest.mark.parametrize("ws,nb", [(7, 1), (3, 2)])
def test_neighbour_patch_gather_matches_loop(ws, nb):
    rng = np.random.default_rng(0)
    nh, nw = 2, 3
    z = rng.normal(size=(2, (nh + 2 * nb) * ws, (nw + 2 * nb) * ws, 5)).astype(np.float32)
    ours = attn._neighbour_patches(jnp.asarray(z), nh, nw, ws, nb)
    np.testing.assert_array_equal(np.asarray(ours), _naive_patches(z, ws, nb))


@pytest.mark.parametrize("hw", [(5, 8), (9, 3)])
def test_any_size_and_sown_shapes(hw):
    h, w = hw
    m = tiny()
    x = jax.random.normal(jax.random.PRNGKey(1), (2, h, w, 32))
    params = jit_init(m, x)
    y, st = jit_apply(m, params, x, mutable=["intermediates"])
    assert y.shape == x.shape and bool(jnp.all(jnp.isfinite(y)))
    # Final LayerNorm with (1, 0) affine: unit variance per token.
    np.testing.assert_allclose(np.asarray(y).std(-1), 1.0, rtol=1e-3)
    b0 = st["intermediates"]["blocks_0"]
    nwin = 2 * (-(-h // 3)) * (-(-w // 3))
    assert b0["localAttn"]["local_q"][0].shape == (nwin, 9, 16)
    assert b0["localAttn"]["local_kv"][0].shape == (nwin, 81, 16)
    assert b0["verti_out"][0].shape == (2, w, h, 8)
    assert st["intermediates"]["blocks_1"]["block_out"][0].shape == x.shape


def test_drop_path_per_image_and_deterministic_default():
    m = tiny(drop_path_rate=0.9)
    x = jax.random.normal(jax.random.PRNGKey(1), (8, 4, 4, 32))
    params = jit_init(m, x)
    y_det = jit_apply(m, params, x)
    y_tr = jit_apply(m, params, x, deterministic=False, rngs={"dropout": jax.random.PRNGKey(3)})
    changed = ~np.isclose(np.asarray(y_tr), np.asarray(y_det), atol=1e-5).reshape(8, -1).all(-1)
    assert changed.any()  # rate 0.9 in block 1 drops/rescales whole images
    # drop_path itself: each image is either zeroed or rescaled by 1/keep, as a whole.
    z = attn.drop_path(jnp.ones((64, 3, 2)), 0.5, False, jax.random.PRNGKey(0))
    per_image = np.asarray(z).reshape(64, -1)
    assert set(np.unique(per_image)) <= {0.0, 2.0}
    assert (per_image.min(1) == per_image.max(1)).all() and 0 < (per_image[:, 0] == 0).sum() < 64
    # ... and a rate of 0 everywhere is the identity even in training mode.
    m0 = tiny(drop_path_rate=0.0)
    np.testing.assert_array_equal(
        jit_apply(m0, params, x, deterministic=False), jit_apply(m0, params, x))


def test_bfloat16_compute_keeps_float32_params():
    m = tiny(dtype=jnp.bfloat16)
    x = jax.random.normal(jax.random.PRNGKey(1), (1, 6, 6, 32))
    params = jit_init(m, x)
    assert all(l.dtype == jnp.float32 for l in jax.tree.leaves(params))
    y = jit_apply(m, params, x)
    y32 = jit_apply(tiny(), params, x)
    assert y.dtype == jnp.bfloat16
    assert float(jnp.abs(y.astype(jnp.float32) - y32).max()) < 0.1


# ----------------------------------------------------------------------------- converter


def _fake_torch_sd(params, prefix="fnet.1."):
    from objtrack_jax.convert.attention import torch_key
    flat = {}

    def walk(tree, path):
        for k, v in tree.items():
            if isinstance(v, dict):
                walk(v, path + (k,))
            else:
                a = np.asarray(v)
                flat[torch_key(path + (k,), prefix)] = a.T if k == "kernel" else a
    walk(params, ())
    return flat


def test_converter_roundtrip_and_errors():
    m = ContextualAttention(depth=2)
    params = jax.device_get(jit_init(m, jnp.zeros((1, 7, 7, 128))))
    sd = _fake_torch_sd(params)
    for i in range(2):
        sd[f"fnet.1.blocks.{i}.localAttn.relative_position_index"] = attn.relative_position_index()
    sd["delta_block.dense.weight"] = np.zeros((2, 1024), np.float32)  # not ours: not consumed
    out, consumed = attention_params_from_torch(sd)
    assert consumed == set(sd) - {"delta_block.dense.weight"}
    jax.tree.map(np.testing.assert_array_equal, out, params)

    bad = dict(sd)
    del bad["fnet.1.blocks.1.mlp.fc2.bias"]
    bad["fnet.1.blocks.0.localAttn.Wq.weight"] = np.zeros((64, 32), np.float32)
    with pytest.raises(ValueError) as e:
        attention_params_from_torch(bad)
    msg = str(e.value)
    assert "fnet.1.blocks.1.mlp.fc2.bias" in msg
    assert "fnet.1.blocks.0.localAttn.Wq.weight: got (64, 32), expected (64, 64)" in msg

    bad = dict(sd)
    bad["fnet.1.blocks.1.localAttn.relative_position_index"] = 728 - attn.relative_position_index()
    with pytest.raises(ValueError, match="relative_position_index"):
        attention_params_from_torch(bad)


# ----------------------------------------------------------------------------- objprior parity


def _ref_dir():
    return require_path(OBJPRIOR_REF_DIR, "objprior reference fixture directory")


@functools.lru_cache(maxsize=None)
def _load_reference():
    from objtrack_jax.convert.torch_pickle import load_state_dict
    ref_dir = _ref_dir()
    io = dict(np.load(require_path(os.path.join(ref_dir, "objprior_reference_io.npz"),
                                   "objprior_reference_io.npz")))
    sd = load_state_dict(require_path(os.path.join(ref_dir, "model-000000000.pth"),
                                      "objprior checkpoint"))
    pert_sd = dict(sd)
    pert_sd.update(dict(np.load(require_path(os.path.join(ref_dir, "pert_attention_params.npz"),
                                             "pert_attention_params.npz"))))
    params, consumed = attention_params_from_torch(sd)
    pert_params, _ = attention_params_from_torch(pert_sd)
    depth = max(int(k.split(".")[3]) for k in consumed if k.startswith("fnet.1.blocks.")) + 1
    return io, sd, params, pert_params, consumed, depth


@pytest.fixture(scope="module")
def ref():
    _ref_dir()
    return _load_reference()


@functools.lru_cache(maxsize=None)
def _apply_fn(depth):
    model = ContextualAttention(depth=depth)
    return jax.jit(lambda p, x: model.apply({"params": p}, x, mutable=["intermediates"]))


def _run(ref, params, x_nchw):
    """Channels-first fixture batch -> (channels-first output, intermediates)."""
    depth = ref[5]
    y, st = _apply_fn(depth)(params, jnp.asarray(x_nchw).transpose(0, 2, 3, 1))
    return np.asarray(y).transpose(0, 3, 1, 2), jax.device_get(st["intermediates"])


def _frames(a):
    """(B, S, C, H, W) -> (B·S, C, H, W)."""
    return a.reshape(-1, *a.shape[2:])


def test_checkpoint_attention_keys_all_consumed_parity_objprior(ref):
    io, sd, _, _, consumed, depth = ref
    ours = {k for k in sd if k.startswith("fnet.1.")}
    assert consumed == ours
    assert len(consumed) == 32 * depth + 2


@pytest.mark.parametrize("case", ["attnonly", "pert_attnonly"])
def test_attnonly_parity_objprior(ref, case):
    io, _, params, pert_params, _, _ = ref
    y, _ = _run(ref, pert_params if case.startswith("pert") else params, io["attnonly_in"])
    r, d = rel_err(y, io[f"{case}_out"])
    assert r <= TOL, f"{case}_out: relative {r:.3g} (max abs {d:.3g})"


@pytest.mark.parametrize("key", ["single_fmaps", "pert_fmaps"])
def test_fmaps_parity_objprior(ref, key):
    io, _, params, pert_params, _, _ = ref
    y, _ = _run(ref, pert_params if key.startswith("pert") else params,
                _frames(io["single_fmaps_enc"]))
    r, d = rel_err(y, _frames(io[key]))
    assert r <= TOL, f"{key}: relative {r:.3g} (max abs {d:.3g})"


def test_block0_intermediates_and_block_outputs_parity_objprior(ref):
    io, _, params, _, _, depth = ref
    x = _frames(io["single_fmaps_enc"])
    _, inter = _run(ref, params, x)
    h, w = x.shape[-2:]
    ws = ContextualAttention.window_size
    n_win = (-(-h // ws)) * (-(-w // ws))  # windows of frame 0 come first
    b0 = inter["blocks_0"]
    ours = {
        "single_b0_norm1": b0["norm1_out"][0][0].reshape(h * w, -1),
        "single_b0_local_q": b0["localAttn"]["local_q"][0][:n_win],
        "single_b0_local_kv": b0["localAttn"]["local_kv"][0][:n_win],
        "single_b0_local_out": b0["localAttn"]["local_out"][0][:n_win],
        "single_b0_horiz_out": b0["horiz_out"][0][0],
        "single_b0_verti_out": b0["verti_out"][0][0],
        "single_b0_proj_out": b0["proj_out"][0][0].reshape(h * w, -1),
        "single_attn_block_outs": np.stack(
            [inter[f"blocks_{i}"]["block_out"][0][0].reshape(h * w, -1) for i in range(depth)]),
    }
    errors = {k: rel_err(v, io[k]) for k, v in ours.items()}
    bad = {k: e for k, e in errors.items() if e[0] > TOL}
    assert not bad, f"relative errors above {TOL}: {bad}"


def test_parity_objprior_detects_flipped_bias_index_and_dropped_kv_bias(ref):
    """The perturbed fixture is sensitive to the mistakes the random-init one cannot see."""
    io, _, _, pert_params, _, _ = ref
    target = io["pert_attnonly_out"]

    def with_local(fn):
        p = jax.tree.map(lambda a: a, pert_params)
        for name, blk in p.items():
            if name.startswith("blocks_"):
                fn(blk["localAttn"])
        return p

    def flip(la):  # index' = (kh−qh+6)·27 + (kw−qw+6) = 728 − index  <=>  reversed table
        la["relative_position_bias_table"] = la["relative_position_bias_table"][::-1]

    def drop_kv_bias(la):
        la["Wk"]["bias"] = np.zeros_like(la["Wk"]["bias"])
        la["Wv"]["bias"] = np.zeros_like(la["Wv"]["bias"])

    for fn, what in [(flip, "flipped rel-bias index"), (drop_kv_bias, "dropped K/V bias")]:
        y, _ = _run(ref, with_local(fn), io["attnonly_in"])
        r, d = rel_err(y, target)
        print(f"{what}: max abs change {d:.3g}, relative {r:.3g}")
        assert r > 10 * TOL, f"{what} is not detected (relative change {r:.3g})"
