"""Tracker speed / memory benchmark (issue: core tracker).

Configs (CPU fp32 unless --dtype bfloat16):
  a: B=1, S=8,  N=256,  256x256, iters 4   (PyTorch original on a 2-core CPU: ~1.5 s, ~540 MB)
  b: B=1, S=32, N=1024, 512x896, iters 4   (PyTorch original: ~55 s, ~6.0 GB)
Each config runs in a fresh subprocess so peak RSS is its own. Prints one JSON object with
the config, machine, compile time, median step time, encoder-only time, peak RSS, achieved
FLOP/s (XLA cost analysis) and the FLOP/s of a large jnp.dot measured in the same process.

  python benchmarks/bench_tracker.py [--configs a,b] [--dtype float32] [--repeats 3] [--encode-chunk 8]
      [--chunk-mb 64]

Peak RSS is the child's VmHWM (``ru_maxrss`` would start at the parent's peak). The side-by-side
comparison with the PyTorch original is benchmarks/compare_pytorch.py.
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine, peak_rss_mb  # noqa: E402

CONFIGS = {
    "a": dict(B=1, S=8, N=256, H=256, W=256, iters=4),
    "b": dict(B=1, S=32, N=1024, H=512, W=896, iters=4),
}


def _child(name, dtype, repeats, encode_chunk=0, chunk_mb=0):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from objtrack_jax.convert.pips2 import init_params_for
    from objtrack_jax.models.tracker import PIPsTracker

    c = CONFIGS[name]
    model = PIPsTracker(dtype=jnp.dtype(dtype), encode_chunk=encode_chunk, chunk_mb=chunk_mb)
    params = init_params_for(model, jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    rgbs = jnp.asarray(rng.uniform(0, 255, (c["B"], c["S"], c["H"], c["W"], 3)), jnp.float32)
    q = rng.uniform(0, [c["W"] - 1, c["H"] - 1], (c["B"], 1, c["N"], 2)).astype(np.float32)
    trajs = jnp.asarray(np.repeat(q, c["S"], axis=1))

    fwd = jax.jit(lambda p, r, t: model.apply({"params": p}, r, t, iters=c["iters"]).tracks)
    enc = jax.jit(lambda p, r: model.apply({"params": p}, r, method=PIPsTracker.encode))
    t0 = time.perf_counter()
    compiled = fwd.lower(params, rgbs, trajs).compile()
    compile_s = time.perf_counter() - t0
    flops = None
    try:
        ca = compiled.cost_analysis()
        ca = ca[0] if isinstance(ca, (list, tuple)) else ca
        flops = float(ca.get("flops", 0.0)) or None
    except Exception:  # cost analysis is best-effort
        pass
    compiled(params, rgbs, trajs).block_until_ready()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        compiled(params, rgbs, trajs).block_until_ready()
        times.append(time.perf_counter() - t0)
    enc(params, rgbs).block_until_ready()
    etimes = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        enc(params, rgbs).block_until_ready()
        etimes.append(time.perf_counter() - t0)
    # Reference dense matmul throughput in the same process.
    n = 2048
    a = jnp.ones((n, n), jnp.dtype(dtype))
    mm = jax.jit(lambda x: x @ x)
    mm(a).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(5):
        mm(a).block_until_ready()
    dot_flops = 2 * n ** 3 * 5 / (time.perf_counter() - t0)
    step = float(np.median(times))
    out = dict(
        config=name, **c, dtype=dtype, encode_chunk=encode_chunk, chunk_mb=chunk_mb, compile_s=round(compile_s, 2), step_s=round(step, 3),
        encoder_s=round(float(np.median(etimes)), 3),
        points_frames_per_s=round(c["B"] * c["N"] * c["S"] / step, 1),
        peak_rss_mb=peak_rss_mb(),
        flops=flops, achieved_gflops=round(flops / step / 1e9, 2) if flops else None,
        matmul_gflops=round(dot_flops / 1e9, 2),
        fraction_of_matmul=round(flops / step / dot_flops, 3) if flops else None,
    )
    print("RESULT " + json.dumps(out), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="a,b")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--encode-chunk", type=int, default=0,
                    help="frames encoded at once (0: all; an inference memory saver)")
    ap.add_argument("--chunk-mb", type=int, default=0,
                    help="refinement working-set bound in MiB (0: unchunked; see PIPsTracker.chunk_mb)")
    ap.add_argument("--child", default=None)
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.dtype, args.repeats, args.encode_chunk, args.chunk_mb)
        return
    import jax

    results = []
    for name in args.configs.split(","):
        p = subprocess.run([sys.executable, __file__, "--child", name, "--dtype", args.dtype,
                            "--repeats", str(args.repeats), "--encode-chunk", str(args.encode_chunk),
                            "--chunk-mb", str(args.chunk_mb)], capture_output=True, text=True)
        line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
        results.append(json.loads(line[0][7:]) if line else
                       {"config": name, "error": p.stderr[-2000:]})
    print(json.dumps(dict(
        benchmark="tracker_forward",
        machine=machine(jax=jax.__version__, backend=jax.default_backend(),
                        devices=[str(d) for d in jax.devices()]),
        results=results), indent=2))


if __name__ == "__main__":
    main()
