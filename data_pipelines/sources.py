"""Clip sources of the training pipeline and example ``g`` of the global stream.

A :class:`ClipSource` is a table of ``(sequence, start frame, frame stride)`` rows plus a loader;
:class:`ExampleMaker` turns global example index ``g`` into one processed example, a pure function
of ``(config.seed, g)`` (clip choice, retries, :func:`data_pipelines.transforms.process_clip`).

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
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import threading
from typing import Callable, Mapping, Sequence

import numpy as np

from objtrack_jax.data_pipelines.transforms import process_clip


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
    from objtrack_jax.data_pipelines import pointodyssey  # pylint: disable=import-outside-toplevel
    return pointodyssey.load_annotations(seq_dir)


def dir_source(config) -> ClipSource:
    """Random-access clips of the PointOdyssey-layout tree ``config.root/config.split``.

    Built on the reader's pieces (``pointodyssey.list_sequences/num_frames/load_frames/load_masks/
    load_annotations``), so a clip equals what ``pointodyssey.iter_clips`` yields for the same
    (start, frame_stride); only the requested frames are decoded.
    """
    from objtrack_jax.data_pipelines import pointodyssey as po  # pylint: disable=import-outside-toplevel
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
        from objtrack_jax.data_pipelines import tfds_pointodyssey  # pylint: disable=all
    except ImportError:
        pass
    return tfds.builder(config.tfds_name, data_dir=config.tfds_data_dir)


def fitting_strides(config, length: int) -> list:
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
    strides = fitting_strides(config, length)
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
