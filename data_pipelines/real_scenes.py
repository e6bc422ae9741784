"""Training and evaluation clips made of real photographs, in the PointOdyssey v1.2 layout.

The procedural generator (:mod:`data_pipelines.synthetic`) draws every texture; a tracker trained
only on those textures does not transfer to real video. Here the same scene machinery
(:mod:`data_pipelines.scene_common`) is fed with
**real photographs** that registry packages ship (scikit-image's ``skimage/data`` folder and
scikit-learn's sample images; nothing is downloaded):

* a **background** photo seen by a camera under a smooth random **homography** per frame
  (translation, rotation, zoom, shear and a little perspective: what a hand-held or panning camera
  does to a distant scene);
* 2-5 **objects** cut out of photos with random masks (ellipses, polygons, star-shaped blobs,
  rectangles), each with its own smooth motion (path, rotation, scale, optional non-rigid warp), a
  depth that changes over time (occlusion / dis-occlusion), some entering or leaving, and one
  distractor that copies another object's look (see :mod:`data_pipelines.synthetic`);
* a share of procedural textures mixed in (``procedural_share``);
* cheap **photometric realism** applied to the rendered frames only (ground truth unchanged):
  lighting drift (gain/bias/colour cast), sensor noise, motion blur along the camera motion, JPEG
  re-compression.

Photos are cropped, rescaled, rotated, flipped and re-coloured (hue rotation, saturation, tinted
grey-scale) for variety. The **train** and **eval** photo sets are disjoint (``TRAIN_PHOTOS`` /
``EVAL_PHOTOS``): the ``real-eval`` benchmark (``objtrack synth --preset real-eval``) never shows a
photo that training saw. ``camel.mp4`` and other evaluation videos are never used here.

Ground truth is exact (computed from the transforms that render the frames) and has the same keys
and conventions as :func:`data_pipelines.synthetic.generate_sequence`.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Sequence

import cv2
import numpy as np

from objtrack_jax.data_pipelines import scene_common
from objtrack_jax.extras import require

# (package, file) pairs. Grey-scale photos are tinted at random when used.
TRAIN_PHOTOS: tuple[tuple[str, str], ...] = (
    ("skimage", "astronaut.png"), ("skimage", "brick.png"), ("skimage", "camera.png"),
    ("skimage", "cell.png"), ("skimage", "clock_motion.png"), ("skimage", "coins.png"),
    ("skimage", "color.png"), ("skimage", "grass.png"), ("skimage", "gravel.png"),
    ("skimage", "hubble_deep_field.jpg"), ("skimage", "ihc.png"), ("skimage", "moon.png"),
    ("skimage", "motorcycle_left.png"), ("skimage", "motorcycle_right.png"),
    ("skimage", "page.png"), ("skimage", "retina.jpg"), ("skimage", "text.png"),
    ("sklearn", "china.jpg"),
)
EVAL_PHOTOS: tuple[tuple[str, str], ...] = (
    ("skimage", "coffee.png"), ("skimage", "rocket.jpg"), ("skimage", "chelsea.png"),
    ("sklearn", "flower.jpg"),
)


class PhotoError(RuntimeError):
    """A bundled photo could not be found or decoded."""


def _package_dir(package: str) -> str:
    if package == "skimage":
        skimage_data = require("skimage.data", "the real-photo scenes")
        return os.path.dirname(skimage_data.__file__)
    if package == "sklearn":
        sklearn_datasets = require("sklearn.datasets", "the real-photo scenes")
        return os.path.join(os.path.dirname(sklearn_datasets.__file__), "images")
    raise ValueError(f"unknown photo package {package!r}")


@functools.lru_cache(maxsize=None)
def load_photo(package: str, name: str) -> np.ndarray:
    """One bundled photo as uint8 RGB [H, W, 3] (grey-scale kept as 3 equal channels)."""
    path = os.path.join(_package_dir(package), name)
    image = require("PIL.Image", "the real-photo scenes")
    try:
        with image.open(path) as im:
            img = np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise PhotoError(f"could not read the bundled photo {path}: {e}") from e
    return np.ascontiguousarray(img)


def photo_set(which: str) -> list[np.ndarray]:
    """The ``'train'`` or ``'eval'`` photos (disjoint sets)."""
    names = {"train": TRAIN_PHOTOS, "eval": EVAL_PHOTOS}.get(which)
    if names is None:
        raise ValueError(f"photo set must be 'train' or 'eval', got {which!r}")
    return [load_photo(p, n) for p, n in names]


def _recolour(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Hue rotation / saturation / gain for colour photos, a random tint for grey-scale ones."""
    f = img.astype(np.float32)
    grey = np.ptp(f.reshape(-1, 3).mean(0)) < 1.0 and np.abs(f[..., 0] - f[..., 1]).max() < 1.0
    if grey:
        tint = rng.uniform(0.55, 1.0, 3)
        f = f * tint / tint.max()
    else:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(0, 256) * (rng.uniform() < 0.5)) % 256
        hsv[..., 1] *= rng.uniform(0.6, 1.3)
        f = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)
        f = f.astype(np.float32)
    f = f * rng.uniform(0.75, 1.25) + rng.uniform(-20, 20)
    return np.clip(f, 0, 255).astype(np.uint8)


def photo_view(rng: np.random.Generator, photos: Sequence[np.ndarray], h: int, w: int,
               zoom: tuple[float, float] = (0.5, 1.6)) -> np.ndarray:
    """A random [h, w, 3] uint8 view of one photo: crop, scale, rotation, flip, recolour."""
    img = photos[int(rng.integers(len(photos)))]
    ph, pw = img.shape[:2]
    # the view must fit: scale so that the (rotated) view stays mostly inside the photo
    base = max(h / ph, w / pw) * 1.05
    s = base * rng.uniform(*zoom) if rng.uniform() < 0.8 else base
    s = max(s, base)
    ang = rng.uniform(-25, 25) if rng.uniform() < 0.5 else 0.0
    cx = rng.uniform(min(w / (2 * s), pw / 2), max(pw - w / (2 * s), pw / 2))
    cy = rng.uniform(min(h / (2 * s), ph / 2), max(ph - h / (2 * s), ph / 2))
    m = cv2.getRotationMatrix2D((float(cx), float(cy)), float(ang), float(s))
    m[:, 2] += np.array([(w - 1) / 2.0, (h - 1) / 2.0]) - np.array([cx, cy])
    view = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)
    if rng.uniform() < 0.5:
        view = view[:, ::-1]
    return _recolour(rng, np.ascontiguousarray(view))


def homography_path(rng: np.random.Generator, frames: int, size: tuple[int, int],
                    motion: float = 1.0) -> np.ndarray:
    """Smooth random camera homographies [T, 3, 3] mapping frame-0 pixels to frame-t pixels
    (identity at t = 0). ``motion`` scales every component (1: up to ~0.35 of the short side of
    travel, +-12 deg, +-25 % zoom over the clip)."""
    h, w = size
    short = float(min(h, w))
    s = np.linspace(0.0, 1.0, frames)
    wob = scene_common.smooth_wobble
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction) + 1e-9
    travel = motion * rng.uniform(0.0, 0.35) * short
    tx = travel * s * direction[0] + wob(rng, s, motion * 0.03 * short)
    ty = travel * s * direction[1] + wob(rng, s, motion * 0.03 * short)
    theta = np.deg2rad(motion * (rng.uniform(-12, 12) * s + wob(rng, s, 2.0)))
    zoom = np.exp(motion * (rng.uniform(-0.22, 0.22) * s + wob(rng, s, 0.03)))
    shear = motion * rng.uniform(-0.05, 0.05) * s
    persp = motion * rng.uniform(-0.25, 0.25, 2)[None] / short * s[:, None]
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    out = np.empty((frames, 3, 3))
    for t in range(frames):
        cos, sin = np.cos(theta[t]), np.sin(theta[t])
        a = zoom[t] * np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, shear[t]], [0.0, 1.0]])
        m = np.eye(3)
        m[:2, :2] = a
        m[:2, 2] = c + np.array([tx[t], ty[t]]) - a @ c
        m[2, :2] = persp[t]
        m[2, 2] = 1.0 - persp[t] @ c  # keeps the image centre's scale at ~1
        out[t] = m
    out = out @ np.linalg.inv(out[0])
    return out / out[:, 2:, 2:]


def _apply_h(hom: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """[..., 3, 3] homographies applied to points [..., n, 2]."""
    q = pts @ np.swapaxes(hom[..., :2, :2], -1, -2) + hom[..., None, :2, 2]
    d = pts @ hom[..., 2, :2][..., :, None] + hom[..., None, 2:, 2]
    return q / d


def photometric(rng: np.random.Generator, rgbs: np.ndarray, hom: np.ndarray,
                flicker: float = 0.0) -> np.ndarray:
    """Lighting drift, motion blur along the camera motion, noise and JPEG re-compression.

    ``flicker`` > 0 adds a per-frame lighting flicker (gain ``1 + N(0, flicker)``) and a slight
    Gaussian blur (sigma 0.3-0.8) on a random 20 % of the frames."""
    frames, h, w = rgbs.shape[:3]
    s = np.linspace(0.0, 1.0, frames)
    wob = scene_common.smooth_wobble
    gain = np.exp(rng.uniform(-0.25, 0.25) * s + wob(rng, s, 0.06))
    bias = rng.uniform(-15, 15) * s + wob(rng, s, 4.0)
    cast = 1.0 + rng.uniform(-0.08, 0.08, 3)[None] * s[:, None]
    sigma = rng.uniform(0.0, 5.0) if rng.uniform() < 0.7 else 0.0
    blur_p = rng.uniform(0.0, 0.5)
    jpeg_q = int(rng.integers(35, 92)) if rng.uniform() < 0.5 else 0
    centre = np.array([[(w - 1) / 2.0, (h - 1) / 2.0]])
    if flicker > 0:  # its own child stream: the scene and its points are those without flicker
        frng = rng.spawn(1)[0]
        gain = gain * (1.0 + frng.normal(0.0, flicker, frames))
        soft = frng.uniform(size=frames) < 0.2
        soft_sigma = frng.uniform(0.3, 0.8, frames)
    out = np.empty_like(rgbs)
    for t in range(frames):
        f = rgbs[t].astype(np.float32)
        if flicker > 0 and soft[t]:
            f = cv2.GaussianBlur(f, (0, 0), float(soft_sigma[t]), borderType=cv2.BORDER_REFLECT_101)
        if t > 0 and rng.uniform() < blur_p:
            d = (_apply_h(hom[t], centre) - _apply_h(hom[t - 1], centre))[0]
            n = float(np.hypot(*d))
            k = int(min(9, round(n * rng.uniform(0.5, 1.0))))
            if k >= 2:
                ker = np.zeros((2 * k + 1, 2 * k + 1), np.float32)
                u = d / max(n, 1e-6)
                for a in np.linspace(-k / 2, k / 2, 2 * k + 1):
                    ker[int(round(k + a * u[1])), int(round(k + a * u[0]))] = 1.0
                f = cv2.filter2D(f, -1, ker / ker.sum(), borderType=cv2.BORDER_REFLECT_101)
        f = f * gain[t] * cast[t] + bias[t]
        if sigma:
            f += rng.normal(0.0, sigma, f.shape).astype(np.float32)
        img = np.clip(f, 0, 255).astype(np.uint8)
        if jpeg_q:
            ok, buf = cv2.imencode(".jpg", img, (cv2.IMWRITE_JPEG_QUALITY, jpeg_q))
            if ok:
                img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        out[t] = img
    return out


def slow_regime(rng: np.random.Generator, motion: float,
                num_objects: int) -> tuple[float, np.ndarray]:
    """Motion scales of a still-or-slow sequence: ``(camera, [per object])``.

    The camera is still with probability 0.5, else it moves at 0.5-10 % of ``motion`` (under about
    0.3 px/frame at 192x256 over 24 frames); each object is still with probability 0.5, else it
    moves at 0-30 % of its normal motion."""
    camera = 0.0 if rng.uniform() < 0.5 else motion * rng.uniform(0.005, 0.1)
    still = rng.uniform(size=num_objects) < 0.5
    objects = np.where(still, 0.0, motion * rng.uniform(0.0, 0.3, num_objects))
    return float(camera), objects


def generate_sequence(seed: int, frames: int = 24, size: tuple[int, int] = (192, 256),
                      num_objects: int | tuple[int, int] = (2, 5), num_points: int = 256,
                      photos: str = "train", procedural_share: float = 0.2,
                      motion: float = 1.0, realism: bool = True,
                      background_fraction: float = 0.4, still_share: float = 0.0,
                      flicker: float = 0.0) -> dict[str, Any]:
    """One real-photo sequence in memory (same keys as ``synthetic.generate_sequence``).

    Args:
      photos: 'train' or 'eval' photo set (disjoint).
      procedural_share: probability that a layer uses a procedural texture instead of a photo.
      motion: scale of the camera and object motion.
      realism: apply :func:`photometric` to the frames.
      still_share: probability that the sequence is still or slow (:func:`slow_regime`): the
        camera is still (half of them) or moves at 0.5-10 % of ``motion``, and each object is
        still (half of them) or moves at 0-30 %, non-rigid deformation included.
      flicker: lighting flicker and slight blur (:func:`photometric`).
    """
    h, w = int(size[0]), int(size[1])
    if frames < 2 or h < 32 or w < 32:
        raise ValueError(f"need frames >= 2 and size >= 32x32, got frames={frames}, size={size}")
    rng = np.random.default_rng(seed)
    bank = photo_set(photos)
    if isinstance(num_objects, (tuple, list)):
        num_objects = int(rng.integers(num_objects[0], num_objects[1] + 1))
    num_distractors = int(min(1, max(num_objects - 1, 0)))

    def texture(th, tw, zoom=(0.5, 1.6)):
        if rng.uniform() < procedural_share:
            return scene_common.make_texture(rng, th, tw)
        return photo_view(rng, bank, th, tw, zoom)

    camera_motion, object_scale = motion, None
    if still_share > 0 and rng.uniform() < still_share:
        camera_motion, object_scale = slow_regime(rng, motion, num_objects)
    hom = homography_path(rng, frames, (h, w), camera_motion)
    inv = np.linalg.inv(hom)
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], np.float64)
    world = _apply_h(inv, np.broadcast_to(corners, (frames, 4, 2)))
    lo = np.floor(world.reshape(-1, 2).min(0)) - 8
    hi = np.ceil(world.reshape(-1, 2).max(0)) + 8
    bg_tex = texture(int(hi[1] - lo[1]) + 1, int(hi[0] - lo[0]) + 1, zoom=(0.9, 1.5))

    # Objects move in image coordinates (no camera in their transforms).
    img_c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    still = np.ones(frames)
    objects = scene_common.make_objects(
        rng, frames, (h, w), num_objects, num_distractors, still,
        np.broadcast_to(img_c, (frames, 2)), img_c)
    replaced: dict[int, np.ndarray] = {}
    for i, o in enumerate(objects):
        if object_scale is not None:  # still or slow: motion and deformation about frame 0
            k = object_scale[i]
            o.affine = o.affine[:1] + k * (o.affine - o.affine[:1])
            o.phase = o.phase[:1] + k * (o.phase - o.phase[:1])
        elif motion != 1.0:  # scale the motion about the frame-0 pose
            a0 = o.affine[0]
            o.affine = a0[None] + motion * (o.affine - a0[None])
        key = id(o.texture)
        if key not in replaced:
            replaced[key] = texture(*o.alpha.shape)
        o.texture = replaced[key]
    distractor_of = np.zeros(num_objects, np.int32)
    for i, o in enumerate(objects):
        for j in range(i):
            if objects[j].texture is o.texture:
                distractor_of[i] = objects[j].instance_id
                break

    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    rgbs = np.empty((frames, h, w, 3), np.uint8)
    masks = np.empty((frames, h, w), np.uint8)
    depths = np.empty((frames, h, w), np.float32)
    bg_depth = float(rng.uniform(40.0, 60.0))
    shift = np.array([[1.0, 0, lo[0]], [0, 1.0, lo[1]], [0, 0, 1.0]])
    for t in range(frames):
        rgb = cv2.warpPerspective(bg_tex, hom[t] @ shift, (w, h), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT_101)
        ids = np.full((h, w), scene_common.BACKGROUND_ID, np.uint8)
        dep = np.full((h, w), bg_depth, np.float32)
        scene_common.composite_objects(rgb, ids, dep, objects, t, xs, ys)
        rgbs[t], masks[t], depths[t] = rgb, ids, dep
    if realism:
        rgbs = photometric(rng, rgbs, hom, flicker)

    n_bg = int(round(background_fraction * num_points)) if num_objects else num_points
    trajs, owners, pdepth = [], [], []
    if n_bg:
        t_ref = rng.integers(0, frames, n_bg)
        q_ref = np.stack([rng.uniform(0, w - 1, n_bg), rng.uniform(0, h - 1, n_bg)], -1)
        wpts = _apply_h(inv[t_ref], q_ref[:, None])[:, 0]  # frame-0 coordinates
        trajs.append(_apply_h(hom, np.broadcast_to(wpts, (frames, n_bg, 2))))
        owners.append(np.full(n_bg, scene_common.BACKGROUND_ID))
        pdepth.append(np.full((frames, n_bg), bg_depth))
    ot, oo, od = scene_common.object_tracks(rng, objects, num_points - n_bg)
    return scene_common.finish_tracks(trajs + ot, owners + oo, pdepth + od, masks, depths, rgbs,
                                      distractor_of)
