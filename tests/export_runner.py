"""Runs an exported tracker artifact with its own runtime only (no objtrack_jax import).

    python3 tests/export_runner.py FORMAT DIR FUNCTION IN.npz OUT.npz [REPEATS]

FORMAT is stablehlo (``jax.export.deserialize``), savedmodel (TensorFlow) or onnx (onnxruntime).
The inputs are read from IN.npz by the names in DIR/export.json; the outputs are written to
OUT.npz under their names, with ``seconds`` (the median wall time of REPEATS calls after one
warm-up call, default 1) and ``load_seconds``. Used by tests/test_export.py and
benchmarks/bench_export.py, as a separate process so that nothing of the project is loaded.
"""

import json
import os
import sys
import time

import numpy as np


def load(fmt: str, folder: str, function: str):
    """A callable ``f(*arrays) -> list of arrays`` for the artifact, in the sidecar's order."""
    with open(os.path.join(folder, "export.json")) as f:
        entry = json.load(f)["functions"][function]
    path = os.path.join(folder, entry["file"])
    out_names = [o["name"] for o in entry["outputs"]]
    if fmt == "stablehlo":
        import jax

        with open(path, "rb") as f:
            exported = jax.export.deserialize(bytearray(f.read()))
        return entry, lambda *a: [np.asarray(x) for x in exported.call(*a)]
    if fmt == "savedmodel":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")
        fn = tf.saved_model.load(path).signatures["serving_default"]
        in_names = [i["name"] for i in entry["inputs"]]

        def call(*a):
            out = fn(**{n: tf.constant(x) for n, x in zip(in_names, a)})
            return [out[n].numpy() for n in out_names]

        return entry, call
    if fmt == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        in_names = [i.name for i in sess.get_inputs()]
        return entry, lambda *a: sess.run(out_names, dict(zip(in_names, a)))
    raise SystemExit(f"unknown format {fmt!r}")


def main(argv):
    fmt, folder, function, src, dst = argv[:5]
    repeats = int(argv[5]) if len(argv) > 5 else 1
    t0 = time.perf_counter()
    entry, call = load(fmt, folder, function)
    load_seconds = time.perf_counter() - t0
    data = np.load(src)
    args = [np.asarray(data[i["name"]], np.float32) for i in entry["inputs"]]
    out = call(*args)  # warm-up (and the result)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call(*args)
        times.append(time.perf_counter() - t0)
    names = [o["name"] for o in entry["outputs"]]
    np.savez(dst, seconds=np.median(times) if times else np.nan, load_seconds=load_seconds,
             **dict(zip(names, out)))


if __name__ == "__main__":
    main(sys.argv[1:])
