"""The tracks file: one ``.npz`` layout for ``objtrack track``, ``objtrack track --online`` and the
app, written by ``tracks_io.write_tracks_npz`` and read back (checked) by ``read_tracks_npz``.

The end-to-end test runs the three writers with a small random tracker (tests/conftest.py) on one
6-frame 128x128 clip, at the same settings.
"""

import json

import numpy as np
import pytest

from objtrack_jax import model_io, tracks_io
from objtrack_jax.settings import TrackingSettings

N, T = 3, 5


def _arrays(rng=np.random.default_rng(0)):
    tracks = rng.uniform(0, 100, (N, T, 2)).astype(np.float32)
    visible = rng.random((N, T)) > 0.3
    queries = np.float32([[0, 1, 2], [2, 3, 4], [4, 5, 6]])
    return tracks, visible, queries


def test_round_trip(tmp_path):
    tracks, visible, queries = _arrays()
    s = TrackingSettings(window=8, iters=4, short_side=192)
    lk = tracks + 1
    path = tracks_io.write_tracks_npz(
        str(tmp_path / "sub" / "t.npz"), tracks, visible, queries, s, writer="test",
        vis_logits=np.zeros((N, T)), resolution=(192, 256), video_size=(96, 128),
        methods={"lk": (lk, visible), "dis": (lk, None)}, info={"video": "clip.mp4"},
        extra={"step_ms": np.arange(T, dtype=np.float64)})
    got = tracks_io.read_tracks_npz(path)
    np.testing.assert_array_equal(got.tracks, tracks)
    np.testing.assert_array_equal(got.visible, visible)
    np.testing.assert_array_equal(got.queries, queries)
    assert got.vis_logits.dtype == np.float32 and got.vis_logits.shape == (N, T)
    assert got.settings == {**s.as_dict(), "resolution": [192, 256]}
    assert TrackingSettings(**got.settings).model_size(96, 128) == s.model_size(96, 128)
    assert got.resolution == (192, 256) and got.video_size == (96, 128)
    assert got.info["writer"] == "test" and got.info["video"] == "clip.mp4"
    assert set(got.methods) == {"lk", "dis"} and got.methods["dis"][1] is None
    np.testing.assert_array_equal(got.methods["lk"][0], lk)
    assert list(got.extra) == ["step_ms"]
    with np.load(path, allow_pickle=False) as z:  # plain arrays, no pickle
        assert bool(z["has_visibility"]) and "visible_dis" not in z.files


def test_without_visibility(tmp_path):
    tracks, _, queries = _arrays()
    path = tracks_io.write_tracks_npz(str(tmp_path / "t.npz"), tracks, None, queries,
                                      TrackingSettings(), writer="test")
    got = tracks_io.read_tracks_npz(path)
    assert got.visible is None and got.resolution is None
    with np.load(path) as z:
        assert "visible" not in z.files and not bool(z["has_visibility"])


@pytest.mark.parametrize("change, needle", [
    (dict(tracks=np.zeros((N, T, 3))), r"tracks must be \[N, T, 2\]"),
    (dict(queries=np.zeros((N + 1, 3))), r"query_points must be \[N, 3\] .* N = 3, got shape \(4, 3\)"),
    (dict(visible=np.zeros((N, T + 1), bool)), r"visible must be \[N, T\] = \[3, 5\]"),
    (dict(methods={"lk": (np.zeros((N, 2, 2)), None)}), r"tracks_lk must be \[N, T, 2\]"),
    (dict(extra={"visible": np.zeros(2)}), "extra array 'visible' would replace"),
    (dict(settings={"windw": 4}), "unknown tracking setting 'windw'"),
])
def test_writer_refuses_what_is_off_the_layout(tmp_path, change, needle):
    tracks, visible, queries = _arrays()
    kw = dict(tracks=tracks, visible=visible, queries=queries, settings=TrackingSettings())
    extra = {k: change.pop(k) for k in ("methods", "extra") if k in change}
    kw.update(change)
    with pytest.raises(ValueError, match=needle):
        tracks_io.write_tracks_npz(str(tmp_path / "t.npz"), writer="test", **kw, **extra)
    assert not (tmp_path / "t.npz").exists()


def test_reader_names_the_file_and_the_problem(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"bad\.npz: not a readable \.npz"):
        tracks_io.read_tracks_npz(bad)
    np.savez(tmp_path / "other.npz", trajs_2d=np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match=r"other\.npz: not a tracks file, missing key\(s\) "
                                         r"\['tracks', 'query_points', 'info_json'\]"):
        tracks_io.read_tracks_npz(tmp_path / "other.npz")
    tracks, visible, queries = _arrays()
    np.savez(tmp_path / "shape.npz", tracks=tracks, query_points=queries[:2],
             info_json=np.asarray(json.dumps({"settings": {}})))
    with pytest.raises(ValueError, match=r"shape\.npz: query_points must be \[N, 3\]"):
        tracks_io.read_tracks_npz(tmp_path / "shape.npz")


# ------------------------------------------------------------------------------------------------
# The three writers
# ------------------------------------------------------------------------------------------------


@pytest.fixture()
def small_weights(small_model, monkeypatch):
    """``load_model`` gives the small tracker, with validated settings recorded as weights do."""
    model, params = small_model
    info = {"architecture": "test", "inference": {"window": 4, "iters": 1, "short_side": 128}}
    monkeypatch.setattr(model_io, "load_model", lambda checkpoint=None: (model, params, info))
    return model, params, info


@pytest.fixture()
def clip_file(tmp_path):
    import cv2

    from objtrack_jax.video_io import write_video

    rng = np.random.default_rng(2)
    base = cv2.GaussianBlur((rng.random((150, 150, 3)) * 255).astype(np.uint8), (5, 5), 1.5)
    frames = np.stack([base[t:t + 128, 2 * t:2 * t + 128] for t in range(6)])
    return write_video(str(tmp_path / "clip.mp4"), frames, fps=10)


def test_track_online_and_app_write_the_same_file(small_weights, clip_file, tmp_path):
    """``objtrack track``, ``objtrack track --online`` and the app, asked for the same settings
    on the same clip and queries, write files that the one reader reads, with the same layout
    and the same settings recorded; offline and app tracks are equal (one engine)."""
    from objtrack_jax import cli
    from objtrack_jax.app.engine import Workspace

    model, params, info = small_weights
    queries = np.float32([[0, 40, 50], [3, 70.5, 90.25]])
    np.save(tmp_path / "q.npy", queries)
    flags = ["--queries", str(tmp_path / "q.npy"), "--window", "4", "--iters", "2",
             "--refine-scale", "0", "--no-anchor"]
    assert cli.main(["track", clip_file, "--out", str(tmp_path / "off.mp4"), "--no-progress"]
                    + flags) == 0
    assert cli.main(["track", clip_file, "--online", "--out", str(tmp_path / "on.mp4")]
                    + flags) == 0
    ws = Workspace(model, params, info, str(tmp_path / "app"))
    try:
        video = ws.open_path(clip_file)
        points = [{"t": float(t), "y": float(y), "x": float(x)} for t, y, x in queries]
        req = ws.check_run(video.id, points, {"window": "4", "iters": "2", "refine_scale": "0",
                                              "anchor": "false"}, ["lk"])
        app_npz = ws.run(req, str(tmp_path / "app_out"))["files"]["npz"]
    finally:
        ws.close()

    off = tracks_io.read_tracks_npz(tmp_path / "off.npz")
    on = tracks_io.read_tracks_npz(tmp_path / "on.npz")
    app = tracks_io.read_tracks_npz(app_npz)
    assert [f.info["writer"] for f in (off, on, app)] == [
        "objtrack track", "objtrack track --online", "objtrack app"]
    want = TrackingSettings(window=4, iters=2, short_side=128, resolution=(128, 128),
                            anchor=False).as_dict()
    for f in (off, on, app):
        assert f.settings == want, f.info["writer"]
        assert f.tracks.shape == (2, 6, 2) and f.visible.shape == (2, 6)
        np.testing.assert_array_equal(f.queries, queries)
        assert f.resolution == (128, 128) and f.video_size == (128, 128)
        for i, (t, y, x) in enumerate(queries):  # the query itself at its frame
            np.testing.assert_allclose(f.tracks[i, int(t)], [x, y], atol=1e-3)
    np.testing.assert_array_equal(app.tracks, off.tracks)
    np.testing.assert_array_equal(app.visible, off.visible)
    assert set(app.methods) == {"lk"} and not off.methods and not on.methods
    assert set(on.extra) == {"step_ms", "latency_frames"} and on.extra["step_ms"].shape == (6,)
    assert np.isnan(on.tracks[1, :3]).all()  # online: not tracked before its query frame
    assert np.isfinite(on.tracks[0]).all() and np.isfinite(on.tracks[1, 3:]).all()
