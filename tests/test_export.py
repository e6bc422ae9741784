"""``objtrack export``: every format loads in its own runtime and agrees with the JAX function.

Each artifact is run by tests/export_runner.py in a separate process that imports only numpy and
the format's runtime (``jax.export.deserialize``, TensorFlow, onnxruntime), never this package.
The shipped weights at their window (8) and 4 iterations, 128x128 frames of real content (a
photograph bundled with scikit-image seen by a moving camera), 5 points; tracks must agree within
1e-3 px. A format whose runtime or converter is not installed is skipped, naming the package.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from photo_clip import photo_clip

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "export_runner.py")
SIZE = (128, 128)
WINDOW, ITERS, POINTS, CLIP = 8, 4, 5, 11
NEEDS = {"stablehlo": [], "savedmodel": ["tensorflow"], "onnx": ["jax2onnx", "onnxruntime"]}


@pytest.fixture(scope="module")
def shipped():
    from objtrack_jax import model_io

    model, params, _ = model_io.load_model(None)
    return model, params


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(3)
    frames = photo_clip(CLIP, *SIZE, speed=1.5).astype(np.float32)
    xy = np.stack([rng.uniform(8, 119, POINTS), rng.uniform(8, 119, POINTS)], 1).astype(np.float32)
    return frames, xy


@pytest.fixture(scope="module")
def window_case(shipped, inputs):
    """A carried window: the second of a clip, after a first window run in JAX; with the JAX
    function's outputs on it."""
    import jax

    from objtrack_jax import export as ex

    model, params = shipped
    frames, xy = inputs
    c = int(model.latent_dim)
    fn = jax.jit(ex.window_step_fn(model, params, ITERS))
    zeros = np.zeros((WINDOW, POINTS, c), np.float32)
    first = fn(frames[:WINDOW], np.repeat(xy[None], WINDOW, 0), zeros, zeros, zeros,
               np.ones(POINTS, np.float32))
    tracks, feats = np.asarray(first[0]), [np.asarray(f) for f in first[2:]]
    fresh = np.zeros(POINTS, np.float32)
    fresh[-1] = 1.0  # one point starts here: samples its own templates
    init = np.repeat(tracks[-1:], WINDOW, 0)
    args = dict(frames=frames[-WINDOW:], init=init, feats1=feats[0], feats2=feats[1],
                feats4=feats[2], fresh=fresh)
    return args, [np.asarray(x) for x in fn(*args.values())]


def run_artifact(tmp_path, fmt, folder, function, args):
    src, dst = tmp_path / f"{function}_in.npz", tmp_path / f"{function}_out.npz"
    np.savez(src, **args)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    p = subprocess.run([sys.executable, RUNNER, fmt, str(folder), function, str(src), str(dst)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return np.load(dst)


@pytest.mark.parametrize("fmt", ["stablehlo", "savedmodel", "onnx"])
def test_artifact_matches_jax(fmt, shipped, inputs, window_case, tmp_path):
    missing = [m for m in NEEDS[fmt] if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{fmt} export needs {missing} (requirements.txt [export]; jax2onnx: "
                    "pip install --no-deps jax2onnx==0.17.1)")
    from objtrack_jax import export as ex

    model, params = shipped
    functions = ["window_step", "track_clip"] if fmt == "stablehlo" else ["window_step"]
    folder = tmp_path / fmt
    side = ex.export(model, params, str(folder), fmt, window=WINDOW, iters=ITERS, size=SIZE,
                     functions=functions, num_frames=CLIP, points=POINTS,
                     weights={"name": "objprior_synth"})
    with open(folder / ex.SIDE_CAR) as f:
        assert json.load(f) == json.loads(json.dumps(side, default=str))
    assert side["settings"] == {"window": WINDOW, "iters": ITERS, "carry": "pips2",
                                "resolution": list(SIZE), "track_clip_frames": CLIP,
                                "vis_threshold": 0.0}
    assert side["conventions"]["visibility"].startswith("visible where vis_logits > 0 ")
    entry = side["functions"]["window_step"]
    assert [x["name"] for x in entry["inputs"]] == list(ex.WINDOW_INPUTS)
    assert entry["symbolic_points"] == (fmt != "onnx")
    assert entry["bytes"] > 6e6  # the weights are in it

    args, ref = window_case
    out = run_artifact(tmp_path, fmt, folder, "window_step", args)
    assert np.abs(out["tracks"] - ref[0]).max() <= 1e-3
    assert np.abs(out["vis_logits"] - ref[1]).max() <= 1e-2
    assert np.array_equal(out["tracks"][0], args["init"][0])  # frame 0 locked
    assert np.abs(out["tracks"] - args["init"]).max() > 1.0  # the points moved
    for name, r in zip(ex.WINDOW_OUTPUTS[2:], ref[2:]):
        assert np.abs(out[name] - r).max() <= 1e-3 * max(1.0, np.abs(r).max())

    if fmt == "stablehlo":  # the whole clip; and a point count other than the traced one
        import jax

        frames, xy = inputs
        clip = jax.jit(ex.track_clip_fn(model, params, CLIP, WINDOW, ITERS))
        ref_t, _ = clip(frames, xy)
        out = run_artifact(tmp_path, fmt, folder, "track_clip", dict(frames=frames, queries=xy))
        assert np.abs(out["tracks"] - np.asarray(ref_t)).max() <= 1e-3
        three = run_artifact(tmp_path, fmt, folder, "track_clip",
                             dict(frames=frames, queries=xy[:3]))
        assert three["tracks"].shape == (CLIP, 3, 2)
        assert np.abs(three["tracks"] - np.asarray(ref_t)[:, :3]).max() <= 1e-3


def test_track_clip_equals_offline_engine(shipped, inputs):
    """The exported whole-clip function is the offline engine's window loop."""
    import jax

    from objtrack_jax import export as ex
    from objtrack_jax.inference import track_windows

    model, params = shipped
    frames, xy = inputs
    ref, vis = track_windows(model, params, frames[None], np.repeat(xy[None, None], CLIP, 1),
                             window=WINDOW, iters=ITERS)
    got, got_vis = jax.jit(ex.track_clip_fn(model, params, CLIP, WINDOW, ITERS))(frames, xy)
    assert np.abs(np.asarray(got) - ref[0]).max() <= 1e-3
    assert np.abs(np.asarray(got_vis) - vis[0]).max() <= 1e-2


def test_export_cli_rejects_bad_values(tmp_path):
    from objtrack_jax import cli

    assert cli.main(["export", "--format", "tflite", "--out", str(tmp_path)]) == 2
    assert cli.main(["export", "--format", "stablehlo", "--out", str(tmp_path),
                     "--functions", "window_step,nope"]) == 2
    from objtrack_jax import export as ex

    with pytest.raises(ValueError, match="multiples of 8"):
        ex.export(None, None, str(tmp_path), "stablehlo", window=8, iters=4, size=(100, 128))


def test_export_cli_writes_the_sidecar(tmp_path):
    """``objtrack export`` with the shipped weights: their validated window and iterations are
    recorded, with the weights' name."""
    from objtrack_jax import cli

    out = tmp_path / "hlo"
    assert cli.main(["export", "--format", "stablehlo", "--out", str(out), "--resolution",
                     "128x128", "--functions", "window_step"]) == 0
    side = json.loads((out / "export.json").read_text())
    assert side["settings"]["window"] == 8 and side["settings"]["iters"] == 4
    assert side["weights"]["name"] == "objprior_synth" and side["format"] == "stablehlo"
    assert (out / "window_step.jaxexport").stat().st_size > 6e6


# --------------------------------------------------------------------------------------------------
# Bad requests: one line each, nothing written
# --------------------------------------------------------------------------------------------------


def _cli_error(capsys, argv):
    from objtrack_jax import cli

    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("objtrack export: error: "), err
    return lines[0]


@pytest.mark.parametrize("flags, needle", [
    (["--window", "1000000000"], "--window 1000000000 frames; the limit is 256 (limits.MAX_WINDOW)"),
    (["--resolution", "32768x32768"], "has a side of 32,768 px; the limit is 4,096 "
                                      "(limits.MAX_SIDE)"),
    (["--iters", "1000000"], "limits.MAX_ITERS"),
    (["--frames", "2000"], "unrolls 286 windows into one graph; the limit is 64 "
                           "(limits.MAX_EXPORT_WINDOWS)"),
])
def test_export_over_a_limit_is_refused_before_any_work(tmp_path, capsys, flags, needle):
    out = tmp_path / "out"
    line = _cli_error(capsys, ["export", "--format", "stablehlo", "--out", str(out)] + flags)
    assert needle in line, line
    assert not out.exists() or not os.listdir(out)


def test_stablehlo_export_without_flatbuffers_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "flatbuffers", None)  # as in a lean install
    out = tmp_path / "hlo"
    line = _cli_error(capsys, ["export", "--format", "stablehlo", "--out", str(out),
                               "--resolution", "128x128", "--functions", "window_step"])
    assert "StableHLO export (jax.export serialization) needs the 'export' extra" in line, line
    assert "pip install 'objtrack_jax[export]'" in line
    assert not out.exists() or os.listdir(out) == [], os.listdir(out)


def test_a_failed_write_leaves_no_file(tmp_path):
    from objtrack_jax import export as ex

    path = str(tmp_path / "f.onnx")
    with pytest.raises(OSError):
        with ex._published(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise OSError("disk full")
    assert os.listdir(tmp_path) == []
    with ex._published(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"whole")
    assert os.listdir(tmp_path) == ["f.onnx"] and open(path, "rb").read() == b"whole"


def test_jax2onnx_plugin_discovery_tracebacks_are_kept_out(caplog):
    """jax2onnx logs a warning with a traceback for each plugin module it cannot import (54 on
    this install); the export keeps them out and says how many in one line."""
    import logging

    from objtrack_jax import export as ex

    plugins = logging.getLogger("jax2onnx.plugins.plugin_system")
    with caplog.at_level(logging.INFO):
        with ex._quiet_plugin_discovery():
            for i in range(54):
                try:
                    raise ImportError(f"no module named lib{i}")
                except ImportError as e:
                    plugins.warning("Skipping import of %s due to error: %s", f"plugin{i}", e,
                                    exc_info=True)
        records = [r for r in caplog.records if r.name.startswith("jax2onnx")]
        assert records == [], [r.getMessage() for r in records]
        lines = [r.getMessage() for r in caplog.records]
        assert lines == ["jax2onnx: 54 of its plugin modules could not be imported (libraries not "
                         "installed; this export uses none of them)"], lines
        with ex._quiet_plugin_discovery():  # errors still come through
            plugins.error("a real failure")
    assert caplog.records[-1].getMessage() == "a real failure"


def test_savedmodel_shape_errors_name_the_input(tmp_path):
    """A SavedModel called with a wrong shape names the input, the shape expected and the shape
    given (the converted graph's own error names none)."""
    pytest.importorskip("tensorflow")
    import jax.numpy as jnp

    from objtrack_jax import export as ex

    spec = {"inputs": [{"name": "frames", "shape": [2, 8, 8, 3]},
                       {"name": "queries", "shape": ["n", 2]},
                       {"name": "init", "shape": [2, "n", 2]}],
            "outputs": [{"name": "tracks", "shape": [2, "n", 2]}]}

    def fn(frames, queries, init):
        return (init + queries[None] + jnp.mean(frames),)

    path = str(tmp_path / "sm")
    ex._write_savedmodel(fn, spec, path, "fn")
    import tensorflow as tf

    call = tf.saved_model.load(path).signatures["serving_default"]
    z = lambda *s: tf.zeros(s, tf.float32)  # noqa: E731
    out = call(frames=z(2, 8, 8, 3), queries=z(5, 2), init=z(2, 5, 2))["tracks"]
    assert out.shape == (2, 5, 2)
    for args, needle in [(dict(frames=z(2, 16, 16, 3), queries=z(5, 2), init=z(2, 5, 2)),
                          r"input frames must have shape \[2, 8, 8, 3\].*given shape:\] \[2 16 16 3\]"),
                         (dict(frames=z(2, 8, 8, 3), queries=z(5, 2), init=z(2, 6, 2)),
                          r"input init must have shape \[2, n, 2\].*given shape:\] \[2 6 2\]"),
                         (dict(frames=z(2, 8, 8), queries=z(5, 2), init=z(2, 5, 2)),
                          r"input frames must have shape \[2, 8, 8, 3\].*given shape:\] \[2 8 8\]")]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=needle):
            call(**args)
