"""The encoder's bilinear resize (align_corners=True) against a direct float64 evaluation."""

import jax.numpy as jnp
import numpy as np
import pytest

from objtrack_jax.models.layers import resize_bilinear_align_corners


def _reference(x: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """Each output pixel sampled at ``o * (n_in - 1) / (n_out - 1)`` (0 for a 1-pixel side),
    from its four neighbours, in float64."""
    _, h, w, _ = x.shape

    def src(n_in, n_out):
        return np.zeros(n_out) if n_out == 1 or n_in == 1 else \
            np.arange(n_out) * (n_in - 1) / (n_out - 1)

    x = x.astype(np.float64)
    out = np.zeros((x.shape[0], oh, ow, x.shape[3]))
    for i, sy in enumerate(src(h, oh)):
        y0 = min(int(np.floor(sy)), h - 1)
        y1, fy = min(y0 + 1, h - 1), sy - y0
        for j, sx in enumerate(src(w, ow)):
            x0 = min(int(np.floor(sx)), w - 1)
            x1, fx = min(x0 + 1, w - 1), sx - x0
            out[:, i, j] = ((1 - fy) * ((1 - fx) * x[:, y0, x0] + fx * x[:, y0, x1])
                            + fy * ((1 - fx) * x[:, y1, x0] + fx * x[:, y1, x1]))
    return out


@pytest.mark.parametrize("shape_in,shape_out", [
    ((32, 56), (8, 14)),     # the encoder's stride-2 stage to stride 8 (down by 4)
    ((4, 7), (8, 14)),       # stride 16 to stride 8 (up by 2)
    ((8, 14), (8, 14)),      # identity
    ((13, 9), (5, 11)),      # down in one axis, up in the other, non-integer ratios
    ((1, 5), (3, 2)),        # a 1-pixel side
    ((6, 6), (1, 1)),
])
def test_resize_matches_direct_bilinear(shape_in, shape_out):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2,) + shape_in + (3,)).astype(np.float32)
    got = np.asarray(resize_bilinear_align_corners(jnp.asarray(x), shape_out))
    assert got.shape == (2,) + shape_out + (3,)
    np.testing.assert_allclose(got, _reference(x, *shape_out), atol=2e-6, rtol=0)


def test_resize_keeps_dtype():
    x = jnp.ones((1, 9, 9, 2), jnp.bfloat16)
    out = resize_bilinear_align_corners(x, (3, 3))
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out, np.float32), 1.0)
