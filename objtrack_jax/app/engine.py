"""The work behind ``objtrack app``, without the web server: opening videos, checking a run, tracking,
drawing and writing the downloads.

:class:`Workspace` holds the loaded weights and a scratch folder. The page's actions map to its
methods, so everything it does can be called (and tested) without a browser:

* :meth:`Workspace.open_upload`, :meth:`Workspace.open_path`, :meth:`Workspace.open_example`: a
  video (uploaded file, a file or folder of frames on this machine, or a generated real-photo
  scene) is opened, its frame count checked and one JPEG preview per frame written for the page's
  frame slider (:class:`OpenedVideo`);
* :meth:`Workspace.check_run`: the clicked points and the settings form become a checked
  :class:`RunRequest` (frames and positions inside the video, settings under the CLI's rules, the
  memory estimate under the budget); every refusal is an :class:`AppError` whose message is shown
  in the page as it is;
* :meth:`Workspace.run`: tracks the points with the model (and LK / DIS when asked), draws the
  methods side by side into an H.264 mp4 that browsers play, and writes the tracks as ``.npz``,
  ``.csv`` and ``.json`` (columns in docs/app.md).

The calls into the rest of the library (loading weights, their validated settings, tracking,
baselines, drawing, video writing) are each isolated in one small function below.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from typing import Any, Callable, Optional, Sequence

import numpy as np

from objtrack_jax.video_io import FrameSource

log = logging.getLogger(__name__)

PREVIEW_MAX_WIDTH = 960  # the slider's JPEGs; clicks are mapped back to the video's own pixels
PREVIEW_QUALITY = 90
PANEL_MAX_WIDTH = 1920  # the result video's width with every panel side by side
PANEL_GAP = 6
MAX_POINTS = 512
EXAMPLE_FRAMES = 24
EXAMPLE_SIZE = (192, 256)
EXAMPLE_FPS = 12.0
BASELINE_NAMES = {"lk": "Lucas-Kanade", "dis": "DIS flow"}
MODEL_NAME = "objtrack_jax"
PALETTE = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0",
           "#f032e6", "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8")
PANEL_MIN_WIDTH = 480  # small videos are enlarged in the result so that the markers show
# The settings form's fields and their names in messages.
SETTING_FIELDS = {"window": "window", "iters": "iterations", "short_side": "short side",
                  "refine_scale": "second pass scale", "refine_iters": "second pass iterations",
                  "max_memory_mb": "memory budget (MB)"}


class AppError(ValueError):
    """Input the app refuses (not a video, a point outside the frame, a setting out of range, a
    run over the memory budget, ...); the message says what and why, and is shown in the page."""


def require_h264() -> None:
    """SystemExit with one line when videos cannot be written as H.264 (the format that every
    browser plays)."""
    from objtrack_jax.video_io import h264_encoder

    exe, reason = h264_encoder()
    if exe is None:
        raise SystemExit(f"objtrack app writes its result videos as H.264, which needs imageio-ffmpeg "
                         f"(part of the core install): {reason}")


# --------------------------------------------------------------------------------------------------
# The library calls (one function each)
# --------------------------------------------------------------------------------------------------


def validated_settings(info: dict):
    """The :class:`~objtrack_jax.settings.TrackingSettings` the weights were validated at."""
    from objtrack_jax.settings import from_info

    return from_info(info)


def settings_form(s) -> dict:
    """The settings form's fields of :class:`~objtrack_jax.settings.TrackingSettings` ``s``:
    ``window``, ``iters``, ``short_side``, ``refine_scale`` (0: one pass), ``refine_iters`` and
    ``max_memory_mb`` (unset: the default budget, half the machine's memory)."""
    from objtrack_jax import memory
    from objtrack_jax.settings import DEFAULT_SHORT_SIDE

    return {"window": s.window, "iters": s.iters, "short_side": s.short_side or DEFAULT_SHORT_SIDE,
            "refine_scale": float(s.refine_scale or 0), "refine_iters": s.second_pass_iters,
            "max_memory_mb": int(s.max_memory_mb or memory.default_budget_mb())}


def check_field(key: str, value) -> Any:
    """One settings field parsed and checked as ``objtrack track`` checks it: the form's fields
    (:data:`SETTING_FIELDS`) by their flag's argparse type (``--window``, ``--iters``,
    ``--refine-scale``, ``--refine-iters``, ``--max-memory``; the short side as ``--set``), any
    other :class:`~objtrack_jax.settings.TrackingSettings` field as ``--set NAME=VALUE``."""
    from objtrack_jax import cli_args

    try:
        if key not in SETTING_FIELDS:
            return cli_args.setting_arg(f"{key}={value}")[1]
        rule = {"refine_scale": cli_args.refine_scale_arg,
                "max_memory_mb": cli_args.at_least(64)}.get(key) or cli_args.setting_int(key)
        return rule(str(value).strip())
    except argparse.ArgumentTypeError as e:
        label = SETTING_FIELDS.get(key)  # the --set message names the setting itself
        raise AppError(f"{label}: {e}" if label else str(e)) from None


def resolve_settings(info: dict, form: Optional[dict]):
    """The weights' validated settings with the page's ``form`` (``{name: value}``, any
    :class:`~objtrack_jax.settings.TrackingSettings` field; missing or empty: the validated
    value) applied by :func:`objtrack_jax.settings.resolve`, each value checked by
    :func:`check_field`; ``(settings, notes)``, ``notes`` naming values far from the validated."""
    from objtrack_jax.settings import FIELDS, far_from_validated, recorded_inference, resolve

    if not isinstance(form or {}, dict):
        raise AppError(f"settings must be an object of name: value pairs, got {type(form).__name__}")
    unknown = [key for key in form or {} if key not in FIELDS]
    if unknown:
        raise AppError(f"unknown setting {unknown[0]!r}; the settings are {list(FIELDS)}")
    values = {key: check_field(key, value) for key, value in (form or {}).items()
              if value is not None and str(value).strip() != ""}
    try:
        s = resolve(info, warn=False, **values)
    except ValueError as e:
        raise AppError(str(e)) from None
    trained = recorded_inference(info).get("trained")
    notes = far_from_validated(s, validated_settings(info), trained if isinstance(trained, dict) else None)
    for note in notes:
        log.warning("%s", note)
    return s, notes


def tracking_bytes(model, n: int, num_frames: int, height: int, width: int,
                   size: Sequence[int], window: int) -> int:
    """The tracker's own estimate of the host memory a run needs (frames streamed)."""
    from objtrack_jax.tracking import estimate_tracking_bytes

    return estimate_tracking_bytes(n, num_frames, height, width, size, window,
                                   int(model.latent_dim), streamed=True)


def track_points(model, params, source, queries: np.ndarray, s):
    """``(tracks [n, T, 2], visible [n, T] or None, logits or None)`` of the model with
    :class:`~objtrack_jax.settings.TrackingSettings` ``s``."""
    from objtrack_jax.tracking import track_queries

    return track_queries(model, params, source, queries, settings=s, progress=False)


def track_baseline(name: str, frames: np.ndarray, queries: np.ndarray):
    """``(tracks [n, T, 2], visible [n, T] or None)`` of a classical baseline."""
    from objtrack_jax import baselines

    return baselines.track(name, frames, queries)


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


# --------------------------------------------------------------------------------------------------
# Videos and runs
# --------------------------------------------------------------------------------------------------


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


@dataclasses.dataclass
class RunRequest:
    """A checked run: ``queries`` float32 ``[n, 3]`` as ``(t, y, x)`` input pixels; ``settings``
    the :class:`~objtrack_jax.settings.TrackingSettings` to track with; ``resolution`` the first
    pass's model size; ``warnings`` notes for settings far from the validated ones."""

    video: OpenedVideo
    queries: np.ndarray
    baselines: tuple
    settings: Any
    resolution: tuple
    warnings: list


def _safe_name(name: str) -> str:
    base = os.path.basename(str(name).replace("\\", "/")) or "video"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", base)[-100:] or "video"


def _as_number(value, what: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise AppError(f"{what} must be a number, got {value!r}") from None
    if not np.isfinite(f):
        raise AppError(f"{what} must be a finite number, got {value!r}")
    return f


class Workspace:
    """The loaded weights, the opened videos and a scratch folder (module docstring).

    Args:
      model, params, info: the weights (:func:`objtrack_jax.model_io.load_model`).
      root: scratch folder (uploads, previews, results); removed by :meth:`close`.
      max_frames: frames read from a video (the rest is ignored, and the page says so).
      allow_paths: whether :meth:`open_path` may open files on this machine.
    """

    def __init__(self, model, params, info: dict, root: str, *, max_frames: int = 600,
                 allow_paths: bool = True):
        self.model, self.params, self.info = model, params, info
        self.root, self.max_frames, self.allow_paths = root, int(max_frames), allow_paths
        self.validated = validated_settings(info)
        self.defaults = settings_form(self.validated)
        self.weights_name = str(info.get("name") or info.get("architecture") or "checkpoint")
        self.videos: dict[str, OpenedVideo] = {}
        self._examples = 0
        self._lock = threading.Lock()
        os.makedirs(root, exist_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # -- opening ------------------------------------------------------------------------------------

    def _open(self, name: str, path: str, folder: str, fps: Optional[float] = None) -> OpenedVideo:
        """Opens ``path``, writes the previews into ``folder`` and registers the video."""
        import cv2

        try:
            source = open_frames(path, max_frames=self.max_frames)
        except (ValueError, OSError, cv2.error) as e:
            log.warning("cannot open %s (%s): %s", name, path, e)
            raise AppError(f"{name}: not a readable video (OpenCV could not decode it as a video "
                           "or a folder of frames). Open an .mp4, .mov, .avi, .mkv or .webm file "
                           "or a folder of .jpg/.png frames.") from None
        num_frames, height, width = (int(v) for v in source.shape[:3])
        previews = os.path.join(folder, "previews")
        os.makedirs(previews, exist_ok=True)
        scale = min(1.0, PREVIEW_MAX_WIDTH / width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        try:
            for start in range(0, num_frames, 16):
                block = source.read(start, min(start + 16, num_frames))
                for i, frame in enumerate(block):
                    if scale < 1:
                        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
                    ok, jpg = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]),
                                           [cv2.IMWRITE_JPEG_QUALITY, PREVIEW_QUALITY])
                    if not ok:
                        raise OSError(f"cannot encode preview of frame {start + i}")
                    with open(os.path.join(previews, f"{start + i:06d}.jpg"), "wb") as f:
                        f.write(jpg.tobytes())
        except (ValueError, OSError, cv2.error) as e:
            log.warning("cannot decode %s (%s): %s", name, path, e)
            raise AppError(f"{name}: decoding failed part-way ({e})") from None
        note = ""
        reported = source_frame_count(path) if os.path.isfile(path) else None
        if num_frames >= self.max_frames and (reported is None or reported > num_frames):
            note = (f"only the first {num_frames} frames are used" + (f" of about {reported}"
                    if reported else "") + " (objtrack app --max-frames)")
        fps = fps or source_fps(path) or 24.0
        video = OpenedVideo(uuid.uuid4().hex[:12], name, path, num_frames, height, width,
                            float(round(fps, 3)), previews, note)
        with self._lock:
            self.videos[video.id] = video
        log.info("opened %s: %d frames %dx%d at %.3g fps", name, num_frames, height, width, fps)
        return video

    def _new_folder(self) -> str:
        folder = os.path.join(self.root, "videos", uuid.uuid4().hex[:12])
        os.makedirs(folder)
        return folder

    def new_upload_path(self, name: str) -> str:
        """Where an upload named ``name`` is stored before :meth:`open_upload`."""
        return os.path.join(self._new_folder(), "upload-" + _safe_name(name))

    def open_upload(self, name: str, stored: str) -> OpenedVideo:
        """Opens an uploaded file (already written to ``stored``, from :meth:`new_upload_path`)."""
        if os.path.getsize(stored) == 0:
            raise AppError(f"{_safe_name(name)}: empty file (0 bytes)")
        return self._open(os.path.basename(str(name)) or "upload", stored, os.path.dirname(stored))

    def open_path(self, path: str) -> OpenedVideo:
        """Opens a video file or folder of frames on this machine."""
        if not self.allow_paths:
            raise AppError("opening paths on the server is off (objtrack app listens on another "
                           "address than localhost; start it with --allow-paths to allow it)")
        path = os.path.expanduser(str(path or "").strip())
        if not path:
            raise AppError("type the path of a video file or a folder of frames")
        if not os.path.exists(path):
            raise AppError(f"{path}: no such file or folder on the server")
        return self._open(path, os.path.abspath(path), self._new_folder())

    def open_example(self) -> OpenedVideo:
        """A generated real-photo scene (:func:`example_frames`), a new one each call."""
        from objtrack_jax.video_io import write_frames

        index = self._examples
        self._examples += 1
        frames = example_frames(index)
        folder = self._new_folder()
        write_frames(os.path.join(folder, "frames"), frames)
        return self._open(f"example scene {index + 1}", os.path.join(folder, "frames"), folder,
                          fps=EXAMPLE_FPS)

    def get(self, video_id: str) -> OpenedVideo:
        video = self.videos.get(str(video_id))
        if video is None:
            raise AppError("that video is no longer open (the server was restarted?); open it again")
        return video

    def preview_path(self, video_id: str, t: int) -> str:
        video = self.get(video_id)
        if not 0 <= int(t) < video.num_frames:
            raise AppError(f"frame {t} outside the video's {video.num_frames} frames")
        return os.path.join(video.previews, f"{int(t):06d}.jpg")

    # -- checking a run ----------------------------------------------------------------------------

    def check_run(self, video_id: str, points: Sequence[dict], form: Optional[dict] = None,
                  baselines: Sequence[str] = ()) -> RunRequest:
        """The page's request as a :class:`RunRequest`, or an :class:`AppError` saying what is wrong.

        ``points``: ``{"t": frame, "x": ..., "y": ...}`` in pixels of the video (x = 0 the centre
        of the first column, valid ``-0.5 <= x <= W - 0.5``); ``form``: the advanced settings
        (missing or empty fields: the weights' validated values); ``baselines``: any of ``lk``,
        ``dis``.
        """
        video = self.get(video_id)
        if not isinstance(points, (list, tuple)) or not points:
            raise AppError("click at least one point on the video first")
        if len(points) > MAX_POINTS:
            raise AppError(f"{len(points)} points: at most {MAX_POINTS} can be tracked at once")
        rows = []
        for i, p in enumerate(points):
            if not isinstance(p, dict):
                raise AppError(f"point {i + 1}: expected t, x, y, got {p!r}")
            t = _as_number(p.get("t"), f"point {i + 1}: frame")
            x = _as_number(p.get("x"), f"point {i + 1}: x")
            y = _as_number(p.get("y"), f"point {i + 1}: y")
            if t != int(t) or not 0 <= t < video.num_frames:
                raise AppError(f"point {i + 1}: frame {t:g} is not a frame of this video "
                               f"(0 to {video.num_frames - 1})")
            if not (-0.5 <= x <= video.width - 0.5 and -0.5 <= y <= video.height - 0.5):
                raise AppError(f"point {i + 1} (x {x:g}, y {y:g}) is outside the "
                               f"{video.width}x{video.height} frame: click on the image")
            rows.append((t, y, x))
        queries = np.asarray(rows, np.float32)
        unknown = [b for b in baselines if b not in BASELINE_NAMES]
        if unknown:
            raise AppError(f"unknown comparison {unknown[0]!r}; choose from {list(BASELINE_NAMES)}")
        s, notes = resolve_settings(self.info, form)
        self._check_memory(video, len(queries), s, tuple(baselines))
        return RunRequest(video, queries, tuple(dict.fromkeys(baselines)), s,
                          s.model_size(video.height, video.width), notes)

    def _check_memory(self, video: OpenedVideo, n: int, s, baselines) -> None:
        """AppError when the run's estimated memory exceeds the budget or what is free."""
        from objtrack_jax import memory

        t, h, w = video.num_frames, video.height, video.width
        size = s.model_size(h, w)
        sizes = [size] + [f for f in [s.fine_size(size)] if f is not None]
        need = max(tracking_bytes(self.model, n, t, h, w, z, s.window) for z in sizes)
        what = f"tracking {n} point{'s' if n != 1 else ''} through {t} frames of {w}x{h}"
        if baselines:  # the baselines read the whole video: RGB, grey and one flow field
            need = max(need, t * h * w * 4 + h * w * 8)
            what += " with " + " and ".join(BASELINE_NAMES[b] for b in baselines)
        budget = int(s.max_memory_mb or memory.default_budget_mb()) * 2 ** 20
        mb = lambda b: f"{b / 2 ** 20:,.0f} MB"  # noqa: E731
        if need > budget:
            raise AppError(f"too large for the memory budget: {what} needs an estimated {mb(need)} "
                           f"but the budget is {mb(budget)}. Raise the budget (Advanced), track "
                           "fewer points, leave out the comparisons or use a shorter video.")
        free = memory.available_memory_bytes()
        if free is not None and need > free:
            raise AppError(f"too large for this machine: {what} needs an estimated {mb(need)} but "
                           f"only {mb(free)} is free")

    # -- running -----------------------------------------------------------------------------------

    def run(self, req: RunRequest, out_dir: str,
            report: Optional[Callable[[float, str], None]] = None) -> dict:
        """Tracks, draws and writes the outputs of ``req`` into ``out_dir``.

        ``report(fraction, stage)`` is called as the work proceeds (fraction in [0, 1]).
        Returns ``{"files": {"video", "npz", "csv", "json"}: paths, "methods": [...],
        "num_points", "num_frames", "seconds": {...}}``.
        """
        report = report or (lambda *_: None)
        video, queries, s = req.video, req.queries, req.settings
        os.makedirs(out_dir, exist_ok=True)
        seconds = {}
        passes = 2 if s.fine_size(req.resolution) is not None else 1
        # Progress from the frames the tracker reads: about the whole video per query frame and
        # pass (a forward and a backward segment); when the query frames share encoded frames,
        # fewer are read and the bar jumps at the end.
        groups = len(np.unique(np.round(queries[:, 0])))
        expected = passes * groups * video.num_frames
        share = 0.8 if req.baselines else 0.85
        stage = (f"tracking {len(queries)} point{'s' if len(queries) != 1 else ''} (a new video "
                 "size compiles the model first)")
        counted = CountingFrames(open_frames(video.path, self.max_frames),
                                 lambda k: report(min(0.97, k / max(expected, 1)) * share, stage))
        report(0.0, stage)
        t0 = time.perf_counter()
        tracks, visible, logits = track_points(self.model, self.params, counted, queries, s)
        seconds["track"] = time.perf_counter() - t0
        if not np.all(np.isfinite(tracks)):
            raise FloatingPointError("the model produced non-finite tracks (check the checkpoint)")
        methods = [(MODEL_NAME, tracks, visible)]
        if req.baselines:
            t0 = time.perf_counter()
            report(share, "comparisons")
            frames = open_frames(video.path, self.max_frames)
            frames = frames.read(0, len(frames))
            for name in req.baselines:
                b_tracks, b_visible = track_baseline(name, frames, queries)
                methods.append((name, np.asarray(b_tracks, np.float32), b_visible))
            del frames
            seconds["comparisons"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        report(0.9, "drawing the video")
        out_video = os.path.join(out_dir, "tracks.mp4")
        self._write_video(out_video, video, methods, lambda f: report(0.9 + 0.08 * f, "drawing the video"))
        seconds["draw"] = time.perf_counter() - t0
        report(0.98, "writing the tracks")
        files = {"video": out_video}
        files.update(write_tracks(out_dir, video, queries, methods, logits, s, req.resolution,
                                  self.weights_name))
        report(1.0, "done")
        log.info("run on %s: %d points, %d frames, %s", video.name, len(queries), video.num_frames,
                 ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
        return {"files": files, "methods": [m[0] for m in methods], "num_points": int(len(queries)),
                "num_frames": video.num_frames, "seconds": seconds}

    def _write_video(self, path: str, video: OpenedVideo, methods, report) -> str:
        """The methods side by side (model first), each panel labelled, H.264."""
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
        source = open_frames(video.path, self.max_frames)
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
                        _label(f, BASELINE_NAMES.get(name, name), x0)
            append_h264(writer, canvas)
            report(min(1.0, (start + len(frames)) / video.num_frames))
        written = writer.close()
        if written != path or writer.codec != "h264":
            raise OSError(f"{path}: the H.264 encoder did not finish the video (the server log "
                          "says why)")
        return written


class CountingFrames(FrameSource):
    """``source`` read through unchanged, calling ``on_read(frames read so far)`` after each read
    (the progress bar)."""

    def __init__(self, source: FrameSource, on_read: Callable[[int], None]):
        self.source, self.on_read, self.count = source, on_read, 0
        self.shape, self.dtype = source.shape, source.dtype

    def _read(self, start, end):
        out = self.source.read(start, end)
        self.count += end - start
        self.on_read(self.count)
        return out


def _label(image: np.ndarray, text: str, x0: int) -> None:
    import cv2

    scale = max(0.4, image.shape[0] / 640)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(image, (x0, 0), (x0 + w + 8, h + base + 8), (0, 0, 0), -1)  # top left
    cv2.putText(image, text, (x0 + 4, h + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                cv2.LINE_AA)


# --------------------------------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------------------------------

CSV_COLUMNS = ("method", "point", "frame", "x", "y", "visible", "query_frame")


def write_tracks(out_dir: str, video: OpenedVideo, queries: np.ndarray, methods, logits,
                 settings, resolution, weights: str) -> dict:
    """Writes ``tracks.npz`` (the tracks file of :mod:`objtrack_jax.tracks_io`, as ``objtrack
    track``; comparisons as ``tracks_<method>``), ``tracks.csv`` and ``tracks.json`` (docs/app.md);
    returns their paths as ``{"npz", "csv", "json"}``. ``methods``: ``(name, tracks [n, T, 2],
    visible [n, T] or None)``, the model first; ``settings``: the TrackingSettings run (or its
    ``as_dict()``); ``resolution``: the model size it gave."""
    from objtrack_jax.tracks_io import read_tracks_npz, write_tracks_npz

    paths = {k: os.path.join(out_dir, f"tracks.{k}") for k in ("npz", "csv", "json")}
    (_, tracks0, visible0), others = methods[0], methods[1:]
    write_tracks_npz(paths["npz"], tracks0, visible0, queries, settings, writer="objtrack app",
                     vis_logits=logits, resolution=resolution,
                     video_size=(video.height, video.width),
                     methods={name: (tracks, visible) for name, tracks, visible in others},
                     info={"video": video.name, "num_frames": video.num_frames,
                           "height": video.height, "width": video.width, "fps": video.fps,
                           "weights": weights})
    info = {k: v for k, v in read_tracks_npz(paths["npz"]).info.items() if k != "writer"}

    t_query = np.round(queries[:, 0]).astype(int)
    with open(paths["csv"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for name, tracks, visible in methods:
            for i in range(tracks.shape[0]):
                for t in range(tracks.shape[1]):
                    vis = "" if visible is None else int(bool(visible[i, t]))
                    w.writerow((name, i, t, f"{tracks[i, t, 0]:.3f}", f"{tracks[i, t, 1]:.3f}", vis,
                                int(t_query[i])))

    doc = {**info,
           "coordinates": "x, y in pixels of the input video; (0, 0) is the centre of the "
                          "top-left pixel",
           "queries": [{"point": i, "frame": int(t_query[i]), "x": float(q[2]), "y": float(q[1])}
                       for i, q in enumerate(queries)],
           "methods": {name: {"tracks": np.round(np.asarray(tracks, np.float64), 3).tolist(),
                              "visible": None if visible is None else np.asarray(visible).tolist()}
                       for name, tracks, visible in methods}}
    with open(paths["json"], "w") as f:
        json.dump(doc, f)
    return paths
