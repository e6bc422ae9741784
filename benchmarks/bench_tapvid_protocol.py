"""TAP-Vid protocol vs PIPs++ protocol on one video shape: ``track_queries`` time and compilations.

A 48-frame 256x256 procedural video (random full-width weights, window 8, iters 4 by default),
N points. PIPs++ protocol: every query at frame 0 (one forward segment). TAP-Vid 'first'
protocol: the same points queried at their "first visible" frame (half at frame 0, the rest
uniform over the video), so each query frame is a group tracked forward and backward. Each protocol
runs in a fresh subprocess on two videos of the shape: the first includes compilation (what one
evaluation video costs cold), the second reuses the programs. Reports wall times, XLA
compilations, points x frames per second, peak RSS and the load average.

  python benchmarks/bench_tapvid_protocol.py [--frames 48] [--hw 256x256] [--points 256]
      [--window 8] [--iters 4]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import loadavg, machine, peak_rss_mb, random_params_file, run_child  # noqa: E402


def _child(args):
    import flax.serialization
    import jax
    import numpy as np

    from objtrack_jax.models.tracker import PIPsTracker
    from objtrack_jax.tracking import track_queries

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, *a, **k: compiles.append(name) if name.endswith("backend_compile_duration") else None)
    h, w = (int(s) for s in args.hw.split("x"))
    t, n = args.frames, args.points
    model = PIPsTracker()
    with open(args.params, "rb") as f:
        params = jax.device_put(flax.serialization.msgpack_restore(f.read()))
    load0 = loadavg()
    runs = []
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        base = rng.integers(0, 256, (h // 8 + 8, w // 8 + 8, 3)).astype(np.uint8)
        big = np.kron(base, np.ones((8, 8, 1), np.uint8))
        video = np.stack([big[i % 16:i % 16 + h, i // 3:i // 3 + w] for i in range(t)])
        if args.child == "pips":
            frames = np.zeros(n)
        else:
            frames = np.where(rng.uniform(size=n) < 0.5, 0, rng.integers(0, t, n))
        q = np.stack([frames, rng.uniform(0, h - 1, n), rng.uniform(0, w - 1, n)], 1)
        c0 = len(compiles)
        t0 = time.perf_counter()
        tracks, _, _ = track_queries(model, params, video, q, window=args.window, iters=args.iters,
                                     resolution=(h, w), progress=False)
        wall = time.perf_counter() - t0
        assert np.isfinite(tracks).all()
        runs.append(dict(video=seed, wall_s=round(wall, 2), compilations=len(compiles) - c0,
                         query_frames=int(len(np.unique(frames))),
                         points_frames_per_s=round(n * t / wall, 1)))
    print("RESULT " + json.dumps(dict(protocol=args.child, runs=runs, peak_rss_mb=peak_rss_mb(),
                                      loadavg_start=load0, loadavg_end=loadavg())), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--hw", default="256x256")
    ap.add_argument("--points", type=int, default=256)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--child", default=None)
    ap.add_argument("--params", default=None)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return
    results = {}
    with random_params_file() as params:
        for protocol in ("pips", "tapvid"):
            results[protocol] = run_child(
                [sys.executable, os.path.abspath(__file__), "--child", protocol, "--params", params,
                 "--frames", str(args.frames), "--hw", args.hw, "--points", str(args.points),
                 "--window", str(args.window), "--iters", str(args.iters)])
    ratio = {}
    if all("runs" in r for r in results.values()):
        ratio = {f"video_{i}": round(results["tapvid"]["runs"][i]["wall_s"] / results["pips"]["runs"][i]["wall_s"], 2)
                 for i in (0, 1)}
    print(json.dumps(dict(benchmark="tapvid_vs_pips_protocol", frames=args.frames, hw=args.hw,
                          points=args.points, window=args.window, iters=args.iters,
                          tapvid_over_pips_time=ratio, machine=machine(), results=results), indent=2))


if __name__ == "__main__":
    main()
