"""TFDS builder writing PointOdyssey-layout clips (real or `synthetic.py` output) to TFRecord shards.

``manual_dir`` is any PointOdyssey-layout root (``<root>/<split>/<seq>/{rgbs,masks}/``, ``anno.npz``
or ``annotations.npz``); every split folder holding sequences becomes a TFDS split. Clips come from
`pointodyssey.iter_split_clips` (so bad clips are skipped, counted and logged when
``skip_bad=True``, the default here) and are stored with the features::

    rgbs       Video uint8 [S, H, W, 3]   (PNG-encoded frames)
    masks      Tensor uint8 [S, H, W]     (zlib; only when with_masks)
    trajs      Tensor float32 [S, None, 2]  (x, y) pixels of the stored (possibly resized) frames
    visibs     Tensor bool [S, None]
    valids     Tensor bool [S, None]
    seq_name   Text
    start      int32 (first frame index; frame s = start + s * frame_stride)
    frame_stride int32

With ``resolution=(H, W)``, frames are resized with OpenCV linear interpolation, masks with nearest
neighbour, and tracks scaled by W_new/W_old and H_new/H_old (the resize rule of
docs/conventions.md).

Example::

    from objtrack_jax.data_pipelines import tfds_pointodyssey
    builder = tfds_pointodyssey.build('/data/pointodyssey', '/data/tfds', clip_len=24, clip_stride=12)
    ds = builder.as_dataset(split='train')
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import cv2
import numpy as np
import tensorflow_datasets as tfds

from objtrack_jax.data_pipelines import pointodyssey
from objtrack_jax.video_io import resize_video


@dataclasses.dataclass(eq=False)
class PointOdysseyClipsConfig(tfds.core.BuilderConfig):
    """Clip sampling and storage options."""
    clip_len: int = 24
    clip_stride: int = 12
    frame_stride: int = 1
    resolution: tuple[int, int] | None = None   # (H, W); None keeps the stored size
    with_masks: bool = True
    skip_bad: bool = True


def make_config(clip_len: int = 24, clip_stride: int = 12, frame_stride: int = 1,
                resolution: tuple[int, int] | None = None, with_masks: bool = True,
                skip_bad: bool = True, name: str | None = None) -> PointOdysseyClipsConfig:
    """A config whose default name encodes the clip parameters (e.g. ``s24_c12_f1_native``)."""
    res = "native" if resolution is None else f"{int(resolution[0])}x{int(resolution[1])}"
    name = name or f"s{clip_len}_c{clip_stride}_f{frame_stride}_{res}" + ("" if with_masks else "_nomask")
    return PointOdysseyClipsConfig(
        name=name, description=f"clips of {clip_len} frames every {clip_stride}, frame stride "
        f"{frame_stride}, resolution {res}", clip_len=int(clip_len), clip_stride=int(clip_stride),
        frame_stride=int(frame_stride), resolution=None if resolution is None else
        (int(resolution[0]), int(resolution[1])), with_masks=with_masks, skip_bad=skip_bad)


class PointOdysseyClips(tfds.core.GeneratorBasedBuilder):
    """Fixed-length clips with tracks and instance masks from a PointOdyssey-layout root."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [make_config(24, 12), make_config(36, 18), make_config(24, 12, resolution=(256, 384))]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Point manual_dir at a PointOdyssey-layout root (<root>/<split>/<seq>/rgbs/rgb_%05d.jpg, "
        "masks/mask_%05d.png, anno.npz), e.g. the real PointOdyssey v1.2 download or the output of "
        "`objtrack synth --out DIR`.")
    # Nothing is downloaded, so there are no URL checksums to look up. Setting this also keeps TFDS
    # from resolving the builder's code path, which needs the optional `importlib_resources` package.
    url_infos = None

    def _info(self) -> tfds.core.DatasetInfo:
        cfg: PointOdysseyClipsConfig = self.builder_config
        s = cfg.clip_len
        h, w = cfg.resolution if cfg.resolution is not None else (None, None)
        features = {
            "rgbs": tfds.features.Video(shape=(s, h, w, 3)),
            "trajs": tfds.features.Tensor(shape=(s, None, 2), dtype=np.float32),
            "visibs": tfds.features.Tensor(shape=(s, None), dtype=np.bool_),
            "valids": tfds.features.Tensor(shape=(s, None), dtype=np.bool_),
            "seq_name": tfds.features.Text(),
            "start": tfds.features.Scalar(dtype=np.int32),
            "frame_stride": tfds.features.Scalar(dtype=np.int32),
        }
        if cfg.with_masks:
            features["masks"] = tfds.features.Tensor(shape=(s, h, w), dtype=np.uint8,
                                                     encoding=tfds.features.Encoding.ZLIB)
        return tfds.core.DatasetInfo(
            builder=self, description=__doc__.split("\n\n")[0],
            features=tfds.features.FeaturesDict(features), supervised_keys=None)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = str(dl_manager.manual_dir)
        splits = pointodyssey.list_splits(root)
        if not splits:
            raise pointodyssey.DataError(f"{root}: no split folders with sequences")
        return {split: self._generate_examples(root, split) for split in splits}

    def _generate_examples(self, root: str, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
        cfg: PointOdysseyClipsConfig = self.builder_config
        for clip in pointodyssey.iter_split_clips(
                root, split, cfg.clip_len, cfg.clip_stride, cfg.frame_stride,
                load_masks=cfg.with_masks, skip_bad=cfg.skip_bad):
            if cfg.resolution is not None:
                clip = resize_clip(clip, cfg.resolution)
            example = {k: clip[k] for k in ("rgbs", "trajs", "visibs", "valids", "seq_name")}
            example["start"] = np.int32(clip["start"])
            example["frame_stride"] = np.int32(clip["frame_stride"])
            if cfg.with_masks:
                example["masks"] = clip["masks"]
            yield f"{clip['seq_name']}_{clip['start']:06d}", example


def resize_clip(clip: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """Resizes a clip dict to (H, W): frames linear, masks nearest, tracks by W_new/W_old, H_new/H_old."""
    h, w = int(size[0]), int(size[1])
    h0, w0 = clip["rgbs"].shape[1:3]
    if (h, w) == (h0, w0):
        return clip
    out = dict(clip)
    out["rgbs"] = resize_video(clip["rgbs"], (h, w))
    if "masks" in clip:
        out["masks"] = np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST)
                                 for m in clip["masks"]])
    out["trajs"] = (clip["trajs"] * np.array([w / w0, h / h0], np.float32)).astype(np.float32)
    return out


def build(manual_dir: str, data_dir: str, clip_len: int = 24, clip_stride: int = 12,
          frame_stride: int = 1, resolution: tuple[int, int] | None = None, with_masks: bool = True,
          skip_bad: bool = True, name: str | None = None) -> PointOdysseyClips:
    """Builds (if needed) the TFRecord shards under `data_dir` and returns the prepared builder."""
    config = make_config(clip_len, clip_stride, frame_stride, resolution, with_masks, skip_bad, name)
    builder = PointOdysseyClips(config=config, data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    return builder
