"""TAP-Vid benchmark readers: DAVIS, RGB-Stacking, RoboTAP and Kinetics pickles.

Stored formats (docs/conventions.md, *Data formats*):

* DAVIS: one pickle, dict ``name -> {video uint8 [T,H,W,3], points float [N,T,2] normalised (x, y)
  in [0, 1], occluded bool [N,T]}``.
* RGB-Stacking: one pickle, a *list* of such dicts (named by their index).
* RoboTAP: a pickle with the DAVIS layout, or a directory of several such pickles (read in sorted
  order, names prefixed by nothing -- they are unique across RoboTAP's split files).
* Kinetics: a directory of shards ``*_of_0010.pkl``, each a list (or dict) of such dicts whose
  ``video`` is a list of JPEG-encoded frames (bytes). Named ``<shard file>:<index>`` (or by key).

Pickles can run code when loaded: only read files from a trusted source.

Every reader yields, per video, a dict (tapnet's names, **without** a batch dimension)::

    video          uint8 [T, h, w, 3]   resized (default 256x256); float32 in [0, 255] with as_float
    target_points  float32 [n, T, 2]    (x, y) pixels of the resized frame
    occluded       bool [n, T]
    query_points   float32 [n, 3]       (t, y, x), same pixel units
    track_ids      int32 [n]            index of the source track of each query (strided mode repeats)
    name           str
    source_size    (H, W) of the stored video

Conventions:

* Normalised -> pixels (:func:`to_pixels`), ``(W, H)`` the stored frame and ``(w, h)`` the output
  frame:

  - ``convention='tapnet'`` (default): ``p · (w, h)``, the raster convention of tapnet's evaluation
    code;
  - ``convention='pips'``: ``p · (W − 1, H − 1)`` in the stored frame, then scaled by
    ``(w/W, h/H)``, in float32 in that order, as PIPs++'s TAP-Vid test does
    (``datasets/tapviddataset_fullseq.py``, then ``test_on_tap.py``; docs/conventions.md);
  - ``convention='centres'``: ``p · (w, h) − 0.5``, the pixel centre TAP-Vid's normalisation
    ``(x + 0.5)/W`` stands for, carried through the half-pixel resize below (x = 0 the centre of
    the first column).

  'pips' lies 0.5 px right of 'centres' at p = 0 and ``w/W − 0.5`` px left of it at p = 1 (2.3 px
  at 896 px wide from a 320 px source); 'tapnet' lies half a pixel right of 'centres' everywhere.
* Resize: bilinear with half-pixel centres (``align_corners=False``), **no antialiasing** --
  ``torch.nn.functional.interpolate(mode='bilinear', align_corners=False)`` (which the PIPs++ test
  uses), ``tf.image.resize(method='bilinear', antialias=False)``, implemented here in numpy with
  the float32 arithmetic of torch's CPU kernel (source index ``(i + 0.5)·(n_in/n_out) − 0.5``
  clamped at 0, the last sample repeated past the end, interpolation along x first, multiply-adds
  rounded once as its compiled code fuses them: the same float32 values as torch 2.13's
  ``F.interpolate`` on CPU up to rare 1-ulp differences); checked to agree with
  ``tf.image.resize`` to ~1e-3 and with ``cv2.resize(INTER_LINEAR)`` on float32 input (cv2 on uint8
  input adds fixed-point rounding, and its exact-2x downscale path switches to area averaging, which
  is the same at that ratio). ``as_float=True`` keeps the interpolated values (as the PIPs++ test
  does, float32, only clipped to [0, 255] where float rounding overshoots by an ulp); by default
  they are rounded to uint8. Caveat: when *downsampling* (e.g. Kinetics/DAVIS 480p to
  256), no-antialias bilinear aliases fine texture -- that is the benchmark protocol, so it is kept;
  antialiased resizers (PIL, ``tf.image.resize(antialias=True)``, ``cv2.INTER_AREA``) give different
  pixels.
* Query sampling (``query_mode``): 'first' -- one query per track at its first visible frame (tracks
  never visible are dropped); 'strided' -- for t = 0, stride, 2*stride, ... (stride 5) a query for
  every track visible at t, ordered frame-major (all queries of frame 0 first, then frame 5, ...).
"""

from __future__ import annotations

import glob
import io
import os
import pickle
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

DEFAULT_RESOLUTION = (256, 256)
QUERY_STRIDE = 5


class TapVidError(ValueError):
    """A TAP-Vid file or entry is malformed; the message names it."""


# ----------------------------------------------------------------------------------------------
# Geometry helpers
# ----------------------------------------------------------------------------------------------

def _linear_taps(n_in: int, n_out: int):
    """Half-pixel bilinear source taps (i0, i1, w0, w1) for an axis resized from n_in to n_out, in
    float32 as torch's CPU kernel computes them (module docstring)."""
    scale = np.float64(np.float32(n_in / n_out))
    # scale·(i + 0.5) − 0.5 rounded once to float32 (torch's compiled kernel fuses the multiply-add;
    # in float64 the product of a float32 scale and i + 0.5 is exact)
    src = (scale * (np.arange(n_out, dtype=np.float64) + 0.5) - 0.5).astype(np.float32)
    src = np.maximum(src, np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    w1 = np.clip(src - i0.astype(np.float32), 0.0, 1.0).astype(np.float32)
    i1 = np.where(i0 < n_in - 1, i0 + 1, i0)
    return i0, i1, (np.float32(1.0) - w1).astype(np.float32), w1


def resize_video_bilinear(video: np.ndarray, size: tuple[int, int], as_float: bool = False) -> np.ndarray:
    """Resizes [T, H, W, C] (or [H, W, C]) to size=(h, w); see the module docstring for the kernel.

    Returns uint8 (rounded, clipped) by default; float32 without rounding when `as_float` (clipped
    to [0, 255] when the input is uint8).
    """
    video = np.asarray(video)
    single = video.ndim == 3
    if single:
        video = video[None]
    t, h_in, w_in, c = video.shape
    h, w = int(size[0]), int(size[1])
    y0, y1, wy0, wy1 = _linear_taps(h_in, h)
    x0, x1, wx0, wx1 = _linear_taps(w_in, w)
    wy0, wy1 = wy0[:, None, None], wy1[:, None, None]
    wx0, wx1 = wx0[None, :, None], wx1[None, :, None]
    out = np.empty((t, h, w, c), np.float32)
    for i in range(t):  # frame by frame keeps the working set small
        # a·w0 + round32(b·w1), rounded once: torch's fused multiply-add (float32 products are
        # exact in float64)
        f = video[i].astype(np.float32).astype(np.float64)
        cols = (f[:, x0] * wx0 + (f[:, x1] * wx1).astype(np.float32)).astype(np.float32)
        c64 = cols.astype(np.float64)
        out[i] = c64[y0] * wy0 + (c64[y1] * wy1).astype(np.float32)
    if not as_float:
        out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    elif video.dtype == np.uint8:
        np.clip(out, 0.0, 255.0, out=out)
    return out[0] if single else out


CONVENTIONS = ("tapnet", "pips", "centres")


def to_pixels(points: np.ndarray, size: tuple[int, int], convention: str = "tapnet",
              source_size: tuple[int, int] | None = None) -> np.ndarray:
    """Normalised (x, y) in [0, 1] -> pixels of an (h, w) frame; see the module docstring.

    ``source_size``: (H, W) of the stored frame, which the 'pips' convention scales from (default:
    ``size``, no resize).
    """
    h, w = size
    points = np.asarray(points, np.float32)
    if convention == "tapnet":
        return points * np.array([w, h], np.float32)
    if convention == "centres":
        return points * np.array([w, h], np.float32) - np.float32(0.5)
    if convention == "pips":
        src_h, src_w = source_size if source_size is not None else size
        px = points * np.array([src_w - 1, src_h - 1], np.float32)
        return px * np.array([w / src_w, h / src_h], np.float32)
    raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")


def sample_queries_first(target_points: np.ndarray, occluded: np.ndarray) -> dict[str, np.ndarray]:
    """One query per track at its first visible frame; never-visible tracks are dropped."""
    visible = ~np.asarray(occluded, bool)
    keep = np.nonzero(visible.any(axis=1))[0]
    t0 = np.argmax(visible[keep], axis=1)
    xy = target_points[keep, t0]
    query = np.stack([t0.astype(np.float32), xy[:, 1], xy[:, 0]], -1).astype(np.float32)
    return dict(query_points=query, target_points=target_points[keep], occluded=occluded[keep],
                track_ids=keep.astype(np.int32))


def sample_queries_strided(target_points: np.ndarray, occluded: np.ndarray,
                           stride: int = QUERY_STRIDE) -> dict[str, np.ndarray]:
    """Queries at every `stride`-th frame where the track is visible (frame-major order)."""
    visible = ~np.asarray(occluded, bool)
    queries, tracks = [], []
    for t in range(0, visible.shape[1], stride):
        ids = np.nonzero(visible[:, t])[0]
        xy = target_points[ids, t]
        queries.append(np.stack([np.full(ids.shape, t, np.float32), xy[:, 1], xy[:, 0]], -1))
        tracks.append(ids)
    ids = np.concatenate(tracks).astype(np.int32) if tracks else np.zeros(0, np.int32)
    query = (np.concatenate(queries).astype(np.float32) if queries else np.zeros((0, 3), np.float32))
    return dict(query_points=query, target_points=target_points[ids], occluded=occluded[ids],
                track_ids=ids)


# ----------------------------------------------------------------------------------------------
# Per-video preparation
# ----------------------------------------------------------------------------------------------

def _decode_frames(frames: Iterable[Any], where: str) -> np.ndarray:
    from PIL import Image
    out = []
    for i, f in enumerate(frames):
        if isinstance(f, np.ndarray):
            out.append(f)
            continue
        try:
            with Image.open(io.BytesIO(bytes(f))) as im:
                out.append(np.asarray(im.convert("RGB")))
        except Exception as e:
            raise TapVidError(f"{where}: frame {i} is not a decodable JPEG ({type(e).__name__}: {e})") from e
    if not out:
        raise TapVidError(f"{where}: video has no frames")
    return np.stack(out)


def prepare_video(entry: Mapping[str, Any], name: str, query_mode: str = "first",
                  resolution: tuple[int, int] | None = DEFAULT_RESOLUTION,
                  convention: str = "tapnet", as_float: bool = False,
                  where: str = "") -> dict[str, Any]:
    """Turns one stored entry {video, points, occluded} into the per-video dict (module docstring)."""
    where = f"{where}[{name!r}]" if where else repr(name)
    missing = [k for k in ("video", "points", "occluded") if k not in entry]
    if missing:
        raise TapVidError(f"{where}: missing key(s) {missing}; found {sorted(entry)}")
    video = entry["video"]
    if not isinstance(video, np.ndarray):
        video = _decode_frames(video, where)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise TapVidError(f"{where}: video has shape {video.shape}, expected [T, H, W, 3]")
    points = np.asarray(entry["points"], np.float32)
    occluded = np.asarray(entry["occluded"]).astype(bool)
    t = video.shape[0]
    if points.ndim != 3 or points.shape[1:] != (t, 2):
        raise TapVidError(f"{where}: points have shape {points.shape}, expected [N, {t}, 2] "
                          f"(the video has {t} frames)")
    if occluded.shape != points.shape[:2]:
        raise TapVidError(f"{where}: occluded has shape {occluded.shape}, expected {points.shape[:2]}")
    if not np.all(np.isfinite(points)):
        raise TapVidError(f"{where}: points contain non-finite values")
    source_size = video.shape[1:3]
    if resolution is not None and tuple(resolution) != tuple(source_size):
        video = resize_video_bilinear(video, resolution, as_float=as_float)
    elif as_float:
        video = video.astype(np.float32)
    else:
        video = np.asarray(video, np.uint8)
    tracks = to_pixels(points, video.shape[1:3], convention, source_size=source_size)
    if query_mode == "first":
        q = sample_queries_first(tracks, occluded)
    elif query_mode == "strided":
        q = sample_queries_strided(tracks, occluded)
    else:
        raise ValueError(f"query_mode must be 'first' or 'strided', got {query_mode!r}")
    return dict(video=video, name=str(name), source_size=tuple(int(s) for s in source_size), **q)


def _load_pickle(path: str) -> Any:
    if not os.path.exists(path):
        raise TapVidError(f"{path}: file not found")
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except Exception as e:
        raise TapVidError(f"{path}: cannot unpickle ({type(e).__name__}: {e})") from e


def _entries(data: Any, path: str, prefix: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    if isinstance(data, Mapping):
        if "video" in data and "points" in data:  # a single video, not a dict of videos
            yield f"{prefix}0", data
            return
        for k, v in data.items():
            yield f"{prefix}{k}", v
    elif isinstance(data, (list, tuple)):
        for i, v in enumerate(data):
            yield f"{prefix}{i}", v
    else:
        raise TapVidError(f"{path}: expected a dict or list of videos, got {type(data).__name__}")


def _iter_files(paths, prefix_fn, **kw) -> Iterator[dict[str, Any]]:
    for path in paths:
        for name, entry in _entries(_load_pickle(path), path, prefix_fn(path)):
            if not isinstance(entry, Mapping):
                raise TapVidError(f"{path}[{name!r}]: expected a dict, got {type(entry).__name__}")
            yield prepare_video(entry, name, where=path, **kw)


def iter_davis(path: str, **kw) -> Iterator[dict[str, Any]]:
    """TAP-Vid-DAVIS pickle (``tapvid_davis.pkl``). kw: query_mode, resolution, convention, as_float."""
    return _iter_files([path], lambda p: "", **kw)


def iter_rgb_stacking(path: str, **kw) -> Iterator[dict[str, Any]]:
    """TAP-Vid-RGB-Stacking pickle (a list of videos, named by index)."""
    return _iter_files([path], lambda p: "", **kw)


def iter_robotap(path: str, **kw) -> Iterator[dict[str, Any]]:
    """RoboTAP: one DAVIS-layout pickle, or a directory of them (sorted ``*.pkl``)."""
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.pkl")))
        if not files:
            raise TapVidError(f"{path}: no *.pkl files")
    else:
        files = [path]
    return _iter_files(files, lambda p: "", **kw)


def iter_kinetics(path: str, **kw) -> Iterator[dict[str, Any]]:
    """TAP-Vid-Kinetics: a directory of ``*_of_0010.pkl`` shards (or one shard file)."""
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*_of_0010.pkl")))
        if not files:
            raise TapVidError(f"{path}: no *_of_0010.pkl shards")
    else:
        files = [path]
    return _iter_files(files, lambda p: os.path.basename(p) + ":", **kw)


READERS = {"davis": iter_davis, "rgb_stacking": iter_rgb_stacking, "robotap": iter_robotap,
           "kinetics": iter_kinetics}


def iter_tapvid(dataset: str, path: str, query_mode: str = "first",
                resolution: tuple[int, int] | None = DEFAULT_RESOLUTION, convention: str = "tapnet",
                as_float: bool = False) -> Iterator[dict[str, Any]]:
    """Dispatches to the reader of `dataset` in {'davis', 'rgb_stacking', 'robotap', 'kinetics'}."""
    if dataset not in READERS:
        raise ValueError(f"unknown TAP-Vid dataset {dataset!r}; choose from {sorted(READERS)}")
    return READERS[dataset](path, query_mode=query_mode, resolution=resolution,
                            convention=convention, as_float=as_float)
