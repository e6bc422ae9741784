"""The window rules (objtrack_jax/windows.py): the schedule against a direct construction, the
frame-by-frame view of it, the write-back and the carry, on numpy and traced inputs alike."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from objtrack_jax import windows as w


def direct_windows(length, window):
    """Windows of ``window`` frames stepping by ``window - 1`` until the end is covered, the
    last one moved back to end at the end (docs/conventions.md, *Long videos*)."""
    if length < 2:
        return []
    out, start = [], 0
    while start + window < length:
        out.append((start, start + window))
        start += window - 1
    out.append((max(length - window, 0), length))
    return out


@pytest.mark.parametrize("window", [2, 3, 6, 8])
def test_schedule_equals_the_direct_construction(window):
    for length in range(1, 40):
        spans = direct_windows(length, window)
        assert w.window_spans(length, window) == spans, (length, window)
        assert w.num_windows(length, window) == len(spans)
    lengths = jnp.arange(1, 40)
    traced = jax.jit(lambda n: w.num_windows(n, window))(lengths)
    assert traced.tolist() == [len(direct_windows(n, window)) for n in range(1, 40)]
    # window_span traced, per segment: the same starts and frame counts
    for k in range(4):
        start, count = jax.jit(lambda n, k=k: w.window_span(jnp.int32(k), n, window))(lengths)
        for n, s0, c in zip(range(1, 40), start.tolist(), count.tolist()):
            spans = direct_windows(n, window)
            if k < len(spans):
                assert (s0, s0 + c) == spans[k], (n, k)


def test_frame_by_frame_view_of_the_schedule():
    """ends_window / last_shifted say, frame by frame, what the schedule says: a window ends at
    each end of the unshifted windows, and the last is shifted exactly when it does not end
    at one of them."""
    for window in (2, 4, 8):
        for length in range(2, 30):
            spans = direct_windows(length, window)
            ends = [rel for rel in range(length) if w.ends_window(rel, window)]
            regular = [e - 1 for s, e in spans if s % (window - 1) == 0 and e - s == window]
            assert ends == regular
            shifted = spans[-1][0] % (window - 1) != 0
            assert bool(w.last_shifted(length, window)) == shifted, (length, window)


def test_window_frames_pad_with_the_last_frame():
    assert w.window_frames(5, 3, 6).tolist() == [5, 6, 7, 7, 7, 7]
    got = w.window_frames(jnp.array([0, 2]), jnp.array([2, 4]), 4)
    assert got.tolist() == [[0, 1, 1, 1], [2, 3, 4, 5]]


def test_write_window_numpy_and_traced_agree():
    rng = np.random.default_rng(0)
    trajs = rng.normal(size=(2, 10, 3, 2)).astype(np.float32)
    vis = rng.normal(size=(2, 10, 3)).astype(np.float32)
    tracks = rng.normal(size=(2, 4, 3, 2)).astype(np.float32)
    logits = rng.normal(size=(2, 4, 3)).astype(np.float32)
    t, v = w.write_window(trajs, vis, 3, 3, tracks, logits)
    assert isinstance(t, np.ndarray)
    np.testing.assert_array_equal(t[:, :3], trajs[:, :3])
    np.testing.assert_array_equal(t[:, 3:6], tracks[:, :3])
    np.testing.assert_array_equal(t[:, 6:], np.broadcast_to(tracks[:, 2:3], (2, 4, 3, 2)))
    np.testing.assert_array_equal(v[:, 3:6], logits[:, :3])
    np.testing.assert_array_equal(v[:, 6:], vis[:, 6:])
    kept, _ = w.write_window(trajs, None, 3, 3, tracks, fill=False)
    np.testing.assert_array_equal(kept[:, 6:], trajs[:, 6:])
    # per-row starts and a row mask, traced
    fn = jax.jit(lambda *a: w.write_window(*a[:6], where=a[6]))
    start, count = jnp.array([0, 7]), jnp.array([4, 3])
    mask = jnp.array([[True, False, True], [True, True, True]])
    t2, v2 = fn(trajs, vis, start, count, tracks, logits, mask)
    want_t, want_v = trajs.copy(), vis.copy()
    for b, (s0, c) in enumerate([(0, 4), (7, 3)]):
        for i in range(3):
            if mask[b, i]:
                want_t[b, s0:s0 + c, i] = tracks[b, :c, i]
                want_t[b, s0 + c:, i] = tracks[b, c - 1, i]
                want_v[b, s0:s0 + c, i] = logits[b, :c, i]
    np.testing.assert_array_equal(np.asarray(t2), want_t)
    np.testing.assert_array_equal(np.asarray(v2), want_v)


def test_carry_modes():
    f = tuple(np.full((1, 2, 3, 4), k, np.float32) for k in (1, 2, 4))
    assert w.carried(None, "pips2") is None and w.carried(f, "none") is None
    assert [x[0, 0, 0, 0] for x in w.carried(f, "pips2")] == [1, 2, 4]
    assert [x[0, 0, 0, 0] for x in w.carried(f, "paper")] == [1, 1, 1]
    own = np.full((2, 3, 4), 9, np.float32)
    feats = tuple(x[0] for x in f)
    fresh = np.array([True, False, False])
    got = w.fresh_or_carried(own, feats, fresh, "paper")
    assert [np.asarray(x)[0, :, 0].tolist() for x in got] == [[9, 1, 1]] * 3
    got = w.fresh_or_carried(own, feats, fresh, "pips2")
    assert [np.asarray(x)[0, :, 0].tolist() for x in got] == [[9, 1, 1], [9, 2, 2], [9, 4, 4]]
    got = w.fresh_or_carried(own, feats, fresh, "none")
    assert all(np.asarray(x).min() == 9 for x in got)
    with pytest.raises(ValueError, match="carry must be one of"):
        w.check_carry("both")
    with pytest.raises(ValueError, match="window must be >= 2"):
        w.window_spans(5, 1)
