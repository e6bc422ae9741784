"""Training-step time and peak memory of the paper config (attention + objectness loss), fp32 vs
bf16 compute (params and optimizer state stay fp32 in both).

Each dtype runs in its own subprocess (so peak RSS, its VmHWM, is per dtype): it builds
the jitted ``train_step`` from ``configs/objprior.py`` at a small size on a fixed synthetic batch,
times the compile, the first step, then the median of ``--steps`` further steps
(``block_until_ready``). Memory: the process's peak RSS (includes XLA's compiler) and XLA's own
buffer assignment for one step (``compiled.memory_analysis()``: arguments + outputs +
temporaries - donated aliases),
which is the device-memory figure on a GPU/TPU. Prints one JSON object: the config, the machine
and the results.

    python benchmarks/bench_train_step.py                        # 128x128, S=8, N=32, B=1, iters 6
    python benchmarks/bench_train_step.py --size 256x256 --frames 8 --points 64 --steps 5
    # the shipped weights' recipe (candidate recipes: vary --points/--frames/--iters/--batch)
    python benchmarks/bench_train_step.py --variant real --batch 2 --points 64 --iters 4 --dtypes float32
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine, peak_rss_mb  # noqa: E402


def _worker(args) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from objtrack_jax.configs import objprior
    from objtrack_jax.data_pipelines import synthetic
    from objtrack_jax.models.tracker import tracker_from_config
    from objtrack_jax.train import loop, optim, state as state_lib, step as step_lib

    h, w = args.size
    c = objprior.get_config(args.variant or None)
    c.model.dtype = args.dtype
    c.data.clip_len, c.data.num_points, c.batch_size, c.iters = args.frames, args.points, args.batch, \
        args.iters
    seqs = [synthetic.generate_sequence(seed=i, frames=args.frames, size=(h, w), num_points=4 * args.points)
            for i in range(args.batch)]
    batch = dict(rgbs=np.stack([s["rgbs"] for s in seqs]),
                 trajs=np.stack([s["trajs_2d"][:, :args.points] for s in seqs]),
                 vis=np.stack([s["visibs"][:, :args.points] for s in seqs]).astype(np.float32),
                 valids=np.stack([s["valids"][:, :args.points] for s in seqs]).astype(np.float32),
                 masks=np.stack([s["masks"] for s in seqs]).astype(np.int32))
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    model = tracker_from_config(c.model)
    tx, sched = optim.make_optimizer(c)
    mesh = loop.make_mesh(c)
    state = state_lib.create_train_state(model, tx, mesh, c.seed)
    fn = jax.jit(functools.partial(step_lib.train_step, model=model, tx=tx, schedule=sched, config=c),
                 donate_argnums=0)
    t0 = time.perf_counter()
    compiled = fn.lower(state, batch).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()  # XLA's buffer assignment for one step (device memory)
    t0 = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    first = time.perf_counter() - t0
    fn = compiled
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        state, metrics = fn(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    rss = peak_rss_mb()  # VmHWM: this worker's own peak (ru_maxrss would start at the parent's)
    mib = lambda name: (getattr(mem, name, None) or 0) / 2**20 if mem is not None else None
    return dict(dtype=args.dtype, compile_s=compile_s, first_step_s=first,
                step_s_median=statistics.median(times), step_s_min=min(times),
                steps_timed=len(times), peak_rss_mb=rss,
                xla_step_total_mib=(mib("argument_size_in_bytes") + mib("output_size_in_bytes")
                                    + mib("temp_size_in_bytes") - mib("alias_size_in_bytes"))
                if mem is not None else None,
                xla_step_temp_mib=mib("temp_size_in_bytes"),
                xla_step_arguments_mib=mib("argument_size_in_bytes"),
                loss_last=float(metrics["loss"]), device=str(jax.devices()[0].device_kind),
                num_params=state_lib.param_count(state.params))


def _parse_size(text):
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=_parse_size, default=(128, 128), help="HxW (multiples of 8, >=128)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--points", type=int, default=32)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=6)
    p.add_argument("--steps", type=int, default=3, help="timed steps after the first")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--variant", default="", help="configs/objprior.py variant ('' = the paper's "
                   "widths; 'real' = the shipped weights' recipe, ':cpu' widths + visibility head)")
    p.add_argument("--dtype", default=None, help=argparse.SUPPRESS)  # worker mode
    args = p.parse_args(argv)
    if args.dtype:
        print("RESULT " + json.dumps(_worker(args)), flush=True)
        return None
    results = []
    for dt in args.dtypes.split(","):
        cmd = [sys.executable, os.path.abspath(__file__), "--dtype", dt,
               "--size", f"{args.size[0]}x{args.size[1]}", "--frames", str(args.frames),
               "--points", str(args.points), "--batch", str(args.batch), "--iters", str(args.iters),
               "--steps", str(args.steps), "--variant", args.variant]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                   PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
        lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
        if out.returncode or not lines:
            results.append(dict(dtype=dt, error=(out.stderr or out.stdout)[-2000:]))
        else:
            results.append(json.loads(lines[-1][len("RESULT "):]))
    import jax  # pylint: disable=import-outside-toplevel
    report = dict(
        benchmark="train_step", config="configs/objprior.py" + (f":{args.variant}" if args.variant else "")
        + " (attention + objectness, AdamW)",
        shape=dict(batch=args.batch, frames=args.frames, points=args.points,
                   height=args.size[0], width=args.size[1], iters=args.iters),
        machine=machine(jax=jax.__version__, backend=jax.default_backend()),
        results=results)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
