"""Streaming: track_queries / track_video read frames a window at a time from a FrameSource (an mp4,
a folder of frames, or anything with len/shape/read), never the whole video, and give exactly the
results of the in-memory array."""

import jax
import numpy as np
import pytest

from objtrack_jax import video_io
from objtrack_jax.memory import MAX_ENCODE_CHUNK
from objtrack_jax.tracking import track_queries
from objtrack_jax.video_io import ArrayFrames, FrameView, open_video

WINDOW = 6


class CountingFrames(ArrayFrames):
    """An array behind the FrameSource interface that records every read."""

    def __init__(self, array):
        super().__init__(array)
        self.reads = []

    def _read(self, start, end):
        self.reads.append((start, end))
        return super()._read(start, end).copy()


def _video(t=17, h=128, w=128, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 8 + 4, w // 8 + 4, 3)).astype(np.uint8)
    big = np.kron(base, np.ones((8, 8, 1), np.uint8))
    return np.stack([big[i % 4:i % 4 + h, i // 2:i // 2 + w] for i in range(t)])


def _queries(frames, n=5, seed=1):
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(frames, n), rng.uniform(4, 120, n), rng.uniform(4, 120, n)], 1)


KW = dict(window=WINDOW, iters=1, resize_to=(128, 128), progress=False)


@pytest.mark.parametrize("max_memory_mb", [None, 4])  # shared features / per-window encoding
def test_streamed_equals_in_memory_and_reads_windows(small_model, max_memory_mb):
    model, params = small_model
    video = _video()
    q = _queries([0, 9, 16])  # forward and backward segments
    ref = track_queries(model, params, video, q, max_memory_mb=max_memory_mb, **KW)
    source = CountingFrames(video)
    out = track_queries(model, params, source, q, max_memory_mb=max_memory_mb, **KW)
    for a, b in zip(ref, out):
        np.testing.assert_array_equal(a, b)
    held = max(e - s for s, e in source.reads)  # a window, or an encoder chunk of frames
    assert held <= max(WINDOW, MAX_ENCODE_CHUNK) < len(video), source.reads


def test_frame_folder_and_mp4_sources(small_model, tmp_path):
    model, params = small_model
    video = _video(t=13)
    folder = video_io.write_frames(str(tmp_path / "frames"), video)
    q = _queries([0, 7])
    ref = track_queries(model, params, video, q, **KW)
    out = track_queries(model, params, open_video(folder), q, **KW)
    for a, b in zip(ref, out):
        np.testing.assert_array_equal(a, b)
    # An mp4 decodes lossy, but the same frames whether read whole or window by window, also
    # going back (a backward segment reopens the file).
    path = video_io.write_video(str(tmp_path / "v.mp4"), video, fps=10)
    whole = video_io.read_video(path)
    src = open_video(path)
    assert len(src) == len(whole) == 13
    for s, e in [(0, 6), (5, 11), (10, 13), (2, 4), (3, 9)]:
        np.testing.assert_array_equal(src.read(s, e), whole[s:e])
    back = FrameView(src, 8, step=-1)
    np.testing.assert_array_equal(back.read(0, 9), whole[8::-1])
    np.testing.assert_array_equal(FrameView(src, 2, resize_to=(64, 64)).read(0, 3),
                                  video_io.resize_video(whole[2:5], (64, 64)))


def test_track_video_streams_from_disk_and_writes_all_frames(small_model, tmp_path, monkeypatch):
    from objtrack_jax import video_tracking

    model, params = small_model
    video = _video(t=11, h=96, w=112)  # resized to the 128x128 model input
    folder = video_io.write_frames(str(tmp_path / "in"), video)
    reads = []
    real = video_io.FolderFrames._read
    monkeypatch.setattr(video_io.FolderFrames, "_read",
                        lambda self, s, e: (reads.append(e - s), real(self, s, e))[1])
    res = video_tracking.track_video(model, params, folder, str(tmp_path / "out.mp4"), grid=3,
                                     resolution=(128, 128), window=WINDOW, iters=1, progress=False,
                                     echo=None)
    assert max(reads) <= max(WINDOW, video_tracking.DRAW_BLOCK) < 64
    assert video_io.read_video(res["video"]).shape == (11, 96, 112, 3)
    tracks, visible, _ = track_queries(model, params, video, np.load(res["npz"])["query_points"],
                                       window=WINDOW, iters=1, resize_to=(128, 128), progress=False)
    np.testing.assert_array_equal(np.load(res["npz"])["tracks"], tracks)
    np.testing.assert_array_equal(np.load(res["npz"])["visible"], visible)
