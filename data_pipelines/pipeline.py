"""Training input pipeline: clip sampling, point filters, augmentations, per-host global batches.

Everything per example is numpy/OpenCV code driven by one ``numpy.random.Generator`` that is a pure
function of ``(config.seed, global example index, attempt)``; tf.data only runs it in parallel
(``tf.numpy_function`` inside a deterministic ``map``), batches and prefetches. Consequences:

* **Deterministic**: example ``g`` of the global stream is the same in every run with the same seed,
  data and config, regardless of the number of processes or parallel calls.
* **Resumable**: the data position is the training step. ``make_train_iterator(..., start_step=k)``
  yields exactly the batches ``k, k+1, ...`` of a stream started at 0 (no replay, no skip loop).
* **Per host**: global batch ``b`` holds global examples ``[b*GB, (b+1)*GB)``; process ``p`` computes
  only the contiguous block ``[b*GB + p*LB, b*GB + (p+1)*LB)`` (``LB = GB // process_count``), so
  processes get disjoint examples and ``jax.make_array_from_process_local_data`` over ``P('data')``
  assembles exactly the single-process global batch.

Sources
-------
* ``source='dir'``: a PointOdyssey-layout tree (``root/split/<seq>/...``) read with the reader's
  random-access pieces (``pointodyssey.load_frames/load_masks/load_annotations``): the same clips as
  ``pointodyssey.iter_clips`` for a given (start, frame_stride), decoding only the needed frames.
* ``source='tfds'``: the ``tfds_pointodyssey`` builder's clips (``config.tfds_name`` or a prepared
  ``builder=`` passed to ``make_train_iterator``). Stored as ``array_record`` they are random access
  and behave exactly like 'dir' (frame strides/offsets sub-sampled inside each stored clip).
  Stored as TFRecord (the builder's default) they are streamed (``make_tfds_stream_dataset``): per
  process split, seeded order, resumable per process from ``state()['raw_position']``.
* ``in_memory_source(sequences)``: in-memory sequences (tests, benchmarks).

Clip sampling
-------------
The clip table lists every ``(sequence, start frame, frame stride)`` for each stride in
``config.frame_strides`` (starts every ``config.clip_stride`` frames, all ``clip_len`` frames inside the
sequence). Global example ``g`` belongs to epoch ``g // M`` (``M`` = table size) and uses entry
``perm_epoch[g % M]`` of a seeded permutation; within one epoch every clip is used once over all
processes. When a clip yields fewer than ``config.min_points`` points after augmentation and filtering,
it is skipped (counted in the example's ``num_skipped``) and a replacement clip drawn from
``(seed, g, attempt)`` is tried, up to ``config.max_retries`` times.

Per-example transform (``process_clip``), in this order
-------------------------------------------------------
1. sanitise: non-finite coordinates -> invalid (set to 0); ``visible &= valid``.
2. time reversal (p ``time_reverse_prob``): every per-frame array reversed.
3. scale/crop: per-clip scale ``s ~ U(scale_range)`` and aspect ``a ~ U(aspect_range)``
   (``sx = s*sqrt(a)``, ``sy = s/sqrt(a)``, raised to cover the crop), then a random crop of
   ``crop_size``. Frames are warped bilinearly, masks with nearest neighbour, both by the same
   ``cv2.warpAffine``; tracks get the same map in the pixel-centre convention
   ``u = sx*(x+0.5) - 0.5 - x0`` (exact for OpenCV resampling, so masks stay aligned). Without scale
   jitter the crop is an exact integer slice (``u = x - x0``). Points outside the crop
   (``u`` not in ``[0, W-1]`` or ``v`` not in ``[0, H-1]``) become not visible but stay valid.
4. flips (exact slicing): horizontal ``x -> W-1-x``, vertical ``y -> H-1-y``.
5. x/y swap per example (only with ``xy_swap='example'``, square crops): frames and masks transposed,
   ``(x, y) -> (y, x)``. With ``xy_swap='batch'`` the whole batch is swapped (p ``xy_swap_prob``, one
   draw per step from ``(seed, step)``, identical on all processes) by the iterator, see ``swap_xy``.
6. photometric, frames only: colour jitter (brightness, contrast, saturation, hue rotation as one
   3x4 affine colour map per frame), Gaussian blur on random frames, Gaussian noise.
7. eraser occluders on frames ``t >= 1``: axis-aligned rectangles filled with the rectangle's mean
   colour; points inside (pixel-centre test ``x0-0.5 <= x < x1-0.5``) become not visible. The masks
   are left unchanged by default (they describe the scene behind the occluder, which is what the
   objectness loss compares); ``eraser_mask_id >= 0`` writes that id into the erased region instead.
8. point filters (``point_filter``) and farthest-point sampling (``farthest_point_sampling``), then
   padding to ``num_points`` with ``valids = vis = point_valid = 0`` and zero coordinates.

Point filters (SPEC §2), evaluated on the augmented crop
--------------------------------------------------------
* valid and visible at frames 0 and 1;
* visible in ``>= max(sqrt(S), 2)`` frames (``min_vis_frames`` overrides);
* not on an object-mask edge at frame 0: the pixel ``(int(y0), int(x0))`` (truncation, like the
  objectness loss) is on an edge when any id in its 3x3 neighbourhood differs from its own (image
  borders replicate, so the border itself is no edge);
* motion filter: the largest displacement from the frame-0 position over valid frames must be
  ``>= motion_min_px`` (default 1 px: drops perfectly static points, which carry no tracking signal),
  and no step between consecutive valid frames may exceed ``motion_max_step_frac * min(H, W)``
  (default 0.5: drops annotation glitches/teleports).

FPS runs on ``(x0, y0, vscale*mean_vx, vscale*mean_vy)`` in crop pixels, with ``vscale = S-1`` unless
``fps_velocity_scale`` is set (mean velocity times clip length ~ total displacement, so both halves of
the feature have comparable pixel units); the first point is drawn from the example generator, ties go
to the lowest index.

Example dict (one example; batches add a leading axis)
------------------------------------------------------
``rgbs`` uint8 [S,H,W,3] (RGB), ``masks`` int32 [S,H,W] instance ids, ``trajs`` float32 [S,N,2] (x,y
pixels, x=0 the centre of the first column), ``vis`` float32 [S,N], ``valids`` float32 [S,N],
``point_valid`` float32 [N] (0 for padding), ``point_index`` int32 [N] (column of the selected point
in the source clip's annotation, -1 for padding), ``example_index`` int32, ``clip_index`` int32 (row of
the clip table), ``seq_index`` int32, ``start`` int32, ``frame_stride`` int32, ``num_skipped`` int32
(clips rejected before this one).
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import functools
import math
import os
import threading
import weakref
from typing import Any, Callable, Iterator, Mapping, Sequence

import ml_collections
import numpy as np

try:  # OpenCV is used for warping/blur; it releases the GIL, which lets tf.data run clips in parallel.
    import cv2
except ImportError:  # pragma: no cover
    cv2 = None

FIELDS = ("rgbs", "masks", "trajs", "vis", "valids", "point_valid", "point_index", "example_index",
          "clip_index",
          "seq_index", "start", "frame_stride", "num_skipped")


# ---------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------

def default_data_config() -> ml_collections.ConfigDict:
    """Training-data config (paper-code defaults: S=24, N=128, 384x512 crops)."""
    c = ml_collections.ConfigDict()
    c.source = "dir"  # 'dir' (PointOdyssey layout under root/split) or 'tfds'.
    c.root = ""  # dataset root for source='dir' (holds <split>/<seq>/...).
    c.split = "train"
    c.tfds_name = "point_odyssey_clips/s24_c12_f1_native"  # source='tfds': builder name[/config]
    c.tfds_data_dir = ml_collections.config_dict.placeholder(str)

    c.clip_len = 24  # S
    c.clip_stride = 8  # distance between clip starts in the table (in original frames).
    c.frame_strides = (1, 2)  # temporal strides a clip may be sampled with.
    c.num_points = 128  # N
    c.min_points = 32  # clips with fewer surviving points are skipped (counted).
    c.crop_size = (384, 512)  # (H, W)
    c.max_retries = 20

    c.filters = ml_collections.ConfigDict()
    c.filters.min_vis_frames = ml_collections.config_dict.placeholder(int)  # None -> max(sqrt(S), 2)
    c.filters.edge = True
    c.filters.motion_min_px = 1.0
    c.filters.motion_max_step_frac = 0.5
    c.fps_velocity_scale = ml_collections.config_dict.placeholder(float)  # None -> S-1

    a = c.aug = ml_collections.ConfigDict()
    a.enabled = True
    a.time_reverse_prob = 0.5
    a.hflip_prob = 0.5
    a.vflip_prob = 0.5
    a.scale_prob = 0.8
    a.scale_range = (0.8, 1.25)
    a.aspect_range = (0.9, 1.1)
    a.xy_swap = "batch"  # 'batch' | 'example' (square crops only) | 'none'
    a.xy_swap_prob = 0.5
    a.color_prob = 0.8
    a.color_per_frame = False
    a.brightness = 0.3  # multiplicative factor in [1-b, 1+b]
    a.contrast = 0.3
    a.saturation = 0.3
    a.hue = 0.05  # fraction of a full turn
    a.blur_prob = 0.2
    a.blur_frame_prob = 0.5
    a.blur_sigma = (0.1, 1.5)
    a.noise_prob = 0.2
    a.noise_std = (1.0, 8.0)  # in uint8 units
    a.eraser_prob = 0.5
    a.eraser_frame_prob = 0.5
    a.eraser_max = 3  # rectangles per erased frame: 1..eraser_max
    a.eraser_size = (0.1, 0.4)  # side as a fraction of the crop side
    a.eraser_mask_id = -1  # -1: masks unchanged; >=0: id written into the erased region

    c.seed = 0
    c.num_parallel_calls = -1  # -1 = tf.data.AUTOTUNE
    c.prefetch = 2  # batches
    c.shuffle_buffer = 256  # only for streaming TFDS (non-random-access files)
    return c


# ---------------------------------------------------------------------------------------------------
# Point filters and farthest-point sampling
# ---------------------------------------------------------------------------------------------------

def mask_edge_map(mask: np.ndarray) -> np.ndarray:
    """bool [H,W]: True where any id in the 3x3 neighbourhood differs (borders replicated)."""
    m = np.asarray(mask)
    p = np.pad(m, 1, mode="edge")
    h, w = m.shape
    edge = np.zeros(m.shape, bool)
    for dy in range(3):
        for dx in range(3):
            if dy == 1 and dx == 1:
                continue
            edge |= p[dy:dy + h, dx:dx + w] != m
    return edge


def in_bounds(trajs: np.ndarray, height: int, width: int) -> np.ndarray:
    """bool [...]: pixel-centre coordinates inside [0, W-1] x [0, H-1]."""
    x, y = trajs[..., 0], trajs[..., 1]
    return (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)


def point_filter(trajs, vis, valids, mask0, *, min_vis_frames=None, edge=True, motion_min_px=1.0,
                 motion_max_step_px=None) -> np.ndarray:
    """SPEC §2 training filters; returns bool [N] (see the module docstring for the definitions)."""
    trajs = np.asarray(trajs, np.float32)
    vis = np.asarray(vis, bool)
    valids = np.asarray(valids, bool)
    s = trajs.shape[0]
    keep = valids[0] & valids[1] & vis[0] & vis[1]
    need = max(math.sqrt(s), 2.0) if min_vis_frames is None else float(min_vis_frames)
    keep &= vis.sum(0) >= need
    if edge and mask0 is not None:
        h, w = mask0.shape
        ix = np.clip(trajs[0, :, 0], 0, w - 1).astype(np.int64)  # truncation, like the objectness loss
        iy = np.clip(trajs[0, :, 1], 0, h - 1).astype(np.int64)
        keep &= ~mask_edge_map(mask0)[iy, ix]
    disp = np.linalg.norm(trajs - trajs[:1], axis=-1)
    disp = np.where(valids, disp, 0.0).max(0)
    keep &= disp >= motion_min_px
    if motion_max_step_px is not None:
        step = np.linalg.norm(trajs[1:] - trajs[:-1], axis=-1)
        both = valids[1:] & valids[:-1]
        keep &= ~np.any(both & (step > motion_max_step_px), axis=0)
    return keep


def fps_features(trajs, valids, velocity_scale: float) -> np.ndarray:
    """[N,4] = (x0, y0, vscale*mean vx, vscale*mean vy) over consecutive valid pairs."""
    d = trajs[1:] - trajs[:-1]
    both = (valids[1:] & valids[:-1]).astype(np.float64)[..., None]
    v = (d * both).sum(0) / np.maximum(both.sum(0), 1.0)
    return np.concatenate([trajs[0], velocity_scale * v], -1).astype(np.float64)


def farthest_point_sampling(features: np.ndarray, k: int, first: int = 0) -> np.ndarray:
    """Greedy FPS: indices (int64 [min(k, M)]) starting at ``first``; ties -> lowest index."""
    f = np.asarray(features, np.float64)
    m = f.shape[0]
    k = min(k, m)
    out = np.empty(k, np.int64)
    if k == 0:
        return out
    out[0] = first
    dist = np.sum((f - f[first]) ** 2, -1)
    for i in range(1, k):
        j = int(np.argmax(dist))
        out[i] = j
        dist = np.minimum(dist, np.sum((f - f[j]) ** 2, -1))
    return out


# ---------------------------------------------------------------------------------------------------
# Augmentations (numpy; a clip is a dict with rgbs [S,H,W,3] u8, masks [S,H,W], trajs [S,N,2],
# vis bool [S,N], valids bool [S,N])
# ---------------------------------------------------------------------------------------------------

def reverse_time(clip: dict) -> dict:
    out = dict(clip)
    for k in ("rgbs", "masks", "trajs", "vis", "valids"):
        if out.get(k) is not None:
            out[k] = out[k][::-1]
    return out


def flip(clip: dict, horizontal: bool, vertical: bool) -> dict:
    """Exact flips: x -> W-1-x and/or y -> H-1-y."""
    out = dict(clip)
    h, w = clip["rgbs"].shape[1:3]
    trajs = clip["trajs"].copy()
    if horizontal:
        out["rgbs"] = out["rgbs"][:, :, ::-1]
        out["masks"] = out["masks"][:, :, ::-1]
        trajs[..., 0] = (w - 1) - trajs[..., 0]
    if vertical:
        out["rgbs"] = out["rgbs"][:, ::-1]
        out["masks"] = out["masks"][:, ::-1]
        trajs[..., 1] = (h - 1) - trajs[..., 1]
    out["trajs"] = trajs
    return out


def swap_xy(data: Mapping[str, Any]) -> dict:
    """x/y swap (SPEC §2 batch augmentation) of an example or a batch; numpy or jax arrays.

    Frames ``[..., H, W, 3]`` and masks ``[..., H, W]`` are transposed, track coordinates become
    ``(y, x)``. Other entries are passed through.
    """
    out = dict(data)
    out["rgbs"] = data["rgbs"].swapaxes(-3, -2)
    if data.get("masks") is not None:
        out["masks"] = data["masks"].swapaxes(-2, -1)
    out["trajs"] = data["trajs"][..., ::-1]
    return out


def scale_crop(clip: dict, crop_size, sx: float, sy: float, x0: float, y0: float) -> dict:
    """Scales by (sx, sy) and crops ``crop_size`` at (x0, y0) of the scaled image (see docstring)."""
    hc, wc = crop_size
    rgbs, masks = clip["rgbs"], clip["masks"]
    trajs = clip["trajs"].astype(np.float32).copy()
    if sx == 1.0 and sy == 1.0 and float(x0).is_integer() and float(y0).is_integer():
        xi, yi = int(x0), int(y0)
        rgbs = rgbs[:, yi:yi + hc, xi:xi + wc]
        masks = masks[:, yi:yi + hc, xi:xi + wc]
        trajs[..., 0] -= xi
        trajs[..., 1] -= yi
    else:
        bx = 0.5 * sx - 0.5 - x0
        by = 0.5 * sy - 0.5 - y0
        m = np.array([[sx, 0.0, bx], [0.0, sy, by]], np.float64)
        rgbs = np.stack([cv2.warpAffine(np.ascontiguousarray(f), m, (wc, hc), flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_REPLICATE) for f in rgbs])
        mdt = masks.dtype
        mk = masks if mdt in (np.uint8, np.uint16, np.int16, np.float32) else masks.astype(np.float32)
        masks = np.stack([cv2.warpAffine(np.ascontiguousarray(f), m, (wc, hc), flags=cv2.INTER_NEAREST,
                                         borderMode=cv2.BORDER_REPLICATE) for f in mk]).astype(mdt)
        trajs[..., 0] = sx * (trajs[..., 0] + 0.5) - 0.5 - x0
        trajs[..., 1] = sy * (trajs[..., 1] + 0.5) - 0.5 - y0
    out = dict(clip)
    out.update(rgbs=rgbs, masks=masks, trajs=trajs,
               vis=clip["vis"] & in_bounds(trajs, hc, wc))
    return out


def _color_matrix(rng, a) -> np.ndarray:
    """3x4 affine RGB map (brightness, saturation, hue; contrast is added per frame)."""
    b = rng.uniform(1 - a.brightness, 1 + a.brightness)
    s = rng.uniform(1 - a.saturation, 1 + a.saturation)
    hue = rng.uniform(-a.hue, a.hue) * 2 * np.pi
    c = rng.uniform(1 - a.contrast, 1 + a.contrast)
    # Hue rotation in YIQ; saturation scales the chroma (I, Q) channels.
    to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    rot = np.array([[1, 0, 0], [0, np.cos(hue), -np.sin(hue)], [0, np.sin(hue), np.cos(hue)]])
    sat = np.diag([1.0, s, s])
    m = np.linalg.inv(to_yiq) @ sat @ rot @ to_yiq * b
    return m, c


def color_jitter(rgbs: np.ndarray, rng: np.random.Generator, a) -> np.ndarray:
    s = rgbs.shape[0]
    out = np.empty_like(rgbs)
    params = None
    for t in range(s):
        if params is None or a.color_per_frame:
            params = _color_matrix(rng, a)
        m, c = params
        f = np.ascontiguousarray(rgbs[t])
        gray = float(f.mean())  # contrast around the frame mean: y = c*(Mx - g) + g
        m34 = np.concatenate([c * m, np.full((3, 1), (1 - c) * gray)], 1)
        out[t] = cv2.transform(f, m34)
    return out


def blur(rgbs, rng, a) -> np.ndarray:
    out = rgbs.copy()
    for t in range(rgbs.shape[0]):
        if rng.random() < a.blur_frame_prob:
            sigma = rng.uniform(*a.blur_sigma)
            out[t] = cv2.GaussianBlur(np.ascontiguousarray(rgbs[t]), (0, 0), sigma)
    return out


def add_noise(rgbs, rng, a) -> np.ndarray:
    std = rng.uniform(*a.noise_std)
    n = rng.standard_normal(rgbs.shape, dtype=np.float32) * std
    return np.clip(rgbs.astype(np.float32) + n, 0, 255).round().astype(np.uint8)


def erase(clip: dict, rng, a) -> dict:
    """Eraser occluders on frames >= 1 (see the module docstring)."""
    rgbs = clip["rgbs"].copy()
    masks = clip["masks"]
    vis = clip["vis"].copy()
    trajs = clip["trajs"]
    s, h, w = rgbs.shape[:3]
    if a.eraser_mask_id >= 0:
        masks = masks.copy()
    for t in range(1, s):
        if rng.random() >= a.eraser_frame_prob:
            continue
        for _ in range(int(rng.integers(1, a.eraser_max + 1))):
            eh = max(1, int(round(rng.uniform(*a.eraser_size) * h)))
            ew = max(1, int(round(rng.uniform(*a.eraser_size) * w)))
            ya = int(rng.integers(0, h - eh + 1))
            xa = int(rng.integers(0, w - ew + 1))
            region = rgbs[t, ya:ya + eh, xa:xa + ew]
            region[...] = region.reshape(-1, 3).mean(0).round().astype(np.uint8)
            if a.eraser_mask_id >= 0:
                masks[t, ya:ya + eh, xa:xa + ew] = a.eraser_mask_id
            x, y = trajs[t, :, 0], trajs[t, :, 1]
            inside = (x >= xa - 0.5) & (x < xa + ew - 0.5) & (y >= ya - 0.5) & (y < ya + eh - 0.5)
            vis[t] &= ~inside
    out = dict(clip)
    out.update(rgbs=rgbs, masks=masks, vis=vis)
    return out


def sanitize(clip: dict) -> dict:
    trajs = np.asarray(clip["trajs"], np.float32)
    finite = np.all(np.isfinite(trajs), -1)
    valids = np.asarray(clip["valids"], bool) & finite
    out = dict(clip)
    out["trajs"] = np.where(finite[..., None], trajs, 0.0).astype(np.float32)
    out["valids"] = valids
    out["vis"] = np.asarray(clip["vis"] if "vis" in clip else clip["visibs"], bool) & valids
    out.pop("visibs", None)
    return out


def augment(clip: dict, config, rng: np.random.Generator) -> dict:
    """Steps 1-7 of the module docstring: returns the augmented crop with all points."""
    a = config.aug
    on = a.enabled
    clip = sanitize(clip)
    if on and rng.random() < a.time_reverse_prob:
        clip = reverse_time(clip)
    h0, w0 = clip["rgbs"].shape[1:3]
    hc, wc = config.crop_size
    sx = sy = 1.0
    if on and rng.random() < a.scale_prob:
        sc = rng.uniform(*a.scale_range)
        asp = rng.uniform(*a.aspect_range)
        sx, sy = sc * math.sqrt(asp), sc / math.sqrt(asp)
    sx, sy = max(sx, wc / w0), max(sy, hc / h0)  # the scaled image must cover the crop
    if sx == 1.0 and sy == 1.0:
        x0, y0 = float(rng.integers(0, w0 - wc + 1)), float(rng.integers(0, h0 - hc + 1))
    else:
        x0, y0 = rng.uniform(0, max(w0 * sx - wc, 0)), rng.uniform(0, max(h0 * sy - hc, 0))
    clip = scale_crop(clip, (hc, wc), sx, sy, x0, y0)
    if on:
        hf, vf = rng.random() < a.hflip_prob, rng.random() < a.vflip_prob
        clip = flip(clip, hf, vf)
        if a.xy_swap == "example" and rng.random() < a.xy_swap_prob:
            if hc != wc:
                raise ValueError("aug.xy_swap='example' needs a square crop, got "
                                 f"{tuple(config.crop_size)}; "
                                 "use 'batch'")
            clip = swap_xy(clip)
        rgbs = clip["rgbs"]
        if rng.random() < a.color_prob:
            rgbs = color_jitter(rgbs, rng, a)
        if rng.random() < a.blur_prob:
            rgbs = blur(rgbs, rng, a)
        if rng.random() < a.noise_prob:
            rgbs = add_noise(rgbs, rng, a)
        clip["rgbs"] = rgbs
        if rng.random() < a.eraser_prob:
            clip = erase(clip, rng, a)
    clip["vis"] = clip["vis"] & clip["valids"]
    return clip


def select_points(clip: dict, config, rng: np.random.Generator):
    """Filters + FPS + padding. Returns (example dict without the index fields, n_survivors)."""
    s = clip["trajs"].shape[0]
    h, w = clip["rgbs"].shape[1:3]
    f = config.filters
    max_step = None if f.motion_max_step_frac is None else f.motion_max_step_frac * min(h, w)
    keep = point_filter(clip["trajs"], clip["vis"], clip["valids"], clip["masks"][0],
                        min_vis_frames=f.min_vis_frames, edge=f.edge, motion_min_px=f.motion_min_px,
                        motion_max_step_px=max_step)
    cand = np.flatnonzero(keep)
    n = config.num_points
    vscale = float(s - 1) if config.fps_velocity_scale is None else float(config.fps_velocity_scale)
    if len(cand):
        feats = fps_features(clip["trajs"][:, cand], clip["valids"][:, cand], vscale)
        sel = cand[farthest_point_sampling(feats, n, first=int(rng.integers(len(cand))))]
    else:
        sel = cand
    k = len(sel)
    trajs = np.zeros((s, n, 2), np.float32)
    vis = np.zeros((s, n), np.float32)
    valids = np.zeros((s, n), np.float32)
    pv = np.zeros((n,), np.float32)
    trajs[:, :k] = clip["trajs"][:, sel]
    vis[:, :k] = clip["vis"][:, sel]
    valids[:, :k] = clip["valids"][:, sel]
    pv[:k] = 1.0
    pidx = np.full((n,), -1, np.int32)
    pidx[:k] = sel
    ex = dict(rgbs=np.ascontiguousarray(clip["rgbs"], dtype=np.uint8),
              masks=np.ascontiguousarray(clip["masks"]).astype(np.int32),
              trajs=trajs, vis=vis, valids=valids, point_valid=pv, point_index=pidx)
    return ex, len(cand)


def process_clip(clip: dict, config, rng: np.random.Generator):
    """Augments one clip and selects its points; returns the example or None (too few points)."""
    aug = augment(clip, config, rng)
    ex, n_ok = select_points(aug, config, rng)
    if n_ok < config.min_points:
        return None
    return ex


# ---------------------------------------------------------------------------------------------------
# Clip sources: a table of (sequence, start, stride) rows and a loader
# ---------------------------------------------------------------------------------------------------

def clip_table(num_frames: Sequence[int], clip_len: int, clip_stride: int,
               frame_strides: Sequence[int]) -> np.ndarray:
    """int64 [M,3] rows (seq_index, start, frame_stride) of every clip fully inside its sequence."""
    rows = []
    for si, t in enumerate(num_frames):
        for fs in frame_strides:
            span = (clip_len - 1) * fs + 1
            for st in range(0, t - span + 1, clip_stride):
                rows.append((si, st, fs))
    return np.asarray(rows, np.int64).reshape(-1, 3)


@dataclasses.dataclass
class ClipSource:
    """Random access to clips: ``table`` rows (seq, start, stride); ``load(seq, start, stride, S)``."""
    table: np.ndarray
    load: Callable[[int, int, int, int], dict]
    names: Sequence[str] = ()

    def __len__(self):
        return len(self.table)


def in_memory_source(sequences: Sequence[Mapping[str, np.ndarray]], config) -> ClipSource:
    """Source over in-memory sequences (dicts with rgbs, masks, trajs|trajs_2d, visibs|vis, valids),
    e.g. ``synthetic.generate_sequence`` outputs."""
    seqs = list(sequences)

    def load(si, start, fs, s):
        sq = seqs[si]
        sl = slice(start, start + (s - 1) * fs + 1, fs)
        vis = sq["visibs"] if "visibs" in sq else sq["vis"]
        trajs = sq["trajs"] if "trajs" in sq else sq["trajs_2d"]
        return dict(rgbs=sq["rgbs"][sl], masks=sq["masks"][sl], trajs=trajs[sl],
                    vis=vis[sl], valids=sq["valids"][sl])

    table = clip_table([len(s["rgbs"]) for s in seqs], config.clip_len, config.clip_stride,
                       config.frame_strides)
    return ClipSource(table, load, [str(s.get("seq_name", i)) for i, s in enumerate(seqs)])


@functools.lru_cache(maxsize=4)
def _cached_annotations(seq_dir: str) -> dict:
    """Annotations of a sequence, cached per process (a few sequences: real ones are large)."""
    from data_pipelines import pointodyssey  # pylint: disable=import-outside-toplevel
    return pointodyssey.load_annotations(seq_dir)


def dir_source(config) -> ClipSource:
    """Random-access clips of the PointOdyssey-layout tree ``config.root/config.split``.

    Built on the reader's pieces (``pointodyssey.list_sequences/num_frames/load_frames/load_masks/
    load_annotations``), so a clip equals what ``pointodyssey.iter_clips`` yields for the same
    (start, frame_stride); only the requested frames are decoded.
    """
    from data_pipelines import pointodyssey as po  # pylint: disable=import-outside-toplevel
    seq_dirs = po.list_sequences(config.root, config.split)
    if not seq_dirs:
        raise FileNotFoundError(f"no sequences under {os.path.join(config.root, config.split)}")
    nframes = [po.num_frames(d) for d in seq_dirs]

    def load(si, start, fs, s):
        d = seq_dirs[si]
        idx = np.arange(s) * fs + start
        rgbs = po.load_frames(d, idx)
        anno = _cached_annotations(d)
        return dict(rgbs=rgbs, masks=po.load_masks(d, idx, expected_hw=rgbs.shape[1:3]),
                    trajs=anno["trajs"][idx], vis=anno["visibs"][idx], valids=anno["valids"][idx])

    table = clip_table(nframes, config.clip_len, config.clip_stride, config.frame_strides)
    if len(table) == 0:
        raise ValueError(f"no clip of {config.clip_len} frames with strides {config.frame_strides} "
                         "fits "
                         f"in the sequences under {config.root}/{config.split} (frames: {nframes})")
    return ClipSource(table, load, [os.path.basename(d) for d in seq_dirs])


def tfds_builder(config):
    """The TFDS builder named by ``config.tfds_name`` (importing the project's builder registers it)."""
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    try:
        # Importing the project's builder registers it with TFDS.
        from data_pipelines import tfds_pointodyssey  # pylint: disable=all
    except ImportError:
        pass
    return tfds.builder(config.tfds_name, data_dir=config.tfds_data_dir)


def _fitting_strides(config, length: int) -> list:
    strides = [fs for fs in config.frame_strides if (config.clip_len - 1) * fs + 1 <= length]
    if not strides:
        raise ValueError(f"stored clips have {length} frames: too short for clip_len={config.clip_len} "
                         f"with any of frame_strides={tuple(config.frame_strides)}")
    return strides


def tfds_source(config, builder=None) -> ClipSource | None:
    """Random-access TFDS source; None when the files are not random access (TFRecord).

    Random access needs the dataset prepared as ``array_record`` (TFDS data sources). Each record is a
    stored clip of length L; rows are (record, offset, stride) for every stride in
    ``config.frame_strides`` that fits and offsets every ``clip_stride`` frames.
    """
    builder = tfds_builder(config) if builder is None else builder
    try:
        ds = builder.as_data_source(split=config.split)
    except Exception:  # pylint: disable=broad-except  # TFRecord files: no random access
        return None
    length = builder.info.features["rgbs"].shape[0]
    length = len(ds[0]["rgbs"]) if length is None else length
    strides = _fitting_strides(config, length)
    table = clip_table([length] * len(ds), config.clip_len, config.clip_stride, strides)

    def load(ri, start, fs, s):
        r = ds[int(ri)]
        sl = slice(start, start + (s - 1) * fs + 1, fs)
        vis = r["visibs"] if "visibs" in r else r["vis"]
        return dict(rgbs=np.asarray(r["rgbs"])[sl], masks=np.asarray(r["masks"])[sl],
                    trajs=np.asarray(r["trajs"])[sl], vis=np.asarray(vis)[sl],
                    valids=np.asarray(r["valids"])[sl])

    return ClipSource(table, load)


def make_source(config) -> ClipSource | None:
    """Random-access source for ``config.source``; None for a TFRecord TFDS dataset (streamed)."""
    if config.source == "dir":
        return dir_source(config)
    if config.source == "tfds":
        return tfds_source(config)
    raise ValueError(f"unknown data source {config.source!r} (expected 'dir' or 'tfds')")


# ---------------------------------------------------------------------------------------------------
# Example k of the global stream
# ---------------------------------------------------------------------------------------------------

class ExampleMaker:
    """Example ``g`` of the global stream, a pure function of (config.seed, g)."""

    def __init__(self, source: ClipSource, config):
        self.source = source
        self.config = config
        self._perms = collections.OrderedDict()
        self._lock = threading.Lock()
        if len(source) == 0:
            raise ValueError("the clip table is empty")

    def _perm(self, epoch: int) -> np.ndarray:
        with self._lock:
            p = self._perms.get(epoch)
            if p is None:
                p = np.random.default_rng([self.config.seed, epoch, 0x5EED])
                p = p.permutation(len(self.source))
                self._perms[epoch] = p
                while len(self._perms) > 4:
                    self._perms.popitem(last=False)
            return p

    def clip_index(self, g: int, attempt: int) -> int:
        m = len(self.source)
        if attempt == 0:
            return int(self._perm(g // m)[g % m])
        return int(np.random.default_rng([self.config.seed, g, attempt, 0xC11B]).integers(m))

    def __call__(self, g: int) -> dict:
        c = self.config
        for attempt in range(c.max_retries + 1):
            ci = self.clip_index(g, attempt)
            si, start, fs = (int(v) for v in self.source.table[ci])
            clip = self.source.load(si, start, fs, c.clip_len)
            rng = np.random.default_rng([c.seed, g, attempt])
            ex = process_clip(clip, c, rng)
            if ex is not None:
                ex.update(example_index=np.int32(g), clip_index=np.int32(ci), seq_index=np.int32(si),
                          start=np.int32(start), frame_stride=np.int32(fs),
                          num_skipped=np.int32(attempt))
                return ex
        raise RuntimeError(
            f"example {g}: {c.max_retries + 1} clips in a row had fewer than min_points="
            f"{c.min_points} points passing the filters; lower min_points or relax config.filters")


# ---------------------------------------------------------------------------------------------------
# tf.data and global batches
# ---------------------------------------------------------------------------------------------------

def hide_accelerators_from_tf():
    """Keeps TensorFlow off GPUs/TPUs (they belong to JAX)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    for kind in ("GPU", "TPU"):
        try:
            tf.config.set_visible_devices([], kind)
        except (RuntimeError, ValueError):  # already initialised or kind unknown
            pass


def local_batch_size(global_batch: int, process_count: int) -> int:
    if global_batch % process_count:
        raise ValueError(f"global batch {global_batch} is not divisible by the number of processes "
                         f"{process_count}")
    return global_batch // process_count


def global_example_index(local_index, local_batch: int, global_batch: int, process_index: int):
    """Local example i of process p -> global example g (contiguous block p of each global batch)."""
    return (local_index // local_batch) * global_batch + process_index * local_batch + \
        local_index % local_batch


def _example_spec(config):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    s, n = config.clip_len, config.num_points
    h, w = config.crop_size
    if config.aug.enabled and config.aug.xy_swap == "example" and config.aug.xy_swap_prob > 0:
        assert h == w
    return {
        "rgbs": ((s, h, w, 3), tf.uint8), "masks": ((s, h, w), tf.int32),
        "trajs": ((s, n, 2), tf.float32), "vis": ((s, n), tf.float32),
        "valids": ((s, n), tf.float32), "point_valid": ((n,), tf.float32),
        "point_index": ((n,), tf.int32),
        "example_index": ((), tf.int32), "clip_index": ((), tf.int32), "seq_index": ((), tf.int32),
        "start": ((), tf.int32), "frame_stride": ((), tf.int32), "num_skipped": ((), tf.int32)}


def make_local_dataset(config, global_batch: int, start_step: int = 0, *,
                       process_index: int | None = None, process_count: int | None = None,
                       source: ClipSource | None = None):
    """tf.data.Dataset of this process's local batches (numpy-convertible dicts), from ``start_step``.

    Batch ``b`` of process ``p`` holds global examples ``b*GB + p*LB + [0, LB)``.
    """
    import jax  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    hide_accelerators_from_tf()
    pi = jax.process_index() if process_index is None else process_index
    pc = jax.process_count() if process_count is None else process_count
    lb = local_batch_size(global_batch, pc)
    source = make_source(config) if source is None else source
    if source is None:
        raise ValueError("this TFDS dataset is TFRecord (no random access): use "
                         "make_tfds_stream_dataset "
                         "or make_train_iterator, or prepare it with file_format='array_record'")
    maker = ExampleMaker(source, config)
    spec = _example_spec(config)
    keys = list(spec)

    def py_fn(i):
        ex = maker(int(global_example_index(int(i), lb, global_batch, pi)))
        return [np.asarray(ex[k]) for k in keys]

    def tf_fn(i):
        outs = tf.numpy_function(py_fn, [i], [spec[k][1] for k in keys], stateful=False)
        d = {}
        for k, o in zip(keys, outs):
            o.set_shape(spec[k][0])
            d[k] = o
        return d

    npc = tf.data.AUTOTUNE if config.num_parallel_calls in (None, -1) else config.num_parallel_calls
    ds = tf.data.Dataset.range(int(start_step) * lb, 2 ** 62)
    ds = ds.map(tf_fn, num_parallel_calls=npc, deterministic=True)
    ds = ds.batch(lb, drop_remainder=True)
    ds = ds.prefetch(config.prefetch if config.prefetch >= 0 else tf.data.AUTOTUNE)
    opts = tf.data.Options()
    opts.deterministic = True
    return ds.with_options(opts)


def make_tfds_stream_dataset(config, global_batch: int, raw_position: int = 0, *,
                             process_index: int | None = None, process_count: int | None = None,
                             builder=None):
    """Local batches streamed from a TFRecord TFDS dataset (no random access).

    Each process reads its own part of the split (``tfds.split_for_jax_process``), in a seeded order
    (file shuffle seed + a seeded shuffle buffer of ``config.shuffle_buffer`` clips, repeated). Record
    ``r`` of this process's stream is processed with a generator keyed on ``(seed, process, r)``: a
    fitting frame stride and offset are drawn, then ``process_clip``; rejected clips are filtered out.
    In this mode ``example_index`` is ``r`` and the resume position is ``raw_position`` = last
    consumed ``r`` + 1 **per process** (``TrainIterator.state()['raw_position']``); resuming re-reads
    and drops the first ``raw_position`` records (frames are decoded only after the skip).
    Prefer ``array_record`` files: then the data is random access and fully deterministic per step.
    """
    import jax  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    hide_accelerators_from_tf()
    pi = jax.process_index() if process_index is None else process_index
    pc = jax.process_count() if process_count is None else process_count
    lb = local_batch_size(global_batch, pc)
    builder = tfds_builder(config) if builder is None else builder
    feats = builder.info.features
    split = tfds.split_for_jax_process(config.split, process_index=pi, process_count=pc,
                                       drop_remainder=True)
    opts = tf.data.Options()
    opts.deterministic = True
    skip_dec = {k: tfds.decode.SkipDecoding() for k in ("rgbs", "masks")}
    ds = builder.as_dataset(split=split, shuffle_files=True, decoders=skip_dec,
                            read_config=tfds.ReadConfig(shuffle_seed=config.seed, options=opts))
    def keep_fields(rec):
        return {k: rec[k] for k in ("rgbs", "masks", "trajs", "visibs", "valids")}

    ds = ds.map(keep_fields)
    ds = ds.repeat().shuffle(config.shuffle_buffer, seed=config.seed, reshuffle_each_iteration=True)
    ds = ds.enumerate().skip(int(raw_position))

    def decode(r, rec):
        rec = dict(rec)
        for k in ("rgbs", "masks"):
            rec[k] = feats[k].decode_example(rec[k])
        return r, rec

    spec = _example_spec(config)
    keys = list(spec)

    def py_fn(r, rgbs, masks, trajs, visibs, valids):
        r = int(r)
        rng = np.random.default_rng([config.seed, pi, r, 0x7FD5])
        fs = int(rng.choice(_fitting_strides(config, len(rgbs))))
        span = (config.clip_len - 1) * fs + 1
        st = int(rng.integers(0, len(rgbs) - span + 1))
        sl = slice(st, st + span, fs)
        ex = process_clip(dict(rgbs=rgbs[sl], masks=masks[sl], trajs=trajs[sl], vis=visibs[sl],
                               valids=valids[sl]), config, rng)
        ok = ex is not None
        if not ok:
            ex = {k: np.zeros(sh, dt.as_numpy_dtype) for k, (sh, dt) in spec.items()}
        ex.update(example_index=np.int32(r), clip_index=np.int32(-1), seq_index=np.int32(-1),
                  start=np.int32(st), frame_stride=np.int32(fs), num_skipped=np.int32(0))
        return [np.asarray(ex[k]) for k in keys] + [np.bool_(ok)]

    def tf_fn(r, rec):
        outs = tf.numpy_function(py_fn, [r] + [rec[k] for k in ("rgbs", "masks", "trajs", "visibs",
                                                                  "valids")],
                                 [spec[k][1] for k in keys] + [tf.bool], stateful=False)
        d = {}
        for k, o in zip(keys, outs[:-1]):
            o.set_shape(spec[k][0])
            d[k] = o
        return d, outs[-1]

    npc = tf.data.AUTOTUNE if config.num_parallel_calls in (None, -1) else config.num_parallel_calls
    ds = ds.map(decode, num_parallel_calls=npc, deterministic=True)
    ds = ds.map(tf_fn, num_parallel_calls=npc, deterministic=True)
    def is_ok(unused_d, ok):
        return ok

    def drop_ok(d, unused_ok):
        return d

    ds = ds.filter(is_ok).map(drop_ok)
    ds = ds.batch(lb, drop_remainder=True)
    ds = ds.prefetch(config.prefetch if config.prefetch >= 0 else tf.data.AUTOTUNE)
    return ds.with_options(opts)


def make_global_batch(local_batch: Mapping[str, Any], mesh, axis: str = "data") -> dict:
    """Assembles per-process numpy batches into global jax.Arrays sharded as ``P(axis)``."""
    import jax  # pylint: disable=import-outside-toplevel
    from jax.sharding import NamedSharding, PartitionSpec as P  # pylint: disable=all
    sharding = NamedSharding(mesh, P(axis))
    n_axis = mesh.shape[axis]
    out = {}
    for k, v in local_batch.items():
        v = np.asarray(v)
        gb = v.shape[0] * jax.process_count()
        if gb % n_axis:
            raise ValueError(f"global batch {gb} is not divisible by the mesh axis {axis!r} "
                             f"size {n_axis}")
        out[k] = jax.make_array_from_process_local_data(sharding, v)
    return out


def xy_swap_for_step(config, step: int) -> bool:
    """Batch-level x/y swap decision for a step (same on every process)."""
    a = config.aug
    if not a.enabled or a.xy_swap != "batch" or a.xy_swap_prob <= 0:
        return False
    return bool(np.random.default_rng([config.seed, step, 0x5A9]).random() < a.xy_swap_prob)


# tf.data threads that call back into Python must be stopped before the interpreter finalises,
# otherwise the process can abort or hang at exit; iterators still alive are closed by atexit.
_LIVE_ITERATORS = weakref.WeakSet()


@atexit.register
def _close_live_iterators():
    for it in list(_LIVE_ITERATORS):
        it.close()
    import gc  # pylint: disable=import-outside-toplevel
    gc.collect()


class TrainIterator:
    """Iterator of (global) training batches with a checkpointable position.

    ``next(it)`` returns a dict of numpy arrays (local batch) when ``mesh`` is None, else of global
    ``jax.Array``s. ``it.step`` is the step of the next batch; ``it.state()`` /
    ``make_train_iterator(..., start_step=state['step'])`` resume exactly. ``it.skipped`` counts clips
    rejected by the point filters in the batches produced so far (this process).
    """

    def __init__(self, config, global_batch: int, start_step: int = 0, mesh=None, *,
                 process_index=None, process_count=None, source=None, axis: str = "data",
                 state: Mapping[str, Any] | None = None, builder=None):
        self.config = config
        self.global_batch = global_batch
        self.mesh = mesh
        self.axis = axis
        self.step = int(start_step)
        self.skipped = 0
        self.raw_position = None  # only for streamed (TFRecord) TFDS data
        if source is None:
            if config.source == "tfds" and builder is not None:
                source = tfds_source(config, builder)
            else:
                source = make_source(config)
        if source is None:  # TFRecord TFDS: stream
            self.raw_position = int((state or {}).get("raw_position", 0))
            self._ds = make_tfds_stream_dataset(config, global_batch, self.raw_position,
                                                process_index=process_index,
                                                process_count=process_count,
                                                builder=builder)
        else:
            self._ds = make_local_dataset(config, global_batch, start_step, process_index=process_index,
                                          process_count=process_count, source=source)
        self._it = self._ds.as_numpy_iterator()
        _LIVE_ITERATORS.add(self)

    def close(self):
        """Stops the background tf.data threads (also done at interpreter exit)."""
        self._it = None
        self._ds = None

    def __del__(self):
        self.close()

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        if self._it is None:
            raise StopIteration
        batch = next(self._it)
        if self.raw_position is None:
            self.skipped += int(batch["num_skipped"].sum())
        else:  # records between the consumed ones were rejected by the filters
            last = int(batch["example_index"].max()) + 1
            self.skipped += last - self.raw_position - batch["rgbs"].shape[0]
            self.raw_position = last
        if xy_swap_for_step(self.config, self.step):
            batch = swap_xy(batch)
        batch["xy_swapped"] = np.full((batch["rgbs"].shape[0],), xy_swap_for_step(self.config,
                                                                                    self.step), bool)
        self.step += 1
        if self.mesh is not None:
            return make_global_batch(batch, self.mesh, self.axis)
        return batch

    @property
    def position(self) -> int:
        return self.step

    def state(self) -> dict:
        """Checkpointable position. With streamed TFDS data ``raw_position`` is per process."""
        st = {"step": self.step, "seed": int(self.config.seed)}
        if self.raw_position is not None:
            st["raw_position"] = self.raw_position
        return st


def make_train_iterator(config, global_batch: int, start_step: int = 0, mesh=None,
                        **kwargs) -> TrainIterator:
    """Training batches from ``start_step`` (resume: ``start_step=state['step']``, and for streamed
    TFRecord TFDS data also ``state=it.state()`` of this process).

    kwargs: ``process_index``/``process_count`` (default: jax's), ``source`` (a ``ClipSource``,
    default from the config), ``axis`` (mesh axis of the batch, 'data'), ``state``, ``builder`` (a
    prepared TFDS builder for source='tfds', e.g. ``tfds_pointodyssey.build(...)``; default
    ``tfds.builder(config.tfds_name, data_dir=config.tfds_data_dir)``).
    """
    return TrainIterator(config, global_batch, start_step, mesh, **kwargs)
