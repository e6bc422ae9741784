"""Drawing point tracks on video frames (numpy + OpenCV).

Conventions: frames uint8 RGB [T, H, W, 3]; tracks ``[N, T, 2]`` as (x, y) pixels with x = 0 the
centre of the first column, the layout of :func:`objtrack_jax.tracking.track_queries` and tapnet;
``visible`` bool ``[N, T]`` (None = all visible). A layout that cannot be told apart is refused
rather than guessed: when N == T, pass ``layout='NT'`` (or ``'TN'`` for time-major ``[T, N, 2]``
arrays); without a hint, tracks whose second axis is not the video's length but whose first is are
refused as time-major. Points that are non-finite or far outside the image are skipped. Each point keeps one colour for the whole video, picked from its
initial position (first visible frame) on a hue wheel around the image centre, so neighbouring
points get similar colours and the colouring does not depend on the order of the points.
"""

from __future__ import annotations

import os
from typing import Sequence

import cv2
import numpy as np

_SHIFT = 4  # OpenCV fixed-point bits: sub-pixel accurate drawing
_ONE = 1 << _SHIFT


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Vectorised HSV→RGB, all channels in [0, 1]; [..., 3] → [..., 3] float."""
    h, s, v = np.moveaxis(np.asarray(hsv, np.float64), -1, 0)
    k = np.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], axis=-1)
    return v[..., None] - (v * s)[..., None] * np.clip(np.minimum(k, 4 - k), 0.0, 1.0)


LAYOUTS = ("NT", "TN")


def _check_inputs(tracks, visible, num_frames: int | None = None, layout: str | None = None,
                  min_frames: int | None = None):
    """``tracks`` ``[N, T, 2]`` (or ``[T, N, 2]`` with ``layout='TN'``) and ``visible`` → the
    drawing code's time-major ``[T, N, 2]`` float64 and ``[T, N]`` bool (module docstring for
    the rule on ambiguous layouts). ``num_frames``: the video's length, when known;
    ``min_frames``: the tracks must cover at least this many frames."""
    tracks = np.asarray(tracks, np.float64)
    if tracks.ndim != 3 or tracks.shape[-1] != 2:
        raise ValueError(f"tracks must be [N, T, 2] as (x, y), got {tracks.shape}")
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout must be 'NT' ([N, T, 2], the API's) or 'TN' ([T, N, 2]), got "
                         f"{layout!r}")
    a, b = tracks.shape[:2]
    if layout is None:
        if a == b:
            raise ValueError(f"tracks {tracks.shape} are ambiguous (N == T == {a}): pass "
                             "layout='NT' for [N, T, 2] (the tracking API's layout) or 'TN' for "
                             "[T, N, 2]")
        if (num_frames is not None and b != num_frames and a == num_frames) or (
                min_frames is not None and b < min_frames <= a):
            raise ValueError(f"tracks {tracks.shape} look time-major [T, N, 2] for a video of "
                             f"{num_frames or min_frames} frames; pass [N, T, 2] (the tracking API's layout; "
                             "objtrack_jax.inference.to_point_major) or layout='TN'")
        layout = "NT"
    if layout == "NT":
        tracks = np.swapaxes(tracks, 0, 1)
    t, n = tracks.shape[:2]
    if num_frames is not None and t != num_frames:
        raise ValueError(f"tracks have {t} frames but the video has {num_frames}")
    if visible is None:
        return tracks, np.ones((t, n), bool)
    visible = np.asarray(visible, bool)
    want = (n, t) if layout == "NT" else (t, n)
    if visible.shape != want:
        raise ValueError(f"visible must be {want} ({'N, T' if layout == 'NT' else 'T, N'}, as "
                         f"the tracks), got {visible.shape}")
    return tracks, (visible.T if layout == "NT" else visible)


def point_colors(tracks: np.ndarray, visible: np.ndarray | None, image_size: Sequence[int],
                 layout: str | None = None) -> np.ndarray:
    """One RGB colour per point, uint8 [N, 3], from its initial position; ``tracks`` ``[N, T, 2]``,
    ``visible`` ``[N, T]`` (``layout``: module docstring).

    The initial position is the first frame where the point is visible and finite (frame 0 when it
    never is). Hue = angle around the image centre; saturation grows with the distance from the
    centre (0.45 at the centre, 1 at the corners); value 1.
    """
    tracks, visible = _check_inputs(tracks, visible, layout=layout)
    height, width = image_size
    usable = visible & np.all(np.isfinite(tracks), axis=-1)  # [T, N]
    first = np.argmax(usable, axis=0)  # 0 when never usable
    start = np.take_along_axis(tracks, first[None, :, None], axis=0)[0]  # [N, 2]
    start = np.nan_to_num(start, nan=0.0, posinf=0.0, neginf=0.0)
    dx = (start[:, 0] - (width - 1) / 2) / max(width, 1)
    dy = (start[:, 1] - (height - 1) / 2) / max(height, 1)
    hue = (np.arctan2(dy, dx) / (2 * np.pi)) % 1.0
    sat = 0.45 + 0.55 * np.clip(np.hypot(dx, dy) / np.hypot(0.5, 0.5), 0.0, 1.0)
    rgb = hsv_to_rgb(np.stack([hue, sat, np.ones_like(hue)], axis=-1))
    return np.round(255 * rgb).astype(np.uint8)


def default_radius(image_size: Sequence[int]) -> int:
    """Marker radius in pixels for an (H, W) frame: 2 px for small frames, ~min(H, W)/150 for large."""
    return max(2, int(round(min(image_size) / 150)))


def _fixed(points: np.ndarray) -> np.ndarray:
    """(x, y) → OpenCV fixed-point ints; non-finite/huge entries become 0 (callers skip them)."""
    points = np.where(np.abs(points) < 1e9, points, 0.0)  # also false for nan
    return np.round(points * _ONE).astype(np.int64)


def _drawable(points: np.ndarray, image_size: Sequence[int]) -> np.ndarray:
    """Finite and within a generous margin of the frame (keeps OpenCV coordinates in range)."""
    height, width = image_size
    margin = 2 * max(height, width)
    return (np.all(np.isfinite(points), axis=-1)
            & (points[:, 0] > -margin) & (points[:, 0] < width + margin)
            & (points[:, 1] > -margin) & (points[:, 1] < height + margin))


def _draw_frame(frame: np.ndarray, tracks: np.ndarray, visible: np.ndarray, t: int, colors: np.ndarray,
                tail: int, radius: int, thickness: int) -> np.ndarray:
    """Annotates frame ``t`` (a copy of ``frame``) with tails from frames t−tail..t and markers at t."""
    out = np.ascontiguousarray(frame, np.uint8).copy()
    size = out.shape[:2]
    color_list = [tuple(int(c) for c in col) for col in colors]  # frames are RGB, so are colours
    # Tails, oldest (faintest) first: the segment between frames t-age and t-age+1, drawn where the
    # point is visible at both ends, blended with an opacity that fades with age.
    for age in range(min(tail, t), 0, -1):
        p0, p1 = tracks[t - age], tracks[t - age + 1]
        keep = visible[t - age] & visible[t - age + 1] & _drawable(p0, size) & _drawable(p1, size)
        idx = np.flatnonzero(keep)
        if idx.size == 0:
            continue
        layer = out.copy()
        a, b = _fixed(p0[idx]), _fixed(p1[idx])
        for j, i in enumerate(idx):
            cv2.line(layer, (int(a[j, 0]), int(a[j, 1])), (int(b[j, 0]), int(b[j, 1])), color_list[i],
                     thickness, cv2.LINE_AA, _SHIFT)
        alpha = (tail + 1 - age) / (tail + 1)
        out = cv2.addWeighted(layer, alpha, out, 1.0 - alpha, 0.0)
    # Markers: filled where visible, hollow where occluded.
    points = tracks[t]
    centers = _fixed(points)
    for i in np.flatnonzero(_drawable(points, size)):
        cv2.circle(out, (int(centers[i, 0]), int(centers[i, 1])), radius * _ONE, color_list[i],
                   -1 if visible[t, i] else max(1, thickness), cv2.LINE_AA, _SHIFT)
    return out


def draw_tracks(frames: np.ndarray, tracks: np.ndarray, visible: np.ndarray | None = None, tail: int = 8,
                radius: int | None = None, colors: np.ndarray | None = None,
                start: int = 0, layout: str | None = None) -> np.ndarray:
    """Draws point tracks on every frame.

    Args:
      frames: uint8 [T, H, W, 3] RGB (not modified); with ``start``, frames ``start ..
        start + len(frames) - 1`` of the tracks' video (drawing a long video a block at a time;
        pass ``colors`` computed from the whole tracks so that every block agrees).
      tracks: ``[N, T, 2]`` (x, y) pixels (``layout``: module docstring).
      visible: bool ``[N, T]``; None = all visible. Occluded points are drawn as hollow circles and their
        tails are interrupted (a tail segment needs the point visible at both ends).
      tail: number of past frames shown as a fading polyline (0 = markers only).
      radius: marker radius in pixels (default :func:`default_radius`).
      colors: optional uint8 [N, 3] RGB colours (default :func:`point_colors`).

    Returns:
      new uint8 [T, H, W, 3] frames.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    start = int(start)
    tracks, visible = _check_inputs(tracks, visible, None, layout,
                                    min_frames=start + frames.shape[0])
    if not 0 <= start <= tracks.shape[0] - frames.shape[0]:
        raise ValueError(f"tracks have {tracks.shape[0]} frames but the video has {frames.shape[0]}"
                         + (f" from frame {start}" if start else ""))
    size = frames.shape[1:3]
    radius = default_radius(size) if radius is None else int(radius)
    colors = (point_colors(tracks, visible, size, layout="TN") if colors is None
              else np.asarray(colors, np.uint8))
    thickness = max(1, radius // 2)
    return np.stack([_draw_frame(frames[t], tracks, visible, start + t, colors, tail, radius, thickness)
                     for t in range(frames.shape[0])])


def _label(image: np.ndarray, text: str) -> None:
    """Writes ``text`` in white on a black box at the top-left corner (in place)."""
    scale = max(0.3, image.shape[0] / 400)
    thick = max(1, int(round(scale)))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(2, h // 4)
    cv2.rectangle(image, (0, 0), (w + 2 * pad, h + base + 2 * pad), (0, 0, 0), -1)
    cv2.putText(image, text, (pad, pad + h), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                cv2.LINE_AA)


def contact_sheet(frames: np.ndarray, tracks: np.ndarray, visible: np.ndarray | None = None, num: int = 6,
                  cols: int = 3, tail: int = 8, radius: int | None = None, cell_width: int | None = None,
                  gap: int = 4, colors: np.ndarray | None = None,
                  layout: str | None = None) -> np.ndarray:
    """A grid of ``num`` evenly spaced annotated frames, each labelled with its frame index.

    Frames are picked at ``round(linspace(0, T−1, num))`` (fewer when T < num), annotated as in
    :func:`draw_tracks` (only those frames are drawn), optionally resized to ``cell_width`` pixels
    wide, and laid out row-major in ``cols`` columns separated by ``gap`` black pixels; unused cells
    stay black. ``tracks`` ``[N, T, 2]``, ``visible`` ``[N, T]`` (``layout``: module docstring).
    ``colors``: optional uint8 [N, 3] (default :func:`point_colors`). ``frames`` may
    also be a :class:`~objtrack_jax.video_io.FrameSource`: only the picked frames are read.

    Returns:
      uint8 [rows·h + (rows−1)·gap, cols'·w + (cols'−1)·gap, 3] with cols' = min(cols, #frames).
    """
    if hasattr(frames, "read"):  # a FrameSource
        source = frames
        get = lambda t: source.read(t, t + 1)[0]  # noqa: E731
    else:
        frames = np.asarray(frames)
        get = frames.__getitem__
    if len(frames.shape) != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if num < 1 or cols < 1:
        raise ValueError(f"num and cols must be >= 1, got num={num}, cols={cols}")
    tracks, visible = _check_inputs(tracks, visible, frames.shape[0], layout)
    size = frames.shape[1:3]
    radius = default_radius(size) if radius is None else int(radius)
    colors = (point_colors(tracks, visible, size, layout="TN") if colors is None
              else np.asarray(colors, np.uint8))
    indices = np.unique(np.round(np.linspace(0, frames.shape[0] - 1, num)).astype(int))
    cells = []
    for t in indices:
        cell = _draw_frame(get(int(t)), tracks, visible, int(t), colors, tail, radius, max(1, radius // 2))
        if cell_width is not None and cell_width != cell.shape[1]:
            height = max(1, int(round(cell.shape[0] * cell_width / cell.shape[1])))
            cell = cv2.resize(cell, (int(cell_width), height), interpolation=cv2.INTER_AREA)
        _label(cell, f"t={t}")
        cells.append(cell)
    cols = min(cols, len(cells))
    rows = -(-len(cells) // cols)
    h, w = cells[0].shape[:2]
    sheet = np.zeros((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), np.uint8)
    for k, cell in enumerate(cells):
        r, c = divmod(k, cols)
        sheet[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = cell
    return sheet


def save_png(path: str, image: np.ndarray) -> str:
    """Saves a uint8 RGB [H, W, 3] (or grayscale [H, W]) image as PNG, creating parent folders."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
        raise ValueError(f"image must be uint8 [H, W, 3] or [H, W], got {image.dtype} {image.shape}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    if not cv2.imwrite(path, bgr):
        raise OSError(f"cannot write PNG {path!r}")
    return path
