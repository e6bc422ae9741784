"""The TAP-Vid protocol's query groups run side by side (``inference.track_segments``): the same
tracks and visibility as one group after another, in far fewer refinement calls."""

import numpy as np

from objtrack_jax import inference
from objtrack_jax.tracking import track_queries


def _queries(rng, frames, counts, hw=128):
    f = np.repeat(frames, counts)
    return np.stack([f, rng.uniform(0, hw - 1, f.size), rng.uniform(0, hw - 1, f.size)], 1)


def _count_calls(monkeypatch):
    """Refinement calls, as the batch size of each: one window at a time (``_refine_fn``, the
    fmaps' batch) or side by side (``_refine_gather_fn``, the frame indices' batch)."""
    calls = []
    for name, arg in (("_refine_fn", 1), ("_refine_gather_fn", 2)):
        real = getattr(inference, name)

        def counting(*a, _real=real, _arg=arg, **k):
            fn = _real(*a, **k)
            return lambda *args: (calls.append(args[_arg].shape[0]), fn(*args))[1]

        monkeypatch.setattr(inference, name, counting)
    return calls


def test_batched_groups_match_one_group_at_a_time(small_model, monkeypatch):
    model, params = small_model
    rng = np.random.default_rng(11)
    t = 20
    video = rng.integers(0, 256, (t, 128, 128, 3), dtype=np.uint8)
    # A group larger than a chunk (20 points, chunks of 8), a one-point group, a group at the
    # last frame (no forward window) and one at frame 0 (no backward window).
    q = _queries(rng, [0, 5, 11, 19], [20, 1, 5, 3])
    kw = dict(window=8, iters=2, resize_to=(128, 128), progress=False, chunk_size=8)
    calls = _count_calls(monkeypatch)
    batched = track_queries(model, params, video, q, **kw)
    n_batched = len(calls)
    sizes = set(calls)
    calls.clear()
    plain = track_queries(model, params, video, q, bucket=False, **kw)
    n_plain = len(calls)
    np.testing.assert_allclose(batched[0], plain[0], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(batched[2], plain[2], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(batched[0][np.arange(len(q)), q[:, 0].astype(int)], q[:, [2, 1]],
                               atol=1e-4)  # the query itself (float32)
    assert batched[1][np.arange(len(q)), q[:, 0].astype(int)].all()
    # one group after another: a call per window and chunk; side by side: a few full batches
    assert n_batched * 3 <= n_plain, (n_batched, n_plain)
    # two chunk sizes (segment_chunks): 20 -> 8 + 8 + 8 (a remainder of 4 fills half a chunk),
    # small groups in chunks of 2
    assert inference.segment_chunks(20, 8) == [(0, 8), (8, 8), (16, 8)]
    assert inference.segment_chunks(5, 8) == [(0, 8)]
    assert inference.segment_chunks(3, 8) == [(0, 2), (2, 2)]
    assert sizes == {inference.segment_batch_size(8, (16, 16, 32), n) for n in (2, 8)}, sizes


def test_track_segments_one_segment_equals_track_windows(small_model):
    """A single segment is the plain window protocol (masked with num_valid = window)."""
    model, params = small_model
    rng = np.random.default_rng(3)
    video = rng.integers(0, 256, (17, 128, 128, 3), dtype=np.uint8)
    xy0 = rng.uniform(0, 127, (5, 2)).astype(np.float32)
    feats = inference.encode_frames(model, params, video)
    (tracks, vis), = inference.track_segments(model, params, feats, [(np.arange(17), xy0)],
                                              window=8, iters=2)
    ref, ref_vis = inference.track_windows(model, params, video[None],
                                           np.broadcast_to(xy0, (1, 17, 5, 2)), window=8, iters=2)
    np.testing.assert_allclose(tracks, ref[0], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(vis, ref_vis[0], rtol=1e-4, atol=1e-3)
