"""The scene machinery every clip generator shares: textures, object layers and their motion,
compositing, and the ground-truth tracks.

Used by :mod:`data_pipelines.synthetic` (procedural scenes under a moving camera) and
:mod:`data_pipelines.real_scenes` (real photographs under a homography camera); neither imports
the other's internals. Conventions (instance ids, visibility, the placeholder camera) are those of
the PointOdyssey layout described in :mod:`data_pipelines.synthetic`.

* :func:`make_texture`, :func:`make_shape`: a procedural texture, a binary shape;
* :class:`Layer`: one object (texture, alpha, per-frame affine, depth, optional non-rigid warp);
* :func:`smooth_wobble`: a smooth random function of normalised time (paths, zoom, lighting);
* :func:`make_objects`: the objects of a scene (distractors included) and their motion;
* :func:`composite_objects`: paints the layers far to near into a frame;
* :func:`object_tracks`, :func:`finish_tracks`: points on the objects, then the sequence dict
  (visibility, validity, placeholder camera).

Every function draws from the ``numpy.random.Generator`` it is given, in a fixed order: a scene
is a pure function of its generator's seed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import cv2
import numpy as np

BACKGROUND_ID = 1
FIRST_OBJECT_ID = 2
ERODE = 3            # object points are sampled this many canonical pixels inside the shape
UNDEFORM_ITERS = 10  # fixed-point iterations to invert the sinusoidal warp (contraction <= 0.55)


# ----------------------------------------------------------------------------------------------
# Textures and shapes
# ----------------------------------------------------------------------------------------------

def make_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A colourful multi-scale texture, uint8 [h, w, 3], with features at all scales."""
    img = np.zeros((h, w, 3), np.float32)
    base = rng.uniform(40, 215, 3)
    chroma = rng.uniform(0.2, 0.6)  # share of colour (vs. brightness) variation
    for cells, amp in ((3, 45.0), (8, 35.0), (20, 25.0)):
        gh, gw = max(2, h * cells // 64), max(2, w * cells // 64)
        noise = rng.normal(0.0, 1.0, (gh, gw, 4)).astype(np.float32)
        noise = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
        img += amp * ((1 - chroma) * noise[..., :1] + chroma * noise[..., 1:])
    img += base
    # Sprinkle strokes, discs and boxes so that there are corners to track.
    n_shapes = max(4, h * w // 400)
    for _ in range(n_shapes):
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        kind = rng.integers(3)
        x0, y0 = int(rng.integers(w)), int(rng.integers(h))
        s = int(rng.integers(2, max(3, min(min(h, w) // 8, 12))))
        if kind == 0:
            cv2.circle(img, (x0, y0), s, colour, -1)
        elif kind == 1:
            cv2.rectangle(img, (x0, y0), (x0 + s, y0 + int(rng.integers(2, s + 2))), colour, -1)
        else:
            cv2.line(img, (x0, y0), (x0 + int(rng.integers(-2 * s, 2 * s)),
                                     y0 + int(rng.integers(-2 * s, 2 * s))), colour, 1 + s // 6)
    img += rng.normal(0.0, 6.0, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_shape(rng: np.random.Generator, kind: str, h: int, w: int, pad: int) -> np.ndarray:
    """Binary alpha float32 [h, w] of one shape filling the canvas minus `pad` pixels."""
    alpha = np.zeros((h, w), np.uint8)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    rx, ry = (w - 1) / 2.0 - pad, (h - 1) / 2.0 - pad
    if kind == "rect":
        alpha[pad:h - pad, pad:w - pad] = 1
    elif kind == "ellipse":
        cv2.ellipse(alpha, (int(round(cx)), int(round(cy))), (int(rx), int(ry)), 0, 0, 360, 1, -1)
    else:
        if kind == "polygon":  # convex-ish polygon with 5..8 vertices
            k = int(rng.integers(5, 9))
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            rad = rng.uniform(0.75, 1.0, k)
        else:  # "blob": star-convex radial Fourier shape
            ang = np.linspace(0, 2 * np.pi, 72, endpoint=False)
            rad = np.ones_like(ang)
            for f in range(2, 5):
                rad += rng.uniform(0.0, 0.15) * np.cos(f * ang + rng.uniform(0, 2 * np.pi))
            rad /= rad.max()
        pts = np.stack([cx + rx * rad * np.cos(ang), cy + ry * rad * np.sin(ang)], -1)
        cv2.fillPoly(alpha, [np.round(pts).astype(np.int32)], 1)
    return alpha.astype(np.float32)



# ----------------------------------------------------------------------------------------------
# Layers and motion
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Layer:
    """One object: texture/alpha on a canonical canvas and per-frame canvas→image transforms."""
    instance_id: int
    texture: np.ndarray     # uint8 [h, w, 3]
    alpha: np.ndarray       # float32 [h, w] in {0, 1}
    affine: np.ndarray      # float64 [T, 2, 3]: deformed canvas coords -> image pixels
    depth: np.ndarray       # float64 [T] metres
    amp: np.ndarray         # (ax, ay) sinusoidal warp amplitude in canvas pixels (0 = rigid)
    wavelength: float
    phase: np.ndarray       # [T] warp phase per frame
    psi: float

    def deform(self, ux, uy, t: int | np.ndarray):
        """Canonical -> deformed canvas coordinates (the non-rigid part)."""
        if not np.any(self.amp):
            return ux, uy
        k = 2.0 * np.pi / self.wavelength
        ph = self.phase[t]
        cy, cx = (self.alpha.shape[0] - 1) / 2.0, (self.alpha.shape[1] - 1) / 2.0
        dx = self.amp[0] * np.sin(k * (uy - cy) + ph)
        dy = self.amp[1] * np.sin(k * (ux - cx) + ph + self.psi)
        return ux + dx, uy + dy

    def undeform(self, dx_, dy_, t: int):
        """Inverse of `deform` by fixed-point iteration (the warp is a contraction)."""
        if not np.any(self.amp):
            return dx_, dy_
        ux, uy = dx_, dy_
        for _ in range(UNDEFORM_ITERS):
            fx, fy = self.deform(ux, uy, t)
            ux, uy = dx_ - (fx - ux), dy_ - (fy - uy)
        return ux, uy

    def project(self, u: np.ndarray) -> np.ndarray:
        """Canonical canvas points [n, 2] -> image positions [T, n, 2] at every frame."""
        t = np.arange(self.affine.shape[0])[:, None]
        ux, uy = self.deform(u[None, :, 0], u[None, :, 1], t)
        a = self.affine
        x = a[:, 0, 0, None] * ux + a[:, 0, 1, None] * uy + a[:, 0, 2, None]
        y = a[:, 1, 0, None] * ux + a[:, 1, 1, None] * uy + a[:, 1, 2, None]
        return np.stack([x, y], -1)


def smooth_wobble(rng: np.random.Generator, s: np.ndarray, amp: float) -> np.ndarray:
    """A smooth random 1D function of normalised time s in [0, 1] with zero mean-ish."""
    f = rng.uniform(0.3, 1.5)
    return amp * np.sin(2 * np.pi * f * s + rng.uniform(0, 2 * np.pi))


def make_objects(rng, frames, size, num_objects, num_distractors, zoom, centre, img_c):
    """``num_objects`` :class:`Layer` s of a scene of ``size`` (H, W) over ``frames`` frames, the
    last ``num_distractors`` copying an earlier one's texture and shape. Each moves along its own
    path in world coordinates, seen through the camera ``zoom [T]``, ``centre [T, 2]`` about the
    image centre ``img_c`` (a still camera: ones and ``img_c``)."""
    h, w = size
    s = np.linspace(0.0, 1.0, frames)
    short = min(h, w)
    objects: list[Layer] = []
    kinds = ("rect", "ellipse", "polygon", "blob")
    for k in range(num_objects):
        copy_of = None
        n_originals = num_objects - num_distractors
        if k >= n_originals:  # the last `num_distractors` objects copy an original one
            copy_of = objects[int(rng.integers(0, n_originals))]
        if copy_of is None:
            diam = rng.uniform(0.15, 0.45) * short
            aspect = np.exp(rng.uniform(-0.5, 0.5))
            pad = 2
            cw = int(np.clip(diam * np.sqrt(aspect), 12, 2 * short)) + 2 * pad
            ch = int(np.clip(diam / np.sqrt(aspect), 12, 2 * short)) + 2 * pad
            texture = make_texture(rng, ch, cw)
            alpha = make_shape(rng, kinds[int(rng.integers(len(kinds)))], ch, cw, pad)
        else:  # distractor: same look, independent motion
            texture, alpha = copy_of.texture, copy_of.alpha
            ch, cw = alpha.shape
        # Path in world coordinates (frame-0 pixels); some objects enter or leave the frame.
        inside = lambda: np.array([rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h])
        start, end = inside(), inside()
        mode = rng.uniform()
        if mode < 0.35:  # enter or leave through a random side
            side = int(rng.integers(4))
            out = (start if rng.uniform() < 0.5 else end).copy()  # never an alias of end
            r = 0.6 * max(ch, cw)
            if side == 0:
                out[0] = -r
            elif side == 1:
                out[0] = w - 1 + r
            elif side == 2:
                out[1] = -r
            else:
                out[1] = h - 1 + r
            if rng.uniform() < 0.5:
                start = out
            else:
                end = out
        path = start[None] + (end - start)[None] * s[:, None]
        path[:, 0] += smooth_wobble(rng, s, 0.06 * short)
        path[:, 1] += smooth_wobble(rng, s, 0.06 * short)
        theta = rng.uniform(-np.pi, np.pi) + rng.uniform(-np.pi / 3, np.pi / 3) * s
        scale = rng.uniform(0.75, 1.25) * np.exp(rng.uniform(-0.3, 0.3) * s + smooth_wobble(rng, s, 0.05))
        depth = rng.uniform(2.0, 20.0) + rng.uniform(-8.0, 8.0) * s
        depth = np.clip(depth, 1.0, 25.0)
        # canvas (deformed) -> world -> image
        uc = np.array([(cw - 1) / 2.0, (ch - 1) / 2.0])
        cos, sin = np.cos(theta), np.sin(theta)
        lin = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # [T,2,2]
        lin = lin * (scale * zoom)[:, None, None]
        trans = zoom[:, None] * (path - centre) + img_c[None] - np.einsum("tij,j->ti", lin, uc)
        affine = np.concatenate([lin, trans[:, :, None]], -1)
        rigid = rng.uniform() < 0.4
        if rigid:
            amp, wavelength = np.zeros(2), 1.0
        else:
            wavelength = rng.uniform(0.6, 1.0) * max(ch, cw)
            # contraction factor 2*pi*amp/wavelength <= 0.55 keeps the warp invertible
            amp = rng.uniform(0.3, 1.0, 2) * 0.55 * wavelength / (2 * np.pi) * 0.5
        phase = rng.uniform(0, 2 * np.pi) + rng.uniform(0.1, 0.4) * np.arange(frames)
        objects.append(Layer(FIRST_OBJECT_ID + k, texture, alpha, affine, depth, amp,
                              float(wavelength), phase, float(rng.uniform(0, 2 * np.pi))))
    return objects


# ----------------------------------------------------------------------------------------------
# Compositing and ground truth
# ----------------------------------------------------------------------------------------------

def composite_objects(rgb: np.ndarray, ids: np.ndarray, dep: np.ndarray, objects, t: int,
                      xs: np.ndarray, ys: np.ndarray) -> None:
    """Paints ``objects`` at frame ``t`` far to near into ``rgb`` [H,W,3], ``ids`` [H,W] and
    ``dep`` [H,W] in place (``xs``/``ys``: the pixel grids). Shared by every scene generator."""
    h, w = ids.shape
    for obj in sorted(objects, key=lambda o: -o.depth[t]):  # far to near
        ch, cw = obj.alpha.shape
        m = float(np.max(obj.amp)) + 1.0
        corners = np.array([[-m, -m], [cw - 1 + m, -m], [-m, ch - 1 + m], [cw - 1 + m, ch - 1 + m]])
        a = obj.affine[t]
        q = corners @ a[:, :2].T + a[:, 2]
        x0, y0 = np.maximum(np.floor(q.min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(q.max(0)).astype(int) + 1, (w, h))
        if x0 >= x1 or y0 >= y1:
            continue
        inv = cv2.invertAffineTransform(a)
        bx, by = xs[y0:y1, x0:x1], ys[y0:y1, x0:x1]
        dx_ = inv[0, 0] * bx + inv[0, 1] * by + inv[0, 2]
        dy_ = inv[1, 0] * bx + inv[1, 1] * by + inv[1, 2]
        ux, uy = obj.undeform(dx_, dy_, t)
        ux, uy = ux.astype(np.float32), uy.astype(np.float32)
        cover = cv2.remap(obj.alpha, ux, uy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0) > 0.5
        col = cv2.remap(obj.texture, ux, uy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        rgb[y0:y1, x0:x1][cover] = col[cover]
        ids[y0:y1, x0:x1][cover] = obj.instance_id
        dep[y0:y1, x0:x1][cover] = obj.depth[t]


def object_tracks(rng: np.random.Generator, objects, n_obj: int):
    """``n_obj`` points on ``objects`` (shared by area^0.5), at least ``ERODE`` canonical pixels
    inside their shape: (trajs [T, n, 2], owner ids [n], depths [T, n]) lists, one per object."""
    trajs, owners, pdepth = [], [], []
    if not n_obj or not objects:
        return trajs, owners, pdepth
    frames = objects[0].affine.shape[0]
    areas = np.array([o.alpha.sum() for o in objects])
    share = np.sqrt(areas) / np.sqrt(areas).sum()
    counts = np.floor(share * n_obj).astype(int)
    counts[: n_obj - counts.sum()] += 1
    for o, c in zip(objects, counts):
        if c == 0:
            continue
        inner = cv2.erode(o.alpha, np.ones((2 * ERODE + 1, 2 * ERODE + 1), np.uint8))
        yy, xx = np.nonzero(inner > 0.5)
        if yy.size == 0:
            yy, xx = np.nonzero(o.alpha > 0.5)
        pick = rng.integers(0, yy.size, c)
        u = np.stack([xx[pick], yy[pick]], -1) + rng.uniform(-0.5, 0.5, (c, 2))
        trajs.append(o.project(u))
        owners.append(np.full(c, o.instance_id))
        pdepth.append(np.broadcast_to(o.depth[:, None], (frames, c)))
    return trajs, owners, pdepth


def finish_tracks(trajs, owners, pdepth, masks: np.ndarray, depths: np.ndarray, rgbs: np.ndarray,
                  distractor_of: np.ndarray) -> dict[str, Any]:
    """Concatenates per-layer tracks and adds visibility (in the image and front-most at its
    pixel), validity and the placeholder camera: the sequence dict of
    :func:`data_pipelines.synthetic.generate_sequence` (same keys for every generator)."""
    frames, h, w = masks.shape
    trajs_2d = np.concatenate(trajs, 1).astype(np.float32)
    instance_ids = np.concatenate(owners).astype(np.uint8)
    zpts = np.concatenate(pdepth, 1).astype(np.float32)
    x, y = trajs_2d[..., 0], trajs_2d[..., 1]
    in_img = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    xi = np.clip(np.round(x), 0, w - 1).astype(np.int64)
    yi = np.clip(np.round(y), 0, h - 1).astype(np.int64)
    front = masks[np.arange(frames)[:, None], yi, xi]
    visibs = in_img & (front == instance_ids[None])
    valids = np.ones_like(visibs)
    f = float(w)
    intr = np.array([[f, 0.0, (w - 1) / 2.0], [0.0, f, (h - 1) / 2.0], [0.0, 0.0, 1.0]], np.float32)
    intrinsics = np.broadcast_to(intr, (frames, 3, 3)).copy()
    extrinsics = np.broadcast_to(np.eye(4, dtype=np.float32), (frames, 4, 4)).copy()
    trajs_3d = np.stack([(x - intr[0, 2]) * zpts / f, (y - intr[1, 2]) * zpts / f, zpts], -1)
    return dict(rgbs=rgbs, masks=masks, depths=depths, trajs_2d=trajs_2d, visibs=visibs,
                valids=valids, instance_ids=instance_ids, trajs_3d=trajs_3d.astype(np.float32),
                intrinsics=intrinsics, extrinsics=extrinsics, distractor_of=distractor_of)
