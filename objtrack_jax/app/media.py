"""The videos of ``objtrack app``: opening a video and writing its frame previews, the generated
example scenes, and drawing the result video (the methods side by side, H.264).

The calls into the rest of the library (video reading and writing, drawing, the real-photo
scenes) are each isolated in one small function here; :mod:`objtrack_jax.app.engine` checks and
runs the page's requests on top of them.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional

import numpy as np

from objtrack_jax.video_io import FrameSource

PREVIEW_MAX_WIDTH = 960  # the slider's JPEGs; clicks are mapped back to the video's own pixels
PREVIEW_QUALITY = 90
PANEL_MAX_WIDTH = 1920  # the result video's width with every panel side by side
PANEL_GAP = 6
PANEL_MIN_WIDTH = 480  # small videos are enlarged in the result so that the markers show
EXAMPLE_FRAMES = 24
EXAMPLE_SIZE = (192, 256)
EXAMPLE_FPS = 12.0
BASELINE_NAMES = {"lk": "Lucas-Kanade", "dis": "DIS flow"}
PALETTE = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0",
           "#f032e6", "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8")


class AppError(ValueError):
    """Input the app refuses (not a video, a point outside the frame, a setting out of range, a
    run over the memory budget, ...); the message says what and why, and is shown in the page."""


@dataclasses.dataclass
class OpenedVideo:
    """A video the page works on. ``path``: the file or folder of frames tracked; ``previews``:
    one JPEG per frame (``%06d.jpg``, at most :data:`PREVIEW_MAX_WIDTH` wide)."""

    id: str
    name: str
    path: str
    num_frames: int
    height: int
    width: int
    fps: float
    previews: str
    note: str = ""

    def public(self) -> dict:
        return {"id": self.id, "name": self.name, "num_frames": self.num_frames,
                "height": self.height, "width": self.width, "fps": self.fps, "note": self.note}


def require_h264() -> None:
    """SystemExit with one line when videos cannot be written as H.264 (the format that every
    browser plays)."""
    from objtrack_jax.video_io import h264_encoder

    exe, reason = h264_encoder()
    if exe is None:
        raise SystemExit(f"objtrack app writes its result videos as H.264, which needs imageio-ffmpeg "
                         f"(part of the core install): {reason}")


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def open_frames(path: str, max_frames: Optional[int] = None):
    """A :class:`~objtrack_jax.video_io.FrameSource` over a video file or folder of frames."""
    from objtrack_jax.video_io import open_video

    return open_video(path, max_frames=max_frames)


def source_fps(path: str) -> Optional[float]:
    from objtrack_jax.video_io import video_info

    try:
        return video_info(path).get("fps") if os.path.isfile(path) else None
    except (ValueError, OSError):
        return None


def source_frame_count(path: str) -> Optional[int]:
    """The frame count a container reports (approximate for some formats), or None."""
    from objtrack_jax.video_io import video_info

    try:
        n = video_info(path).get("num_frames")
        return int(n) if n and n > 0 else None
    except (ValueError, OSError):
        return None


def write_previews(source: FrameSource, folder: str) -> None:
    """One JPEG per frame of ``source`` into ``folder`` (``%06d.jpg``, at most
    :data:`PREVIEW_MAX_WIDTH` wide); a frame that does not decode is an ``OSError`` or
    ``ValueError`` (OpenCV's ``cv2.error`` is one)."""
    import cv2

    num_frames, height, width = (int(v) for v in source.shape[:3])
    scale = min(1.0, PREVIEW_MAX_WIDTH / width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    for start in range(0, num_frames, 16):
        block = source.read(start, min(start + 16, num_frames))
        for i, frame in enumerate(block):
            if scale < 1:
                frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            ok, jpg = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]),
                                   [cv2.IMWRITE_JPEG_QUALITY, PREVIEW_QUALITY])
            if not ok:
                raise OSError(f"cannot encode preview of frame {start + i}")
            with open(os.path.join(folder, f"{start + i:06d}.jpg"), "wb") as f:
                f.write(jpg.tobytes())


def short_read_note(name: str, path: str, num_frames: int, max_frames: int) -> str:
    """What the page says about a video that gave fewer frames than it has: cut at
    ``max_frames``, or a file that decodes fewer frames than its header reports (a truncated or
    damaged file, e.g. an upload cut off; ``name`` as the page shows it); empty when neither."""
    reported = source_frame_count(path) if os.path.isfile(path) else None
    if num_frames >= max_frames and (reported is None or reported > num_frames):
        return (f"only the first {num_frames} frames are used" + (f" of about {reported}"
                if reported else "") + " (objtrack app --max-frames)")
    if reported is not None and num_frames < reported:
        return (f"{name}: only {num_frames} of the {reported} frames its header "
                "reports could be decoded (the file is truncated or damaged, e.g. an upload cut "
                f"off); the {num_frames} frames are used")
    return ""


class CountingFrames(FrameSource):
    """``source`` read through unchanged, calling ``on_read(frames read so far)`` after each read
    (the progress bar, and the run's cancel check)."""

    def __init__(self, source: FrameSource, on_read: Callable[[int], None]):
        self.source, self.on_read, self.count = source, on_read, 0
        self.shape, self.dtype = source.shape, source.dtype

    def _read(self, start, end):
        out = self.source.read(start, end)
        self.count += end - start
        self.on_read(self.count)
        return out


def example_frames(index: int) -> np.ndarray:
    """A generated real-photo scene (the evaluation photos under camera and object motion, as
    ``objtrack demo`` makes them): uint8 ``[EXAMPLE_FRAMES, 192, 256, 3]``. Without the ``[data]``
    extra: an :class:`AppError` naming it."""
    from objtrack_jax.extras import as_missing_extra

    try:
        from objtrack_jax.data_pipelines import real_scenes, synthetic

        seed = synthetic.sequence_seed(0, "demo", int(index))
        return real_scenes.generate_sequence(seed, frames=EXAMPLE_FRAMES, size=EXAMPLE_SIZE,
                                             num_points=16, photos="eval")["rgbs"]
    except ModuleNotFoundError as e:
        missing = as_missing_extra(e)
        if missing is None:
            raise
        raise AppError(f"the example scene: {missing}; or open a video of your own") from None


# --------------------------------------------------------------------------------------------------
# The result video
# --------------------------------------------------------------------------------------------------


def point_colours(n: int) -> np.ndarray:
    """uint8 ``[n, 3]`` RGB: point ``i`` gets ``PALETTE[i % len(PALETTE)]``, the colour of its
    marker and row in the page, in every panel of the result video."""
    rgb = [tuple(int(c[k:k + 2], 16) for k in (1, 3, 5)) for c in PALETTE]
    return np.asarray([rgb[i % len(rgb)] for i in range(n)], np.uint8)


def draw_panel(frames: np.ndarray, tracks: np.ndarray, visible: Optional[np.ndarray], colours,
               start: int) -> np.ndarray:
    """Frames ``start ..`` of a video with ``[n, T, 2]`` tracks drawn (markers of about 1/64 of
    the short side: filled where visible, hollow where occluded; 8 frames of tail)."""
    from objtrack_jax import viz

    radius = max(3, round(min(frames.shape[1:3]) / 64))
    return viz.draw_tracks(frames, tracks, visible, tail=8, radius=radius, colors=colours,
                           start=start, layout="NT")


def draw_label(image: np.ndarray, text: str, x0: int) -> None:
    """``text`` in white on black at the top left of the panel starting at column ``x0``."""
    import cv2

    scale = max(0.4, image.shape[0] / 640)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(image, (x0, 0), (x0 + w + 8, h + base + 8), (0, 0, 0), -1)
    cv2.putText(image, text, (x0 + 4, h + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                cv2.LINE_AA)


def h264_writer(path: str, fps: float):
    """A :class:`~objtrack_jax.video_io.VideoWriter` for an H.264 mp4 (``append`` / ``close``)."""
    from objtrack_jax.video_io import VideoWriter

    return VideoWriter(path, fps)


def append_h264(writer, frames: np.ndarray) -> None:
    """``writer.append(frames)``; OSError unless the writer encodes H.264 (a video in another
    codec would not play in the page)."""
    writer.append(frames)
    if writer.codec != "h264":
        writer.close()
        raise OSError(f"{writer.path}: the result video could not be encoded as H.264 (written as "
                      f"{writer.codec!r} instead, which browsers do not play; the server log says "
                      "why)")


def write_result_video(path: str, video: OpenedVideo, methods, max_frames: int,
                       report: Callable[[float], None]) -> str:
    """The methods (``(name, tracks [n, T, 2], visible or None)``, the model first) side by side,
    each panel labelled when there are several, as H.264; ``report(fraction)`` per block."""
    import cv2

    colours = point_colours(len(methods[0][1]))
    k = len(methods)
    # Panels enlarged to PANEL_MIN_WIDTH when small, shrunk to fit PANEL_MAX_WIDTH in all.
    scale = min(max(1.0, PANEL_MIN_WIDTH / video.width),
                (PANEL_MAX_WIDTH - (k - 1) * PANEL_GAP) / (k * video.width))
    pw, ph = max(2, round(video.width * scale)), max(2, round(video.height * scale))
    sx, sy = pw / video.width, ph / video.height
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    scaled = [(name, (tracks + 0.5) * np.float32([sx, sy]) - 0.5, visible)  # pixel centres
              for name, tracks, visible in methods]
    source = open_frames(video.path, max_frames)
    writer = h264_writer(path, video.fps)
    for start in range(0, video.num_frames, 16):
        frames = source.read(start, min(start + 16, video.num_frames))
        if (pw, ph) != (video.width, video.height):
            frames = np.stack([cv2.resize(f, (pw, ph), interpolation=interp) for f in frames])
        canvas = np.zeros((len(frames), ph, k * pw + (k - 1) * PANEL_GAP, 3), np.uint8)
        for j, (name, tracks, visible) in enumerate(scaled):
            x0 = j * (pw + PANEL_GAP)
            canvas[:, :, x0:x0 + pw] = draw_panel(frames, tracks, visible, colours, start)
            if k > 1:
                for f in canvas:
                    draw_label(f, BASELINE_NAMES.get(name, name), x0)
        append_h264(writer, canvas)
        report(min(1.0, (start + len(frames)) / video.num_frames))
    written = writer.close()
    if written != path or writer.codec != "h264":
        raise OSError(f"{path}: the H.264 encoder did not finish the video (the server log "
                      "says why)")
    return written
