"""Reading and writing videos as uint8 RGB arrays [T, H, W, 3] (OpenCV; H.264 output through the
ffmpeg that imageio-ffmpeg ships).

A "video" is either a container file readable by OpenCV (.mp4, .avi, .mov, .mkv, ...) or a folder of
frames (.jpg/.jpeg/.png/.bmp), taken in natural-sort order of their file names (``frame_2`` before
``frame_10``). Errors always name the offending file.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Sequence

import cv2
import numpy as np

log = logging.getLogger(__name__)

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_frame_files(folder: str) -> list[str]:
    """Frame image paths inside ``folder`` (non-recursive), natural-sorted; raises if there are none."""
    names = [n for n in os.listdir(folder) if n.lower().endswith(FRAME_EXTENSIONS)]
    if not names:
        raise ValueError(f"video folder {folder!r} holds no frames (expected {', '.join(FRAME_EXTENSIONS)})")
    return [os.path.join(folder, n) for n in sorted(names, key=_natural_key)]


def _check_exists(path: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"video not found: {path!r}")


def check_image_bytes(path: str, data: bytes) -> None:
    """Raises ValueError naming ``path`` when a JPEG or PNG is empty or truncated.

    OpenCV decodes a truncated JPEG as a partly grey image (libjpeg only prints "Premature end of
    JPEG file") and may do the same for PNG, so the end-of-image markers are checked here: a JPEG
    must end with EOI (``FF D9``, trailing padding allowed) and a PNG with its ``IEND`` chunk.
    """
    if not data:
        raise ValueError(f"{path}: empty image file (0 bytes)")
    if data[:3] == b"\xff\xd8\xff":  # JPEG
        if b"\xff\xd9" not in data[-64:].rstrip(b"\x00\n\r "):
            raise ValueError(f"{path}: truncated JPEG ({len(data)} bytes; no end-of-image marker)")
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        if b"IEND" not in data[-16:]:
            raise ValueError(f"{path}: truncated PNG ({len(data)} bytes; no IEND chunk)")


def read_image(path: str, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """Decodes an image file with OpenCV (``flags`` as ``cv2.imread``; BGR channel order).

    Raises:
      FileNotFoundError: no such file.
      ValueError: an empty, truncated (JPEG/PNG, :func:`check_image_bytes`) or undecodable file.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path}: image file not found") from e
    check_image_bytes(path, data)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None or image.size == 0:
        raise ValueError(f"{path}: could not decode image (corrupt or unsupported format)")
    return image


def _read_image_rgb(path: str) -> np.ndarray:
    return cv2.cvtColor(read_image(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)  # 3-channel 8-bit


def resize_video(video: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """``[T, H, W, C]`` → ``[T, h, w, C]`` with OpenCV bilinear; dtype kept (uint8 or float32).

    The one frame resizer of the project (``tracking.resize_video``, the readers, the TFDS
    builder); coordinates follow with ``W_new/W_old``, ``H_new/H_old`` (docs/conventions.md).
    """
    video = np.asarray(video)
    h, w = (int(s) for s in size)
    if video.shape[1:3] == (h, w):
        return video
    dtype = np.uint8 if video.dtype == np.uint8 else np.float32
    out = np.empty((video.shape[0], h, w, video.shape[3]), dtype)
    for i in range(video.shape[0]):
        out[i] = cv2.resize(video[i].astype(dtype, copy=False), (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def _resize(frame: np.ndarray, resize_to: Sequence[int] | None) -> np.ndarray:
    return frame if resize_to is None else resize_video(frame[None], resize_to)[0]


def _open_capture(path: str):
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise ValueError(f"cannot open video {path!r} (not a video, or codec unsupported by OpenCV)")
    return capture


def _iter_file_frames(path: str, stride: int = 1, max_frames: int | None = None,
                      strict: bool = False, decode: bool = True):
    """Frames of a video file in order (every ``stride``-th, at most ``max_frames``): RGB uint8
    ``[H, W, 3]``, or None for each when ``decode`` is False (counting only). The one decode loop
    (:func:`read_video`, :class:`VideoFileFrames`); a file that decodes fewer frames than its header
    reports warns naming both counts, or (``strict``) raises."""
    capture = _open_capture(path)
    header_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    index, kept, ran_out = 0, 0, False
    try:
        while max_frames is None or kept < max_frames:
            if index % stride == 0:
                ok = capture.grab()
                frame = None
                if ok and decode:
                    ok, frame = capture.retrieve()
                if not ok:
                    ran_out = True
                    break
                kept += 1
                yield None if frame is None else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            elif not capture.grab():  # skip without decoding to RGB
                ran_out = True
                break
            index += 1
    finally:
        capture.release()
    if ran_out and 0 < index < header_count:
        message = (f"video {path!r}: decoded {index} frames but its header reports "
                   f"{header_count} (truncated or corrupt file?)")
        if strict:
            raise ValueError(message + "; refusing to continue (strict)")
        log.warning("%s; continuing with the %d decoded frames", message, kept)


def read_video(path: str, max_frames: int | None = None, resize_to: Sequence[int] | None = None,
               stride: int = 1, strict: bool = False) -> np.ndarray:
    """Reads a video file or a folder of frames.

    Args:
      path: video file or folder of frame images.
      max_frames: keep at most this many frames (counted after striding); None = all.
      resize_to: optional (H, W); frames are resized with OpenCV bilinear (``INTER_LINEAR``).
      stride: keep frames 0, stride, 2·stride, ...
      strict: a video file that decodes fewer frames than its header reports is an error instead
        of a warning (both name the two counts).

    Returns:
      uint8 [T, H, W, 3] RGB. (:func:`open_video` reads the same frames lazily, a window at a time.)

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: unreadable file, zero frames, a corrupt or truncated frame image (named), frames
        of different sizes in a folder, or (``strict``) fewer decoded frames than the header says.
    """
    _check_read_args(path, stride, max_frames)
    frames = []
    if os.path.isdir(path):
        files = _folder_files(path, stride, max_frames)
        first_shape = None
        for file in files:
            frame = _read_image_rgb(file)
            first_shape = _check_same_size(frame, file, first_shape)
            frames.append(_resize(frame, resize_to))
    else:
        frames = [_resize(f, resize_to) for f in _iter_file_frames(path, stride, max_frames, strict)]
    if not frames:
        raise ValueError(f"video {path!r} has zero readable frames")
    return np.stack(frames)


def _check_read_args(path: str, stride: int, max_frames: int | None) -> None:
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
    _check_exists(path)


def _folder_files(path: str, stride: int, max_frames: int | None) -> list[str]:
    files = list_frame_files(path)[::stride]
    return files if max_frames is None else files[:max_frames]


def _check_same_size(frame: np.ndarray, file: str, first: tuple | None) -> tuple:
    """``(shape, file)`` of the first frame; ValueError naming both files on a size mismatch."""
    if first is None:
        return frame.shape, file
    if frame.shape != first[0]:
        raise ValueError(
            f"frame {file!r} is {frame.shape[1]}x{frame.shape[0]} but {first[1]!r} is "
            f"{first[0][1]}x{first[0][0]}: frames in a video folder must share one size")
    return first


# --------------------------------------------------------------------------------------------------
# Frame sources: a video read a window at a time (streaming; memory flat in the video's length)
# --------------------------------------------------------------------------------------------------


class FrameSource:
    """A video whose frames are read on demand: ``len``, ``shape`` ``(T, H, W, 3)``, ``dtype`` and
    ``read(start, end)`` → ``[end - start, H, W, 3]`` (frames ``start .. end-1``, a new or a
    read-only array). The long-video engine and :func:`objtrack_jax.tracking.track_queries` read
    windows from it, so at most a window (or an encoder chunk) of frames is held at once.
    Subclasses set ``shape`` and ``dtype`` and implement ``_read``."""

    shape: tuple
    dtype = np.dtype(np.uint8)

    def __len__(self) -> int:
        return int(self.shape[0])

    def read(self, start: int, end: int) -> np.ndarray:
        start, end = int(start), int(end)
        if not 0 <= start < end <= len(self):
            raise IndexError(f"frames [{start}, {end}) outside a video of {len(self)} frames")
        return self._read(start, end)

    def _read(self, start: int, end: int) -> np.ndarray:
        raise NotImplementedError


class ArrayFrames(FrameSource):
    """An in-memory ``[T, H, W, 3]`` array as a :class:`FrameSource` (reads are views)."""

    def __init__(self, array):
        self.array = np.asarray(array)
        if self.array.ndim != 4 or self.array.shape[-1] != 3:
            raise ValueError(f"video must be [T, H, W, 3] RGB, got shape {self.array.shape}")
        self.shape, self.dtype = self.array.shape, self.array.dtype

    def _read(self, start, end):
        return self.array[start:end]


class FrameView(FrameSource):
    """Frames ``start, start + step, ...`` of ``source`` (``step`` 1 or -1; ``stop`` exclusive,
    default the end in that direction), optionally resized to ``resize_to`` (H, W) with
    :func:`resize_video` as they are read. ``FrameView(src, t, step=-1)`` is frames t, t-1, .., 0."""

    def __init__(self, source: FrameSource, start: int = 0, stop: int | None = None, step: int = 1,
                 resize_to: Sequence[int] | None = None):
        if step not in (1, -1):
            raise ValueError(f"step must be 1 or -1, got {step}")
        self.source, self.start, self.step = source, int(start), step
        stop = (len(source) if step == 1 else -1) if stop is None else int(stop)
        length = (stop - self.start) * step
        if not 0 <= self.start < len(source) or length < 1 or not -1 <= stop <= len(source):
            raise ValueError(f"frames {start}:{stop}:{step} of a video of {len(source)} frames")
        self.size = None if resize_to is None else tuple(int(s) for s in resize_to)
        hw = tuple(source.shape[1:3]) if self.size is None else self.size
        self.shape = (length,) + hw + tuple(source.shape[3:])
        self.dtype = source.dtype if self.size is None or source.dtype == np.uint8 else np.dtype(np.float32)

    def _read(self, start, end):
        if self.step == 1:
            frames = self.source.read(self.start + start, self.start + end)
        else:
            frames = self.source.read(self.start - end + 1, self.start - start + 1)[::-1]
        return frames if self.size is None else resize_video(frames, self.size)


class FolderFrames(FrameSource):
    """A folder of frame images (natural-sorted, as :func:`read_video`), decoded when read. Every
    file's bytes are checked for truncation when the source is opened (nothing is kept)."""

    def __init__(self, path: str, max_frames: int | None = None, stride: int = 1):
        _check_read_args(path, stride, max_frames)
        self.path, self.files = path, _folder_files(path, stride, max_frames)
        for file in self.files:  # truncated / empty images named before any work
            with open(file, "rb") as f:
                check_image_bytes(file, f.read())
        first = _read_image_rgb(self.files[0])
        self._first = (first.shape, self.files[0])
        self.shape = (len(self.files),) + first.shape

    def _read(self, start, end):
        out = np.empty((end - start,) + self.shape[1:], np.uint8)
        for i in range(start, end):
            frame = _read_image_rgb(self.files[i])
            _check_same_size(frame, self.files[i], self._first)
            out[i - start] = frame
        return out


class VideoFileFrames(FrameSource):
    """A video file decoded sequentially as windows are read. Opening counts the frames (one pass
    that decodes without converting; the header's count is not trusted, truncation warns or, with
    ``strict``, raises as in :func:`read_video`). Reads that go forward continue the decoder; the
    last block read is kept, so overlapping windows (one frame) decode nothing twice; a read before
    the decoder's position reopens the file and skips forward (exact, slower: backward segments)."""

    def __init__(self, path: str, max_frames: int | None = None, stride: int = 1,
                 strict: bool = False):
        _check_read_args(path, stride, max_frames)
        self.path, self.stride, self.max_frames = path, stride, max_frames
        count = sum(1 for _ in _iter_file_frames(path, stride, max_frames, strict, decode=False))
        if count == 0:
            raise ValueError(f"video {path!r} has zero readable frames")
        first = next(iter(self._frames()))
        self.shape = (count,) + first.shape
        self._iter, self._next = None, 0
        self._block = (0, np.empty((0,) + first.shape, np.uint8))
        self.reopens = 0

    def _frames(self):
        return _iter_file_frames(self.path, self.stride, self.max_frames)

    def _read(self, start, end):
        b0, block = self._block
        out = np.empty((end - start,) + self.shape[1:], np.uint8)
        have = 0  # frames start .. start+have-1 taken from the kept block
        if b0 <= start < b0 + len(block):
            have = min(end, b0 + len(block)) - start
            out[:have] = block[start - b0:start - b0 + have]
        pos = start + have
        if pos < end:
            if self._iter is None or pos < self._next:
                self._iter, self._next = self._frames(), 0
                self.reopens += 1
            for frame in self._iter:
                self._next += 1
                if self._next - 1 >= pos:
                    out[self._next - 1 - start] = frame
                    if self._next == end:
                        break
        self._block = (start, out)
        return out


def open_video(path: str, max_frames: int | None = None, stride: int = 1,
               strict: bool = False) -> FrameSource:
    """A :class:`FrameSource` over a video file or folder of frames: the frames of
    :func:`read_video` (same arguments, no resize), read lazily."""
    _check_exists(path)
    if os.path.isdir(path):
        return FolderFrames(path, max_frames, stride)
    return VideoFileFrames(path, max_frames, stride, strict)


def as_frame_source(video) -> FrameSource:
    """``video`` itself when it is a :class:`FrameSource`, else :class:`ArrayFrames` of it."""
    return video if isinstance(video, FrameSource) else ArrayFrames(video)


def video_info(path: str) -> dict:
    """Basic facts about a video without decoding it all.

    Returns a dict with ``kind`` ('file' or 'folder'), ``num_frames``, ``height``, ``width`` and
    ``fps`` (None for a folder). For files ``num_frames`` is what the container reports (OpenCV
    ``CAP_PROP_FRAME_COUNT``), which for some containers is approximate.
    """
    _check_exists(path)
    if os.path.isdir(path):
        files = list_frame_files(path)
        height, width = _read_image_rgb(files[0]).shape[:2]
        return {"kind": "folder", "num_frames": len(files), "height": height, "width": width, "fps": None}
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise ValueError(f"cannot open video {path!r} (not a video, or codec unsupported by OpenCV)")
    try:
        info = {
            "kind": "file",
            "num_frames": int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
            "height": int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            "width": int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "fps": float(capture.get(cv2.CAP_PROP_FPS)) or None,
        }
    finally:
        capture.release()
    if info["num_frames"] <= 0 and info["width"] <= 0:
        raise ValueError(f"video {path!r} reports no frames")
    return info


def _as_uint8_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 3:  # [T, H, W] grayscale
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be [T>0, H, W, 3] (or [T, H, W]), got {frames.shape}")
    if frames.dtype != np.uint8:
        frames = np.clip(np.round(frames.astype(np.float64)), 0, 255).astype(np.uint8)
    return frames


def write_frames(folder: str, frames) -> str:
    """Writes frames as ``folder/frame_00000.png``, ... (RGB in, lossless); returns ``folder``."""
    frames = _as_uint8_frames(frames)
    os.makedirs(folder, exist_ok=True)
    for i, frame in enumerate(frames):
        file = os.path.join(folder, f"frame_{i:05d}.png")
        if not cv2.imwrite(file, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write frame image {file!r}")
    return folder


H264_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv")
_warned_no_h264: set = set()


def h264_encoder():
    """``(ffmpeg executable, None)`` when H.264 encoding is available (imageio-ffmpeg and its
    bundled ffmpeg, or ``IMAGEIO_FFMPEG_EXE``), else ``(None, reason)``."""
    try:
        import imageio_ffmpeg  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None, "imageio-ffmpeg is not installed (pip install imageio-ffmpeg)"
    try:
        return imageio_ffmpeg.get_ffmpeg_exe(), None
    except RuntimeError as e:  # no bundled binary for this platform and none on PATH
        return None, f"imageio-ffmpeg found no ffmpeg executable ({e})"


def _warn_no_h264(path: str, reason: str) -> None:
    if reason not in _warned_no_h264:  # once per reason and process
        _warned_no_h264.add(reason)
        log.warning("writing %r as MPEG-4 Part 2 ('mp4v', OpenCV), which VLC and ffplay play but "
                    "web browsers and Colab do not: H.264 needs %s", path, reason)


class _H264Stream:
    """Frames piped into ffmpeg (imageio-ffmpeg's binary): H.264 (libx264, yuv420p, CRF 20) in an
    mp4 whose index is at the front (``+faststart``: browsers start playing before the end).

    ffmpeg runs in its own session (Ctrl-C reaches Python, which closes the stream) and is started
    without a Python ``preexec_fn``, so nothing runs between fork and exec in a multithreaded
    (JAX) process. Its messages go to a temporary file, read when it fails."""

    def __init__(self, exe: str, path: str, size: tuple[int, int], fps: float):
        import subprocess  # pylint: disable=import-outside-toplevel
        import tempfile  # pylint: disable=import-outside-toplevel
        from fractions import Fraction  # pylint: disable=import-outside-toplevel

        rate = Fraction(fps).limit_denominator(1001)
        cmd = [exe, "-y", "-hide_banner", "-loglevel", "error", "-f", "rawvideo",
               "-pix_fmt", "rgb24", "-s", f"{size[0]}x{size[1]}", "-r", str(rate), "-i", "-",
               "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "20", "-preset", "medium",
               "-movflags", "+faststart", path]
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=self._log, start_new_session=True)

    def _message(self) -> str:
        self._log.seek(0)
        text = self._log.read().decode(errors="replace").strip()
        return text.splitlines()[-1] if text else "no message"

    def write(self, rgb: np.ndarray) -> None:
        try:
            self._proc.stdin.write(np.ascontiguousarray(rgb).tobytes())
        except (BrokenPipeError, ValueError) as e:
            self._proc.wait()
            raise OSError(f"ffmpeg stopped (exit status {self._proc.returncode}): "
                          f"{self._message()}") from e

    def release(self) -> None:
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        code = self._proc.wait()
        try:
            if code != 0:
                raise OSError(f"ffmpeg exit status {code}: {self._message()}")
        finally:
            self._log.close()


class VideoWriter:
    """Appends uint8 RGB frames to a video file as they come (``append``), so a long annotated
    video is never held whole; ``close()`` returns the path written.

    ``fourcc=None`` (default): H.264 for ``.mp4`` / ``.m4v`` / ``.mov`` / ``.mkv`` through the
    ffmpeg that imageio-ffmpeg ships (plays in browsers, Colab, QuickTime); when that is not
    available a warning says why and OpenCV writes MPEG-4 Part 2 (``'mp4v'``) instead. Another
    extension, or an explicit ``fourcc`` (e.g. ``'mp4v'``, ``'MJPG'``), goes to OpenCV's writer.
    :attr:`codec` says what was used (``'h264'``, the fourcc, or ``'png'``).

    Same rules as :func:`write_video`: odd sizes padded by one edge-replicated row/column; when the
    codec is unavailable (the writer does not open) a warning is logged and the frames go to PNGs
    in ``<path without extension>_frames`` instead. A file that comes out missing or empty after
    writing makes ``close()`` return None (the frames are gone; :func:`write_video` then writes its
    in-memory frames again; streaming callers write again with ``as_frames=True``: PNGs only)."""

    def __init__(self, path: str, fps: float = 24.0, fourcc: str | None = None,
                 as_frames: bool = False):
        self.path, self.fps, self.fourcc, self.as_frames = path, float(fps), fourcc, as_frames
        self._writer, self._folder, self._count, self._pad = None, None, 0, None
        self.codec: str | None = None
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def _open(self, size: tuple[int, int]) -> None:
        """Picks the writer for frames of ``size`` = (width, height) (even)."""
        if self.as_frames:
            return self._open_frames()
        if self.fourcc is None and self.path.lower().endswith(H264_EXTENSIONS):
            exe, reason = h264_encoder()
            if exe is not None:
                try:
                    self._writer, self.codec = _H264Stream(exe, self.path, size, self.fps), "h264"
                    return None
                except (OSError, RuntimeError, ValueError) as e:
                    reason = f"ffmpeg did not start: {e}"
            _warn_no_h264(self.path, reason)
        fourcc = self.fourcc or "mp4v"
        writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*fourcc), self.fps, size)
        if writer is not None and writer.isOpened():
            self._writer, self.codec = writer, fourcc
            return None
        log.warning("OpenCV could not write %r with fourcc %r; writing PNG frames to %r "
                    "instead", self.path, fourcc, os.path.splitext(self.path)[0] + "_frames")
        return self._open_frames()

    def _open_frames(self) -> None:
        self._folder = os.path.splitext(self.path)[0] + "_frames"
        os.makedirs(self._folder, exist_ok=True)
        self.codec = "png"

    def append(self, frames) -> None:
        frames = _as_uint8_frames(frames)
        if self._pad is None:
            height, width = frames.shape[1:3]
            self._pad = (height % 2, width % 2)
            if any(self._pad):  # H.264 (yuv420p) and MPEG-4 need even sizes; pad, never crop
                log.warning("padding %dx%d frames to even size for %r (edge-replicated last "
                            "row/column)", width, height, self.path)
            self._open((width + self._pad[1], height + self._pad[0]))
        if any(self._pad):
            frames = np.pad(frames, ((0, 0), (0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        if isinstance(self._writer, _H264Stream):
            before = self._count
            try:
                for frame in frames:
                    self._writer.write(frame)
                    self._count += 1
                return None
            except OSError as e:
                if before > 0:  # frames of earlier calls are gone: cannot fall back
                    raise OSError(f"ffmpeg failed while writing {self.path!r}: {e}") from e
                stream, self._writer, self._count = self._writer, None, 0
                try:
                    stream.release()
                except OSError:
                    pass
                _warn_no_h264(self.path, f"an ffmpeg that runs ({e})")
                self.fourcc = "mp4v"  # the first frames are still here: OpenCV takes over
                self._open((frames.shape[2], frames.shape[1]))
        for frame in frames:
            if self._writer is not None:
                self._writer.write(np.ascontiguousarray(frame[..., ::-1]))  # RGB -> BGR
            else:
                file = os.path.join(self._folder, f"frame_{self._count:05d}.png")
                if not cv2.imwrite(file, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)):
                    raise OSError(f"cannot write frame image {file!r}")
            self._count += 1

    def close(self) -> str | None:
        if self._folder is not None:
            return self._folder
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                writer.release()
            except (OSError, RuntimeError) as e:  # ffmpeg exited with an error
                log.warning("ffmpeg failed to finish %r: %s", self.path, e)
                if os.path.isfile(self.path):
                    os.remove(self.path)
        if os.path.isfile(self.path) and os.path.getsize(self.path) > 0:
            return self.path
        if os.path.isfile(self.path):
            os.remove(self.path)
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_video(path: str, frames, fps: float = 24.0, fourcc: str | None = None) -> str:
    """Writes uint8 RGB frames [T, H, W, 3] to a video file: H.264 for .mp4/.m4v/.mov/.mkv with
    imageio-ffmpeg's ffmpeg (default ``fourcc=None``), else OpenCV with ``fourcc`` (``'mp4v'``
    when None; see :class:`VideoWriter`).

    Non-uint8 input is rounded and clipped to [0, 255]; [T, H, W] is treated as grayscale. Odd
    heights/widths are padded by one edge-replicated row/column (both codecs need even sizes). If
    H.264 is unavailable a warning says why and the file is MPEG-4 Part 2 (``'mp4v'``); if that
    fails too (the writer does not open, or the file comes out missing or empty), a warning is
    logged and the frames are written as PNGs into the folder ``<path without extension>_frames``
    instead. Returns the path actually written (file or folder); both are readable with
    :func:`read_video`. (:class:`VideoWriter` writes frames as they come.)
    """
    frames = _as_uint8_frames(frames)
    writer = VideoWriter(path, fps, fourcc)
    writer.append(frames)
    written = writer.close()
    if written is not None:
        return written
    if writer.codec == "h264":  # ffmpeg failed at the end: try OpenCV's MPEG-4 Part 2
        _warn_no_h264(path, "an ffmpeg that finishes the file (see the warning above)")
        writer = VideoWriter(path, fps, "mp4v")
        writer.append(frames)
        written = writer.close()
        if written is not None:
            return written
    folder = os.path.splitext(path)[0] + "_frames"
    log.warning("OpenCV could not write %r with fourcc %r; writing %d PNG frames to %r instead",
                path, fourcc or "mp4v", len(frames), folder)
    return write_frames(folder, frames)
