"""The work behind ``objtrack app``, without the web server: opening videos, checking a run, tracking,
drawing and writing the downloads.

:class:`Workspace` holds the loaded weights and a scratch folder. The page's actions map to its
methods, so everything it does can be called (and tested) without a browser:

* :meth:`Workspace.open_upload`, :meth:`Workspace.open_path`, :meth:`Workspace.open_example`: a
  video (uploaded file, a file or folder of frames on this machine, or a generated real-photo
  scene) is opened, its frame count checked against its header (a truncated file is said so)
  and one JPEG preview per frame written for the page's frame slider (:class:`OpenedVideo`);
* :meth:`Workspace.check_run`: the clicked points and the settings form become a checked
  :class:`RunRequest` (every field of the request of its type, frames and positions inside the
  video, settings under the CLI's rules and :mod:`objtrack_jax.limits`, the memory and time
  estimates under the budgets); every refusal is an :class:`AppError` whose message is shown in
  the page as it is;
* :meth:`Workspace.run`: tracks the points with the model (and LK / DIS when asked), draws the
  methods side by side into an H.264 mp4 that browsers play, and writes the tracks as ``.npz``,
  ``.csv`` and ``.json`` (columns in docs/app.md).

The calls into the rest of the library (their validated settings, tracking, baselines) are each
isolated in one small function below; those for videos (reading, previews, drawing, writing) in
:mod:`objtrack_jax.app.media`.
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

from objtrack_jax import limits
from objtrack_jax.app.media import (BASELINE_NAMES, EXAMPLE_FPS, AppError, CountingFrames,
                                    OpenedVideo, example_frames, open_frames, short_read_note,
                                    source_fps, write_previews, write_result_video)
from objtrack_jax.app.media import (EXAMPLE_FRAMES, EXAMPLE_SIZE, PALETTE,  # noqa: F401
                                    PANEL_GAP, PANEL_MIN_WIDTH)  # (re-exported: the app's sizes)

log = logging.getLogger(__name__)

MAX_POINTS = 512
MODEL_NAME = "objtrack_jax"
# How the limits name the values (objtrack_jax.limits): as the page does.
APP_NAMES = {**limits.API_NAMES, "iters": "iterations", "refine_iters": "second pass iterations",
             "resolution": "short side"}
# The settings form's fields and their names in messages.
SETTING_FIELDS = {"window": "window", "iters": "iterations", "short_side": "short side",
                  "refine_scale": "second pass scale", "refine_iters": "second pass iterations",
                  "max_memory_mb": "memory budget (MB)"}


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


def track_points(model, params, source, queries: np.ndarray, s):
    """``(tracks [n, T, 2], visible [n, T] or None, logits or None)`` of the model with
    :class:`~objtrack_jax.settings.TrackingSettings` ``s``."""
    from objtrack_jax.tracking import track_queries

    return track_queries(model, params, source, queries, settings=s, progress=False)


def track_baseline(name: str, frames: np.ndarray, queries: np.ndarray):
    """``(tracks [n, T, 2], visible [n, T] or None)`` of a classical baseline."""
    from objtrack_jax import baselines

    return baselines.track(name, frames, queries)


# --------------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------------


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


def _expect(value, types, field: str, expected: str, allow_none: bool = False) -> None:
    """AppError naming ``field`` and the type expected unless ``value`` is one of ``types``."""
    if not (isinstance(value, types) or (allow_none and value is None)):
        raise AppError(f"{field}: expected {expected}, got {type(value).__name__} {value!r:.60}")


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
      max_minutes: a run estimated over this many minutes is refused
        (:func:`objtrack_jax.limits.check_budget`; None: no time budget).
    """

    def __init__(self, model, params, info: dict, root: str, *, max_frames: int = 600,
                 allow_paths: bool = True,
                 max_minutes: Optional[float] = limits.DEFAULT_MAX_MINUTES):
        self.model, self.params, self.info = model, params, info
        self.max_minutes = max_minutes
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
        try:
            write_previews(source, previews)
        except (ValueError, OSError, cv2.error) as e:
            log.warning("cannot decode %s (%s): %s", name, path, e)
            raise AppError(f"{name}: decoding failed part-way ({e})") from None
        note = short_read_note(name, path, num_frames, self.max_frames)
        if note:
            log.warning("%s: %s", name, note)
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
        ``dis``. A field of another JSON type is refused naming it and the type expected.
        """
        if not isinstance(video_id, str):
            raise AppError(f"video: expected the id of an open video (a string), got {video_id!r}")
        _expect(points, (list, tuple), "points", "a list of points {t, x, y}", allow_none=True)
        _expect(form, dict, "settings", "an object of {field: value}", allow_none=True)
        _expect(baselines, (list, tuple), "baselines",
                f"a list of comparison names ({', '.join(BASELINE_NAMES)})", allow_none=True)
        if any(not isinstance(b, str) for b in baselines or ()):
            raise AppError(f"baselines: expected a list of comparison names "
                           f"({', '.join(BASELINE_NAMES)}), got {list(baselines)!r}")
        baselines = tuple(baselines or ())
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
        try:  # the hard limits (objtrack_jax.limits) and the time and memory estimates
            est = limits.check_run(self.model, len(queries), video.num_frames, video.height,
                                   video.width, s, queries[:, 0], APP_NAMES)
            limits.check_budget(est, self.max_minutes, self._what(video, len(queries)),
                                "objtrack app --max-minutes")
        except ValueError as e:
            raise AppError(str(e)) from None
        self._check_memory(video, len(queries), s, baselines, est.bytes)
        return RunRequest(video, queries, tuple(dict.fromkeys(baselines)), s,
                          s.model_size(video.height, video.width), notes)

    @staticmethod
    def _what(video: OpenedVideo, n: int) -> str:
        return (f"tracking {n} point{'s' if n != 1 else ''} through {video.num_frames} frames of "
                f"{video.width}x{video.height}")

    def _check_memory(self, video: OpenedVideo, n: int, s, baselines, need: int) -> None:
        """AppError when the run's estimated memory (``need`` bytes for tracking, from
        :func:`objtrack_jax.limits.estimate`) exceeds the budget or what is free."""
        from objtrack_jax import memory

        t, h, w = video.num_frames, video.height, video.width
        what = self._what(video, n)
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

        ``report(fraction, stage)`` is called as the work proceeds (fraction in [0, 1]), at least
        once per window the tracker reads and per block of the video drawn; an exception it
        raises stops the run there (the server's cancel).
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
        write_result_video(out_video, video, methods, self.max_frames,
                           lambda f: report(0.9 + 0.08 * f, "drawing the video"))
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
