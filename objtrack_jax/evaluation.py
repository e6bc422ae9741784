"""Benchmark evaluation with the PIPs++ and TAP-Vid protocols (docs/conventions.md,
*Evaluation protocols and metrics*).

:func:`evaluate` runs a model over a dataset and returns ``(per_video, mean)``.

Datasets (``data_root``):

* ``pointodyssey``: a PointOdyssey root (``<root>/<split>/<seq>/rgbs``, split ``test`` by default).
* ``synthetic``: a PointOdyssey-layout root written by :mod:`data_pipelines.synthetic`; when
  ``data_root`` is None or missing, a small test split (2 sequences × 12 frames, 128×160) is
  generated in a temporary directory.
* ``crohd``: a CroHD/HT21 root (split ``train``, the one with ground truth), clips as in
  :mod:`data_pipelines.crohd`.
* ``tapvid_davis`` / ``tapvid_rgb_stacking``: the pickle (or a folder holding
  ``tapvid_davis.pkl`` / ``tapvid_rgb_stacking.pkl``); ``tapvid_kinetics``: the folder of
  ``*_of_0010.pkl`` shards.

PIPs++ protocol (``protocol='pips'``), by default as aharley/pips2's ``test_on_tap.py``,
``test_on_pod.py`` and ``test_on_cro.py`` do it (docs/conventions.md, *Evaluation protocols and
metrics*):

* frames resized to ``resolution`` (default 512×896 for the real datasets as in PIPs++, the
  native size rounded up to a valid model size for ``synthetic``): OpenCV bilinear to uint8 for
  PointOdyssey/synthetic/CroHD; for TAP-Vid torch-style bilinear (no antialias) kept as float32,
  with ground truth ``p·(W−1, H−1)`` in the stored frame (``corrected``: pixel centres); ground
  truth scaled by ``W_new/W_old``, ``H_new/H_old``;
* points: TAP-Vid and synthetic, those visible at frame 0; PointOdyssey, PIPs++'s selection
  (:func:`data_pipelines.pointodyssey.pips_eval_points`: good at frame 0 and in ≥ 8 frames,
  steps under 512 px, 1-px border, N = 256); CroHD, PIPs++'s heads
  (:func:`data_pipelines.crohd.iter_clips`); tracked from frame 0 with the GT frame-0 position
  repeated as initialisation;
* :func:`objtrack_jax.metrics.pips_metrics` with "valid" = annotated (synthetic), annotated,
  visible or not, and off the 1-px border (PointOdyssey), visible (TAP-Vid), PIPs++'s
  ``valids`` (-1 / 0 / 1; CroHD); ``survival_threshold`` 16 (PIPs++) or 50 (the paper's
  PointOdyssey table).

TAP-Vid protocol (``protocol='tapvid'``):

* videos at 256×256 (TAP-Vid datasets: their reader, bilinear, tapnet's ``(W, H)`` convention;
  other datasets: OpenCV bilinear, tracks scaled by 256/W, 256/H, ``occluded = not visible``);
  queries sampled with ``query_mode`` 'first' or 'strided' and tracked forward and backward with
  :func:`objtrack_jax.tracking.track_queries`; the model runs at ``resolution`` (default
  256×256) and its tracks are mapped back to 256×256;
* :func:`objtrack_jax.metrics.tapvid_metrics`. ``pts_within_δ`` and ``average_pts_within_thresh``
  are always reported. ``occlusion_accuracy``, ``jaccard_δ`` and ``average_jaccard`` need
  predicted occlusion: they are ``None`` ("n/a") unless the model has a visibility head.

Checkpoints are read by :mod:`objtrack_jax.model_io`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
import time
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from objtrack_jax import baselines
from objtrack_jax import metrics as metrics_lib
from objtrack_jax.inference import to_point_major, to_time_major
from objtrack_jax.settings import TrackingSettings, default_resolution, resolve
from objtrack_jax.tracking import resize_video, run_tracking

log = logging.getLogger(__name__)

DATASETS = ("pointodyssey", "tapvid_davis", "tapvid_kinetics", "tapvid_rgb_stacking", "crohd",
            "synthetic")
PROTOCOLS = ("pips", "tapvid")
PIPS_RESOLUTION = (512, 896)
TAPVID_RESOLUTION = (256, 256)
DEFAULT_SPLITS = {"pointodyssey": "test", "synthetic": "test", "crohd": "train"}
TAPVID_OCCLUSION_KEYS = ("occlusion_accuracy", *(f"jaccard_{d}" for d in metrics_lib.TAPVID_THRESHOLDS),
                         "average_jaccard")
_TAPVID_FILES = {"tapvid_davis": "tapvid_davis.pkl", "tapvid_rgb_stacking": "tapvid_rgb_stacking.pkl"}
_FRAME_BATCH = 64  # frames read (and resized) at a time, to bound peak memory on long sequences


# --------------------------------------------------------------------------------------------------
# Dataset readers → common records
# --------------------------------------------------------------------------------------------------
# A record: name, video uint8 [T, h, w, 3], trajs float32 [T, N, 2] (x, y) pixels of the video,
# visibs bool [T, N], valids bool [T, N] (the metric's "valid"), query_ok bool [N] (usable as a
# PIPs++ frame-0 query: visible at frame 0; CroHD: annotated at frame 0), source_size (H, W).


def valid_model_size(height: int, width: int, stride: int = 8, minimum: int = 128) -> tuple[int, int]:
    """The smallest size >= (height, width) that the tracker accepts (multiples of 8, >= 128)."""
    def side(s):
        return max(minimum, -(-int(s) // stride) * stride)

    return side(height), side(width)


def _aspect_kept(height: int, width: int, short_side: int) -> tuple[int, int]:
    return default_resolution(height, width, short_side=short_side)


def _load_po_frames(seq_dir: str, num: int, size: Optional[Sequence[int]]) -> np.ndarray:
    from objtrack_jax.data_pipelines import pointodyssey

    parts = []
    for lo in range(0, num, _FRAME_BATCH):
        frames = pointodyssey.load_frames(seq_dir, range(lo, min(lo + _FRAME_BATCH, num)))
        parts.append(frames if size is None else resize_video(frames, size))
    return np.concatenate(parts, 0)


def _iter_pointodyssey(root: str, split: str, size, auto_valid: bool,
                       max_frames: Optional[int] = None,
                       pips_points: Optional[int] = None) -> Iterator[dict]:
    """PointOdyssey layout. size None: native (rounded up to a model size when auto_valid).
    ``pips_points``: select and mark that many points as PIPs++'s PointOdyssey test does
    (:func:`data_pipelines.pointodyssey.pips_eval_points`); None: every point visible at frame 0,
    "valid" = annotated."""
    from objtrack_jax.data_pipelines import pointodyssey

    for seq_dir in pointodyssey.list_sequences(root, split):
        anno = pointodyssey.load_annotations(seq_dir)
        num = pointodyssey.sequence_length(seq_dir, anno)  # the training reader's check
        num = min(num, max_frames or num)
        src = pointodyssey.load_frames(seq_dir, [0]).shape[1:3]
        if callable(size):  # a rule of the source size, e.g. aspect kept at a short side
            out = tuple(size(*src))
        else:
            out = tuple(size) if size is not None else (
                valid_model_size(*src) if auto_valid else src)
        scale = np.array([out[1] / src[1], out[0] / src[0]], np.float32)
        trajs, visibs, valids = anno["trajs"][:num], anno["visibs"][:num], anno["valids"][:num]
        query_ok = visibs[0]
        if pips_points is not None:
            sel = pointodyssey.pips_eval_points(trajs, visibs, valids, src, pips_points)
            if sel["index"].size == 0:
                log.warning("%s: no point passes PIPs++'s selection; skipped", seq_dir)
                continue
            trajs, visibs, valids = sel["trajs"], sel["visibs"], sel["valids"]
            query_ok = np.ones(trajs.shape[1], bool)
        yield dict(name=os.path.basename(seq_dir), video=_load_po_frames(seq_dir, num, out),
                   trajs=trajs * scale, visibs=visibs, valids=valids, query_ok=query_ok,
                   source_size=tuple(src))


def _iter_crohd(root: str, split: str, size) -> Iterator[dict]:
    from objtrack_jax.data_pipelines import crohd

    for clip in crohd.iter_clips(root, split, resize_to=size):  # PIPs++'s selection and marks
        yield dict(name=f"{clip['seq_name']}:{clip['start']}", video=clip["rgbs"], trajs=clip["trajs"],
                   visibs=clip["visibs"], valids=clip["valids"],
                   query_ok=np.ones(clip["trajs"].shape[1], bool), source_size=clip["source_size"])


def _tapvid_path(dataset: str, root: str) -> str:
    if os.path.isdir(root) and dataset in _TAPVID_FILES:
        cand = os.path.join(root, _TAPVID_FILES[dataset])
        if os.path.exists(cand):
            return cand
        raise FileNotFoundError(f"{root}: no {_TAPVID_FILES[dataset]} in this folder")
    return root


def _iter_tapvid_raw(dataset: str, root: str, **kw) -> Iterator[dict]:
    from objtrack_jax.data_pipelines import tapvid

    return tapvid.iter_tapvid(dataset[len("tapvid_"):], _tapvid_path(dataset, root), **kw)


def _iter_tapvid_pips(dataset: str, root: str, size, convention: str = "pips") -> Iterator[dict]:
    """PIPs++'s TAP-Vid test: frames bilinear-resized and kept as float32 (not rounded), ground
    truth by ``convention`` (:mod:`data_pipelines.tapvid`; 'pips' = the test's own)."""
    for v in _iter_tapvid_raw(dataset, root, query_mode="first", resolution=tuple(size),
                              convention=convention, as_float=True):
        visibs = ~to_time_major(v["occluded"])
        yield dict(name=v["name"], video=v["video"], trajs=to_time_major(v["target_points"]),
                   visibs=visibs, valids=visibs, query_ok=visibs[0], source_size=v["source_size"])


def _first_frames(records: Iterator[dict], max_frames: Optional[int]) -> Iterator[dict]:
    """Each record cut to its first ``max_frames`` frames (None: unchanged)."""
    for rec in records:
        if max_frames is not None:
            rec = {k: (v[:max_frames] if k in ("video", "trajs", "visibs", "valids") else v)
                   for k, v in rec.items()}
        yield rec


def iter_records(dataset: str, data_root: str, size=None, split: Optional[str] = None,
                 auto_valid: bool = True, max_frames: Optional[int] = None,
                 num_points: Optional[int] = None, corrected: bool = False,
                 pips_selection: bool = True) -> Iterator[dict]:
    """Common records for ``dataset`` at ``size`` (H, W); None = the dataset's native size
    (rounded up to a model size when ``auto_valid``); at most ``max_frames`` frames each.

    PointOdyssey, CroHD and TAP-Vid records follow the PIPs++ test scripts (module docstring):
    ``num_points`` is PointOdyssey's N (None: the test's 256; ``pips_selection=False``: every
    point, "valid" = annotated, as the TAP-Vid protocol reads them); ``corrected``: TAP-Vid ground
    truth at pixel centres instead of the test's own rule (docs/conventions.md)."""
    split = split or DEFAULT_SPLITS.get(dataset)
    if max_frames is not None and int(max_frames) < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if dataset in ("pointodyssey", "synthetic"):
        from objtrack_jax.data_pipelines.pointodyssey import PIPS_EVAL_POINTS

        pips_points = ((num_points or PIPS_EVAL_POINTS)
                       if dataset == "pointodyssey" and pips_selection else None)
        return _iter_pointodyssey(data_root, split, size, auto_valid, max_frames, pips_points)
    if dataset == "crohd":
        return _first_frames(_iter_crohd(data_root, split, size), max_frames)
    if dataset.startswith("tapvid_"):
        return _first_frames(_iter_tapvid_pips(dataset, data_root, size or PIPS_RESOLUTION,
                                               "centres" if corrected else "pips"), max_frames)
    raise ValueError(f"unknown dataset {dataset!r}; choose from {DATASETS}")


def _subsample(n: int, max_points: Optional[int]) -> np.ndarray:
    """Deterministic, evenly spread subset of range(n) with at most max_points entries."""
    if max_points is None or n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, int(max_points)).round().astype(np.int64))


# --------------------------------------------------------------------------------------------------
# Protocols
# --------------------------------------------------------------------------------------------------


# A tracker, as every protocol below calls it (tapnet's conventions, batch of one video):
#   tracker(video [1, T, H, W, 3] uint8 in [0, 255], queries [1, N, 3] float32 (t, y, x) pixels)
#   -> (tracks [1, N, T, 2] (x, y) pixels, occlusion [1, N, T] or None)
# (The PIPs++ protocol on TAP-Vid passes float32 frames in [0, 255] instead: the unrounded
# bilinear resize of ``test_on_tap.py``.)
# ``occlusion``: bool "occluded", or float logits (occluded where > 0, as TAPIR's); None: the
# tracker predicts no occlusion. A mapping {'tracks': ..., 'occlusion': ...} (TAPIR's output) is
# read the same way. Our model (:func:`model_tracker`) and the classical baselines
# (:func:`baseline_tracker`) are trackers too, so every one is scored by the same code.


def model_tracker(model, params, settings: TrackingSettings):
    """Our model as a tracker (conventions above): :func:`objtrack_jax.tracking.run_tracking`
    with ``settings`` at the resolution of the video it is given (the protocol resizes)."""
    def track(video, queries):
        video, queries = np.asarray(video), np.asarray(queries)
        s = settings.replace(resolution=tuple(video.shape[2:4]))
        tracks, visible, _ = run_tracking(model, params, video[0], queries[0], s)
        return tracks[None], (None if visible is None else ~visible[None])

    return track


def baseline_tracker(name: Optional[str]):
    """A classical baseline of :data:`objtrack_jax.baselines.BASELINES` (None: 'zero') as a
    tracker (conventions above)."""
    name = name or "zero"
    if name not in baselines.BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {baselines.BASELINES}")

    def track(video, queries):
        tracks, visible = baselines.track(name, np.asarray(video)[0], np.asarray(queries)[0])
        return tracks[None], (None if visible is None else ~np.asarray(visible)[None])

    return track


def call_tracker(tracker, video: np.ndarray, queries: np.ndarray):
    """Runs ``tracker`` (conventions above) on one video ``[T, H, W, 3]`` and queries ``[N, 3]``;
    returns ``(tracks [N, T, 2] float32, visible [N, T] bool or None)``; a wrong output shape is a
    ``ValueError`` naming it."""
    out = tracker(video[None], np.asarray(queries, np.float32)[None])
    if isinstance(out, dict):
        tracks, occ = out["tracks"], out.get("occlusion", out.get("occluded"))
    else:
        tracks, occ = out
    tracks = np.asarray(tracks, np.float32)
    n, t = len(queries), video.shape[0]
    if tracks.shape != (1, n, t, 2):
        raise ValueError(f"the tracker returned tracks of shape {tracks.shape}; expected "
                         f"[1, N, T, 2] = {(1, n, t, 2)} (x, y)")
    if occ is None:
        return tracks[0], None
    occ = np.asarray(occ)
    if occ.shape != (1, n, t):
        raise ValueError(f"the tracker returned occlusion of shape {occ.shape}; expected "
                         f"[1, N, T] = {(1, n, t)}")
    occluded = occ if occ.dtype == np.bool_ else occ > 0
    return tracks[0], ~occluded[0]


def as_tracker(model, params=None, settings: Optional[TrackingSettings] = None):
    """The tracker that :func:`evaluate` scores: a callable (conventions above) as is; a baseline
    name or None (:func:`baseline_tracker`); else our model with ``settings``."""
    if model is None or isinstance(model, str):
        return baseline_tracker(model)
    if callable(model) and not hasattr(model, "apply"):  # a function, not a flax module
        return model
    return model_tracker(model, params, settings)


def _track_at(tracker, video: np.ndarray, queries: np.ndarray, resolution):
    """``tracker`` on ``video`` resized to ``resolution`` (None: as is), queries and tracks
    scaled with ``W_new/W_old``, ``H_new/H_old``; tracks in pixels of ``video``."""
    if resolution is None or tuple(video.shape[1:3]) == tuple(resolution):
        return call_tracker(tracker, video, queries)
    h, w = video.shape[1:3]
    q = np.asarray(queries, np.float64) * np.array([1.0, resolution[0] / h, resolution[1] / w])
    tracks, visible = call_tracker(tracker, resize_video(video, tuple(resolution)), q)
    return tracks * np.array([w / resolution[1], h / resolution[0]], np.float32), visible


def _pips_video(rec: dict, tracker, survival_threshold: float,
                max_points: Optional[int], extra: bool = False) -> Optional[tuple[dict, int]]:
    video = rec["video"]
    keep = np.flatnonzero(rec["query_ok"])
    keep = keep[_subsample(keep.size, max_points)]
    if keep.size == 0:
        log.warning("%s: no point visible at frame 0; skipped", rec["name"])
        return None
    trajs_g = rec["trajs"][:, keep]
    queries = np.stack([np.zeros(keep.size), trajs_g[0, :, 1], trajs_g[0, :, 0]], -1)
    tracks, visible = call_tracker(tracker, video, queries)
    trajs_e = to_time_major(tracks)[None]
    valids = rec["valids"][:, keep]
    m = metrics_lib.pips_metrics(trajs_e, trajs_g[None], valids[None],
                                 image_size=video.shape[1:3], survival_threshold=survival_threshold)
    row = {k: float(v[0]) for k, v in m.items()}
    if extra:
        row.update(metrics_lib.drift_metrics(trajs_e[0], trajs_g, valids,
                                             STILL_DRIFT_FRAMES))
        row.update({"occlusion_accuracy": None, "occlusion_recall": None} if visible is None
                   else metrics_lib.occlusion_rates(to_time_major(visible),
                                                    rec["visibs"][:, keep], valids))
    return row, keep.size


STILL_DRIFT_FRAMES = (50, 100, 199)  # the static benchmark's frames (docs/drift.md)
STILL_KEYS = ("drift_med_50", "drift_med_100", "drift_med_199", "drift_p90_199", "jitter",
              "occlusion_accuracy", "occlusion_recall")



def _tapvid_inputs(rec: dict, query_mode: str) -> dict:
    """A common record (already at 256×256) → the TAP-Vid reader's per-video dict."""
    from objtrack_jax.data_pipelines import tapvid

    target = to_point_major(rec["trajs"]).astype(np.float32)
    occluded = ~to_point_major(rec["visibs"] & (rec["valids"] > 0))
    sampler = {"first": tapvid.sample_queries_first, "strided": tapvid.sample_queries_strided}
    if query_mode not in sampler:
        raise ValueError(f"query_mode must be 'first' or 'strided', got {query_mode!r}")
    return dict(video=rec["video"], name=rec["name"], **sampler[query_mode](target, occluded))


def _iter_tapvid_protocol(dataset: str, data_root: str, split, query_mode: str) -> Iterator[dict]:
    if dataset.startswith("tapvid_"):
        yield from _iter_tapvid_raw(dataset, data_root, query_mode=query_mode,
                                    resolution=TAPVID_RESOLUTION, convention="tapnet")
        return
    for rec in iter_records(dataset, data_root, size=TAPVID_RESOLUTION, split=split,
                            pips_selection=False):
        yield _tapvid_inputs(rec, query_mode)


def _tapvid_video(v: dict, tracker, resolution, query_mode: str,
                  max_points: Optional[int]) -> Optional[tuple[dict, int]]:
    keep = _subsample(v["query_points"].shape[0], max_points)
    if keep.size == 0:
        log.warning("%s: no queries; skipped", v["name"])
        return None
    q, target, occluded = v["query_points"][keep], v["target_points"][keep], v["occluded"][keep]
    tracks, visible = _track_at(tracker, v["video"], q, resolution)
    has_vis = visible is not None
    pred_occluded = ~visible if has_vis else np.zeros_like(occluded)
    m = metrics_lib.tapvid_metrics(q[None], occluded[None], target[None], pred_occluded[None],
                                   tracks[None], query_mode)
    row = {k: float(val[0]) for k, val in m.items()}
    if not has_vis:
        row.update({k: None for k in TAPVID_OCCLUSION_KEYS})
    return row, keep.size


def metric_keys(protocol: str) -> tuple[str, ...]:
    return metrics_lib.PIPS_KEYS if protocol == "pips" else metrics_lib.TAPVID_KEYS


@contextlib.contextmanager
def _synthetic_root(data_root: Optional[str]):
    if data_root and os.path.isdir(data_root):
        yield data_root
        return
    from objtrack_jax.data_pipelines import synthetic

    with tempfile.TemporaryDirectory(prefix="objtrack_synth_eval_") as tmp:
        log.warning("synthetic root %r not found: generating a small test split in %s", data_root, tmp)
        synthetic.generate_dataset(tmp, num_seqs={"test": 2}, frames=12, size=(128, 160),
                                   num_points=64, progress=False, write_depths=False)
        yield tmp


def evaluate(dataset: str, data_root: Optional[str], model, params=None, info=None, *,
             protocol: str = "pips", query_mode: str = "first", max_videos: Optional[int] = None,
             progress: bool = True, settings: Optional[TrackingSettings] = None,
             resolution: Optional[Sequence[int]] = None, survival_threshold: float = 16.0,
             split: Optional[str] = None, max_points: Optional[int] = None,
             max_frames: Optional[int] = None, corrected: bool = False, still: bool = False,
             **overrides) -> tuple[list[dict], dict]:
    """Evaluates a tracker on ``dataset`` with the PIPs++ or TAP-Vid protocol (module docstring).

    ``evaluate(dataset, root, *load_model())`` scores the loaded weights at their validated
    settings, as ``objtrack eval`` does.

    Args:
      dataset: one of :data:`DATASETS`.
      data_root: dataset path (see the module docstring); may be None for 'synthetic'.
      model: the tracker: our model (with ``params``); a baseline name of
        :data:`objtrack_jax.baselines.BASELINES` ('zero', 'lk', 'dis'; ``None`` = 'zero'); or any
        callable in tapnet's conventions, ``tracker(video [1, T, H, W, 3] uint8, queries [1, N, 3]
        (t, y, x)) -> (tracks [1, N, T, 2] (x, y), occlusion [1, N, T] or None)`` (see
        :func:`call_tracker`; e.g. :func:`objtrack_jax.functional.make_tracker` or a TAPIR
        wrapper). Every tracker gets the same queries, resizing and metric code.
      params, info: our model's parameters and its weights' ``info`` (from
        :func:`objtrack_jax.model_io.load_model`): the validated tracking settings.
      settings: the :class:`~objtrack_jax.settings.TrackingSettings` (instead of ``info``'s);
        ``overrides`` (``window=``, ``iters=``, ``carry=``, ``chunk_size=``, ``refine_scale=``,
        ...) change single settings. ``settings.short_side``: PIPs++ protocol on
        PointOdyssey-layout data ('pointodyssey', 'synthetic') with ``resolution`` None: each
        video resized with its aspect kept at that short side (None: 512×896).
      protocol: 'pips' or 'tapvid'.
      query_mode: TAP-Vid protocol only, 'first' or 'strided'.
      max_videos: stop after this many videos (None = all).
      resolution: (H, W). PIPs++ protocol: the frame size the videos and ground truth are resized
        to (default 512×896; synthetic: native, rounded up to a model size; ``'native'``: that
        rule for every dataset). TAP-Vid protocol: the tracker's input size (default 256×256; the
        metrics are always computed at 256×256).
      survival_threshold: PIPs++ survival threshold (16; the paper's PointOdyssey table uses 50).
      split: dataset split (default: 'test' for PointOdyssey/synthetic, 'train' for CroHD).
      max_points: evaluate at most this many queries per video (evenly spread; None = all).
      max_frames: PIPs++ protocol only: the first this many frames of each video (None = all).
      corrected: PIPs++ protocol on TAP-Vid: ground truth at pixel centres (``p·(w, h) − 0.5``)
        instead of ``test_on_tap.py``'s rule (docs/conventions.md); False reproduces the script.
      still: PIPs++ protocol only: also the static benchmark's drift and jitter
        (:func:`objtrack_jax.metrics.drift_metrics` at frames 50, 100 and 199, pixels of the
        evaluated frames) and the occlusion accuracy and recall of occluded point-frames
        (:data:`STILL_KEYS`).

    Returns:
      ``(per_video, mean)``: per_video rows ``{'video', <metrics>, 'num_frames', 'num_points',
      'seconds'}`` (metrics as floats, or None where not available); mean = average over videos of
      each numeric entry, the unavailable metrics as None, plus ``num_videos``.
    """
    ours = not (model is None or isinstance(model, str)
                or (callable(model) and not hasattr(model, "apply")))
    settings = resolve(info, settings, warn=ours, entry="evaluate" if ours else None, **overrides)
    tracker = as_tracker(model, params, settings)
    short_side = settings.short_side
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {DATASETS}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if query_mode not in ("first", "strided"):
        raise ValueError(f"query_mode must be 'first' or 'strided', got {query_mode!r}")
    if data_root is None and dataset != "synthetic":
        raise ValueError(f"data_root is required for dataset {dataset!r}")
    if data_root is not None and dataset != "synthetic" and not os.path.exists(data_root):
        raise FileNotFoundError(f"{dataset} data not found at {data_root}")
    if max_frames is not None and protocol != "pips":
        raise ValueError("max_frames applies to the PIPs++ protocol only (TAP-Vid queries may lie "
                         "at any frame)")
    native = isinstance(resolution, str)
    if native and resolution != "native":
        raise ValueError(f"resolution must be (H, W) or 'native', got {resolution!r}")
    if native and protocol != "pips":
        raise ValueError("resolution='native' applies to the PIPs++ protocol only")
    res = tuple(int(s) for s in resolution) if resolution is not None and not native else None

    per_video: list[dict] = []
    root_ctx = _synthetic_root(data_root) if dataset == "synthetic" else contextlib.nullcontext(data_root)
    with root_ctx as root:
        if protocol == "pips":
            size = res if res is not None else (
                None if native or dataset == "synthetic" else PIPS_RESOLUTION)
            if res is None and not native and short_side and dataset in ("pointodyssey",
                                                                        "synthetic"):
                size = functools.partial(_aspect_kept, short_side=int(short_side))
            videos = iter_records(dataset, root, size=size, split=split, max_frames=max_frames,
                                  num_points=max_points, corrected=corrected)
        else:
            videos = _iter_tapvid_protocol(dataset, root, split, query_mode)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=max_videos, desc=f"eval {dataset}", unit="video")
        try:
            for v in videos:
                if max_videos is not None and len(per_video) >= max_videos:
                    break
                t0 = time.perf_counter()
                if protocol == "pips":
                    out = _pips_video(v, tracker, survival_threshold, max_points, still)
                else:
                    out = _tapvid_video(v, tracker, res or TAPVID_RESOLUTION, query_mode,
                                        max_points)
                if out is None:
                    continue
                row_metrics, num_points = out
                row = {"video": v["name"], **row_metrics, "num_frames": int(v["video"].shape[0]),
                       "num_points": int(num_points), "seconds": time.perf_counter() - t0}
                per_video.append(row)
                if bar is not None:
                    bar.update(1)
                    if row.get("d_avg") is not None:
                        bar.set_postfix(d_avg=f"{row['d_avg']:.1f}")
                    elif row.get("average_pts_within_thresh") is not None:
                        bar.set_postfix(delta_avg=f"{row['average_pts_within_thresh']:.3f}")
        finally:
            if bar is not None:
                bar.close()
    return per_video, mean_row(per_video)


def mean_row(per_video: Sequence[dict]) -> dict:
    """Mean over videos; metrics that are None in every row stay None; adds ``num_videos``."""
    averaged = metrics_lib.average_metrics(per_video)
    mean: dict[str, Any] = {}
    for row in per_video:
        for k in row:
            if k != "video" and k not in mean:
                mean[k] = averaged.get(k)
    mean["num_videos"] = len(per_video)
    return mean
