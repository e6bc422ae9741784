"""Video reading/writing and track drawing on tiny synthetic videos (plus a peek at camel.mp4)."""

import logging
import os
import warnings

import cv2
import numpy as np
import pytest

from conftest import CAMEL_MP4, require_path
from objtrack_jax import video_io, viz


def _tiny_video(t=5, h=32, w=48):
    """A dark video with a bright bar moving right by 6 px per frame and a fixed red block."""
    frames = np.full((t, h, w, 3), 20, np.uint8)
    frames[:, 4:12, 30:44] = (200, 40, 40)
    for i in range(t):
        frames[i, :, 6 * i:6 * i + 4] = 255
    return frames


# ------------------------------------------------------------------------------------------ video_io


def test_write_read_video_roundtrip(tmp_path):
    frames = _tiny_video()
    path = video_io.write_video(str(tmp_path / "clip.mp4"), frames, fps=10)
    assert path == str(tmp_path / "clip.mp4") and os.path.getsize(path) > 0
    back = video_io.read_video(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - frames).mean() < 8  # lossy codec, but close
    assert back[0, 8, 36, 0] > 150 and back[0, 8, 36, 2] < 100  # red block, RGB order kept
    info = video_io.video_info(path)
    assert (info["kind"], info["num_frames"], info["height"], info["width"]) == ("file", 5, 32, 48)
    assert info["fps"] == pytest.approx(10)
    assert video_io.read_video(path, stride=2).shape[0] == 3
    assert video_io.read_video(path, max_frames=2, stride=2, resize_to=(16, 20)).shape == (2, 16, 20, 3)


def test_write_video_odd_size_and_codec_fallback(tmp_path, monkeypatch, caplog):
    odd = _tiny_video(t=3, h=31, w=45)
    path = video_io.write_video(str(tmp_path / "odd.mp4"), odd)
    assert video_io.read_video(path).shape == (3, 32, 46, 3)  # padded to even, not cropped
    frames = _tiny_video(t=3)

    # H.264 unavailable: a warning that names the reason, then OpenCV's MPEG-4 Part 2
    monkeypatch.setattr(video_io, "h264_encoder", lambda: (None, "imageio-ffmpeg is missing here"))
    monkeypatch.setattr(video_io, "_warned_no_h264", set())
    with caplog.at_level(logging.WARNING, logger="objtrack_jax.video_io"):
        out = video_io.write_video(str(tmp_path / "noh264.mp4"), frames)
    assert out == str(tmp_path / "noh264.mp4")
    assert b"mp4v" in open(out, "rb").read() and "imageio-ffmpeg is missing here" in caplog.text
    assert "browsers" in caplog.text
    assert video_io.read_video(out).shape == frames.shape

    class ClosedWriter:  # what OpenCV returns when the codec is missing
        def __init__(self, *args):
            pass

        def isOpened(self):
            return False

    monkeypatch.setattr(video_io.cv2, "VideoWriter", ClosedWriter)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="objtrack_jax.video_io"):
        out = video_io.write_video(str(tmp_path / "nocodec.mp4"), frames)
    assert out == str(tmp_path / "nocodec_frames") and os.path.isdir(out)
    assert "nocodec.mp4" in caplog.text
    np.testing.assert_array_equal(video_io.read_video(out), frames)  # PNG frames are lossless


def test_default_mp4_is_h264_and_explicit_fourcc_uses_opencv(tmp_path):
    if video_io.h264_encoder()[0] is None:
        pytest.skip(f"no H.264 encoder: {video_io.h264_encoder()[1]}")
    frames = _tiny_video(t=6, h=40, w=64)
    with video_io.VideoWriter(str(tmp_path / "a.mp4"), fps=8) as writer:
        writer.append(frames[:4])
        writer.append(frames[4:])
    assert writer.codec == "h264"
    data = open(tmp_path / "a.mp4", "rb").read()
    assert b"avc1" in data and b"mp4v" not in data
    assert data.find(b"moov") < data.find(b"mdat")  # index first: browsers play while loading
    back = video_io.read_video(str(tmp_path / "a.mp4"))
    assert back.shape == frames.shape and np.abs(back.astype(int) - frames).mean() < 8
    assert video_io.video_info(str(tmp_path / "a.mp4"))["fps"] == pytest.approx(8)
    path = video_io.write_video(str(tmp_path / "b.mp4"), frames, fps=8, fourcc="mp4v")
    assert b"mp4v" in open(path, "rb").read()


def test_read_frame_folder_natural_order(tmp_path):
    frames = _tiny_video(t=12)
    for i, frame in enumerate(frames):  # unpadded names: "frame_10" must come after "frame_2"
        cv2.imwrite(str(tmp_path / f"frame_{i}.png"), frame[..., ::-1])
    (tmp_path / "notes.txt").write_text("not a frame")
    np.testing.assert_array_equal(video_io.read_video(str(tmp_path)), frames)
    np.testing.assert_array_equal(video_io.read_video(str(tmp_path), stride=5, max_frames=2), frames[[0, 5]])
    assert video_io.read_video(str(tmp_path), resize_to=(8, 12)).shape == (12, 8, 12, 3)
    info = video_io.video_info(str(tmp_path))
    assert (info["kind"], info["num_frames"], info["height"], info["width"]) == ("folder", 12, 32, 48)


def test_read_video_errors_name_the_file(tmp_path):
    missing = str(tmp_path / "missing.mp4")
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        video_io.read_video(missing)
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"this is not a video")
    with pytest.raises(ValueError, match="bogus.mp4"):
        video_io.read_video(str(bogus))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        video_io.read_video(str(empty))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    cv2.imwrite(str(mixed / "000.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(mixed / "001.png"), np.zeros((8, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="001.png"):
        video_io.read_video(str(mixed))
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "000.jpg").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="000.jpg"):
        video_io.read_video(str(corrupt))


def test_read_camel_first_frames():
    path = require_path(CAMEL_MP4, "camel.mp4 demo video")
    info = video_io.video_info(path)
    frames = video_io.read_video(path, max_frames=3)
    assert frames.shape == (3, info["height"], info["width"], 3) and frames.dtype == np.uint8
    assert frames.std() > 10  # real content, not a blank decode
    assert video_io.read_video(path, max_frames=2, resize_to=(64, 96)).shape == (2, 64, 96, 3)


# ------------------------------------------------------------------------------------------ viz


def _straight_tracks(t=6, n=3):
    """Points moving right by 3 px per frame, starting at distinct positions."""
    start = np.array([[8.0, 8.0], [24.0, 20.0], [40.0, 28.0]])[:n]
    return start[None] + np.arange(t)[:, None, None] * np.array([3.0, 0.0])


def test_draw_tracks_marks_positions_and_keeps_input():
    frames = np.zeros((6, 40, 64, 3), np.uint8)
    tracks = _straight_tracks()  # [T, N, 2] for the checks below; the API's [N, T, 2] drawn
    nt = np.swapaxes(tracks, 0, 1)
    out = viz.draw_tracks(frames, nt, radius=3)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert not frames.any()  # input untouched
    cols, rows = np.round(tracks).astype(int)[..., 0], np.round(tracks).astype(int)[..., 1]
    t_idx = np.arange(6)[:, None]
    assert (out[t_idx, rows, cols].max(-1) > 100).all()  # every marker drawn at its position
    colors = viz.point_colors(nt, None, (40, 64))
    assert len({tuple(c) for c in colors}) == 3  # a distinct colour per point
    np.testing.assert_allclose(out[5, rows[5], cols[5]], colors, atol=2)  # filled marker centre
    # Tail: halfway between the positions at frames 3 and 4 (outside the frame-5 marker).
    mid = np.round((tracks[3, 0] + tracks[4, 0]) / 2).astype(int)
    assert out[5, mid[1], mid[0]].max() > 0
    assert viz.draw_tracks(frames, nt, radius=3, tail=0)[5, mid[1], mid[0]].max() == 0
    # time-major [T, N, 2] is the same drawing with its hint, and refused without one
    np.testing.assert_array_equal(viz.draw_tracks(frames, tracks, radius=3, layout="TN"), out)
    with pytest.raises(ValueError, match=r"look time-major \[T, N, 2\]"):
        viz.draw_tracks(frames, tracks, radius=3)


def test_draw_tracks_occluded_is_hollow_without_tail():
    frames = np.zeros((4, 48, 48, 3), np.uint8)
    tracks = np.array([[[10.0, 24.0]], [[20.0, 24.0]], [[30.0, 24.0]], [[38.0, 24.0]]])
    visible = np.array([[True], [True], [False], [False]])
    out = viz.draw_tracks(frames, tracks.swapaxes(0, 1), visible.T, radius=6)
    assert out[3, 24, 38].max() == 0  # hollow: centre untouched
    assert out[3, 24, 38 + 6].max() > 0  # ring drawn
    assert out[3, 24, 25].max() == 0  # no tail segment into or out of occluded frames
    assert out[1, 24, 15].max() > 0  # visible-visible segment is drawn
    # Non-finite and far-away points are skipped rather than crashing OpenCV.
    weird = tracks.copy()
    weird[0, 0] = np.nan
    weird[1, 0] = 1e12
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert viz.draw_tracks(frames, weird.swapaxes(0, 1)).shape == frames.shape


def test_contact_sheet_layout_and_save_png(tmp_path):
    frames = np.full((10, 20, 30, 3), 50, np.uint8)
    tracks = np.repeat(np.array([[[5.0, 10.0]], [[25.0, 15.0]]]), 10, axis=1)  # [N=2, T=10, 2]
    sheet = viz.contact_sheet(frames, tracks, num=6, cols=3, gap=4)
    assert sheet.shape == (2 * 20 + 4, 3 * 30 + 2 * 4, 3) and sheet.dtype == np.uint8
    assert (sheet[20:24] == 0).all()  # gap row between the two rows of cells
    small = viz.contact_sheet(frames, tracks, num=4, cols=4, cell_width=15, gap=0)
    assert small.shape == (10, 4 * 15, 3)
    few = viz.contact_sheet(frames[:2], tracks[:, :2], num=6, cols=3, gap=0, layout="NT")
    assert few.shape == (20, 2 * 30, 3)  # only 2 distinct frames exist
    path = viz.save_png(str(tmp_path / "sub" / "sheet.png"), sheet)
    np.testing.assert_array_equal(cv2.imread(path)[..., ::-1], sheet)


@pytest.mark.parametrize("t", [3, 40])  # 3: the failure may only show when the file is closed
def test_h264_writer_falls_back_when_ffmpeg_fails(tmp_path, monkeypatch, caplog, t):
    """An ffmpeg that exits at once (here /bin/false): a warning, and the video is still written
    (MPEG-4 Part 2), both streamed (first frames still in hand) and through write_video."""
    false = "/bin/false" if os.path.exists("/bin/false") else None
    if false is None:
        pytest.skip("no /bin/false on this system")
    monkeypatch.setattr(video_io, "h264_encoder", lambda: (false, None))
    monkeypatch.setattr(video_io, "_warned_no_h264", set())
    frames = _tiny_video(t=t, h=64, w=96)  # 40: enough to fill the pipe of a dead ffmpeg
    with caplog.at_level(logging.WARNING, logger="objtrack_jax.video_io"):
        out = video_io.write_video(str(tmp_path / "x.mp4"), frames, fps=10)
    assert out == str(tmp_path / "x.mp4") and b"mp4v" in open(out, "rb").read()
    assert "ffmpeg" in caplog.text and "browsers" in caplog.text
    assert video_io.read_video(out).shape == frames.shape


def test_ambiguous_layout_is_refused():
    """N == T: [N, T, 2] and [T, N, 2] cannot be told apart, so the caller must say which."""
    frames = np.zeros((3, 32, 32, 3), np.uint8)
    tracks = np.array([[[4.0, 4.0], [5.0, 4.0], [6.0, 4.0]],  # point 0 moving right
                       [[20.0, 20.0], [20.0, 21.0], [20.0, 22.0]],
                       [[10.0, 28.0], [10.0, 28.0], [10.0, 28.0]]])  # [N=3, T=3, 2]
    for fn in (lambda **k: viz.draw_tracks(frames, tracks, **k),
               lambda **k: viz.contact_sheet(frames, tracks, num=3, **k),
               lambda **k: viz.point_colors(tracks, None, (32, 32), **k)):
        with pytest.raises(ValueError, match=r"ambiguous \(N == T == 3\): pass layout='NT'"):
            fn()
    nt = viz.draw_tracks(frames, tracks, radius=1, tail=0, layout="NT")
    tn = viz.draw_tracks(frames, tracks.swapaxes(0, 1), radius=1, tail=0, layout="TN")
    np.testing.assert_array_equal(nt, tn)
    assert nt[2, 4, 6].max() > 0 and nt[2, 22, 20].max() > 0  # frame 2 of each point
    with pytest.raises(ValueError, match="layout must be 'NT'"):
        viz.draw_tracks(frames, tracks, layout="xy")
    with pytest.raises(ValueError, match=r"visible must be \(3, 3\)"):
        viz.draw_tracks(frames, tracks, np.ones((3, 4), bool), layout="NT")
