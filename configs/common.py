"""Shared defaults of every training experiment, used by the per-experiment configs (the
recipe: docs/conventions.md, *Training*).

An experiment file calls :func:`get_base_config`, changes what differs, and ends with
:func:`finalize` (which applies the ``tiny`` CPU smoke-run variant when asked). Nothing here depends
on the workdir: paths that are left empty (``data.root``) are resolved by the training loop.

Layout of the config (every field can be overridden on the command line, e.g.
``--config.optim.lr=1e-4 --config.batch_size=8``):

* top level: ``seed``, ``batch_size`` (GLOBAL batch over all devices and processes), ``max_steps``,
  ``max_steps_this_run`` (stop early with a checkpoint, e.g. for a time-limited job), ``iters``,
  ``log_every``, ``eval_every``, ``progress_bar``, ``tensorboard``.
* ``model``: :func:`objtrack_jax.models.tracker.tracker_from_config` fields, incl. ``dtype``
  ('float32' | 'bfloat16': compute dtype, parameters and optimizer state stay float32;
  'float64': everything in float64 with jax_enable_x64 except the attention softmax (float32),
  for numerical checks).
* ``loss``: ``alpha`` (objectness weight, 0 disables the term and skips reading masks), ``gamma``,
  ``vis_weight``.
* ``optim``: AdamW + one-cycle schedule + gradient clipping (see :mod:`objtrack_jax.train.optim`).
* ``init_tracks``: the initial-track recipe (docs/conventions.md, *Training*).
* ``data``: :func:`data_pipelines.pipeline.default_data_config` (the pipeline already applies the
  batch-level x/y swap, so the train step does not).
* ``synthetic``: the procedural dataset generated into ``<workdir>/synthetic`` when ``data.root`` is
  empty (source 'dir').
* ``eval``: periodic PIPs++-protocol evaluation on a held-out split.
* ``mesh``: device mesh sizes (``data`` = -1: all remaining devices).
* ``checkpoint``: orbax checkpointing.
* ``distributed``: multi-process initialisation.
"""

from __future__ import annotations

import ml_collections

from objtrack_jax.data_pipelines import pipeline
from objtrack_jax.models.tracker import tracker_config

placeholder = ml_collections.config_dict.placeholder


def get_base_config() -> ml_collections.ConfigDict:
    """Defaults shared by all experiments (PIPs++ architecture, paper-code optimiser settings)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.batch_size = 4  # global
    c.max_steps = 200_000
    c.max_steps_this_run = placeholder(int)  # None: run to max_steps
    c.iters = 6  # refinement iterations during training
    c.log_every = 50
    c.eval_every = 5_000  # 0 disables periodic evaluation (a final one still runs if eval.at_end)
    c.progress_bar = True
    c.tensorboard = True
    # Warm start: parameters from this checkpoint (any format objtrack_jax.model_io.load_model
    # reads; e.g. the shipped weights' folder) where path and shape match, on a fresh start only.
    c.init_from = ""

    # Every PIPsTracker field with its default (models/tracker.py is the one list of them):
    # stride, latent_dim, corr_levels, corr_radius, use_attention, attention_depth/heads/window,
    # drop_path_rate, visibility_head, dtype ('float32' | 'bfloat16' (compute only) | 'float64'
    # (all, for verification)), encoder_dims (stem/stage widths, PIPs++ 64/96/128/128),
    # update_channels (1D-ResNet block widths), unroll_iters, encode_chunk.
    c.model = ml_collections.ConfigDict(
        {k: tuple(v) if isinstance(v, list) else v for k, v in tracker_config().items()})

    lo = c.loss = ml_collections.ConfigDict()
    lo.alpha = 0.0  # objectness weight (paper: 0.5/3)
    lo.gamma = 0.8
    lo.vis_weight = 1.0  # only used with model.visibility_head

    o = c.optim = ml_collections.ConfigDict()
    o.lr = 5e-4  # peak learning rate
    o.weight_decay = 1e-6
    o.b1 = 0.9
    o.b2 = 0.999
    o.eps = 1e-8
    o.clip_norm = 5.0
    o.extra_steps = 100  # the one-cycle schedule spans max_steps + extra_steps
    o.warmup_frac = 0.1  # linear warm-up from lr/div_factor
    o.div_factor = 25.0
    o.final_div_factor = 1e4  # final lr = lr / (div_factor * final_div_factor)
    o.ema_decay = 0.0  # > 0: keep an average of the parameters (set it when a run starts)

    it = c.init_tracks = ml_collections.ConfigDict()
    it.zero_vel_prob = 0.5  # probability of the zero-velocity init (frame-0 GT repeated)
    it.zero_vel_scope = "example"  # one draw per 'example', per 'point', or one per 'step'
    it.random_blend = True  # otherwise: uniform random positions blended with GT by c~U(0,1)
    # (random_blend=False and zero_vel_prob<1 means: GT init for the non-zero-velocity draws)

    c.data = pipeline.default_data_config()
    c.data.clip_len = 24
    c.data.num_points = 128
    c.data.crop_size = (384, 512)

    s = c.synthetic = ml_collections.ConfigDict()
    s.num_train = 8
    s.num_val = 2
    s.frames = 32
    s.size = (400, 528)  # (H, W): multiples of 8, at least the crop
    s.num_points = 512
    s.seed = 0

    e = c.eval = ml_collections.ConfigDict()
    e.root = ""  # '' -> data.root (or the generated synthetic tree)
    e.split = "val"
    e.num_videos = 2
    e.max_frames = 64
    e.max_points = 128
    e.image_size = placeholder(tuple)  # (H, W) resize; None: native size (multiple of 8, >= 128)
    e.window = 16
    e.iters = 6
    e.survival_threshold = 16.0
    e.at_end = True

    me = c.mesh = ml_collections.ConfigDict()
    me.data = -1
    me.model = 1

    ck = c.checkpoint = ml_collections.ConfigDict()
    ck.every_steps = 1000
    ck.keep = 3
    ck.async_save = True

    d = c.distributed = ml_collections.ConfigDict()
    # 'auto': initialise when a multi-process launch is detected from the environment (TPU pod
    # slice, SLURM, Open MPI, JAX_COORDINATOR_ADDRESS) or coordinator_address is set; 'on'/'off'.
    d.initialize = "auto"
    d.coordinator_address = placeholder(str)
    d.num_processes = placeholder(int)
    d.process_id = placeholder(int)
    # Multi-process: how often (steps) the processes agree on a SIGTERM-triggered stop.
    d.stop_check_every = 10
    return c


def apply_tiny(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """CPU smoke-run variant: 128x128 crops, S=8, N=16, global B=2, 3 iterations, a few steps."""
    c.batch_size = 2
    c.max_steps = 4
    c.iters = 3
    c.log_every = 1
    c.eval_every = 0
    c.data.clip_len = 8
    c.data.num_points = 16
    c.data.min_points = 4
    c.data.crop_size = (128, 128)
    c.data.clip_stride = 4
    c.data.frame_strides = (1,)
    c.data.num_parallel_calls = 1
    c.data.prefetch = 1
    c.synthetic.num_train = 2
    c.synthetic.num_val = 1
    c.synthetic.frames = 12
    c.synthetic.size = (144, 176)
    c.synthetic.num_points = 96
    c.eval.num_videos = 1
    c.eval.max_frames = 12
    c.eval.max_points = 16
    c.eval.window = 8
    c.eval.iters = 2
    c.checkpoint.every_steps = 2
    c.checkpoint.keep = 2
    c.distributed.stop_check_every = 1
    return c


def apply_cpu(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The reduced model and budget of the shipped weights and of the ablation in
    docs/benchmarks.md (2-core CPU).

    Same architecture family with smaller widths (encoder 32/48/64/64 → 64-d features, update net
    64..256, 2 attention blocks of 8 heads of 8 channels), 128x128 crops, S=8, N=64, global batch 2, 4 iterations, 600 steps,
    and one optimiser setting for all four experiments (AdamW lr 1e-3, one-cycle) so the ablation
    compares the additions and nothing else. The data is the procedural synthetic set (a shared
    ``data.root`` given on the command line, or generated into the workdir).
    """
    m = c.model
    m.latent_dim = 64
    m.encoder_dims = (32, 48, 64, 64)
    m.update_channels = (64, 64, 128, 128, 256, 256)
    m.attention_depth = 2
    m.drop_path_rate = 0.1
    c.batch_size = 2
    c.max_steps = 600
    c.iters = 4
    c.log_every = 25
    c.eval_every = 0  # a final evaluation still runs (eval.at_end)
    c.optim.lr = 1e-3
    c.data.clip_len = 8
    c.data.num_points = 64
    c.data.min_points = 16
    c.data.crop_size = (128, 128)
    c.data.clip_stride = 2
    c.synthetic.num_train = 48
    c.synthetic.num_val = 4
    c.synthetic.frames = 24
    c.synthetic.size = (144, 176)
    c.synthetic.num_points = 256
    c.eval.num_videos = 4
    c.eval.max_frames = 24
    c.eval.max_points = 64
    c.eval.window = 8
    c.eval.iters = 4
    c.checkpoint.every_steps = 200
    c.checkpoint.keep = 2
    return c


VARIANTS = ("full", "tiny", "runlocal", "cpu", "real")


def apply_real(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The shipped weights' recipe: the ``:cpu`` model with a visibility head, trained on the
    real-photo scenes (``objtrack synth --preset real``, given as ``--config.data.root``),
    warm-started from the shipped weights, 128x128 crops, S=8, N=64, batch 2, 4 iterations."""
    c.model.visibility_head = True
    c.max_steps = 20_000
    c.optim.lr = 5e-4
    c.optim.warmup_frac = 0.02
    c.data.frame_strides = (1, 2)
    c.log_every = 50
    c.checkpoint.every_steps = 100
    c.checkpoint.keep = 3
    c.eval.num_videos = 4
    c.eval.max_points = 64
    return c


def finalize(c: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
    """Applies the variant named by the config-file argument ('' or None: the full experiment)."""
    if arg in (None, "", "full"):
        return c
    if arg in ("tiny", "runlocal"):
        return apply_tiny(c)
    if arg == "cpu":
        return apply_cpu(c)
    if arg == "real":
        return apply_real(apply_cpu(c))
    raise ValueError(f"unknown config variant {arg!r}: use no argument, 'cpu' (the reduced "
                     "model of the ablation in docs/benchmarks.md), 'real' (the shipped weights' "
                     "recipe) or "
                     "'tiny' (alias 'runlocal')")
