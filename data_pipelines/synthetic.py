"""Procedural training clips in the PointOdyssey v1.2 on-disk layout.

Each sequence is a stack of textured layers rendered back to front:

* a textured **background** seen by a smoothly moving camera (translation + mild zoom);
* 3-6 textured **objects** (rectangles, ellipses, convex polygons, star-shaped blobs) of varied size,
  each with its own smooth motion (translation along a wobbly path, rotation, scale change), some
  with a non-rigid sinusoidal warp, a depth that changes over time (so the depth order, and with it
  occlusion / dis-occlusion, changes), some entering or leaving the frame;
* **distractors**: by default one object is a copy of another one's texture and shape (same colour,
  same look, different motion) -- the failure mode the object-prior paper targets.

Ground truth (all exact, computed from the same transforms that render the frames):

* ``trajs_2d`` [T, N, 2] float32, (x, y) in pixels, x = 0 the centre of the first column;
* ``visibs`` [T, N] bool: the point is inside the image (0 <= x <= W-1, 0 <= y <= H-1) **and** its
  layer is the front-most one at its pixel, i.e. ``masks[t, round(y), round(x)] == instance_ids[n]``;
* ``valids`` [T, N] bool: all True -- every point is defined at every frame; points that leave the
  image keep being tracked (valid but not visible);
* ``masks`` [T, H, W] uint8 instance ids: **background = 1, objects = 2, 3, ...** (0 is never
  written: in PointOdyssey 0 means "unknown / fog", which the reader fills from its neighbours);
* ``depths`` [T, H, W] float32 metres (written as 16-bit PNG, value = depth / 1000 * 65535);
* ``instance_ids`` [N] uint8: the id of the layer that owns each point (extra key in ``anno.npz``);
* ``trajs_3d`` [T, N, 3], ``intrinsics`` [T, 3, 3], ``extrinsics`` [T, 4, 4]: plausible placeholders
  -- ``trajs_3d`` is the point unprojected with its layer depth in the camera frame of that time step,
  ``extrinsics`` are identities. Do not use them for geometry.

Object points are sampled at least ``scene_common.ERODE`` canonical pixels inside their object's
shape, so a point that is in the image is either visible or covered by a layer that is nearer to the
camera. The layers, their motion, compositing and the tracks are :mod:`data_pipelines.scene_common`
(shared with :mod:`data_pipelines.real_scenes`); this module adds the procedural camera and
background, and writes datasets (both scene kinds) to disk.

Everything is deterministic given the seed (``np.random.default_rng``); each sequence's seed derives
from ``(seed, split, index)`` so the splits are disjoint and stable when counts change.

Usage::

    from objtrack_jax.data_pipelines import synthetic
    seq = synthetic.generate_sequence(seed=0, frames=24, size=(128, 160))   # in memory
    synthetic.generate_dataset('/tmp/synth', preset='small')                 # on disk
    python -m objtrack_jax.data_pipelines.synthetic --out /tmp/synth --num-seqs 8 --frames 24 --size 128x160
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from objtrack_jax.data_pipelines.scene_common import (
    BACKGROUND_ID, composite_objects, finish_tracks, make_objects, make_texture, object_tracks,
    smooth_wobble)

SPLITS = ("train", "val", "test")
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2, "sample": 3}
_DEPTH_SCALE = 65535.0 / 1000.0  # PointOdyssey: metres = png_value / 65535 * 1000
_JPEG_QUALITY = 95

PRESETS: dict[str, dict[str, Any]] = {
    # Generates in about a second on one CPU core; the default for `objtrack synth`.
    "small": dict(num_seqs={"train": 8, "val": 2, "test": 2}, frames=24, size=(128, 160),
                  num_points=256),
    # For unit tests.
    "tiny": dict(num_seqs={"train": 2, "val": 1, "test": 1}, frames=8, size=(64, 80),
                 num_points=64),
    # Real-photo scenes (data_pipelines/real_scenes.py) for training: the training photo set,
    # 20 % procedural textures mixed in, photometric realism. About 0.5 s per sequence.
    "real": dict(num_seqs={"train": 400, "val": 8}, frames=24, size=(192, 256), num_points=256,
                 scene="real", photos="train"),
    # The real-content benchmark: 10 test sequences from the *disjoint* evaluation photo set,
    # fixed seed 0 (override with --seed only to make a different benchmark), 24 frames, 288x384.
    "real-eval": dict(num_seqs={"test": 10}, frames=24, size=(288, 384), num_points=256,
                      scene="real", photos="eval"),
    # Real-photo training scenes with still and slow content: like 'real', but 40 % of the
    # sequences are still or slow (camera still or below ~0.3 px/frame; each object still or slow),
    # so the model sees what "no motion" and sub-pixel motion look like.
    "real-slow": dict(num_seqs={"train": 400, "val": 8}, frames=24, size=(192, 256),
                      num_points=256, scene="real", photos="train", still_share=0.4),
    # The static-and-slow benchmark: disjoint evaluation photos, 200 frames, every sequence still
    # or slow, with sensor noise, JPEG, lighting flicker and slight blur (drift and jitter).
    "real-static": dict(num_seqs={"test": 6}, frames=200, size=(192, 256), num_points=128,
                        scene="real", photos="eval", still_share=1.0, flicker=0.02),
    "real-tiny": dict(num_seqs={"train": 2, "test": 1}, frames=8, size=(64, 96), num_points=32,
                      scene="real", photos="train"),
}


# ----------------------------------------------------------------------------------------------
# Camera and rendering (the layers, their motion and the tracks: data_pipelines.scene_common)
# ----------------------------------------------------------------------------------------------

def _camera(rng: np.random.Generator, frames: int, size: tuple[int, int]):
    """World->image camera: q = zoom[t] * (w - centre[t]) + image_centre. World = frame-0 pixels."""
    h, w = size
    s = np.linspace(0.0, 1.0, frames)
    zoom = np.exp(rng.uniform(-0.15, 0.15) * s + smooth_wobble(rng, s, 0.03))
    zoom /= zoom[0]
    img_c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction) + 1e-9
    travel = rng.uniform(0.0, 0.3) * min(h, w)
    centre = img_c[None] + travel * s[:, None] * direction[None]
    centre[:, 0] += smooth_wobble(rng, s, 0.02 * w)
    centre[:, 1] += smooth_wobble(rng, s, 0.02 * h)
    centre -= centre[0] - img_c  # frame 0 sees world [0, W) x [0, H)
    return zoom, centre, img_c


def _render(size, zoom, centre, img_c, bg_tex, bg_origin, bg_depth_coef, objects):
    """Renders rgbs [T,H,W,3] uint8, masks [T,H,W] uint8, depths [T,H,W] float32."""
    h, w = size
    frames = zoom.shape[0]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    rgbs = np.empty((frames, h, w, 3), np.uint8)
    masks = np.empty((frames, h, w), np.uint8)
    depths = np.empty((frames, h, w), np.float32)
    for t in range(frames):
        wx = (xs - img_c[0]) / zoom[t] + centre[t, 0]
        wy = (ys - img_c[1]) / zoom[t] + centre[t, 1]
        rgb = cv2.remap(bg_tex, (wx - bg_origin[0]).astype(np.float32),
                        (wy - bg_origin[1]).astype(np.float32), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REFLECT_101)
        ids = np.full((h, w), BACKGROUND_ID, np.uint8)
        dep = (bg_depth_coef[0] + bg_depth_coef[1] * wx + bg_depth_coef[2] * wy).astype(np.float32)
        composite_objects(rgb, ids, dep, objects, t, xs, ys)
        rgbs[t], masks[t], depths[t] = rgb, ids, dep
    return rgbs, masks, depths


def generate_sequence(seed: int, frames: int = 24, size: tuple[int, int] = (128, 160),
                      num_objects: int | tuple[int, int] = (3, 6), num_points: int = 256,
                      num_distractors: int = 1, background_fraction: float = 0.3) -> dict[str, Any]:
    """Generates one sequence in memory.

    Args:
      seed: integer seed (``np.random.default_rng(seed)``); same seed -> identical arrays.
      frames: T.
      size: (H, W) in pixels.
      num_objects: an int or an inclusive (min, max) range.
      num_points: N, total number of tracks (background + objects).
      num_distractors: how many objects copy another object's texture and shape.
      background_fraction: share of the N tracks placed on the background.

    Returns:
      dict with ``rgbs`` uint8 [T,H,W,3], ``masks`` uint8 [T,H,W] (background 1, objects 2..),
      ``depths`` float32 [T,H,W] metres, ``trajs_2d`` float32 [T,N,2] (x, y), ``visibs`` bool [T,N],
      ``valids`` bool [T,N], ``instance_ids`` uint8 [N], ``trajs_3d`` float32 [T,N,3],
      ``intrinsics`` float32 [T,3,3], ``extrinsics`` float32 [T,4,4], ``distractor_of`` int32
      [num_objects] (instance id an object copies, or 0).
    """
    h, w = int(size[0]), int(size[1])
    if frames < 2 or h < 16 or w < 16:
        raise ValueError(f"need frames >= 2 and size >= 16x16, got frames={frames}, size={size}")
    rng = np.random.default_rng(seed)
    if isinstance(num_objects, (tuple, list)):
        num_objects = int(rng.integers(num_objects[0], num_objects[1] + 1))
    num_objects = int(num_objects)
    num_distractors = int(min(num_distractors, max(num_objects - 1, 0)))

    zoom, centre, img_c = _camera(rng, frames, (h, w))
    # Background texture covering every frame's view of the world (+ margin).
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], np.float64)
    world = (corners[None] - img_c) / zoom[:, None, None] + centre[:, None]
    lo = np.floor(world.reshape(-1, 2).min(0)) - 8
    hi = np.ceil(world.reshape(-1, 2).max(0)) + 8
    bg_tex = make_texture(rng, int(hi[1] - lo[1]) + 1, int(hi[0] - lo[0]) + 1)
    bg_depth_coef = np.array([rng.uniform(40.0, 60.0), rng.uniform(-0.02, 0.02), rng.uniform(0.0, 0.05)])

    objects = make_objects(rng, frames, (h, w), num_objects, num_distractors, zoom, centre, img_c)
    distractor_of = np.zeros(num_objects, np.int32)
    for i, o in enumerate(objects):
        for j in range(i):
            if objects[j].texture is o.texture:
                distractor_of[i] = objects[j].instance_id
                break

    rgbs, masks, depths = _render((h, w), zoom, centre, img_c, bg_tex, lo, bg_depth_coef, objects)

    # ---- tracks ----
    n_bg = int(round(background_fraction * num_points)) if num_objects else num_points
    n_obj = num_points - n_bg
    trajs, owners, pdepth = [], [], []
    if n_bg:
        t_ref = rng.integers(0, frames, n_bg)  # some background points only appear later
        q_ref = np.stack([rng.uniform(0, w - 1, n_bg), rng.uniform(0, h - 1, n_bg)], -1)
        wpts = (q_ref - img_c) / zoom[t_ref, None] + centre[t_ref]
        tr = zoom[:, None, None] * (wpts[None] - centre[:, None]) + img_c
        trajs.append(tr)
        owners.append(np.full(n_bg, BACKGROUND_ID))
        pdepth.append(np.broadcast_to(bg_depth_coef[0] + wpts @ bg_depth_coef[1:], (frames, n_bg)))
    ot, oo, od = object_tracks(rng, objects, n_obj)
    return finish_tracks(trajs + ot, owners + oo, pdepth + od, masks, depths, rgbs, distractor_of)


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------

def _imwrite(path: str, img: np.ndarray, params: Sequence[int] = ()) -> None:
    if not cv2.imwrite(path, img, list(params)):
        raise OSError(f"could not write {path}")


def write_sequence(seq_dir: str, seq: Mapping[str, np.ndarray], write_depths: bool = True) -> None:
    """Writes one sequence dict (as returned by `generate_sequence`) in the PointOdyssey layout.

    ``<seq_dir>/rgbs/rgb_%05d.jpg``, ``masks/mask_%05d.png``, ``depths/depth_%05d.png`` (optional,
    also skipped when the dict has no ``depths``) and ``anno.npz``.
    """
    rgbs = np.asarray(seq["rgbs"])
    for sub in ("rgbs", "masks") + (("depths",) if write_depths and "depths" in seq else ()):
        os.makedirs(os.path.join(seq_dir, sub), exist_ok=True)
    for t in range(rgbs.shape[0]):
        _imwrite(os.path.join(seq_dir, "rgbs", f"rgb_{t:05d}.jpg"), rgbs[t][..., ::-1],
                 (cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY))
        if "masks" in seq:
            _imwrite(os.path.join(seq_dir, "masks", f"mask_{t:05d}.png"), np.asarray(seq["masks"][t], np.uint8))
        if write_depths and "depths" in seq:
            d16 = np.clip(np.round(np.asarray(seq["depths"][t]) * _DEPTH_SCALE), 0, 65535).astype(np.uint16)
            _imwrite(os.path.join(seq_dir, "depths", f"depth_{t:05d}.png"), d16)
    anno = {k: np.asarray(seq[k]) for k in ("trajs_2d", "visibs", "valids", "trajs_3d", "intrinsics",
                                             "extrinsics", "instance_ids") if k in seq}
    np.savez_compressed(os.path.join(seq_dir, "anno.npz"), **anno)


def sequence_seed(seed: int, split: str, index: int) -> int:
    """The seed of sequence `index` of `split`: independent streams per (seed, split, index)."""
    code = _SPLIT_CODES.get(split, sum(map(ord, split)) + 16)
    return int(np.random.SeedSequence([int(seed), code, int(index)]).generate_state(1)[0])


def _resolve_counts(num_seqs: int | Mapping[str, int]) -> dict[str, int]:
    if isinstance(num_seqs, Mapping):
        return {k: int(v) for k, v in num_seqs.items()}
    n = int(num_seqs)
    return {"train": n, "val": max(1, -(-n // 4)), "test": max(1, -(-n // 4))}


def generate_dataset(out_dir: str, num_seqs: int | Mapping[str, int] | None = None, frames: int = 24,
                     size: tuple[int, int] = (128, 160), seed: int = 0,
                     num_objects: int | tuple[int, int] = (3, 6), num_points: int = 256,
                     preset: str | None = None, progress: bool = True,
                     write_depths: bool = True) -> dict[str, Any]:
    """Generates a PointOdyssey-layout dataset ``<out_dir>/<split>/seq_%04d/...``.

    Args:
      num_seqs: ``{'train': n, 'val': n, 'test': n}`` or an int n = number of training sequences
        (val and test then get ceil(n/4) each). None: the preset's counts (default preset 'small').
      preset: 'small' (8/2/2 × 24 frames × 128×160, 256 points), 'tiny' (for tests), 'real'
        (real-photo training scenes, :mod:`data_pipelines.real_scenes`), 'real-eval' (the
        real-content benchmark: disjoint photos, test split) or 'real-tiny'. Preset values
        replace only the arguments left at their default values.
    Returns:
      a summary dict: out_dir, splits {split: [seq names]}, frames, size, num_points, seconds.
    """
    defaults = dict(frames=24, size=(128, 160), num_points=256)
    scene, photos = "procedural", "train"
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        p = PRESETS[preset]
        frames = p["frames"] if frames == defaults["frames"] else frames
        size = p["size"] if tuple(size) == defaults["size"] else size
        num_points = p["num_points"] if num_points == defaults["num_points"] else num_points
        num_seqs = p["num_seqs"] if num_seqs is None else num_seqs
        scene, photos = p.get("scene", scene), p.get("photos", photos)
        extra = {k: p[k] for k in ("still_share", "flicker") if k in p}
    else:
        extra = {}
    counts = _resolve_counts(PRESETS["small"]["num_seqs"] if num_seqs is None else num_seqs)
    jobs = [(split, i) for split, n in counts.items() for i in range(n)]
    it = jobs
    if progress:
        try:
            from tqdm import tqdm
            it = tqdm(jobs, desc="synth", unit="seq")
        except ImportError:  # pragma: no cover
            pass
    t0 = time.perf_counter()
    names: dict[str, list[str]] = {split: [] for split in counts}
    for split, i in it:
        name = f"seq_{i:04d}"
        if scene == "real":
            from objtrack_jax.data_pipelines import real_scenes  # pylint: disable=import-outside-toplevel
            seq = real_scenes.generate_sequence(sequence_seed(seed, split, i), frames=frames,
                                                size=tuple(size), num_points=num_points,
                                                photos=photos, **extra)
        else:
            seq = generate_sequence(sequence_seed(seed, split, i), frames=frames,
                                    size=tuple(size), num_objects=num_objects,
                                    num_points=num_points)
        write_sequence(os.path.join(out_dir, split, name), seq, write_depths=write_depths)
        names[split].append(name)
    return dict(out_dir=os.path.abspath(out_dir), splits=names, frames=int(frames),
                size=tuple(int(s) for s in size), num_points=int(num_points),
                seconds=time.perf_counter() - t0)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = text.lower().split("x")
        return int(h), int(w)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--size must look like 128x160 (HxW), got {text!r}") from e


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """`objtrack synth --out DIR [--num-seqs N] [--frames T] [--size HxW] [--seed S]`."""
    small = PRESETS["small"]
    parser = argparse.ArgumentParser(prog="objtrack synth",
                                     description="Generate a synthetic PointOdyssey-layout dataset.")
    parser.add_argument("--out", required=True, help="output root (gets train/ val/ test/)")
    def at_least(minimum):
        def parse(text):
            try:
                value = int(text)
            except ValueError as e:
                raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from e
            if value < minimum:
                raise argparse.ArgumentTypeError(f"{value} is not allowed: must be >= {minimum}")
            return value
        return parse

    parser.add_argument("--num-seqs", type=at_least(1), default=None,
                        help="training sequences (val/test get ceil(N/4)); default 8/2/2")
    parser.add_argument("--frames", type=at_least(2), default=small["frames"])
    parser.add_argument("--size", type=_parse_size, default=small["size"], help="HxW, e.g. 128x160")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small",
                        help="'small' procedural scenes (default); 'real': real-photo training "
                             "scenes; 'real-eval': the real-content benchmark (disjoint photos); 'real-slow': "
                             "'real' with 40%% still or slow scenes; 'real-static': the 200-frame "
                             "static-and-slow benchmark (disjoint photos)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    p = PRESETS[args.preset]
    frames = p["frames"] if args.frames == small["frames"] else args.frames
    size = p["size"] if tuple(args.size) == tuple(small["size"]) else args.size
    summary = generate_dataset(args.out, num_seqs=args.num_seqs, frames=frames, size=size,
                               seed=args.seed, num_points=p["num_points"], preset=args.preset,
                               progress=not args.no_progress)
    counts = ", ".join(f"{k}={len(v)}" for k, v in summary["splits"].items())
    print(f"wrote {counts} sequences of {summary['frames']} frames at "
          f"{summary['size'][0]}x{summary['size'][1]} to {summary['out_dir']} "
          f"in {summary['seconds']:.1f}s")
    return summary


if __name__ == "__main__":
    main()
