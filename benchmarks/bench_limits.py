"""The time model of :mod:`objtrack_jax.limits` against measured runs.

Tracks random frames with the shipped weights (window 8, 4 iterations, short side 192) at a few
sizes, each varying one factor of the time model: frames, points, iterations, the input size,
anchoring, the second pass, the window. Every configuration runs twice; the second (warm) call
is measured: its wall time and this process's CPU time (``time.process_time``: on a shared
machine the CPU time moves much less with the load than the wall time). Prints one JSON row per
configuration with the estimate's seconds (and its parts) beside them, then the machine.

  python benchmarks/bench_limits.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import loadavg, machine  # noqa: E402

# (frames, points, input HxW, settings changed from the validated ones)
ONE_PASS = dict(refine_scale=0, anchor=False)
CONFIGS = [
    (24, 16, (192, 256), ONE_PASS),
    (24, 64, (192, 256), ONE_PASS),
    (48, 16, (192, 256), ONE_PASS),
    (24, 256, (192, 256), ONE_PASS),
    (24, 1024, (192, 256), ONE_PASS),
    (24, 16, (192, 256), dict(ONE_PASS, iters=16)),
    (24, 256, (192, 256), dict(ONE_PASS, iters=16)),
    (24, 16, (384, 512), ONE_PASS),
    (24, 256, (192, 256), dict(refine_scale=0, anchor=True)),
    (24, 256, (192, 256), dict(anchor=False)),
    (24, 16, (192, 256), dict(ONE_PASS, window=16)),
]


def main(argv=None) -> list:
    import numpy as np

    from objtrack_jax import limits
    from objtrack_jax.model_io import load_model
    from objtrack_jax.settings import from_info
    from objtrack_jax.tracking import grid_queries, track_queries

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the first three configurations only")
    args = p.parse_args(argv)
    model, params, info = load_model(None)
    validated = from_info(info)
    rng = np.random.default_rng(0)
    rows = []
    for frames, n, (h, w), changes in CONFIGS[:3] if args.quick else CONFIGS:
        video = rng.integers(0, 255, (frames, h, w, 3), dtype=np.uint8)
        queries = grid_queries(int(np.sqrt(n)), h, w)
        s = validated.replace(**changes)
        load0 = loadavg()
        t0 = time.perf_counter()
        track_queries(model, params, video, queries, settings=s, progress=False)
        first = time.perf_counter() - t0
        c0, t0 = time.process_time(), time.perf_counter()
        track_queries(model, params, video, queries, settings=s, progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        est = limits.estimate(model, len(queries), frames, h, w, s)
        row = dict(frames=frames, points=len(queries), input=f"{h}x{w}",
                   settings={k: v for k, v in changes.items()}, first_s=round(first, 2),
                   warm_wall_s=round(wall, 2), warm_cpu_s=round(cpu, 2),
                   estimate_s=round(est.seconds, 2),
                   estimate_without_compile_s=round(est.seconds - est.parts["compile"], 2),
                   parts=est.parts, loadavg_start=load0, loadavg_end=loadavg())
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(json.dumps({"machine": machine()}))
    return rows


if __name__ == "__main__":
    main()
