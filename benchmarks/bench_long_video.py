"""Long-video and dense-grid benchmark: ``track_queries`` on videos of T frames, each T in a fresh
subprocess.

Random full-width PIPs++ weights; frames at the model resolution (no resize) **streamed** from a
procedural :class:`~objtrack_jax.video_io.FrameSource` (each frame made from its index when read:
the video is never in memory; ``--source memory`` holds it as one array instead), queries at frame
0 (the PIPs++ protocol: one forward segment), window 16, iters 4 by default. ``--grid-step 4``
tracks a grid of one point per 4x4 pixels instead of ``--points`` random ones (28,672 points at
512x896), refined ``--chunk-size`` at a time (default: picked from the memory budget).

Reports per T: wall time (includes compilation), points x frames per second, peak RSS (the child's
VmHWM), the load average at the child's start and end, and the bytes the video would take in
memory.

  python benchmarks/bench_long_video.py [--frames 64,256,1024] [--hw 512x896] [--points 1024]
      [--grid-step PX] [--window 16] [--iters 4] [--max-memory MB] [--chunk-size N]
      [--source stream|memory] [--refine-scale X]

``--refine-scale 2`` adds the second pass of the shipped weights' settings (the same windows again
at twice the resolution, from the first pass's tracks) so its cost shows beside one pass.
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
    from objtrack_jax.tracking import grid_step_queries, track_queries
    from objtrack_jax.video_io import FrameSource

    class NoiseFrames(FrameSource):
        """Frame i = uniform noise seeded by i, made when read."""

        def __init__(self, t, h, w):
            self.shape = (t, h, w, 3)

        def _read(self, start, end):
            return np.stack([np.random.default_rng(i).integers(0, 256, self.shape[1:], np.uint8)
                             for i in range(start, end)])

    h, w = (int(s) for s in args.hw.split("x"))
    t = int(args.child)
    load0 = loadavg()
    model = PIPsTracker()
    with open(args.params, "rb") as f:  # written by compare_pytorch.py --write-params
        params = jax.device_put(flax.serialization.msgpack_restore(f.read()))
    video = NoiseFrames(t, h, w)
    if args.source == "memory":
        video = video.read(0, t)
    if args.grid_step:
        q = grid_step_queries(args.grid_step, h, w)
    else:
        rng = np.random.default_rng(0)
        q = np.stack([np.zeros(args.points), rng.uniform(0, h - 1, args.points),
                      rng.uniform(0, w - 1, args.points)], 1).astype(np.float32)
    n = len(q)
    rss0 = peak_rss_mb()
    t0 = time.perf_counter()
    tracks, _, _ = track_queries(model, params, video, q, window=args.window, iters=args.iters,
                                 resolution=(h, w), chunk_size=args.chunk_size, progress=False,
                                 max_memory_mb=args.max_memory, refine_scale=args.refine_scale)
    wall = time.perf_counter() - t0
    assert np.isfinite(tracks).all()
    print("RESULT " + json.dumps(dict(
        frames=t, points=n, source=args.source, wall_s=round(wall, 2),
        points_frames_per_s=round(n * t / wall, 1), peak_rss_mb=peak_rss_mb(),
        rss_before_tracking_mb=rss0, video_mb_if_in_memory=round(t * h * w * 3 / 2 ** 20, 1),
        loadavg_start=load0, loadavg_end=loadavg())), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default="64,256,1024")
    ap.add_argument("--hw", default="512x896")
    ap.add_argument("--points", type=int, default=1024)
    ap.add_argument("--grid-step", type=int, default=None, help="a grid, one point per PX x PX")
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--max-memory", type=int, default=None, help="MB (default: half the machine)")
    ap.add_argument("--chunk-size", type=int, default=None,
                    help="points refined at once (default: from the memory budget)")
    ap.add_argument("--source", default="stream", choices=("stream", "memory"))
    ap.add_argument("--refine-scale", type=float, default=None,
                    help="a second pass at this multiple of --hw (default: one pass)")
    ap.add_argument("--child", default=None)
    ap.add_argument("--params", default=None)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return
    results = []
    with random_params_file() as params:
        for t in args.frames.split(","):
            cmd = [sys.executable, os.path.abspath(__file__), "--child", t, "--params", params,
                   "--hw", args.hw, "--points", str(args.points), "--window", str(args.window),
                   "--iters", str(args.iters), "--source", args.source]
            for flag, value in (("--max-memory", args.max_memory), ("--chunk-size", args.chunk_size),
                                ("--grid-step", args.grid_step),
                                ("--refine-scale", args.refine_scale)):
                if value:
                    cmd += [flag, str(value)]
            results.append(run_child(cmd, frames=int(t)))
    print(json.dumps(dict(
        benchmark="long_video_track_queries", hw=args.hw, points=args.points,
        grid_step=args.grid_step, window=args.window, iters=args.iters,
        max_memory_mb=args.max_memory, chunk_size=args.chunk_size, source=args.source,
        refine_scale=args.refine_scale,
        machine=machine(), results=results), indent=2))


if __name__ == "__main__":
    main()
