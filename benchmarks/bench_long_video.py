"""Long-video benchmark: ``track_queries`` on videos of T frames, each T in a fresh subprocess.

Random full-width PIPs++ weights, random uint8 frames at the model resolution (no resize), N
queries at frame 0 (the PIPs++ protocol: one forward segment), window 16, iters 4 by default.
Reports per T: wall time, points x frames per second, peak RSS (the child's VmHWM) and the bytes of
the input video itself (held in memory: ``track_queries`` takes an array; the engine's own memory
is per window).

  python benchmarks/bench_long_video.py [--frames 64,256,1024] [--hw 512x896] [--points 1024]
      [--window 16] [--iters 4] [--max-memory MB]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _child(args):
    import flax.serialization
    import jax
    import numpy as np

    from objtrack_jax.models.tracker import PIPsTracker
    from objtrack_jax.tracking import track_queries

    h, w = (int(s) for s in args.hw.split("x"))
    t = int(args.child)
    model = PIPsTracker()
    with open(args.params, "rb") as f:  # written by compare_pytorch.py --write-params
        params = jax.device_put(flax.serialization.msgpack_restore(f.read()))
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)
    q = np.stack([np.zeros(args.points), rng.uniform(0, h - 1, args.points),
                  rng.uniform(0, w - 1, args.points)], 1).astype(np.float32)
    rss0 = _peak_rss_mb()
    t0 = time.perf_counter()
    tracks, _, _ = track_queries(model, params, video, q, window=args.window, iters=args.iters,
                                 resize_to=(h, w), chunk_size=args.points, progress=False,
                                 max_memory_mb=args.max_memory)
    wall = time.perf_counter() - t0
    assert np.isfinite(tracks).all()
    print("RESULT " + json.dumps(dict(
        frames=t, wall_s=round(wall, 2), points_frames_per_s=round(args.points * t / wall, 1),
        peak_rss_mb=round(_peak_rss_mb(), 1), rss_before_tracking_mb=round(rss0, 1),
        video_mb=round(video.nbytes / 2 ** 20, 1))), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default="64,256,1024")
    ap.add_argument("--hw", default="512x896")
    ap.add_argument("--points", type=int, default=1024)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--max-memory", type=int, default=None, help="MB (default: half the machine)")
    ap.add_argument("--child", default=None)
    ap.add_argument("--params", default=None)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return
    import tempfile

    results = []
    tmp = tempfile.mkdtemp()
    params = os.path.join(tmp, "params.msgpack")
    subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "compare_pytorch.py"),
                    "--write-params", params], check=True, capture_output=True, cwd=REPO)
    for t in args.frames.split(","):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", t, "--params", params, "--hw", args.hw,
               "--points", str(args.points), "--window", str(args.window), "--iters", str(args.iters)]
        if args.max_memory:
            cmd += ["--max-memory", str(args.max_memory)]
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                           env=dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", "")))
        line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
        results.append(json.loads(line[0][7:]) if line else {"frames": int(t), "error": p.stderr[-2000:]})
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    os.remove(params)
    os.rmdir(tmp)
    print(json.dumps(dict(
        benchmark="long_video_track_queries", hw=args.hw, points=args.points, window=args.window,
        iters=args.iters, max_memory_mb=args.max_memory,
        machine=dict(platform=platform.platform(), cpu_count=os.cpu_count(),
                     loadavg_at_end=list(os.getloadavg())),
        results=results), indent=2))


if __name__ == "__main__":
    main()
