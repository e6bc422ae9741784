"""Any tracker through this project's protocols: evaluate() scores a callable in tapnet's
conventions with the same query sampling, resizing and metric code as the built-in baselines."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from objtrack_jax import evaluation


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from objtrack_jax.data_pipelines import synthetic

    root = str(tmp_path_factory.mktemp("synth"))
    synthetic.generate_dataset(root, num_seqs={"test": 2}, frames=6, size=(96, 128), num_points=24,
                               progress=False, write_depths=False)
    return root


@jax.jit
def zero_motion(video, queries):
    """A stand-in tracker in tapnet's conventions: video [B, T, H, W, 3], queries [B, N, 3] as
    (t, y, x) -> tracks [B, N, T, 2] as (x, y) (every point stays put), no occlusion."""
    xy = queries[..., ::-1][..., :2]  # (x, y)
    tracks = jnp.broadcast_to(xy[:, :, None], queries.shape[:2] + (video.shape[1], 2))
    return {"tracks": tracks, "occlusion": None}


@pytest.mark.parametrize("protocol, kw", [
    ("pips", {}),
    ("tapvid", {"query_mode": "strided"}),
    ("tapvid", {"query_mode": "first", "resolution": (128, 160)}),  # resized before the call
])
def test_jitted_stand_in_scores_as_the_builtin_baseline(synth_root, protocol, kw):
    common = dict(protocol=protocol, progress=False, max_points=10, **kw)
    rows, mean = evaluation.evaluate("synthetic", synth_root, zero_motion, **common)
    ref_rows, ref_mean = evaluation.evaluate("synthetic", synth_root, "zero", **common)
    assert len(rows) == 2 and [r["video"] for r in rows] == [r["video"] for r in ref_rows]
    keys = evaluation.metric_keys(protocol)
    for k in keys:
        if ref_mean[k] is None:  # occlusion metrics: neither predicts occlusion
            assert mean[k] is None, k
        else:
            assert mean[k] == pytest.approx(ref_mean[k], abs=1e-9), k
    # the numbers are not trivial: zero motion loses points on moving scenes
    assert 0 < mean["d_avg" if protocol == "pips" else "average_pts_within_thresh"] < (
        100 if protocol == "pips" else 1)


def test_occlusion_logits_and_bad_shapes(synth_root):
    """Occlusion as logits (occluded where > 0) gives the occlusion metrics; a tracker returning
    the wrong layout is named."""
    def always_occluded(video, queries):
        out = zero_motion(video, queries)
        return out["tracks"], jnp.ones(out["tracks"].shape[:3])

    _, mean = evaluation.evaluate("synthetic", synth_root, always_occluded, protocol="tapvid",
                                  progress=False, max_points=10)
    assert mean["average_jaccard"] == 0.0 and 0 <= mean["occlusion_accuracy"] < 1

    def time_major(video, queries):
        return np.swapaxes(np.asarray(zero_motion(video, queries)["tracks"]), 1, 2), None

    with pytest.raises(ValueError, match=r"tracks of shape \(1, 6, 10, 2\); expected \[1, N, T, 2\]"):
        evaluation.evaluate("synthetic", synth_root, time_major, protocol="tapvid",
                            progress=False, max_points=10)
