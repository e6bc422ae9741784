"""Export benchmark: each format's artifact size and CPU latency per window, beside JAX's.

Exports ``window_step`` (one window of the PIPs++ protocol, docs/export.md) with the shipped
weights at their validated settings (window 8, 4 iterations) and ``--hw`` (default 192x256, the
shipped short side) for ``--points`` points, in every format of ``objtrack export``; runs each
artifact with its own runtime in a separate process (``tests/export_runner.py``: jax.export
deserialisation, TensorFlow, onnxruntime) on one window of real content and reports the median
of ``--repeats`` calls after a warm-up call, the artifact's size and the largest difference of its
tracks from the JAX function's. The JAX function is the same ``window_step`` under ``jax.jit`` in
this process.

  python benchmarks/bench_export.py [--hw 192x256] [--points 64] [--repeats 5]
      [--formats stablehlo,savedmodel,onnx]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, loadavg, machine  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hw", default="192x256")
    p.add_argument("--points", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--formats", default="stablehlo,savedmodel,onnx")
    args = p.parse_args()
    import jax
    import numpy as np

    from bench_online import frame_at
    from objtrack_jax import export as ex
    from objtrack_jax import model_io
    from objtrack_jax.settings import from_info

    load0 = loadavg()
    h, w = (int(s) for s in args.hw.split("x"))
    model, params, info = model_io.load_model(None)
    rec = from_info(info)
    s, n, c = rec.window, args.points, int(model.latent_dim)
    import skimage.data

    img = np.ascontiguousarray(skimage.data.astronaut())
    frames = np.stack([frame_at(img, t, h, w) for t in range(s)]).astype(np.float32)
    rng = np.random.default_rng(0)
    xy = np.stack([rng.uniform(4, w - 5, n), rng.uniform(4, h - 5, n)], 1).astype(np.float32)
    zeros = np.zeros((s, n, c), np.float32)
    inputs = dict(frames=frames, init=np.repeat(xy[None], s, 0), feats1=zeros, feats2=zeros,
                  feats4=zeros, fresh=np.ones(n, np.float32))
    fn = jax.jit(ex.window_step_fn(model, params, rec.iters, rec.carry))
    ref = [np.asarray(x) for x in fn(*inputs.values())]
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*inputs.values()))
        times.append(time.perf_counter() - t0)
    rows = [{"format": "jax (jit, in process)",
             "ms_per_window": round(1000 * float(np.median(times)), 1)}]
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.npz")
        np.savez(src, **inputs)
        for fmt in args.formats.split(","):
            folder = os.path.join(tmp, fmt)
            t0 = time.perf_counter()
            try:
                side = ex.export(model, params, folder, fmt, window=s, iters=rec.iters,
                                 size=(h, w), carry=rec.carry, functions=["window_step"],
                                 points=n, weights={"name": "shipped"})
            except ImportError as e:
                rows.append({"format": fmt, "error": f"cannot export: {e}"})
                continue
            export_s = time.perf_counter() - t0
            dst = os.path.join(tmp, fmt + "_out.npz")
            run = subprocess.run([sys.executable, os.path.join(REPO, "tests", "export_runner.py"),
                                  fmt, folder, "window_step", src, dst, str(args.repeats)],
                                 capture_output=True, text=True)
            entry = side["functions"]["window_step"]
            row = {"format": fmt, "artifact_mb": round(entry["bytes"] / 2 ** 20, 2),
                   "export_s": round(export_s, 1), "symbolic_points": entry["symbolic_points"]}
            if run.returncode:
                row["error"] = run.stderr[-1500:]
            else:
                out = np.load(dst)
                row.update(ms_per_window=round(1000 * float(out["seconds"]), 1),
                           load_s=round(float(out["load_seconds"]), 1),
                           max_abs_diff_px=float(np.abs(out["tracks"] - ref[0]).max()))
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps({"benchmark": "export", "command": "python benchmarks/bench_export.py "
                      + " ".join(sys.argv[1:]),
                      "config": {"function": "window_step", "model_hw": [h, w], "window": s,
                                 "iters": rec.iters, "points": n, "repeats": args.repeats,
                                 "weights": "shipped (objprior_synth)"},
                      "rows": rows, "loadavg_start": load0, "loadavg_end": loadavg(),
                      "machine": machine()}, indent=2))


if __name__ == "__main__":
    main()
