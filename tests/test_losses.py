"""Losses: hand-built instance masks for the objectness term, the sequence loss, the visibility BCE,
and parity with the official code's training step (reference/objprior fixture)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import OBJPRIOR_REF_DIR, require_path
from objtrack_jax import losses

H, W = 6, 8


def make_masks():
    """[1, 1, H, W]: background 0, object 1 in columns 3..5 of rows 1..4, object 2 at column 7."""
    m = np.zeros((1, 1, H, W), np.int32)
    m[0, 0, 1:5, 3:6] = 1
    m[0, 0, :, 7] = 2
    return m


def run(pred_xy, gt_xy, valid=None, masks=None):
    pred = np.asarray(pred_xy, np.float32).reshape(1, 1, -1, 2)
    gt = np.asarray(gt_xy, np.float32).reshape(1, 1, -1, 2)
    valid = np.ones(pred.shape[:3], np.float32) if valid is None else \
        np.asarray(valid, np.float32).reshape(pred.shape[:3])
    loss, aux = jax.jit(losses.objectness_loss)(pred, gt, valid,
                                                make_masks() if masks is None else masks)
    return float(loss), {k: np.asarray(v) for k, v in aux.items()}


# ----------------------------------------------------------------------------- objectness


def test_mismatch_penalised_by_its_l1_distance():
    # GT on object 1 (x=4, y=2), prediction on background (x=1.5, y=0.25): mean(|2.5|, |1.75|).
    loss, aux = run([[1.5, 0.25]], [[4.0, 2.0]])
    assert aux["mask_matches"].ravel().tolist() == [0.0]
    np.testing.assert_allclose(loss, (2.5 + 1.75) / 2 / (1 + 1e-6), rtol=1e-6)


def test_match_not_penalised_and_mean_over_mismatches_only():
    # point 0: both on object 1 (match, large distance); point 1: mismatch (bg -> object 2).
    loss, aux = run([[5.9, 4.9], [7.0, 1.0]], [[3.0, 1.0], [1.0, 1.0]])
    assert aux["mask_matches"].ravel().tolist() == [1.0, 0.0]
    assert aux["matching_valids"].ravel().tolist() == [0.0, 1.0]
    np.testing.assert_allclose(loss, 3.0 / (1 + 1e-6), rtol=1e-6)


def test_out_of_image_pairs_and_invalid_points_not_penalised():
    pts_p = [[-0.1, 2.0], [4.0, 2.0], [W - 0.5, 2.0], [4.0, H - 0.5], [4.0, 2.0]]
    pts_g = [[1.0, 1.0], [4.0, -0.01], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    valid = [1, 1, 1, 1, 0]  # the last one is a real mismatch but invalid
    loss, aux = run(pts_p, pts_g, valid)
    assert aux["mask_matches"].ravel().tolist() == [1.0] * 5
    assert loss == 0.0


def test_truncation_at_pixel_borders():
    # GT at background (0, 0). Object 1 starts at column 3 / row 1; object 2 is column 7 = W-1.
    cases = [((2.999, 2.0), 1.0),    # column 2 -> background: match
             ((3.0, 2.0), 0.0),      # column 3 -> object 1: mismatch
             ((4.0, 0.999), 1.0),    # row 0 -> background
             ((4.0, 1.0), 0.0),      # row 1 -> object 1
             ((W - 1.0, 3.0), 0.0),  # x = W-1 exactly is in bounds -> object 2
             ((W - 0.5, 3.0), 1.0)]  # out of bounds -> excluded ("match")
    for (x, y), match in cases:
        _, aux = run([[x, y]], [[0.0, 0.0]])
        assert aux["mask_matches"].item() == match, (x, y)


def test_all_match_batch_is_exactly_zero_and_finite_grad():
    pred = np.array([[4.0, 2.0], [0.5, 0.5], [np.nan, 1.0]], np.float32)
    gt = np.array([[3.5, 3.5], [1.0, 0.0], [1.0, 1.0]], np.float32)
    loss, aux = run(pred, gt)
    assert loss == 0.0 and np.isfinite(loss)
    g = jax.grad(lambda p: losses.objectness_loss(
        p.reshape(1, 1, -1, 2), gt.reshape(1, 1, -1, 2), np.ones((1, 1, 3), np.float32),
        make_masks())[0])(jnp.asarray(np.nan_to_num(pred)))
    np.testing.assert_array_equal(np.asarray(g), 0.0)


def test_gradient_flows_only_through_the_l1_term_of_pred():
    pred = jnp.asarray([[[[1.5, 0.25], [4.5, 2.0]]]], jnp.float32)  # mismatch, match
    gt = jnp.asarray([[[[4.0, 2.0], [3.0, 3.0]]]], jnp.float32)
    valid = jnp.ones((1, 1, 2), jnp.float32)
    masks = make_masks()
    g_pred, g_gt = jax.grad(lambda p, g: losses.objectness_loss(p, g, valid, masks)[0],
                            argnums=(0, 1))(pred, gt)
    denom = 1 + 1e-6
    # d/dP of ½(|Δx|+|Δy|)/Σw for the mismatched point; nothing for the matched one (the
    # indicator carries no gradient, so moving P across an id border is not "rewarded").
    np.testing.assert_allclose(np.asarray(g_pred), [[[[-0.5 / denom, -0.5 / denom], [0, 0]]]],
                               rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g_gt), -np.asarray(g_pred), rtol=1e-6)
    # The matches/weights themselves are constants for autodiff.
    jac = jax.jacobian(lambda p: losses.objectness_loss(p, gt, valid, masks)[1]["matching_valids"])(pred)
    np.testing.assert_array_equal(np.asarray(jac), 0.0)


def test_float_masks_and_lookup_is_row_y_column_x():
    masks = make_masks().astype(np.float32)  # the official code passes masks.float()
    # (x=4, y=1) is object 1 (row 1, column 4); transposed it would read background.
    _, aux = run([[4.0, 1.0]], [[0.0, 0.0]], masks=masks)
    assert aux["mask_matches"].item() == 0.0
    # (x=1, y=4) is background; transposed it would read object 1.
    _, aux = run([[1.0, 4.0]], [[0.0, 0.0]], masks=masks)
    assert aux["mask_matches"].item() == 1.0


# ----------------------------------------------------------------------------- sequence / BCE


def test_sequence_loss_weights_and_masking():
    rng = np.random.default_rng(0)
    n_it, b, s, n = 3, 2, 4, 5
    g = rng.normal(size=(b, s, n, 2)).astype(np.float32)
    p = g[None] + rng.normal(size=(n_it, b, s, n, 2)).astype(np.float32)
    v = (rng.random((b, s, n)) > 0.3).astype(np.float32)
    p[1, 0, 0, 0, 0] = np.nan  # nan_to_num'd (only matters if valid)
    ours = float(jax.jit(losses.sequence_loss)(p, g, v))
    pp = np.nan_to_num(p)
    ref = sum(0.8 ** (n_it - 1 - i) * (np.abs(pp[i] - g).mean(-1) * v).sum() / (1e-6 + v.sum())
              for i in range(n_it)) / n_it
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
    assert float(losses.sequence_loss(np.broadcast_to(g, p.shape), g, v)) == 0.0


def test_visibility_bce_masked_mean():
    logits = np.array([[[2.0, -1.0, 0.5]]], np.float32)
    vis = np.array([[[1.0, 0.0, 0.0]]], np.float32)
    valid = np.array([[[1.0, 1.0, 0.0]]], np.float32)
    ref = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0))) / (2 + 1e-6)
    np.testing.assert_allclose(float(losses.visibility_bce(logits, vis, valid)), ref, rtol=1e-6)
    assert np.isfinite(float(losses.visibility_bce(np.full((1, 1, 3), 1e4, np.float32), vis,
                                                   valid)))


def test_total_loss_combines_terms():
    rng = np.random.default_rng(1)
    g = rng.uniform(0, W - 1, size=(1, 1, 4, 2)).astype(np.float32)
    preds = g[None] + rng.normal(size=(2, 1, 1, 4, 2)).astype(np.float32)
    v = np.ones((1, 1, 4), np.float32)
    logits = rng.normal(size=(1, 1, 4)).astype(np.float32)
    loss, terms = losses.total_loss(preds, preds[-1], g, v, make_masks(), alpha=0.3,
                                    vis_logits=logits, vis=v, vis_weight=2.0)
    want = terms["loss_seq"] + 0.3 * terms["masked_loss"] + 2.0 * terms["loss_vis"]
    np.testing.assert_allclose(float(loss), float(want), rtol=1e-6)
    loss2, terms2 = losses.total_loss(preds, preds[-1], g, v)
    assert set(terms2) == {"loss", "loss_seq"} and float(loss2) == float(terms["loss_seq"])


# ----------------------------------------------------------------------------- objprior parity


@pytest.fixture(scope="module")
def train_ref():
    ref_dir = require_path(OBJPRIOR_REF_DIR, "objprior reference fixture directory")
    path = require_path(os.path.join(ref_dir, "objprior_reference_io.npz"),
                        "objprior_reference_io.npz")
    with np.load(path) as z:
        return {k: z[k] for k in z.files if k.startswith("train_")}


def _rel(ours, ref):
    ref = np.asarray(ref, np.float64)
    return float(np.abs(np.asarray(ours, np.float64) - ref).max() / np.abs(ref).max())


def test_objectness_loss_parity_objprior(train_ref):
    d = train_ref
    loss, aux = jax.jit(losses.objectness_loss)(d["train_pred_final"], d["train_trajs_g"],
                                                d["train_valids"], d["train_masks"])
    np.testing.assert_array_equal(np.asarray(aux["mask_matches"]), d["train_mask_matches"])
    np.testing.assert_array_equal(np.asarray(aux["matching_valids"]),
                                  d["train_matching_valids"])
    assert _rel(loss, d["train_masked_loss"]) <= 1e-6


def test_sequence_and_total_loss_parity_objprior(train_ref):
    d = train_ref
    seq = losses.sequence_loss(d["train_preds"], d["train_trajs_g"], d["train_valids"])
    assert _rel(seq, d["train_loss_seq"]) <= 1e-6
    loss, terms = jax.jit(losses.total_loss)(d["train_preds"], d["train_pred_final"],
                                             d["train_trajs_g"], d["train_valids"],
                                             d["train_masks"])
    assert _rel(terms["loss_obj"], d["train_loss_obj"]) <= 1e-6
    assert _rel(loss, d["train_loss"]) <= 1e-6
