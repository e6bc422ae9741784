"""``train_and_evaluate(config, workdir)``: the data-parallel training loop.

Readable on purpose (no callback framework). In order:

1. multi-process initialisation when launched so (:func:`maybe_initialize_distributed`);
2. a ``('data', 'model')`` device mesh (``jax.make_mesh``, axis types passed explicitly as ``Auto``:
   the model code has no sharding annotations and XLA propagates the batch sharding); batches are
   ``NamedSharding(mesh, P('data'))``, the state is replicated;
3. the dataset: ``config.data.root``, or a procedural synthetic dataset generated into
   ``<workdir>/synthetic`` when it is empty (process 0 writes, the others wait);
4. the state: restored from the latest checkpoint in ``<workdir>/checkpoints`` (auto-resume, data
   position included) or created (abstractly first, then materialised replicated);
5. ``jax.jit(train_step, donate_argnums=0)`` built once (XLA compiles one program per batch shape:
   with non-square crops the pipeline's x/y swap gives two);
6. the loop: log every ``log_every`` steps (loss terms and gradient norm averaged over the steps
   since the last log; process 0: ``<workdir>/metrics.jsonl``, TensorBoard
   under ``<workdir>/tensorboard`` when TensorFlow is importable, a tqdm bar with ETA), checkpoint
   every ``checkpoint.every_steps``, evaluate every ``eval_every`` steps on the held-out split.

Stopping:

* non-finite loss or gradient norm -> ``FloatingPointError`` naming the step and the loss terms
  (checked every step, before the state of that step can be checkpointed);
* SIGTERM (preemption) -> the step in flight finishes, a checkpoint is written, and the function
  returns with ``stopped_early='SIGTERM'`` (``main`` then exits with status 143); in a multi-process
  run the processes agree on the stop every ``distributed.stop_check_every`` steps;
* Ctrl-C (SIGINT) -> the same checkpoint, then ``KeyboardInterrupt`` is re-raised (a second Ctrl-C
  interrupts immediately);
* ``max_steps_this_run`` -> a checkpoint, then return with ``stopped_early='max_steps_this_run'``.
The checkpointer is always drained (``wait_until_finished``) before returning or raising.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import signal
import time
from typing import Any, Optional

import jax
import ml_collections
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from objtrack_jax.models.tracker import tracker_from_config
from objtrack_jax.train import checkpoint as ckpt_lib
from objtrack_jax.train import optim as optim_lib
from objtrack_jax.train import state as state_lib
from objtrack_jax.train.step import select_batch, train_step

log = logging.getLogger(__name__)

# Logged as the value at the log step; every other train metric is the mean over the log window.
LAST_VALUE_METRICS = ("lr", "param_norm")

# --------------------------------------------------------------------------------------------------
# Distributed setup and mesh
# --------------------------------------------------------------------------------------------------


def multiprocess_launch_detected(environ=None) -> bool:
    """True when the environment says this is one process of a multi-process launch."""
    env = os.environ if environ is None else environ

    def count(name):
        try:
            return int(env.get(name, "1"))
        except ValueError:
            return 1

    return bool(env.get("JAX_COORDINATOR_ADDRESS") or env.get("MEGASCALE_COORDINATOR_ADDRESS")
                or count("SLURM_NTASKS") > 1 or count("OMPI_COMM_WORLD_SIZE") > 1
                or "," in env.get("TPU_WORKER_HOSTNAMES", ""))


def maybe_initialize_distributed(config) -> bool:
    """Calls ``jax.distributed.initialize`` when asked or detected; returns whether it did.

    ``config.distributed.initialize``: 'on' (always), 'off' (never), 'auto' (when
    ``coordinator_address`` is set or :func:`multiprocess_launch_detected`). With explicit
    ``coordinator_address/num_processes/process_id`` those are passed; otherwise JAX detects the
    cluster (TPU pod slices, SLURM, Open MPI, ...). CPU collectives use gloo.
    """
    d = config.distributed
    mode = d.initialize
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"distributed.initialize must be 'auto', 'on' or 'off', got {mode!r}")
    if mode == "off" or jax.distributed.is_initialized():
        return False
    if mode == "auto" and not (d.coordinator_address or multiprocess_launch_detected()):
        return False
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {}
    if d.coordinator_address:
        kwargs = dict(coordinator_address=d.coordinator_address, num_processes=d.num_processes,
                      process_id=d.process_id)
    jax.distributed.initialize(**kwargs)
    return True


def make_mesh(config) -> jax.sharding.Mesh:
    """``('data', 'model')`` mesh; ``mesh.data = -1`` takes all devices not used by ``model``."""
    n_dev = jax.device_count()
    n_model = int(config.mesh.model)
    n_data = int(config.mesh.data)
    if n_model < 1 or n_dev % n_model:
        raise ValueError(f"mesh.model={n_model} must divide the device count {n_dev}")
    if n_data == -1:
        n_data = n_dev // n_model
    if n_data * n_model != n_dev:
        raise ValueError(f"mesh {n_data}x{n_model} (data x model) does not match the {n_dev} devices")
    return jax.make_mesh((n_data, n_model), ("data", "model"),
                         axis_types=(AxisType.Auto, AxisType.Auto))


def check_batch_size(global_batch: int, mesh) -> None:
    n_dev = jax.device_count()
    n_proc = jax.process_count()
    n_data = mesh.shape["data"]
    if global_batch % n_dev or global_batch % n_data or global_batch % n_proc:
        raise ValueError(
            f"batch_size={global_batch} is the GLOBAL batch and must be divisible by the number of "
            f"devices ({n_dev}; {n_proc} process(es), data axis {n_data}); e.g. use "
            f"--config.batch_size={max(1, global_batch // n_dev) * n_dev}")


def to_host(tree):
    """Fetches (replicated) arrays to host numpy, also for arrays spanning other processes."""
    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            x = x.addressable_data(0)
        return np.asarray(x)
    return jax.tree.map(get, tree)


def local_copy(tree):
    """A process-local (single-device) copy of a replicated pytree, for host-driven evaluation."""
    return jax.tree.map(lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x, tree)


@functools.lru_cache(maxsize=None)
def _replicate_fn(sharding: NamedSharding):
    return jax.jit(lambda a: a, out_shardings=sharding)


def gather_from_processes(x, mesh) -> np.ndarray:
    """``[process_count, *x.shape]``: every process's host array ``x``, in process order.

    A collective (every process must call it; it is also a barrier), done as one all-gather over
    *all* devices of ``mesh``, the device group the train step's gradient all-reduce already uses.
    ``multihost_utils.process_allgather`` / ``sync_global_devices`` on host values instead build
    one cross-process group per local device; with gloo CPU collectives and several local devices
    per process, creating those groups intermittently leaves a device thread stuck and the process
    hangs at exit (measured, 2 processes x 2 CPU devices under load: 2 of 30 runs of
    ``sync_global_devices`` hung, 0 of 40 with this). ``x`` must be 32-bit (or smaller) numeric.
    """
    x = np.asarray(x)
    devices = mesh.devices.reshape(-1)
    flat = jax.sharding.Mesh(devices, ("all",))
    arr = jax.make_array_from_callback((len(devices),) + x.shape, NamedSharding(flat, P("all")),
                                       lambda index: x[None])
    full = np.asarray(_replicate_fn(NamedSharding(flat, P()))(arr).addressable_data(0))
    first = {}
    for i, d in enumerate(devices):
        first.setdefault(d.process_index, i)
    return np.stack([full[first[p]] for p in range(jax.process_count())])


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def prepare_data_root(config, workdir: str, mesh=None) -> str:
    """``config.data.root`` or, when empty (source 'dir'), a synthetic tree in ``<workdir>``
    (process 0 writes it; with several processes, ``mesh`` is needed for the barrier)."""
    if config.data.source == "dir" and config.data.root:
        if "://" not in config.data.root:
            if not os.path.isdir(config.data.root):
                raise FileNotFoundError(f"config.data.root={config.data.root}: dataset root does "
                                        "not exist (leave it empty to generate synthetic data)")
            from objtrack_jax.data_pipelines import pointodyssey  # pylint: disable=import-outside-toplevel
            # Before any work: names a split folder given as the root (and suggests its parent).
            pointodyssey.list_sequences(config.data.root, config.data.split)
        return config.data.root
    if config.data.source != "dir":
        return config.data.root
    root = os.path.join(workdir, "synthetic")
    done = os.path.join(root, "DONE")

    def generate():
        from objtrack_jax.data_pipelines import synthetic  # pylint: disable=import-outside-toplevel
        s = config.synthetic
        synthetic.generate_dataset(root, num_seqs={"train": s.num_train, "val": s.num_val},
                                   frames=s.frames, size=tuple(s.size), seed=s.seed,
                                   num_points=s.num_points, progress=False, write_depths=False)
        with open(done, "w") as f:
            f.write("ok\n")

    if jax.process_index() == 0 and not os.path.exists(done):
        generate()
    if jax.process_count() > 1:
        if mesh is None:
            raise ValueError("prepare_data_root: with several processes, pass the training mesh "
                             "(used for the barrier after process 0 writes the synthetic data)")
        gather_from_processes(np.zeros(1, np.int32), mesh)  # barrier: process 0 has written
        if not os.path.exists(done):  # workdir not shared between hosts: generate locally
            generate()
    return root


def _data_state_for_checkpoint(it, mesh) -> dict:
    st = dict(it.state())
    if "raw_position" in st:  # streamed TFDS: one position per process
        raw = int(st.pop("raw_position"))
        pos = np.asarray([raw])
        if jax.process_count() > 1:
            if not 0 <= raw < 2**31:
                raise OverflowError(f"TFDS stream position {raw} does not fit in int32")
            pos = gather_from_processes(np.asarray([raw], np.int32), mesh).reshape(-1)
        st["raw_positions"] = [int(p) for p in pos]
    return st


def _iterator_state_from_checkpoint(data_state: dict) -> Optional[dict]:
    if "raw_positions" in data_state:
        return {"raw_position": data_state["raw_positions"][jax.process_index()]}
    return None


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


def eval_settings(config, root: str) -> Optional[dict]:
    """Keyword arguments of :func:`objtrack_jax.evaluation.evaluate` for the periodic evaluation
    (``config.eval``), or None when the held-out split ``<root>/<eval.split>`` does not exist.

    PIPs++ protocol on up to ``eval.num_videos`` sequences of a PointOdyssey-layout root (the
    synthetic data has that layout): the first ``eval.max_frames`` frames, at most
    ``eval.max_points`` queries (evenly spread over the points visible at frame 0, as in
    ``objtrack eval``), frames resized to ``eval.image_size`` or kept native (rounded up to a
    model size), windows of ``eval.window`` frames with the PIPs++ carry, ``eval.iters``
    iterations, survival threshold ``eval.survival_threshold`` (one
    :class:`~objtrack_jax.settings.TrackingSettings`: the settings the run is validated at, and
    the ones its exported weights record).
    """
    e = config.eval
    root = e.root or root
    if not root or not os.path.isdir(os.path.join(root, e.split)):
        return None
    from objtrack_jax.settings import TrackingSettings  # pylint: disable=import-outside-toplevel

    return dict(dataset="pointodyssey", data_root=root, protocol="pips",
                settings=TrackingSettings(window=int(e.window), iters=int(e.iters)),
                max_videos=int(e.num_videos), progress=False,
                resolution=tuple(e.image_size) if e.image_size is not None else "native",
                survival_threshold=float(e.survival_threshold), split=e.split,
                max_points=int(e.max_points), max_frames=int(e.max_frames))


def evaluate(model, params, config, root: str) -> dict[str, float]:
    """The periodic evaluation: :func:`objtrack_jax.evaluation.evaluate` with
    :func:`eval_settings`; returns the mean metrics as ``{'eval/d_avg', 'eval/survival',
    'eval/median_l2', 'eval/d_1', ...}`` ({} without data)."""
    from objtrack_jax import evaluation  # pylint: disable=import-outside-toplevel
    from objtrack_jax.metrics import PIPS_KEYS  # pylint: disable=import-outside-toplevel

    kw = eval_settings(config, root)
    if kw is None:
        return {}
    _, mean = evaluation.evaluate(model=model, params=params, **kw)
    if not mean["num_videos"]:
        return {}
    return {f"eval/{k}": float(mean[k]) for k in PIPS_KEYS if mean.get(k) is not None}


# --------------------------------------------------------------------------------------------------
# Logging
# --------------------------------------------------------------------------------------------------


class MetricLogger:
    """Process-0 metric sink: JSON lines (``metrics.jsonl``) and TensorBoard (optional)."""

    def __init__(self, workdir: str, enabled: bool, tensorboard: bool = True):
        self.enabled = enabled
        self._file = None
        self._tb = None
        if not enabled:
            return
        self._file = open(os.path.join(workdir, "metrics.jsonl"), "a", buffering=1)
        if tensorboard:
            try:
                import tensorboard as _  # noqa: F401  tf.summary.scalar's implementation
                import tensorflow as tf  # pylint: disable=import-outside-toplevel
                self._tf = tf
                self._tb = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
            except Exception as err:  # pylint: disable=broad-except  # TB is optional
                log.warning("TensorBoard logging disabled (pip install tensorboard): %s", err)

    def write(self, step: int, scalars: dict) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), "time": time.time()}
        row.update({k: float(v) for k, v in scalars.items()})
        self._file.write(json.dumps(row) + "\n")
        if self._tb is not None:
            with self._tb.as_default(step=int(step)):
                for k, v in scalars.items():
                    self._tf.summary.scalar(k, float(v))
            self._tb.flush()

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def check_finite(metrics: dict, step: int) -> None:
    """Raises ``FloatingPointError`` naming the step and the loss terms when the loss or the
    gradient norm is not finite."""
    bad = [k for k in ("loss", "grad_norm") if k in metrics and not math.isfinite(metrics[k])]
    if bad:
        terms = ", ".join(f"{k}={metrics[k]:.6g}" for k in sorted(metrics))
        raise FloatingPointError(
            f"non-finite {' and '.join(bad)} at step {step}: {terms}. Training stopped; the last "
            "checkpoint before this step is intact (lower optim.lr, check the data, or use float32).")


class _StopSignals:
    """Turns SIGTERM/SIGINT into a flag checked between steps (main thread only)."""

    def __init__(self):
        self.received: Optional[str] = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.received == "SIGINT":
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.received = "SIGTERM" if signum == signal.SIGTERM else "SIGINT"

    def __exit__(self, *exc):
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)
        return False


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------


def warm_start(state, source: str):
    """Replaces the freshly initialised parameters of ``state`` by those of ``source`` (any
    checkpoint :func:`objtrack_jax.model_io.load_model` reads) wherever the path and shape match;
    the rest (e.g. a visibility head the source lacks) keeps its initialisation. Logs both lists.
    The optimizer state is untouched (Adam's moments start at zero either way)."""
    from objtrack_jax import model_io  # pylint: disable=import-outside-toplevel

    _, src, _ = model_io.load_model(source)
    src_flat = {jax.tree_util.keystr(k): v
                for k, v in jax.tree_util.tree_flatten_with_path(src)[0]}
    used, fresh = [], []

    def pick(path, leaf):
        key = jax.tree_util.keystr(path)
        value = src_flat.get(key)
        if value is not None and tuple(np.shape(value)) == tuple(leaf.shape):
            used.append(key)
            return jax.device_put(np.asarray(value, leaf.dtype), leaf.sharding)
        fresh.append(key)
        return leaf

    params = jax.tree_util.tree_map_with_path(pick, state.params)
    if not used:
        raise ValueError(f"init_from={source!r}: no parameter matches the model being trained")
    log.info("warm start from %s: %d arrays loaded, %d kept at init%s", source, len(used),
             len(fresh), f" ({', '.join(sorted({k.split(']')[0] + ']' for k in fresh}))})"
             if fresh else "")
    return state.replace(params=params)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains (resuming from ``workdir`` if it holds a checkpoint) and returns the final metrics.

    Returns a dict with the last logged training scalars, the last evaluation (``eval/...``), and
    ``step``, ``start_step``, ``stopped_early`` (None, 'SIGTERM' or 'max_steps_this_run'),
    ``workdir``.
    """
    from objtrack_jax.data_pipelines import pipeline  # pylint: disable=import-outside-toplevel

    config = config.copy_and_resolve_references()
    if str(config.model.get("dtype", "float32")) == "float64" and not jax.config.jax_enable_x64:
        # The float64 verification mode (params, optimizer state and compute in float64).
        logging.info("model.dtype=float64: enabling jax_enable_x64")
        jax.config.update("jax_enable_x64", True)
    maybe_initialize_distributed(config)
    pipeline.hide_accelerators_from_tf()
    workdir = os.path.abspath(workdir)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise NotADirectoryError(f"workdir {workdir} is a file, not a directory")
    os.makedirs(workdir, exist_ok=True)
    is_main = jax.process_index() == 0

    mesh = make_mesh(config)
    check_batch_size(int(config.batch_size), mesh)
    batch_sharding = NamedSharding(mesh, P("data"))
    rep = state_lib.replicated(mesh)
    config.data.root = prepare_data_root(config, workdir, mesh)

    model = tracker_from_config(config.model)
    tx, schedule = optim_lib.make_optimizer(config)
    abstract = state_lib.abstract_train_state(model, tx, mesh, config.seed)
    shardings = state_lib.state_shardings(abstract)
    ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                 every_steps=config.checkpoint.every_steps,
                                 keep=config.checkpoint.keep,
                                 async_save=config.checkpoint.async_save)
    barrier = ((lambda: gather_from_processes(np.zeros(1, np.int32), mesh))
               if jax.process_count() > 1 else None)
    state, data_state, restored = ckpt_lib.restore_or_init(
        ckpt, abstract, lambda: state_lib.create_train_state(model, tx, mesh, config.seed),
        barrier=barrier)
    if restored is None and config.get("init_from"):
        state = warm_start(state, config.init_from)
    start_step = int(to_host(state.step))
    if data_state and int(data_state.get("step", start_step)) != start_step:
        raise RuntimeError(f"checkpoint mismatch: state step {start_step} but data position "
                           f"{data_state['step']}")
    if is_main:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))
        log.info("%s at step %d; %d parameters; mesh %s; %d process(es)",
                 "resumed" if restored is not None else "started", start_step,
                 state_lib.param_count(abstract.params), dict(mesh.shape), jax.process_count())

    it = pipeline.make_train_iterator(config.data, int(config.batch_size), start_step=start_step,
                                      mesh=mesh, state=_iterator_state_from_checkpoint(data_state))
    step_fn = jax.jit(
        functools.partial(train_step, model=model, tx=tx, schedule=schedule, config=config),
        donate_argnums=0, in_shardings=(shardings, batch_sharding), out_shardings=(shardings, rep))

    max_steps = int(config.max_steps)
    end_step = max_steps
    if config.max_steps_this_run is not None:
        end_step = min(end_step, start_step + int(config.max_steps_this_run))
    logger = MetricLogger(workdir, is_main, config.tensorboard)
    bar = None
    if is_main and config.progress_bar:
        from tqdm import tqdm  # pylint: disable=import-outside-toplevel
        bar = tqdm(total=max_steps, initial=start_step, desc="train", unit="step",
                   dynamic_ncols=True)
    result: dict[str, Any] = {"start_step": start_step, "workdir": workdir, "stopped_early": None}
    last_saved = restored
    step = start_step
    stop_every = max(1, int(config.distributed.stop_check_every))
    window_t0, window_steps, data_wait = time.perf_counter(), 0, 0.0
    window_sums: dict[str, float] = {}  # loss terms and grad norm, summed over the log window

    def save(force=False):
        nonlocal last_saved
        if last_saved == step:
            return
        if ckpt.save(step, state, _data_state_for_checkpoint(it, mesh), force=force):
            last_saved = step

    def run_eval():
        if not is_main:
            return {}
        scalars = evaluate(model, local_copy(state.params), config, config.data.root)
        if scalars:
            logger.write(step, scalars)
        return scalars

    try:
        with _StopSignals() as signals:
            while step < end_step:
                t0 = time.perf_counter()
                batch = select_batch(next(it), config)
                data_wait += time.perf_counter() - t0
                state, metrics = step_fn(state, batch)
                step += 1
                window_steps += 1
                metrics = {k: float(v) for k, v in to_host(metrics).items()}
                check_finite(metrics, step)
                for k, v in metrics.items():
                    if k not in LAST_VALUE_METRICS:
                        window_sums[k] = window_sums.get(k, 0.0) + v
                if bar is not None:
                    bar.update(1)
                # Save before logging: a logged step's checkpoint is at least being written, and
                # (orbax finishes the previous save first) every earlier one is on disk.
                save()
                if step % int(config.log_every) == 0 or step == end_step:
                    dt = time.perf_counter() - window_t0
                    metrics.update({k: v / window_steps for k, v in window_sums.items()})
                    metrics["steps_per_sec"] = window_steps / max(dt, 1e-9)
                    metrics["data_wait_s"] = data_wait / window_steps
                    logger.write(step, metrics)
                    result.update(metrics)
                    if bar is not None:
                        bar.set_postfix(loss=f"{metrics['loss']:.4g}", lr=f"{metrics['lr']:.2e}")
                    window_t0, window_steps, data_wait = time.perf_counter(), 0, 0.0
                    window_sums = {}
                if config.eval_every and step % int(config.eval_every) == 0 and step < max_steps:
                    result.update(run_eval())
                stop = signals.received is not None
                if jax.process_count() > 1 and step % stop_every == 0:
                    stop = bool(gather_from_processes(np.asarray([int(stop)], np.int32), mesh).any())
                    if stop and signals.received is None:
                        signals.received = "SIGTERM"  # another process was told to stop
                elif jax.process_count() > 1:
                    stop = False  # only stop where all processes agree
                if stop:
                    break
            save(force=True)
            if signals.received == "SIGINT":
                raise KeyboardInterrupt(f"interrupted at step {step}; checkpoint saved")
            if signals.received == "SIGTERM":
                result["stopped_early"] = "SIGTERM"
            elif step < max_steps:
                result["stopped_early"] = "max_steps_this_run"
            elif config.eval.at_end:
                result.update(run_eval())
    finally:
        ckpt.wait_until_finished()
        ckpt.close()
        it.close()
        logger.close()
        if bar is not None:
            bar.close()
    result["step"] = step
    return result
