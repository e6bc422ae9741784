"""Training input pipeline: tf.data assembly, per-host global batches and the resumable iterator.

The job is split in three modules: :mod:`data_pipelines.transforms` (augmentations, point filters,
farthest-point sampling), :mod:`data_pipelines.sources` (clip tables, sources, example ``g`` of the
stream) and this one (config, tf.data, batches, :class:`TrainIterator`).

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

Sources (``source='dir'`` / ``'tfds'``, random access or streamed) and clip sampling: see
:mod:`data_pipelines.sources`.

Per-example transform
---------------------
``process_clip`` in :mod:`data_pipelines.transforms` (its docstring lists the steps, the point
filters and farthest-point sampling, in order).

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
import weakref
from typing import Any, Callable, Iterator, Mapping

import ml_collections
import numpy as np

from objtrack_jax.data_pipelines.sources import (
    ClipSource, ExampleMaker, fitting_strides, make_source, tfds_builder, tfds_source)
from objtrack_jax.data_pipelines.transforms import process_clip, swap_xy

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
    # Share of clips in which the motion filter is off, so still points are kept (and learned).
    c.filters.still_share = 0.0
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


def numpy_map(py_fn: Callable, inputs: list, spec: Mapping[str, tuple], extra=()):
    """``tf.numpy_function(py_fn, inputs)`` whose outputs are the ``spec`` fields (``{key: (shape,
    dtype)}``, in order) plus ``extra`` dtypes; returns ``(dict of shaped tensors, [extras])``.
    ``py_fn`` returns a list of numpy arrays in that order. The one place tf.data calls numpy."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    keys = list(spec)
    outs = tf.numpy_function(py_fn, inputs, [spec[k][1] for k in keys] + list(extra),
                             stateful=False)
    d = {}
    for k, o in zip(keys, outs[:len(keys)]):
        o.set_shape(spec[k][0])
        d[k] = o
    return d, list(outs[len(keys):])


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
        return numpy_map(py_fn, [i], spec)[0]

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
        fs = int(rng.choice(fitting_strides(config, len(rgbs))))
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
        d, (ok,) = numpy_map(py_fn, [r] + [rec[k] for k in ("rgbs", "masks", "trajs", "visibs",
                                                              "valids")], spec, extra=[tf.bool])
        return d, ok

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
