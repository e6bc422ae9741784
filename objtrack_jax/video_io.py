"""Reading and writing videos as uint8 RGB arrays [T, H, W, 3] (OpenCV under the hood).

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
      uint8 [T, H, W, 3] RGB.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: unreadable file, zero frames, a corrupt or truncated frame image (named), frames
        of different sizes in a folder, or (``strict``) fewer decoded frames than the header says.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
    _check_exists(path)
    frames = []
    if os.path.isdir(path):
        files = list_frame_files(path)[::stride]
        if max_frames is not None:
            files = files[:max_frames]
        first_shape = None
        for file in files:
            frame = _read_image_rgb(file)
            if first_shape is None:
                first_shape = (frame.shape, file)
            elif frame.shape != first_shape[0]:
                raise ValueError(
                    f"frame {file!r} is {frame.shape[1]}x{frame.shape[0]} but {first_shape[1]!r} is "
                    f"{first_shape[0][1]}x{first_shape[0][0]}: frames in a video folder must share one size")
            frames.append(_resize(frame, resize_to))
    else:
        capture = cv2.VideoCapture(path)
        if not capture.isOpened():
            raise ValueError(f"cannot open video {path!r} (not a video, or codec unsupported by OpenCV)")
        header_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        index, ran_out = 0, False
        try:
            while max_frames is None or len(frames) < max_frames:
                if index % stride == 0:
                    ok, frame = capture.read()
                    if not ok:
                        ran_out = True
                        break
                    frames.append(_resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), resize_to))
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
            log.warning("%s; continuing with the %d decoded frames", message, len(frames))
    if not frames:
        raise ValueError(f"video {path!r} has zero readable frames")
    return np.stack(frames)


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


def write_video(path: str, frames, fps: float = 24.0, fourcc: str = "mp4v") -> str:
    """Writes uint8 RGB frames [T, H, W, 3] to a video file (OpenCV, ``fourcc`` default 'mp4v').

    Non-uint8 input is rounded and clipped to [0, 255]; [T, H, W] is treated as grayscale. Odd
    heights/widths are padded by one edge-replicated row/column (MPEG-4 needs even sizes). If the
    codec is unavailable (the writer does not open, or the file comes out missing or empty), a
    warning is logged and the frames are written as PNGs into the folder ``<path without
    extension>_frames`` instead. Returns the path actually written (file or folder); both are
    readable with :func:`read_video`.
    """
    frames = _as_uint8_frames(frames)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:  # MPEG-4 encoders silently crop odd sizes; pad instead
        log.warning("padding %dx%d frames to even size for %r (edge-replicated last row/column)",
                    width, height, path)
        frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), float(fps), (width, height))
    opened = writer.isOpened()
    if opened:
        try:
            for frame in frames:
                writer.write(np.ascontiguousarray(frame[..., ::-1]))  # RGB -> BGR
        finally:
            writer.release()
    if opened and os.path.isfile(path) and os.path.getsize(path) > 0:
        return path
    folder = os.path.splitext(path)[0] + "_frames"
    log.warning("OpenCV could not write %r with fourcc %r; writing %d PNG frames to %r instead",
                path, fourcc, len(frames), folder)
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        os.remove(path)
    return write_frames(folder, frames)
