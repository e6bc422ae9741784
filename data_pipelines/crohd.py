"""CroHD head tracking (MOTChallenge HT21) as point tracks, for the PIPs++ evaluation protocol.

Layout (docs/conventions.md, *Data formats*)::

    <root>/HT21/train/HT21-0{1..4}/img1/%06d.jpg   frames, 1-based file numbers
                                   gt/gt.txt       MOT CSV: frame, id, left, top, w, h, conf, class,
                                                   visibility (frame 1-based)

`root` may be the folder holding ``HT21``, ``HT21`` itself, or a split folder.

Conventions:

* A head's point is its box centre ``(left + w/2, top + h/2)`` in pixels of the stored frames. Frame
  file ``k`` (1-based) is array index ``k - 1``.
* Clips: ``clip_len`` (1000) frames every ``clip_stride`` (500); a clip may be cut short by the end
  of the sequence and is kept when it has at least ``min_len`` (128) frames.

:func:`iter_clips` selects and marks heads as PIPs++'s CroHD test does (``datasets/crohddataset.py``
used by ``test_on_cro.py``, aharley/pips2; docs/conventions.md, *Evaluation protocols and metrics*):

* :func:`load_gt_dense`: the sequence is ``F`` frames long, ``F`` the frame number of the *last*
  row of ``gt.txt``; head ``id`` is column ``id - 1`` of ``max(id)`` columns; every row, whatever
  its ``conf``, marks its head annotated at its frame (``valids = 1``; ``-1`` where no row says so),
  with ``visibs`` = its visibility column and its box centre (``(0, 0)`` where not annotated);
* :func:`pips_select_heads`, per clip, in the stored frame's pixels ((H, W); the original writes
  1080 x 1920, HT21's size): a point with ``x < 32 or x > W - 32`` (same for y) is neither visible
  nor valid at that frame (``valids`` 0); kept are the heads visible and valid at clip frames 0 and
  1 whose summed frame-to-frame motion over the whole clip (unannotated ``(0, 0)`` frames included)
  exceeds 150 px; then each frame where a kept head is not visible repeats its previous position.
  ``valids`` stay float (``-1`` / ``0`` / ``1``) and are the metric's "valid" as they are.
* Ground truth is scaled to the output frame by ``W_new/W_old``, ``H_new/H_old`` (PIPs++ evaluates
  at 512x896, ``resize_to=(512, 896)``); frames are resized with OpenCV bilinear.

:func:`load_gt` is a stricter reader of the same file for other uses (ids kept as given,
``conf == 0`` rows dropped, frames counted from ``img1/``, boolean masks).
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterator, Sequence

import cv2
import numpy as np

from objtrack_jax.video_io import resize_video

CLIP_LEN = 1000
CLIP_STRIDE = 500
MIN_CLIP_LEN = 128
MIN_MOTION = 150.0
BORDER_MARGIN = 32
EVAL_SIZE = (512, 896)
_IMG_RE = re.compile(r"^(\d{6})\.jpg$")


class CrohdError(ValueError):
    """A CroHD file is missing or malformed; the message names it."""


def _split_dir(root: str, split: str) -> str:
    for cand in (os.path.join(root, "HT21", split), os.path.join(root, split), root):
        if os.path.isdir(cand) and any(os.path.isdir(os.path.join(cand, d, "img1"))
                                       for d in os.listdir(cand)):
            return cand
    raise CrohdError(f"{root}: no HT21 sequences found (expected {root}/HT21/{split}/HT21-XX/img1)")


def list_sequences(root: str, split: str = "train") -> list[str]:
    """Sequence folders (those with ``img1/``), sorted."""
    d = _split_dir(root, split)
    return [os.path.join(d, s) for s in sorted(os.listdir(d)) if os.path.isdir(os.path.join(d, s, "img1"))]


def num_frames(seq_dir: str) -> int:
    """Number of frames in ``img1/``; checks files 000001.jpg .. {T:06d}.jpg are all there."""
    img_dir = os.path.join(seq_dir, "img1")
    if not os.path.isdir(img_dir):
        raise CrohdError(f"{img_dir}: frame folder not found")
    nums = sorted(int(m.group(1)) for m in map(_IMG_RE.match, os.listdir(img_dir)) if m)
    if not nums:
        raise CrohdError(f"{img_dir}: no %06d.jpg frames")
    if nums != list(range(1, len(nums) + 1)):
        missing = sorted(set(range(1, nums[-1] + 1)) - set(nums))
        raise CrohdError(f"{os.path.join(img_dir, f'{missing[0]:06d}.jpg')}: missing frame (expected "
                         f"000001.jpg..{nums[-1]:06d}.jpg contiguous, {len(missing)} missing)")
    return len(nums)


def load_gt(seq_dir: str, keep_ignored: bool = False) -> dict[str, np.ndarray]:
    """Parses ``gt/gt.txt`` into dense tracks over all frames of the sequence.

    Returns dict(trajs float32 [T,N,2] box centres (0 where not annotated), valids bool [T,N],
    visibs bool [T,N], track_ids int64 [N] (MOT ids, sorted)).
    """
    path = os.path.join(seq_dir, "gt", "gt.txt")
    if not os.path.exists(path):
        raise CrohdError(f"{path}: file not found")
    total = num_frames(seq_dir)
    try:
        rows = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError as e:
        raise CrohdError(f"{path}: not a numeric MOT CSV ({e})") from e
    if rows.size == 0:
        rows = np.zeros((0, 9))
    if rows.shape[1] < 6:
        raise CrohdError(f"{path}: {rows.shape[1]} columns, expected at least 6 "
                         "(frame, id, left, top, w, h[, conf, class, visibility])")
    if not np.all(np.isfinite(rows[:, :6])):
        raise CrohdError(f"{path}: non-finite values in frame/id/box columns")
    if rows.shape[1] >= 7 and not keep_ignored:
        rows = rows[rows[:, 6] != 0]
    frame = rows[:, 0].astype(np.int64) - 1
    if frame.size and (frame.min() < 0 or frame.max() >= total):
        raise CrohdError(f"{path}: frame numbers {frame.min() + 1}..{frame.max() + 1} outside the "
                         f"{total} frames in img1/ (expected 1..{total})")
    ids, col = np.unique(rows[:, 1].astype(np.int64), return_inverse=True)
    flat = frame * max(len(ids), 1) + col
    if np.unique(flat).size != flat.size:
        raise CrohdError(f"{path}: duplicate (frame, id) rows")
    trajs = np.zeros((total, len(ids), 2), np.float32)
    valids = np.zeros((total, len(ids)), bool)
    visibs = np.zeros((total, len(ids)), bool)
    trajs[frame, col, 0] = rows[:, 2] + rows[:, 4] / 2.0
    trajs[frame, col, 1] = rows[:, 3] + rows[:, 5] / 2.0
    valids[frame, col] = True
    vis = rows[:, 8] > 0 if rows.shape[1] >= 9 else np.ones(len(rows), bool)
    visibs[frame, col] = vis
    return dict(trajs=trajs, valids=valids, visibs=visibs, track_ids=ids)


def clip_ranges(total: int, clip_len: int = CLIP_LEN, clip_stride: int = CLIP_STRIDE,
                min_len: int = MIN_CLIP_LEN) -> list[tuple[int, int]]:
    """[start, end) frame ranges: `clip_len` frames every `clip_stride`, kept if >= `min_len` long."""
    out = []
    for start in range(0, total, clip_stride):
        end = min(start + clip_len, total)
        if end - start >= min_len:
            out.append((start, end))
    return out


def load_gt_dense(seq_dir: str) -> dict[str, np.ndarray]:
    """``gt/gt.txt`` as PIPs++'s CroHD test reads it (module docstring).

    Returns dict(trajs float64 [F, M, 2] box centres ((0, 0) where not annotated), valids float32
    [F, M] (1 annotated, -1 not), visibs float32 [F, M] (the visibility column, 0 where not
    annotated)), ``F`` = the last row's frame number, ``M`` = the largest head id.
    """
    path = os.path.join(seq_dir, "gt", "gt.txt")
    if not os.path.exists(path):
        raise CrohdError(f"{path}: file not found")
    try:
        rows = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError as e:
        raise CrohdError(f"{path}: not a numeric MOT CSV ({e})") from e
    if rows.shape[0] == 0 or rows.shape[1] < 9:
        raise CrohdError(f"{path}: {rows.shape[0]} rows of {rows.shape[1] if rows.ndim == 2 else 0} "
                         "columns, expected rows of 9 (frame, id, left, top, w, h, conf, class, "
                         "visibility)")
    if not np.all(np.isfinite(rows[:, :9])):
        raise CrohdError(f"{path}: non-finite values")
    frame = rows[:, 0].astype(np.int64) - 1
    head = rows[:, 1].astype(np.int64) - 1
    num = int(frame[-1]) + 1
    if frame.min() < 0 or head.min() < 0:
        raise CrohdError(f"{path}: frame numbers and ids must be >= 1 (1-based), got frame "
                         f"{frame.min() + 1}, id {head.min() + 1}")
    if frame.max() >= num:
        raise CrohdError(f"{path}: frame {frame.max() + 1} lies after the last row's frame {num} "
                         "(the sequence length is the last row's frame; rows sorted by frame)")
    heads = int(head.max()) + 1
    trajs = np.zeros((num, heads, 2), np.float64)
    valids = np.full((num, heads), -1.0, np.float32)
    visibs = np.zeros((num, heads), np.float32)
    trajs[frame, head, 0] = (rows[:, 2] + (rows[:, 2] + rows[:, 4])) / 2.0  # later rows win
    trajs[frame, head, 1] = (rows[:, 3] + (rows[:, 3] + rows[:, 5])) / 2.0
    valids[frame, head] = 1.0
    visibs[frame, head] = rows[:, 8]
    return dict(trajs=trajs, valids=valids, visibs=visibs)


def pips_select_heads(trajs: np.ndarray, valids: np.ndarray, visibs: np.ndarray,
                      frame_size: Sequence[int], min_motion: float = MIN_MOTION,
                      border_margin: float = BORDER_MARGIN) -> dict[str, np.ndarray]:
    """One clip's heads as PIPs++'s CroHD test selects and marks them (module docstring).

    Args:
      trajs: [S, M, 2] box centres in pixels of the stored (H, W) = ``frame_size`` frames;
        valids, visibs: [S, M] as :func:`load_gt_dense` gives them.

    Returns:
      dict(index int64 [n] (the kept columns), trajs float32 [S, n, 2] (invisible frames repeat
      the previous position), valids float32 [S, n] (-1 / 0 / 1), visibs float32 [S, n]).
    """
    trajs = np.asarray(trajs, np.float64)
    if trajs.ndim != 3 or trajs.shape[-1] != 2 or trajs.shape[0] < 2:
        raise ValueError(f"trajs must be [S >= 2, M, 2], got shape {trajs.shape}")
    valids = np.array(valids, np.float32)
    visibs = np.array(visibs, np.float32)
    if valids.shape != trajs.shape[:2] or visibs.shape != trajs.shape[:2]:
        raise ValueError(f"valids {valids.shape} and visibs {visibs.shape} must be "
                         f"{trajs.shape[:2]} like trajs")
    h, w = (float(s) for s in frame_size)
    m = float(border_margin)
    x, y = trajs[..., 0], trajs[..., 1]
    out = (x < m) | (x > w - m) | (y < m) | (y > h - m)
    visibs[out] = 0.0
    valids[out] = 0.0
    motion = np.linalg.norm(np.diff(trajs, axis=0), axis=-1).sum(axis=0)
    keep = np.flatnonzero((visibs[0] > 0) & (visibs[1] > 0) & (valids[0] > 0) & (valids[1] > 0)
                          & (motion > min_motion))
    trajs, valids, visibs = trajs[:, keep], valids[:, keep], visibs[:, keep]
    steps = np.arange(trajs.shape[0])[:, None]
    source = np.where((visibs != 0) | (steps == 0), steps, 0)
    source = np.maximum.accumulate(source, axis=0)  # the last visible frame at or before each
    trajs = np.take_along_axis(trajs, source[..., None], axis=0)
    return dict(index=keep.astype(np.int64), trajs=trajs.astype(np.float32), valids=valids,
                visibs=visibs)


def frame_paths(seq_dir: str, indices: Sequence[int]) -> list[str]:
    """Paths of 0-based frame `indices` (file numbers are 1-based)."""
    return [os.path.join(seq_dir, "img1", f"{int(i) + 1:06d}.jpg") for i in indices]


def _imread(path: str) -> np.ndarray:
    """BGR uint8 image; CrohdError naming ``path`` when it is missing, truncated or undecodable."""
    from objtrack_jax.video_io import read_image  # pylint: disable=import-outside-toplevel

    try:
        return read_image(path, cv2.IMREAD_COLOR)
    except (OSError, ValueError) as e:
        raise CrohdError(str(e)) from e


def load_frames(seq_dir: str, indices: Sequence[int], resize_to: tuple[int, int] | None = None) -> np.ndarray:
    """RGB frames at 0-based `indices` as uint8 [S, H, W, 3], optionally resized (cv2 linear)."""
    out = []
    for path in frame_paths(seq_dir, indices):
        if not os.path.exists(path):
            raise CrohdError(f"{path}: file not found")
        img = _imread(path)
        if resize_to is not None:
            img = resize_video(img[None], resize_to)[0]
        if out and img.shape != out[0].shape:
            raise CrohdError(f"{path}: frame size {img.shape[:2]} differs from the first frame's "
                             f"{out[0].shape[:2]}")
        out.append(img[..., ::-1])
    return np.ascontiguousarray(np.stack(out))


def iter_clips(root: str, split: str = "train", clip_len: int = CLIP_LEN, clip_stride: int = CLIP_STRIDE,
               min_len: int = MIN_CLIP_LEN, min_motion: float = MIN_MOTION,
               border_margin: float = BORDER_MARGIN, resize_to: tuple[int, int] | None = None,
               load_rgbs: bool = True, sequences: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
    """Yields evaluation clips, heads selected and marked as PIPs++'s CroHD test does (module
    docstring); clips without any selected head are skipped.

    Dict: rgbs uint8 [S,H,W,3] (only with `load_rgbs`; clips are long -- consider `resize_to`),
    frame_paths list[str], trajs float32 [S,M,2] (x, y) in output pixels, valids float32 [S,M]
    (-1 / 0 / 1: the metric's "valid"), visibs bool [S,M], track_ids int64 [M] (MOT ids),
    seq_name str, start int, size (H, W) of the output frames, source_size (H, W) of the stored
    frames.
    """
    for seq_dir in (list_sequences(root, split) if sequences is None else sequences):
        gt = load_gt_dense(seq_dir)
        total = gt["trajs"].shape[0]
        first = _imread(frame_paths(seq_dir, [0])[0])
        src_hw = first.shape[:2]
        out_hw = tuple(int(s) for s in resize_to) if resize_to is not None else src_hw
        scale = np.array([out_hw[1] / src_hw[1], out_hw[0] / src_hw[0]], np.float32)
        for start, end in clip_ranges(total, clip_len, clip_stride, max(int(min_len), 2)):
            sel = pips_select_heads(gt["trajs"][start:end], gt["valids"][start:end],
                                    gt["visibs"][start:end], src_hw, min_motion, border_margin)
            if sel["index"].size == 0:
                continue
            idx = np.arange(start, end)
            clip = dict(frame_paths=frame_paths(seq_dir, idx), trajs=sel["trajs"] * scale,
                        valids=sel["valids"], visibs=sel["visibs"] > 0,
                        track_ids=sel["index"] + 1,
                        seq_name=os.path.basename(os.path.normpath(seq_dir)), start=int(start),
                        size=out_hw, source_size=tuple(src_hw))
            if load_rgbs:
                clip["rgbs"] = load_frames(seq_dir, idx, resize_to)
            yield clip
