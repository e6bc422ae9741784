"""Online tracking benchmark: memory flat in the stream's length, and the per-frame latency.

Streams T frames (default 64 and 1,024, each T in a fresh subprocess) one at a time through
:class:`objtrack_jax.online.OnlineTracker` with the shipped weights at their validated settings
(window 8, 4 iterations, short side 192, second pass x2; ``--refine-scale 0`` for one pass),
``--points`` queries at frame 0. Frames are made when pushed (a photograph bundled with
scikit-image seen by a moving camera, 240x320 input), so nothing grows with T but the
outputs the benchmark keeps (``[n, T, 2]``).

The tracker compiles its programs first (``OnlineTracker.warm_up``: the step and the
end-of-stream windows), so no frame waits for a compilation.

Reports per T: peak RSS (the child's VmHWM), the compute time per frame (mean, median, p95,
max; the first frame separately), the latency in frames, wall time and the load
average at start and end; then the RSS ratio of the longest to the shortest stream.

  python benchmarks/bench_online.py [--frames 64,1024] [--points 64] [--refine-scale 2]
      [--hw 240x320]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import loadavg, machine, peak_rss_mb, run_child  # noqa: E402


def frame_at(img, t: int, h: int, w: int):
    """Frame ``t`` of the moving-camera view of ``img`` (made on demand)."""
    import cv2
    import numpy as np

    ih, iw = img.shape[:2]
    angle = 8.0 * np.sin(t / 9.0)
    zoom = 1.6 * (1.0 + 0.2 * np.sin(t / 13.0)) * min(h / ih, w / iw)
    cx, cy = iw / 2 + 0.12 * iw * np.sin(t / 11.0), ih / 2 + 0.10 * ih * np.cos(t / 7.0)
    m = cv2.getRotationMatrix2D((cx, cy), angle, zoom)
    m[:, 2] += [w / 2 - cx, h / 2 - cy]
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _child(args):
    import numpy as np
    import skimage.data

    from objtrack_jax import model_io
    from objtrack_jax.online import OnlineTracker

    load0 = loadavg()
    t_len = int(args.child)
    h, w = (int(s) for s in args.hw.split("x"))
    from objtrack_jax.settings import from_info

    model, params, info = model_io.load_model(None)
    settings = from_info(info)  # the shipped weights' validated settings
    tracker = OnlineTracker(model, params, (h, w), capacity=args.points, settings=settings,
                            refine_scale=args.refine_scale)
    img = np.ascontiguousarray(skimage.data.astronaut())
    rng = np.random.default_rng(0)
    q = np.stack([np.zeros(args.points), rng.uniform(4, h - 5, args.points),
                  rng.uniform(4, w - 5, args.points)], 1)
    warm_s = tracker.warm_up()  # compiles the step and the end-of-stream windows
    tracker.add(q)
    tracks = np.full((args.points, t_len, 2), np.nan, np.float32)
    t0 = time.perf_counter()
    for t in range(t_len):
        out = tracker.push(frame_at(img, t, h, w))
        tracks[:, out.frames] = out.tracks
    out = tracker.finish()
    tracks[:, out.frames] = out.tracks
    wall = time.perf_counter() - t0
    ms = 1000 * np.asarray(tracker.step_seconds)
    warm = ms[1:]
    row = dict(frames=t_len, points=args.points, input_hw=[h, w], model_hw=list(tracker.size),
               fine_hw=list(tracker.fine_size) if tracker.fine_size else None,
               settings=settings.replace(refine_scale=args.refine_scale).describe(),
               latency_frames=tracker.latency, peak_rss_mb=peak_rss_mb(),
               warm_up_s=round(warm_s, 1), first_frame_ms=round(float(ms[0]), 1),
               per_frame_ms=dict(mean=round(float(warm.mean()), 2),
                                 p50=round(float(np.median(warm)), 2),
                                 p95=round(float(np.percentile(warm, 95)), 2),
                                 max=round(float(warm.max()), 2)),
               wall_s=round(wall, 1), finite=bool(np.isfinite(tracks).all()),
               loadavg_start=load0, loadavg_end=loadavg())
    print("RESULT " + json.dumps(row), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", default="64,1024")
    p.add_argument("--points", type=int, default=64)
    p.add_argument("--refine-scale", type=float, default=2.0)
    p.add_argument("--hw", default="240x320", help="input frame HxW")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        return _child(args)
    rows = []
    for t in [int(s) for s in args.frames.split(",")]:
        rows.append(run_child([sys.executable, __file__, "--child", str(t), "--points",
                               str(args.points), "--refine-scale", str(args.refine_scale),
                               "--hw", args.hw], frames=t))
    ok = [r for r in rows if "peak_rss_mb" in r]
    ratio = (round(ok[-1]["peak_rss_mb"] / ok[0]["peak_rss_mb"], 3) if len(ok) > 1 else None)
    print(json.dumps({"benchmark": "online", "command": "python benchmarks/bench_online.py "
                      + " ".join(sys.argv[1:]),
                      "config": {"frames": args.frames, "points": args.points,
                                 "refine_scale": args.refine_scale, "input_hw": args.hw,
                                 "weights": "shipped (objprior_synth)"},
                      "rows": rows, "rss_ratio_longest_to_shortest": ratio,
                      "machine": machine()}, indent=2))


if __name__ == "__main__":
    main()
