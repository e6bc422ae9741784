"""Reader for the PointOdyssey on-disk layout (real v1.2 / older releases, or `synthetic.py` output).

Layout (docs/conventions.md, *Data formats*)::

    <root>/<split>/<seq>/rgbs/rgb_%05d.jpg        0-based RGB frames
                         masks/mask_%05d.png      8-bit instance ids, 0 = unknown / fog
                         depths/depth_%05d.png    16-bit, metres = value / 65535 * 1000 (not read here)
                         anno.npz                 v1.2: trajs_2d [T,N,2], visibs [T,N], valids [T,N], ...
                         annotations.npz          older: trajs_2d [T,N,2], visibilities [T,N]
                                                  (valid := visibilities < 2, visible := == 1)

Conventions: tracks are (x, y) pixels of the stored frames, x = 0 the centre of the first column.
``visibs`` is always a subset of ``valids``. Non-finite track coordinates mark the point invalid
(and not visible) at that frame and the coordinates are set to 0.

The clip dict yielded by `iter_clips` is the interface consumed by the training pipeline::

    rgbs        uint8   [S, H, W, 3]
    masks       uint8   [S, H, W]     (absent when load_masks=False); 0s filled (median blur)
    trajs       float32 [S, N, 2]     (x, y) pixels; N = every annotated point of the sequence
    visibs      bool    [S, N]
    valids      bool    [S, N]
    seq_name    str
    start       int     index of the clip's first frame in the sequence
    frame_stride int    clip frame s is sequence frame start + s * frame_stride

Bad input raises `DataError` naming the file and what was expected; with ``skip_bad=True`` the clip
iterators skip the offending clip (or sequence), count it, and log a summary when they finish.
"""

from __future__ import annotations

import collections
import logging
import os
import re
from typing import Any, Iterator, MutableMapping, Sequence

import cv2
import numpy as np

log = logging.getLogger(__name__)

MASK_UNKNOWN = 0
MASK_FILL_MIN_PIXELS = 128   # fill unknown pixels only when more than this many are 0
MASK_FILL_KSIZE = 7          # from a 7x7 median blur
_RGB_RE = re.compile(r"^rgb_(\d+)\.jpg$")


class DataError(ValueError):
    """A dataset file is missing, unreadable or inconsistent; the message names it."""


# ----------------------------------------------------------------------------------------------
# Listing
# ----------------------------------------------------------------------------------------------

def list_splits(root: str) -> list[str]:
    """Split folders of a root (sub-directories holding at least one sequence), sorted."""
    if not os.path.isdir(root):
        raise DataError(f"{root}: dataset root does not exist")
    return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))
                  and any(os.path.isdir(os.path.join(root, d, s, "rgbs"))
                          for s in os.listdir(os.path.join(root, d))))


def list_sequences(root: str, split: str) -> list[str]:
    """Sequence directories ``<root>/<split>/<seq>`` (those with an ``rgbs/`` folder), sorted."""
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
        if not os.path.isdir(root):
            raise DataError(f"{root}: dataset root does not exist")
        seqs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d, "rgbs")))
        if seqs:
            parent = os.path.dirname(os.path.abspath(root))
            raise DataError(f"{root}: this is a split folder (it holds sequences such as "
                            f"{seqs[0]}/rgbs), not a dataset root; pass its parent {parent} "
                            f"(split {os.path.basename(os.path.abspath(root))!r})")
        raise DataError(f"{split_dir}: split folder not found (expected <root>/{split}/<seq>/rgbs)")
    return [os.path.join(split_dir, d) for d in sorted(os.listdir(split_dir))
            if os.path.isdir(os.path.join(split_dir, d, "rgbs"))]


def num_frames(seq_dir: str) -> int:
    """Number of frames in ``rgbs/``; checks the files are rgb_00000.jpg .. rgb_{T-1}.jpg."""
    rgb_dir = os.path.join(seq_dir, "rgbs")
    if not os.path.isdir(rgb_dir):
        raise DataError(f"{rgb_dir}: frame folder not found")
    idx = sorted(int(m.group(1)) for m in map(_RGB_RE.match, os.listdir(rgb_dir)) if m)
    if not idx:
        raise DataError(f"{rgb_dir}: no rgb_%05d.jpg frames")
    if idx != list(range(len(idx))):
        missing = sorted(set(range(idx[-1] + 1)) - set(idx))
        raise DataError(f"{os.path.join(rgb_dir, f'rgb_{missing[0]:05d}.jpg')}: missing frame "
                        f"(expected contiguous rgb_00000.jpg..rgb_{idx[-1]:05d}.jpg, "
                        f"{len(missing)} missing)")
    return len(idx)


# ----------------------------------------------------------------------------------------------
# Annotations
# ----------------------------------------------------------------------------------------------

def sequence_length(seq_dir: str, anno: dict) -> int:
    """Frames of a sequence: ``rgbs/`` and the annotations must agree (DataError otherwise)."""
    total = num_frames(seq_dir)
    if anno["trajs"].shape[0] != total:
        raise DataError(f"{seq_dir}: annotations have {anno['trajs'].shape[0]} frames but rgbs/ "
                        f"holds {total} (expected equal counts)")
    return total


def _require(npz, path: str, keys: Sequence[str]) -> None:
    missing = [k for k in keys if k not in npz.files]
    if missing:
        raise DataError(f"{path}: missing key(s) {missing}; found {sorted(npz.files)}")


def load_annotations(seq_dir: str) -> dict[str, np.ndarray]:
    """Loads a sequence's tracks.

    Returns dict(trajs float32 [T,N,2] (x, y), visibs bool [T,N], valids bool [T,N]).
    Reads ``anno.npz`` (v1.2) when present, else ``annotations.npz`` (older releases).
    """
    new, old = os.path.join(seq_dir, "anno.npz"), os.path.join(seq_dir, "annotations.npz")
    path = new if os.path.exists(new) else old
    if not os.path.exists(path):
        raise DataError(f"{seq_dir}: no annotations (expected anno.npz or annotations.npz)")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as e:  # zip / format errors
        raise DataError(f"{path}: cannot read npz ({type(e).__name__}: {e})") from e
    with npz:
        try:
            if path == new:
                _require(npz, path, ("trajs_2d", "visibs", "valids"))
                trajs = np.asarray(npz["trajs_2d"])
                visibs = np.asarray(npz["visibs"])
                valids = np.asarray(npz["valids"])
            else:
                _require(npz, path, ("trajs_2d", "visibilities"))
                trajs = np.asarray(npz["trajs_2d"])
                vis_code = np.asarray(npz["visibilities"])
                valids = vis_code < 2
                visibs = vis_code == 1
        except DataError:
            raise
        except Exception as e:
            raise DataError(f"{path}: cannot read arrays ({type(e).__name__}: {e})") from e
    if trajs.ndim != 3 or trajs.shape[-1] != 2:
        raise DataError(f"{path}: trajs_2d has shape {trajs.shape}, expected [T, N, 2]")
    if visibs.shape != trajs.shape[:2] or valids.shape != trajs.shape[:2]:
        raise DataError(f"{path}: visibility/validity shapes {visibs.shape}, {valids.shape} do not "
                        f"match trajs_2d {trajs.shape} (expected [T, N] = {trajs.shape[:2]})")
    trajs = trajs.astype(np.float32)
    finite = np.all(np.isfinite(trajs), axis=-1)
    valids = (valids != 0) & finite
    visibs = (visibs != 0) & valids
    trajs[~finite] = 0.0
    return dict(trajs=trajs, visibs=visibs, valids=valids)


# ----------------------------------------------------------------------------------------------
# Frames and masks
# ----------------------------------------------------------------------------------------------

def _imread(path: str, flags: int) -> np.ndarray:
    """Decodes ``path``; DataError naming it when missing, empty, truncated or undecodable."""
    from objtrack_jax.video_io import read_image  # pylint: disable=import-outside-toplevel

    if not os.path.exists(path):
        raise DataError(f"{path}: file not found")
    try:
        return read_image(path, flags)
    except ValueError as e:
        raise DataError(str(e)) from e


def load_frames(seq_dir: str, indices: Sequence[int]) -> np.ndarray:
    """RGB frames ``rgbs/rgb_%05d.jpg`` at `indices` as uint8 [S, H, W, 3]."""
    out, first = [], None
    for i in indices:
        path = os.path.join(seq_dir, "rgbs", f"rgb_{int(i):05d}.jpg")
        img = _imread(path, cv2.IMREAD_COLOR)
        if first is None:
            first = img.shape
        elif img.shape != first:
            raise DataError(f"{path}: frame is {img.shape[1]}x{img.shape[0]} (WxH), expected "
                            f"{first[1]}x{first[0]} like the clip's first frame")
        out.append(img[..., ::-1])
    if not out:
        raise DataError(f"{seq_dir}: load_frames called with no indices")
    return np.ascontiguousarray(np.stack(out))


def fill_unknown(mask: np.ndarray) -> np.ndarray:
    """When more than 128 pixels are 0 (unknown), fill them from a 7x7 median blur."""
    unknown = mask == MASK_UNKNOWN
    if np.count_nonzero(unknown) <= MASK_FILL_MIN_PIXELS:
        return mask
    blurred = cv2.medianBlur(mask, MASK_FILL_KSIZE)
    return np.where(unknown, blurred, mask)


def load_masks(seq_dir: str, indices: Sequence[int],
               expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Instance masks ``masks/mask_%05d.png`` at `indices` as uint8 [S, H, W], unknowns filled.

    A 3-channel PNG is accepted only when its channels are equal. `expected_hw` (the frames' size)
    is checked when given.
    """
    out = []
    for i in indices:
        path = os.path.join(seq_dir, "masks", f"mask_{int(i):05d}.png")
        m = _imread(path, cv2.IMREAD_UNCHANGED)
        if m.ndim == 3:
            if m.shape[2] == 1 or (np.all(m[..., 0:1] == m[..., 1:3]) if m.shape[2] >= 3 else False):
                m = m[..., 0]
            else:
                raise DataError(f"{path}: mask has {m.shape[2]} differing channels, expected a "
                                "single-channel 8-bit instance label map")
        if m.dtype != np.uint8:
            if np.issubdtype(m.dtype, np.integer) and m.max(initial=0) <= 255:
                m = m.astype(np.uint8)
            else:
                raise DataError(f"{path}: mask dtype {m.dtype} with max {m.max()}, expected uint8 ids")
        hw = expected_hw if expected_hw is not None else (out[0].shape if out else None)
        if hw is not None and m.shape != tuple(hw):
            raise DataError(f"{path}: mask is {m.shape[1]}x{m.shape[0]} (WxH), expected "
                            f"{hw[1]}x{hw[0]} (the frame size)")
        out.append(fill_unknown(m))
    if not out:
        raise DataError(f"{seq_dir}: load_masks called with no indices")
    return np.stack(out)


# ----------------------------------------------------------------------------------------------
# Clips
# ----------------------------------------------------------------------------------------------

def clip_starts(total: int, clip_len: int, clip_stride: int, frame_stride: int = 1) -> list[int]:
    """Start frames of every clip of `clip_len` frames (spaced `frame_stride`) that fits."""
    if clip_len < 1 or clip_stride < 1 or frame_stride < 1:
        raise ValueError(f"clip_len, clip_stride, frame_stride must be >= 1, got "
                         f"{clip_len}, {clip_stride}, {frame_stride}")
    span = (clip_len - 1) * frame_stride + 1
    return list(range(0, max(total - span + 1, 0), clip_stride))


def _new_stats() -> dict[str, Any]:
    return dict(sequences=0, clips=0, skipped_clips=0, skipped_sequences=0,
                reasons=collections.Counter())


def _log_summary(where: str, stats: MutableMapping[str, Any]) -> None:
    if stats["skipped_clips"] or stats["skipped_sequences"]:
        reasons = "; ".join(f"{n}x {r}" for r, n in stats["reasons"].most_common(5))
        log.warning("%s: yielded %d clips, skipped %d clips and %d sequences (bad input): %s",
                    where, stats["clips"], stats["skipped_clips"], stats["skipped_sequences"], reasons)


def _iter_clips(seq_dir, clip_len, clip_stride, frame_stride, with_masks, skip_bad, stats):
    stats["sequences"] += 1
    try:
        anno = load_annotations(seq_dir)
        total = sequence_length(seq_dir, anno)
        if with_masks and not os.path.isdir(os.path.join(seq_dir, "masks")):
            raise DataError(f"{os.path.join(seq_dir, 'masks')}: mask folder not found "
                            "(pass load_masks=False to read clips without masks)")
    except DataError as e:
        if not skip_bad:
            raise
        stats["skipped_sequences"] += 1
        stats["reasons"][str(e)] += 1
        return
    name = os.path.basename(os.path.normpath(seq_dir))
    for start in clip_starts(total, clip_len, clip_stride, frame_stride):
        idx = np.arange(clip_len) * frame_stride + start
        try:
            rgbs = load_frames(seq_dir, idx)
            clip = dict(rgbs=rgbs)
            if with_masks:
                clip["masks"] = load_masks(seq_dir, idx, expected_hw=rgbs.shape[1:3])
        except DataError as e:
            if not skip_bad:
                raise
            stats["skipped_clips"] += 1
            stats["reasons"][str(e)] += 1
            continue
        clip.update(trajs=anno["trajs"][idx], visibs=anno["visibs"][idx], valids=anno["valids"][idx],
                    seq_name=name, start=int(start), frame_stride=int(frame_stride))
        stats["clips"] += 1
        yield clip


def iter_clips(seq_dir: str, clip_len: int, clip_stride: int, frame_stride: int = 1,
               load_masks: bool = True, skip_bad: bool = False,
               stats: MutableMapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Yields every clip of one sequence (see the module docstring for the dict).

    Clips start at 0, clip_stride, 2*clip_stride, ... while ``start + (clip_len-1)*frame_stride`` is a
    frame of the sequence. With `skip_bad`, unreadable clips (or the whole sequence, when its
    annotations are unusable) are skipped and counted in `stats` (keys sequences, clips,
    skipped_clips, skipped_sequences, reasons) and a summary is logged at the end.
    """
    own = stats is None
    stats = _new_stats() if own else stats
    for key, value in _new_stats().items():
        stats.setdefault(key, value)
    yield from _iter_clips(seq_dir, clip_len, clip_stride, frame_stride, load_masks, skip_bad, stats)
    if own:
        _log_summary(f"iter_clips({seq_dir})", stats)


def iter_split_clips(root: str, split: str, clip_len: int, clip_stride: int, frame_stride: int = 1,
                     load_masks: bool = True, skip_bad: bool = False,
                     stats: MutableMapping[str, Any] | None = None,
                     sequences: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
    """`iter_clips` over every sequence of ``<root>/<split>`` (or the given `sequences` dirs)."""
    stats = _new_stats() if stats is None else stats
    for key, value in _new_stats().items():
        stats.setdefault(key, value)
    for seq_dir in (list_sequences(root, split) if sequences is None else sequences):
        yield from _iter_clips(seq_dir, clip_len, clip_stride, frame_stride, load_masks, skip_bad,
                               stats)
    _log_summary(f"iter_split_clips({os.path.join(root, split)})", stats)


# ----------------------------------------------------------------------------------------------
# The PIPs++ test's point selection (docs/conventions.md, *Evaluation protocols and metrics*)
# ----------------------------------------------------------------------------------------------

PIPS_EVAL_POINTS = 256      # test_on_pod.py: N=256
PIPS_MIN_GOOD_FRAMES = 8    # a point must be annotated and visible in at least this many frames
PIPS_MAX_STEP = 512.0       # ... and never move this far (px) from one frame to the next
PIPS_EDGE = 1               # points within 1 px of the border count as neither visible nor valid
PIPS_CLAMP = 32             # ground truth clamped to [-32, W + 32] x [-32, H + 32]


def pips_eval_points(trajs: np.ndarray, visibs: np.ndarray, valids: np.ndarray,
                     frame_size: Sequence[int], num_points: int = PIPS_EVAL_POINTS) -> dict:
    """The points PIPs++'s PointOdyssey test scores, and how it marks them
    (``datasets/pointodysseydataset_fullseq.py`` of aharley/pips2 at 8b5bd9ec, used by
    ``test_on_pod.py``).

    Args:
      trajs: float [T, N, 2] (x, y) pixels of the stored frames, non-finite entries already 0 and
        marked invalid (:func:`load_annotations` does both).
      visibs, valids: bool [T, N].
      frame_size: (H, W) of the stored frames (the original writes 540 x 960, PointOdyssey's size).
      num_points: how many to keep (the test's N).

    Rules, in the original's order: a point within ``PIPS_EDGE`` px of the border
    (``x < 1 or x > W - 2``, same for y) is neither visible nor valid at that frame; kept are the
    points valid and visible at frame 0, valid and visible in at least ``PIPS_MIN_GOOD_FRAMES``
    frames, and whose largest frame-to-frame step (over all frames, invalid ones included) is under
    ``PIPS_MAX_STEP`` px; their ground truth is clamped to ``PIPS_CLAMP`` px outside the frame; of
    the ``M`` survivors, ``min(M, num_points)`` are taken at ``int(linspace(0, M - 1, ·))``
    (truncated, not rounded).

    Returns:
      dict(index int64 [n] (columns of the input), trajs float32 [T, n, 2], visibs bool [T, n],
      valids bool [T, n]) with ``n = min(M, num_points)``; ``n = 0`` when no point survives (the
      original stops with an assertion there).
    """
    trajs = np.asarray(trajs, np.float32)
    if trajs.ndim != 3 or trajs.shape[-1] != 2:
        raise ValueError(f"trajs must be [T, N, 2], got shape {trajs.shape}")
    visibs = np.asarray(visibs, bool)
    valids = np.asarray(valids, bool)
    if visibs.shape != trajs.shape[:2] or valids.shape != trajs.shape[:2]:
        raise ValueError(f"visibs {visibs.shape} and valids {valids.shape} must be "
                         f"{trajs.shape[:2]} like trajs")
    if int(num_points) < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    h, w = (int(s) for s in frame_size)
    x, y = trajs[..., 0], trajs[..., 1]
    inside = (x >= PIPS_EDGE) & (x <= w - 1 - PIPS_EDGE) & (y >= PIPS_EDGE) & (y <= h - 1 - PIPS_EDGE)
    visibs, valids = visibs & inside, valids & inside
    good = visibs & valids
    step = np.linalg.norm(np.diff(trajs, axis=0), axis=-1)  # [T-1, N]
    largest = step.max(axis=0, initial=0.0)
    keep = np.flatnonzero(good[0] & (good.sum(axis=0) >= PIPS_MIN_GOOD_FRAMES)
                          & (largest < PIPS_MAX_STEP))
    n = min(keep.size, int(num_points))
    keep = keep[np.linspace(0, keep.size - 1, n).astype(np.int64)] if n else keep
    lo = np.array([-PIPS_CLAMP, -PIPS_CLAMP], np.float32)
    hi = np.array([w + PIPS_CLAMP, h + PIPS_CLAMP], np.float32)
    return dict(index=keep.astype(np.int64), trajs=np.clip(trajs[:, keep], lo, hi),
                visibs=visibs[:, keep], valids=valids[:, keep])
