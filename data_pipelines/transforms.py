"""Per-example transforms of the training pipeline: augmentations, point filters, farthest-point
sampling (numpy/OpenCV; every random draw comes from the ``numpy.random.Generator`` passed in).

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

Point filters, evaluated on the augmented crop
--------------------------------------------------------
* valid and visible at frames 0 and 1;
* visible in ``>= max(sqrt(S), 2)`` frames (``min_vis_frames`` overrides);
* not on an object-mask edge at frame 0: the pixel ``(int(y0), int(x0))`` (truncation, like the
  objectness loss) is on an edge when any id in its 3x3 neighbourhood differs from its own (image
  borders replicate, so the border itself is no edge);
* motion filter: the largest displacement from the frame-0 position over valid frames must be
  ``>= motion_min_px`` (default 1 px: drops perfectly static points, which carry no tracking signal),
  and no step between consecutive valid frames may exceed ``motion_max_step_frac * min(H, W)``
  (default 0.5: drops annotation glitches/teleports). In a share ``filters.still_share`` of the
  clips (default 0) the minimum-motion part is off, so still points are kept and the model learns
  what no motion looks like.

FPS runs on ``(x0, y0, vscale*mean_vx, vscale*mean_vy)`` in crop pixels, with ``vscale = S-1`` unless
``fps_velocity_scale`` is set (mean velocity times clip length ~ total displacement, so both halves of
the feature have comparable pixel units); the first point is drawn from the example generator, ties go
to the lowest index.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

try:  # OpenCV is used for warping/blur; it releases the GIL, which lets tf.data run clips in parallel.
    import cv2
except ImportError:  # pragma: no cover
    cv2 = None


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
    """The training point filters; returns bool [N] (module docstring: the definitions)."""
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
    """x/y swap (the batch augmentation) of an example or a batch; numpy or jax arrays.

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
    motion_min = f.motion_min_px
    still_share = f.get("still_share", 0.0) or 0.0
    if still_share > 0 and rng.random() < still_share:  # no draw when off: old streams unchanged
        motion_min = 0.0
    keep = point_filter(clip["trajs"], clip["vis"], clip["valids"], clip["masks"][0],
                        min_vis_frames=f.min_vis_frames, edge=f.edge, motion_min_px=motion_min,
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
