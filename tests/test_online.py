"""The online tracker (objtrack_jax/online.py) gives the offline answers, frame by frame.

Real content without shared files: a photograph bundled with scikit-image seen by a moving
camera (tests/photo_clip.py), 144x160 input frames resized to the model's 128x128, the shipped
weights at explicitly passed settings (window 8, 4 iterations).
"""

import os

import jax
import numpy as np
import pytest

from photo_clip import photo_clip

H, W = 144, 160
SETTINGS = dict(window=8, iters=4, resolution=(128, 128))
TOL = 1e-4  # px (input pixels)


@pytest.fixture(scope="module")
def shipped():
    from objtrack_jax import model_io

    return model_io.load_model(None)


def offline(shipped, video, queries, refine_scale=None, anchor=False):
    """``track_queries`` at :data:`SETTINGS` (the offline engine)."""
    from objtrack_jax.settings import TrackingSettings
    from objtrack_jax.tracking import track_queries

    model, params, _ = shipped
    settings = TrackingSettings(**SETTINGS, refine_scale=refine_scale,
                                refine_iters=SETTINGS["iters"], anchor=anchor)
    tracks, visible, _ = track_queries(model, params, video, queries, settings=settings,
                                       progress=False)
    return tracks, visible


def stream(tracker, video, chunks=None, events=None):
    """Pushes ``video`` (in ``chunks`` sizes, default one frame at a time), calling
    ``events[t](tracker)`` before frame ``t``; returns ``[capacity, T, 2]`` tracks and
    ``[capacity, T]`` visibility gathered from the emitted outputs."""
    t_len = len(video)
    tracks = np.full((tracker.capacity, t_len, 2), np.nan, np.float32)
    visible = np.zeros((tracker.capacity, t_len), bool)
    seen = np.zeros(t_len, int)

    def take(out):
        tracks[:, out.frames] = out.tracks
        visible[:, out.frames] = out.visible
        seen[out.frames] += 1

    sizes = list(chunks or [1] * t_len)
    t = 0
    while t < t_len:
        if events and t in events:
            events[t](tracker)
        k = min(sizes.pop(0) if sizes else 1, t_len - t)
        if events:  # an event inside the chunk: stop before it
            k = min([k] + [e - t for e in events if t < e < t + k])
        take(tracker.push(video[t:t + k]))
        t += k
    take(tracker.finish())
    assert (seen == 1).all(), "every frame is emitted exactly once"
    return tracks, visible


def make_tracker(shipped, capacity, **kw):
    from objtrack_jax.online import OnlineTracker

    model, params, _ = shipped
    return OnlineTracker(model, params, (H, W), capacity, **{**SETTINGS, **kw})


def queries_at(t, n, seed):
    rng = np.random.default_rng(seed)
    return np.stack([np.full(n, t), rng.uniform(8, H - 9, n), rng.uniform(8, W - 9, n)], 1)


def test_frame0_queries_equal_offline(shipped):
    """Queries at frame 0, frames in chunks of 1 to 5 (a 3-frame jitted step): the offline
    tracks within 1e-4 px and the same visibility; the latency is one window."""
    video = photo_clip(22, H, W)
    q = queries_at(0, 6, seed=1)
    tracker = make_tracker(shipped, 8, chunk=3)
    assert tracker.latency == SETTINGS["window"]
    tracks, visible = stream(tracker, video, chunks=[1, 5, 2, 3, 4, 1, 2, 4],
                             events={0: lambda tr: tr.add(q)})
    ref, ref_vis = offline(shipped, video, q)
    assert np.abs(tracks[:6] - ref).max() <= TOL
    assert (visible[:6] == ref_vis).all()
    assert tracker.capacity == 8 and np.isnan(tracks[6:]).all() and not visible[6:].any()
    assert np.abs(ref[:, -1] - ref[:, 0]).max() > 5  # the points moved


def test_second_pass_equals_offline(shipped):
    """With the second pass (x2, the shipped weights' setting) the online tracks equal the
    offline ones; the latency is two windows less two frames."""
    video = photo_clip(20, H, W, speed=1.5)
    q = queries_at(0, 4, seed=2)
    tracker = make_tracker(shipped, 4, refine_scale=2.0)
    assert tracker.latency == 2 * SETTINGS["window"] - 2
    tracks, visible = stream(tracker, video, events={0: lambda tr: tr.add(q)})
    ref, ref_vis = offline(shipped, video, q, refine_scale=2.0)
    one, _ = offline(shipped, video, q)
    assert np.abs(one - ref).max() > 0.05  # the second pass changes the tracks
    assert np.abs(tracks[:4] - ref).max() <= TOL
    assert (visible[:4] == ref_vis).all()


def test_stream_200_frames_add_and_drop(shipped):
    """200 frames one at a time; queries added at frames 0, 50 and 120, one dropped at 150 and
    its slot reused at 160: each equals offline tracking from its query frame (the forward part)
    while it is tracked; the state keeps its shapes; the step compiled once."""
    from objtrack_jax import online

    video = photo_clip(200, H, W, speed=0.6)
    groups = {0: queries_at(0, 3, 10), 50: queries_at(50, 2, 11), 120: queries_at(120, 2, 12),
              160: queries_at(160, 1, 13)}
    tracker = make_tracker(shipped, 7)
    shapes0 = [x.shape for x in jax.tree_util.tree_leaves(tracker.state)]
    slots = {}

    def adder(t):
        def add(tr):
            slots[t] = tr.add(groups[t])
        return add

    events = {t: adder(t) for t in (0, 50, 120, 160)}
    events[150] = lambda tr: tr.drop([slots[0][1]])
    seen = {}
    events[100] = lambda tr: seen.update(latest=tr.latest())  # after frame 99
    events[1] = lambda tr: seen.update(programs=online.step_fn(tr.core)._cache_size())
    tracks, visible = stream(tracker, video, events=events)
    # the provisional estimate: the end of each query's last window (frame 98 for the queries
    # at 0, whose windows end every 7 frames; 99 for those at 50), free slots NaN
    assert np.array_equal(seen["latest"][slots[0]], tracks[slots[0], 98])
    assert np.array_equal(seen["latest"][slots[50]], tracks[slots[50], 99])
    assert np.isnan(seen["latest"][7]).all()
    assert [x.shape for x in jax.tree_util.tree_leaves(tracker.state)] == shapes0
    assert online.step_fn(tracker.core)._cache_size() == seen["programs"]  # no recompile
    assert slots[160].tolist() == [slots[0][1]]  # the freed slot, reused
    dropped = slots[0][1]
    cut = 150 - tracker.latency  # frames emitted before the drop
    for t, q in groups.items():
        ref, ref_vis = offline(shipped, video[t:], np.concatenate([np.zeros((len(q), 1)),
                                                                   q[:, 1:]], 1))
        rows = slots[t]
        got, got_vis = tracks[rows, t:], visible[rows, t:]
        before = slice(cut, t) if t == 160 else slice(0, t)  # (the reused slot held query 1)
        assert np.isnan(tracks[rows, before]).all()  # nothing before the query frame
        if t == 0:  # the dropped query: equal up to the drop, nothing after
            k = list(rows).index(dropped)
            assert np.abs(got[k, :cut] - ref[k, :cut]).max() <= TOL
            assert (got_vis[k, :cut] == ref_vis[k, :cut]).all()
            assert np.isnan(tracks[dropped, cut:160]).all()
            keep = [i for i in range(len(rows)) if i != k]
            got, got_vis, ref, ref_vis = got[keep], got_vis[keep], ref[keep], ref_vis[keep]
        assert np.abs(got - ref).max() <= TOL, (t, np.abs(got - ref).max())
        assert (got_vis == ref_vis).all()


def test_anchored_equals_offline(shipped):
    """With anchoring (``TrackingSettings.anchor``) the emitted tracks equal ``track_queries``'s
    anchored ones: queries at frame 0 (one dropped at frame 12, its slot reused at 13) and at
    frame 5 (the forward part), frames in chunks of 1 to 3; the anchoring moved the points; the
    frames kept for it are a fixed ring."""
    video = photo_clip(18, H, W, speed=0.8)
    groups = {0: queries_at(0, 4, seed=20), 5: queries_at(5, 2, seed=21),
              13: queries_at(13, 1, seed=22)}
    tracker = make_tracker(shipped, 8, chunk=2, anchor=True)
    assert tracker.anchor is not None and tracker.latency == SETTINGS["window"]
    assert tracker.warm_up() >= 0.0  # as `objtrack online` does first; the stream is unchanged
    slots = {}

    def adder(t):
        def add(tr):
            slots[t] = tr.add(groups[t])
        return add

    events = {t: adder(t) for t in groups}
    events[12] = lambda tr: tr.drop([slots[0][3]])
    tracks, visible = stream(tracker, video, chunks=[1, 3, 2, 1, 3, 2, 1, 2, 3], events=events)
    assert tracker.anchor.frames.shape[0] == tracker.latency + tracker.chunk
    assert slots[13].tolist() == [slots[0][3]]
    cut = 12 - tracker.latency  # frames of the dropped query emitted before the drop
    moved = 0.0
    for t, q in groups.items():
        q0 = np.concatenate([np.zeros((len(q), 1)), q[:, 1:]], 1)
        ref, ref_vis = offline(shipped, video[t:], q0, anchor=True)
        plain, _ = offline(shipped, video[t:], q0)
        moved = max(moved, float(np.abs(ref - plain).max()))
        got, got_vis = tracks[slots[t], t:], visible[slots[t], t:]
        if t == 0:
            err = np.abs(got[3, :cut] - ref[3, :cut]).max()
            print(f"dropped query, frames 0..{cut - 1}: max |online - offline| {err:.2e} px")
            assert err <= TOL
            got, got_vis, ref, ref_vis = got[:3], got_vis[:3], ref[:3], ref_vis[:3]
        err = np.abs(got - ref).max()
        print(f"queries at frame {t}: max |online - offline| anchored {err:.2e} px")
        assert err <= TOL
        assert (got_vis == ref_vis).all()
    print(f"anchoring moved the offline tracks by up to {moved:.2f} px")
    assert moved > 0.05


def test_anchor_follows_the_settings(shipped):
    """``anchor`` comes from a TrackingSettings (the shipped weights record it); the dict form
    of the settings does not anchor unless it says so; the keyword overrides both."""
    from objtrack_jax.online import OnlineTracker
    from objtrack_jax.settings import TrackingSettings

    model, params, _ = shipped
    res = SETTINGS["resolution"]

    def anchored(**kw):
        return OnlineTracker(model, params, (H, W), 2, **kw).anchor is not None

    assert anchored(settings=TrackingSettings(window=8, iters=4, resolution=res, anchor=True))
    assert not anchored(settings=TrackingSettings(window=8, iters=4, resolution=res))
    assert not anchored(settings={"window": 8, "iters": 4, "resolution": res})
    assert anchored(settings={"window": 8, "iters": 4, "resolution": res}, anchor=True)
    assert not anchored(settings=TrackingSettings(window=8, iters=4, resolution=res, anchor=True),
                        anchor=False)
    with pytest.raises(ValueError, match="anchor must be True or False"):
        anchored(settings={"window": 8, "iters": 4, "resolution": res}, anchor="yes")


def test_core_state_is_a_fixed_pytree(shipped):
    """init's state: fixed shapes independent of the stream's length; add/drop edit masks."""
    from objtrack_jax.online import make_core

    model, params, _ = shipped
    core = make_core(model, (128, 128), window=8, iters=4)
    state = core.init(params, 5)
    assert state.frames.shape == (core.buffered, 128, 128, 3) and state.est.shape == (9, 5, 2)
    assert core.latency == 8 and core.buffered == 9
    mask = np.array([True, False, True, False, False])
    state = core.add(state, mask, np.full((5, 2), 10.0, np.float32))
    assert np.asarray(state.active).tolist() == mask.tolist()
    state = core.drop(state, np.array([True, False, False, False, False]))
    assert np.asarray(state.active).tolist() == [False, False, True, False, False]
    two = make_core(model, (128, 128), window=8, iters=4, fine_size=(256, 256))
    assert two.latency == 14 and two.init(params, 2).fine_frames.shape == (15, 256, 256, 3)


def test_bad_input_is_named(shipped):
    tracker = make_tracker(shipped, 2)
    with pytest.raises(ValueError, match="next frame to arrive, 0"):
        tracker.add(queries_at(3, 1, 0))
    assert tracker.capacity == 8  # rounded up as the offline engine pads points
    with pytest.raises(ValueError, match="only 8 of 8 slots are free"):
        tracker.add(queries_at(0, 9, 0))
    with pytest.raises(ValueError, match="outside the 144x160 frame"):
        tracker.add(np.array([[0, 10.0, 500.0]]))
    with pytest.raises(ValueError, match=r"\(t, y, x\)"):
        tracker.add(np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"\(H, W\) = \(144, 160\)"):
        tracker.push(np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ValueError, match="window and iters"):
        from objtrack_jax.online import OnlineTracker

        OnlineTracker(shipped[0], shipped[1], (H, W))


def test_drop_names_a_bad_slot(shipped):
    """``drop`` takes the indices of slots in use: a negative or out-of-range index (``[-1]``
    would free the last slot through numpy indexing) or a free slot is a ValueError naming it
    and the valid range; nothing is freed."""
    tracker = make_tracker(shipped, 8)
    slots = tracker.add(queries_at(0, 2, seed=3))
    for bad, words in (([-1], r"slot -1 does not exist; the slots are 0\.\.7"),
                       ([8], r"slot 8 does not exist; the slots are 0\.\.7"),
                       ([slots[0], 5], r"slot 5 is not in use"),
                       ([0.5], "integer slot indices")):
        with pytest.raises(ValueError, match=words):
            tracker.drop(bad)
    in_use = set(range(tracker.capacity)) - set(tracker.free_slots().tolist())
    assert in_use == set(slots.tolist())  # nothing was freed
    tracker.drop(slots[:1])
    with pytest.raises(ValueError, match=f"slot {slots[0]} is not in use"):
        tracker.drop(slots[:1])  # twice
    tracker.drop([])  # nothing to free


def test_push_after_finish_is_an_error(shipped):
    """After ``finish`` the stream is over: ``push``, ``add`` and a second ``finish`` raise
    (they used to re-emit revised frames) and say how to start another stream."""
    tracker = make_tracker(shipped, 8)
    tracker.add(queries_at(0, 1, seed=4))
    video = photo_clip(3, H, W)
    tracker.push(video[:2])
    out = tracker.finish()
    assert len(out.frames) == 2
    for call in (lambda: tracker.push(video[2]), lambda: tracker.add(queries_at(2, 1, seed=5)),
                 tracker.finish):
        with pytest.raises(ValueError, match="the stream is finished.*new OnlineTracker"):
            call()


def test_track_online_cli(tmp_path, capsys):
    """``objtrack track --online`` on a small file: the .npz holds the tracks of every frame and
    the per-frame compute time; the report names the latency in frames."""
    from objtrack_jax import cli
    from objtrack_jax.video_io import write_video

    video = photo_clip(10, 128, 128)
    path = str(tmp_path / "clip.mp4")
    write_video(path, video, fps=10)
    out = str(tmp_path / "online.mp4")
    code = cli.main(["track", path, "--online", "--grid", "2", "--resolution", "128x128",
                     "--window", "4", "--iters", "1", "--refine-scale", "0", "--out", out])
    assert code == 0
    err = capsys.readouterr().err
    assert "per-frame latency" in err and '"latency_frames": 4' in err
    data = np.load(str(tmp_path / "online.npz"))
    assert data["tracks"].shape == (4, 10, 2) and np.isfinite(data["tracks"]).all()
    assert data["step_ms"].shape == (10,) and int(data["latency_frames"]) == 4
    assert os.path.getsize(out) > 0


def test_pipe_frames_reads_raw_rgb():
    import io

    from objtrack_jax.cli_online import pipe_frames

    frames = np.arange(2 * 4 * 6 * 3, dtype=np.uint8).reshape(2, 4, 6, 3)
    got = list(pipe_frames(io.BytesIO(frames.tobytes()), 4, 6))
    assert len(got) == 2 and all(np.array_equal(a, b) for a, b in zip(got, frames))
    with pytest.raises(ValueError, match="ended inside frame 1"):
        list(pipe_frames(io.BytesIO(frames.tobytes()[:-5]), 4, 6))
