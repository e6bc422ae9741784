"""Side by side with the PyTorch original: our jitted forward vs PIPs++'s, alternately, one run.

Configs (CPU fp32, forward only, random weights and frames, iters 4):
  a: B=1, S=8,  N=256,  256x256
  b: B=1, S=32, N=1024, 512x896
Each measurement is a fresh subprocess (its peak RSS is its own); for every config the two
implementations alternate ``--rounds`` times (ours first in even rounds, the original first in
odd ones) so that load from other jobs on a shared machine hits both alike. Both run their
forward 3 times after building the model; the first call includes warm-up (and for ours the
call after the explicit compile), the reported time is the median of the other two.

The original is ``../shared/torch_reference`` (its ``bench_pips2.py``), run by the Python of a
separate venv with torch (``--torch-python``); the project never imports torch. Without that
venv or folder the original's side is skipped with the reason in the JSON.

  python benchmarks/compare_pytorch.py --torch-python /tmp/torchvenv/bin/python [--configs a,b]
      [--rounds 2] [--chunk-mb 64] [--encode-chunk 1]

Prints one JSON object: config, machine, every run of both, medians, and the ratios
(``speedup`` = original time / ours, ``rss_ratio`` = ours / original). Our side also reports
compile time, points x frames per second, peak RSS (which includes compilation) and the
forward's GFLOP (XLA's count) with the achieved GFLOP/s: both implementations do the same
arithmetic, so the speedup is the ratio of their arithmetic rates.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CONFIGS = {
    "a": dict(B=1, S=8, N=256, H=256, W=256, iters=4),
    "b": dict(B=1, S=32, N=1024, H=512, W=896, iters=4),
}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TORCH_REF = os.path.join(os.path.dirname(REPO), "shared", "torch_reference")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# peak_rss_mb: VmHWM, since ru_maxrss survives exec (a child of a big parent would start at the
# parent's peak); that is also why this parent never imports jax (params are made in a subprocess)
from _common import machine, peak_rss_mb  # noqa: E402


def _ours_child(name: str, params_path: str, chunk_mb: int, encode_chunk: int, unroll: bool):
    import flax.serialization
    import jax
    import jax.numpy as jnp
    import numpy as np

    from objtrack_jax.memory import release_freed_memory
    from objtrack_jax.models.tracker import PIPsTracker

    c = CONFIGS[name]
    model = PIPsTracker(chunk_mb=chunk_mb, encode_chunk=encode_chunk, unroll_iters=unroll)
    with open(params_path, "rb") as f:
        params = jax.device_put(flax.serialization.msgpack_restore(f.read()))
    rss_params = peak_rss_mb()
    rng = np.random.default_rng(0)
    rgbs = jnp.asarray(rng.uniform(0, 255, (c["B"], c["S"], c["H"], c["W"], 3)), jnp.float32)
    q = rng.uniform(0, [c["W"] - 1, c["H"] - 1], (c["B"], 1, c["N"], 2)).astype(np.float32)
    trajs = jnp.asarray(np.repeat(q, c["S"], axis=1))
    fwd = jax.jit(lambda p, r, t: model.apply({"params": p}, r, t, iters=c["iters"]).tracks)
    t0 = time.perf_counter()
    compiled = fwd.lower(params, rgbs, trajs).compile()
    compile_s = time.perf_counter() - t0
    release_freed_memory()  # as the library's TrimmedJit does after compiling
    rss_compiled = peak_rss_mb()
    mem = compiled.memory_analysis()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        compiled(params, rgbs, trajs).block_until_ready()
        times.append(time.perf_counter() - t0)
    step = _median(times[1:])
    peak_rss = peak_rss_mb()  # before the cost lowering below, so that it is the forward's alone
    gflop = _model_gflop(model, params, rgbs, trajs, c["iters"])
    print("RESULT " + json.dumps(dict(
        times=[round(t, 3) for t in times], step_s=round(step, 3), compile_s=round(compile_s, 2),
        model_gflop=gflop, gflop_per_s=round(gflop / step, 1) if gflop else None,
        points_frames_per_s=round(c["B"] * c["N"] * c["S"] / step, 1),
        peak_rss_mb=round(peak_rss, 1), rss_after_params_mb=round(rss_params, 1),
        rss_after_compile_mb=round(rss_compiled, 1),
        xla_temp_mb=round(mem.temp_size_in_bytes / 2 ** 20, 1) if mem else None,
        chunk_mb=chunk_mb, encode_chunk=encode_chunk, unroll_iters=unroll)), flush=True)


def _model_gflop(model, params, rgbs, trajs, iters):
    """XLA's count of the forward's floating-point work (GFLOP), from an unchunked, unrolled
    lowering of the same model (XLA counts a loop body once, and chunking does not change the
    arithmetic); compares the achieved rate with what the machine's convolutions reach."""
    import jax

    flat = model.clone(chunk_mb=0, encode_chunk=0, unroll_iters=True)
    cost = jax.jit(lambda p, r, t: flat.apply({"params": p}, r, t, iters=iters).tracks).lower(
        params, rgbs, trajs).cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = (cost or {}).get("flops")
    return round(float(flops) / 1e9, 1) if flops else None


def _run_ours(name, params_path, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--params", params_path,
           "--chunk-mb", str(args.chunk_mb), "--encode-chunk", str(args.encode_chunk),
           "--unroll", str(int(args.unroll))]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=_env())
    line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
    return json.loads(line[0][7:]) if line else {"error": (p.stderr or p.stdout)[-2000:]}


def _run_torch(name, args):
    c = CONFIGS[name]
    cmd = [args.torch_python, os.path.join(args.torch_ref, "bench_pips2.py")] + [
        str(c[k]) for k in ("B", "S", "N", "H", "W", "iters")]
    p = subprocess.run(cmd, capture_output=True, text=True,
                       env=dict(os.environ, PIPS2_DIR=os.path.join(args.torch_ref, "pips2")))
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if not lines:
        return {"error": (p.stderr or p.stdout)[-2000:]}
    r = json.loads(lines[-1])
    times = r["times"]
    step = _median(times[1:]) if len(times) > 1 else times[0]
    return dict(times=[round(t, 3) for t in times], step_s=round(step, 3),
                points_frames_per_s=round(c["B"] * c["N"] * c["S"] / step, 1),
                peak_rss_mb=round(r["maxrss_mb"], 1))


def _torch_skip_reason(args):
    if not args.torch_python or not os.path.exists(args.torch_python):
        return f"no torch venv python at {args.torch_python!r} (pass --torch-python)"
    if not os.path.exists(os.path.join(args.torch_ref, "bench_pips2.py")):
        return f"no torch reference at {args.torch_ref!r} (bench_pips2.py missing)"
    p = subprocess.run([args.torch_python, "-c", "import torch; print(torch.__version__)"],
                       capture_output=True, text=True)
    if p.returncode:
        return f"{args.torch_python} cannot import torch: {p.stderr.strip()[-300:]}"
    return None


def _median(xs):
    xs = sorted(xs)
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else 0.5 * (xs[m - 1] + xs[m])


def _summary(runs, key):
    vals = [r[key] for r in runs if key in r]
    if not vals:
        return None
    return dict(median=round(_median(vals), 3), min=round(min(vals), 3), max=round(max(vals), 3))


def _write_params_child(path):
    import flax.serialization
    import jax
    import numpy as np

    from objtrack_jax.convert.pips2 import init_params_for
    from objtrack_jax.models.tracker import PIPsTracker

    params = init_params_for(PIPsTracker(), jax.random.PRNGKey(0))
    params = jax.tree_util.tree_map(np.asarray, params)
    with open(path, "wb") as f:
        f.write(flax.serialization.msgpack_serialize(params))
    print("RESULT " + json.dumps(dict(jax=jax.__version__, backend=jax.default_backend(),
                                      devices=[str(d) for d in jax.devices()])), flush=True)


def _write_params(path) -> dict:
    """Random PIPs++ params written by a subprocess (keeps this parent small); returns jax info."""
    p = subprocess.run([sys.executable, os.path.abspath(__file__), "--write-params", path],
                       capture_output=True, text=True, cwd=REPO, env=_env())
    line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
    if not line:
        raise RuntimeError(f"writing params failed:\n{p.stderr[-3000:]}")
    return json.loads(line[0][7:])


def _env():
    return dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="a,b")
    ap.add_argument("--rounds", type=int, default=2, help="alternations per config")
    ap.add_argument("--torch-python", default=os.environ.get("TORCH_PYTHON", "/tmp/torchvenv/bin/python"))
    ap.add_argument("--torch-ref", default=DEFAULT_TORCH_REF)
    ap.add_argument("--chunk-mb", type=int, default=64, help="PIPsTracker.chunk_mb (0: unchunked)")
    ap.add_argument("--encode-chunk", type=int, default=1, help="PIPsTracker.encode_chunk (0: all)")
    ap.add_argument("--unroll", type=int, default=0,
                    help="PIPsTracker.unroll_iters (1: unrolled refinement, bigger program)")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--child", default=None)
    ap.add_argument("--params", default=None)
    ap.add_argument("--write-params", default=None)
    args = ap.parse_args()
    if args.child:
        _ours_child(args.child, args.params, args.chunk_mb, args.encode_chunk, bool(args.unroll))
        return
    if args.write_params:
        _write_params_child(args.write_params)
        return
    skip = "--skip-torch given" if args.skip_torch else _torch_skip_reason(args)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        params_path = os.path.join(tmp, "params.msgpack")
        jax_info = _write_params(params_path)
        for name in args.configs.split(","):
            ours, torch_runs = [], []
            for r in range(args.rounds):
                order = ("ours", "torch") if r % 2 == 0 else ("torch", "ours")
                for who in order:
                    if who == "ours":
                        ours.append(_run_ours(name, params_path, args))
                    elif skip is None:
                        torch_runs.append(_run_torch(name, args))
                    print(f"[{name}] round {r} {who}: "
                          f"{(ours if who == 'ours' else torch_runs)[-1] if (who == 'ours' or skip is None) else 'skipped'}",
                          file=sys.stderr, flush=True)
            res = dict(config=name, **CONFIGS[name], ours=dict(runs=ours, step_s=_summary(ours, "step_s"),
                                                              peak_rss_mb=_summary(ours, "peak_rss_mb"),
                                                              points_frames_per_s=_summary(ours, "points_frames_per_s")))
            if skip is None:
                res["pytorch"] = dict(runs=torch_runs, step_s=_summary(torch_runs, "step_s"),
                                      peak_rss_mb=_summary(torch_runs, "peak_rss_mb"),
                                      points_frames_per_s=_summary(torch_runs, "points_frames_per_s"))
                try:
                    res["speedup"] = round(res["pytorch"]["step_s"]["median"] / res["ours"]["step_s"]["median"], 2)
                    res["rss_ratio"] = round(res["ours"]["peak_rss_mb"]["median"]
                                             / res["pytorch"]["peak_rss_mb"]["median"], 2)
                except (TypeError, KeyError):
                    pass
            else:
                res["pytorch"] = {"skipped": skip}
            results.append(res)
    print(json.dumps(dict(
        benchmark="compare_pytorch_forward",
        machine=machine(**jax_info),
        settings=dict(chunk_mb=args.chunk_mb, encode_chunk=args.encode_chunk,
                      unroll_iters=bool(args.unroll), dtype="float32",
                      torch_python=args.torch_python, torch_ref=args.torch_ref),
        results=results), indent=2))


if __name__ == "__main__":
    main()
