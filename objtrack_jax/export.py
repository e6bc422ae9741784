"""The tracker as artifacts that run without this package: StableHLO, TensorFlow SavedModel, ONNX.

Two functions are exported, each with the weights folded in as constants:

* ``window_step`` — one window of the PIPs++ protocol (docs/conventions.md, *Long videos*;
  :func:`objtrack_jax.windows.run_window`): the ``S`` frames are encoded together and the points
  refined from their initial estimate, with the carried templates. A host loop around it
  (windows every ``S - 1`` frames, zero-velocity fill, templates carried) tracks any length,
  online or offline (docs/export.md shows the loop).

  ==========  ===============  ====================================================
  input       shape            meaning
  ==========  ===============  ====================================================
  frames      [S, H, W, 3] f32 RGB in [0, 255], channels last, model resolution
  init        [S, n, 2] f32    (x, y) model pixels; frame 0 is kept as given
  feats1/2/4  [S, n, C] f32    templates carried from the previous window
  fresh       [n] f32          1: sample this point's templates at init[0] (first window)
  ==========  ===============  ====================================================

  outputs: ``tracks [S, n, 2]`` (frame 0 = ``init[0]``), ``vis_logits [S, n]`` (zeros without a
  visibility head; visible where > ``settings.vis_threshold`` of export.json),
  ``next_feats1/2/4 [S, n, C]``, the next window's ``feats1/2/4``.

* ``track_clip`` — the whole forward pass on a clip of ``T`` frames (fixed at export) for queries
  at frame 0: ``frames [T, H, W, 3]``, ``queries [n, 2]`` (x, y) model pixels →
  ``tracks [T, n, 2]``, ``vis_logits [T, n]``: the windows of :mod:`objtrack_jax.windows`
  unrolled as :func:`objtrack_jax.inference.track_windows` runs them (one pass, at the model
  resolution).

The point count ``n`` is symbolic in the StableHLO and SavedModel artifacts and in ONNX (a named
dimension). Each artifact folder holds ``<function>.<ext>`` files and ``export.json``: the
tracking settings, the model's hyperparameters, the weights' name, and every input and output
with its shape, dtype and meaning.

Routes (measured, docs/export.md): StableHLO through :mod:`jax.export`; SavedModel through
``jax2tf`` (native serialization: the graph holds one ``XlaCallModule`` op, run by TensorFlow's
XLA); ONNX through ``jax2onnx`` from the function's jaxpr (``tf2onnx`` cannot convert the
``XlaCallModule`` op that ``jax2tf`` writes, and ``jax2tf``'s non-native graph mode is gone).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from objtrack_jax import limits, windows
from objtrack_jax.models.tracker import PIPsTracker, tracker_config

FORMATS = ("stablehlo", "savedmodel", "onnx")
FUNCTIONS = ("window_step", "track_clip")
SIDE_CAR = "export.json"
EXTENSIONS = {"stablehlo": ".jaxexport", "onnx": ".onnx", "savedmodel": ""}

WINDOW_INPUTS = ("frames", "init", "feats1", "feats2", "feats4", "fresh")
WINDOW_OUTPUTS = ("tracks", "vis_logits", "next_feats1", "next_feats2", "next_feats4")
CLIP_INPUTS = ("frames", "queries")
CLIP_OUTPUTS = ("tracks", "vis_logits")

log = logging.getLogger(__name__)


def export_model(model: PIPsTracker) -> PIPsTracker:
    """The model as exported: everything at once (no point or frame chunks, no loops over
    chunks), the refinement iterations unrolled: plain graphs every runtime takes."""
    return model.clone(chunk_mb=0, encode_chunk=0, unroll_iters=True)


def window_step_fn(model: PIPsTracker, params: Any, iters: int, carry: str = "pips2"):
    """``fn(frames, init, feats1, feats2, feats4, fresh) -> (tracks, vis_logits, feats1,
    feats2, feats4)`` (module docstring), params closed over:
    :func:`objtrack_jax.windows.run_window`."""
    model = export_model(model)

    def one_window(frames, init, feats1, feats2, feats4, fresh):
        out = windows.run_window(model, params, frames, init, (feats1, feats2, feats4),
                                 fresh > 0.5, iters, carry)
        vis = out.vis_logits[0] if out.vis_logits is not None else jnp.zeros(init.shape[:2])
        return (out.tracks[0], vis) + tuple(f[0] for f in out.feats)

    return one_window


def track_clip_fn(model: PIPsTracker, params: Any, num_frames: int, window: int, iters: int,
                  carry: str = "pips2"):
    """``fn(frames [T, H, W, 3], queries [n, 2]) -> (tracks [T, n, 2], vis_logits [T, n])``:
    the rules of :mod:`objtrack_jax.windows` on one segment of ``T = num_frames`` frames, its
    windows unrolled (a clip shorter than a window runs as one padded, masked window), as
    :func:`objtrack_jax.inference.track_windows` runs them."""
    model = export_model(model)
    t_len, s = int(num_frames), int(window)
    if t_len < 2:
        raise ValueError(f"track_clip needs at least 2 frames, got {num_frames}")

    def track_clip(frames, queries):
        n = queries.shape[0]
        c = int(model.latent_dim)
        trajs = jnp.broadcast_to(queries[None].astype(jnp.float32), (t_len, n, 2))
        vis = jnp.zeros((t_len, n), jnp.float32)
        if t_len < s:  # one window padded with the last frame, masked to the real ones
            idx = windows.window_frames(0, t_len, s)
            zeros = jnp.zeros((s, n, c), model.dtype)
            out = windows.run_window(model, params, frames[idx], trajs[idx], (zeros,) * 3,
                                     jnp.ones((n,), bool), iters, carry, t_len)
            vis_out = out.vis_logits[0] if out.vis_logits is not None else vis
            return out.tracks[0][:t_len], vis_out[:t_len] if out.vis_logits is not None else vis
        feats = tuple(jnp.zeros((s, n, c), model.dtype) for _ in range(3))
        fresh = jnp.ones((n,), bool)
        for start, end in windows.window_spans(t_len, s):  # host ints: slice updates
            out = windows.run_window(model, params, frames[start:end], trajs[start:end], feats,
                                     fresh, iters, carry)
            new, new_vis = windows.write_window(trajs[None], vis[None], start, end - start,
                                                out.tracks, out.vis_logits)
            trajs, vis = new[0], new_vis[0]
            feats = tuple(f[0] for f in out.feats)
            fresh = jnp.zeros((n,), bool)
        return trajs, vis

    return track_clip


def io_spec(function: str, size: Sequence[int], window: int, latent_dim: int,
            num_frames: Optional[int] = None) -> dict:
    """Inputs and outputs of an exported function: ``{'inputs': [...], 'outputs': [...]}``, each
    ``{'name', 'shape' (ints, 'n' for the point count), 'dtype', 'meaning'}``."""
    h, w = (int(v) for v in size)
    s, c = int(window), int(latent_dim)
    f32 = "float32"
    if function == "window_step":
        feat = ("templates [S, n, C] carried from the previous window's output (any values "
                "where fresh = 1)")
        ins = [("frames", [s, h, w, 3],
                "RGB frames of one window, values in [0, 255], channels last"),
               ("init", [s, "n", 2], "initial (x, y) model pixels; frame 0 is kept as given "
                                     "(the previous window's last estimate, or the query)"),
               ("feats1", [s, "n", c], feat), ("feats2", [s, "n", c], feat),
               ("feats4", [s, "n", c], feat),
               ("fresh", ["n"], "1.0: the point samples its own templates at init[0] (its first "
                                "window), 0.0: it uses feats1/2/4")]
        outs = [("tracks", [s, "n", 2], "(x, y) model pixels; frame 0 equals init[0]"),
                ("vis_logits", [s, "n"], "visibility logits, visible where > "
                 "settings.vis_threshold (zeros: no head)"),
                ("next_feats1", [s, "n", c], "feats1 of the next window"),
                ("next_feats2", [s, "n", c], "feats2 of the next window"),
                ("next_feats4", [s, "n", c], "feats4 of the next window")]
    elif function == "track_clip":
        t = int(num_frames)
        ins = [("frames", [t, h, w, 3], "RGB frames, values in [0, 255], channels last"),
               ("queries", ["n", 2], "(x, y) model pixels at frame 0")]
        outs = [("tracks", [t, "n", 2], "(x, y) model pixels; frame 0 equals the queries"),
                ("vis_logits", [t, "n"],
                 "visibility logits, visible where > settings.vis_threshold")]
    else:
        raise ValueError(f"function must be one of {FUNCTIONS}, got {function!r}")

    def rows(items):
        return [{"name": a, "shape": b, "dtype": f32, "meaning": m} for a, b, m in items]

    return {"inputs": rows(ins), "outputs": rows(outs)}


def example_args(spec: dict, n: int) -> list[np.ndarray]:
    """Zero arrays of the shapes in ``spec['inputs']`` with ``n`` points."""
    return [np.zeros([n if d == "n" else d for d in x["shape"]], np.float32)
            for x in spec["inputs"]]


def _shape_structs(spec: dict, symbolic: bool):
    n = jax.export.symbolic_shape("n")[0] if symbolic else None
    return [jax.ShapeDtypeStruct(tuple((n if symbolic else 4) if d == "n" else d
                                       for d in x["shape"]), jnp.float32) for x in spec["inputs"]]


# --------------------------------------------------------------------------------------------------
# The three formats
# --------------------------------------------------------------------------------------------------


def _write_stablehlo(fn, spec: dict, path: str) -> dict:
    from objtrack_jax.extras import require

    require("flatbuffers", "StableHLO export (jax.export serialization)")
    exported = jax.export.export(jax.jit(fn))(*_shape_structs(spec, symbolic=True))
    data = exported.serialize()
    with _published(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return {"symbolic_points": True, "platforms": list(exported.platforms)}


def _shape_checks(tf, args, spec: dict) -> list:
    """Assertions (run before the graph) that every input of ``args`` has its shape in
    ``spec``: a wrong one fails naming the input, the expected and the given shape (the graph's
    own error names none). ``n`` is the first input's point count, the same in every input."""
    n, checks = None, []
    for x, item in zip(args, spec["inputs"]):
        given = tf.shape(x)
        if n is None and "n" in item["shape"]:
            n = tf.concat([given, tf.fill([len(item["shape"])], -1)], 0)[item["shape"].index("n")]
        want = tf.stack([n if d == "n" else tf.constant(d) for d in item["shape"]])
        r = len(item["shape"])
        padded = tf.concat([given, tf.fill([r], -1)], 0)[:r]  # any rank compares
        ok = tf.logical_and(tf.equal(tf.size(given), r), tf.reduce_all(tf.equal(padded, want)))
        shape = "[" + ", ".join(str(d) for d in item["shape"]) + "]"
        with tf.control_dependencies(checks):
            checks.append(tf.debugging.Assert(ok, [
                f"input {item['name']} must have shape {shape} (n: the point count, the same "
                "in every input; export.json lists the inputs); given shape:", given],
                summarize=8))
    return checks


def _write_savedmodel(fn, spec: dict, path: str, name: str) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as e:
        raise ImportError(f"SavedModel export needs TensorFlow ({e}): "
                          "pip install -e .[export]") from e
    from jax.experimental import jax2tf

    tf.config.set_visible_devices([], "GPU")
    poly = ["(" + ", ".join(str(d) for d in x["shape"]) + ")" for x in spec["inputs"]]
    converted = jax2tf.convert(fn, polymorphic_shapes=poly, with_gradient=False,
                               native_serialization_platforms=("cpu",))
    # Every dimension is left open in the signature (the shapes are in export.json) and checked
    # by _shape_checks, whose errors name the input; the converted graph is a function of its
    # own, kept from being inlined, so that it is set up only once the checks have passed (set
    # up beside them, its own shape error would come first and name no input).
    sig = [tf.TensorSpec([None] * len(x["shape"]), tf.float32, name=x["name"])
           for x in spec["inputs"]]
    out_names = [x["name"] for x in spec["outputs"]]
    static = [[None if d == "n" else d for d in x["shape"]] for x in spec["inputs"]]

    def checked(*args):
        return converted(*[tf.ensure_shape(a, s) for a, s in zip(args, static)])

    module = tf.Module()
    graph = tf.function(checked, autograph=False, experimental_attributes={"_noinline": True})

    @tf.function(input_signature=sig, autograph=False)
    def serve(*args):
        with tf.control_dependencies(_shape_checks(tf, args, spec)):
            args = [tf.identity(a) for a in args]
            return dict(zip(out_names, graph(*args)))

    setattr(module, name, serve)
    with _published(path) as tmp:
        tf.saved_model.save(module, tmp, signatures={"serving_default": serve})
    return {"symbolic_points": True, "signature": "serving_default", "attribute": name}


def _write_onnx(fn, spec: dict, path: str, name: str, points: int) -> dict:
    try:
        import onnx
        from jax2onnx import to_onnx
    except ImportError as e:
        raise ImportError(f"ONNX export needs onnx and jax2onnx ({e}): pip install -e .[export] "
                          "and pip install --no-deps jax2onnx==0.17.1") from e
    from jax.extend.core import jaxpr_as_fun

    # Traced to a jaxpr here, with flax's module machinery outside jax2onnx's tracing; jax2onnx
    # then converts the jaxpr's primitives. The point count is fixed (``points``).
    structs = [jax.ShapeDtypeStruct(tuple(points if d == "n" else d for d in x["shape"]),
                                    jnp.float32) for x in spec["inputs"]]
    closed = jax.make_jaxpr(fn)(*structs)
    flat = jaxpr_as_fun(closed)

    def plain(*args):
        return tuple(flat(*args))

    with _quiet_plugin_discovery():
        model = to_onnx(plain, structs, model_name=name,
                        input_names=[x["name"] for x in spec["inputs"]],
                        output_names=[x["name"] for x in spec["outputs"]])
    with _published(path) as tmp:
        onnx.save(model, tmp)
    return {"symbolic_points": False, "points": int(points),
            "opset": int(max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")))}


@contextlib.contextmanager
def _published(path: str):
    """A temporary path beside ``path`` to write to, renamed to ``path`` when the block ends
    without an error (else removed): a failed export leaves no file behind, and never a partial
    one."""
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.partial")
    _remove(tmp)
    try:
        yield tmp
        _remove(path)
        os.replace(tmp, path)
    finally:
        _remove(tmp)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


@contextlib.contextmanager
def _quiet_plugin_discovery():
    """jax2onnx imports every one of its plugin modules on its first conversion and logs a
    warning with a traceback for each one that fails to import (plugins for libraries that are
    not installed); none is needed here. They are kept from the output, and one log line says
    how many there were."""
    logger = logging.getLogger("jax2onnx.plugins.plugin_system")
    skipped = []

    def drop(record):
        if record.levelno < logging.ERROR:
            skipped.append(record.args[0] if record.args else record.getMessage())
            return False
        return True

    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)
        if skipped:
            log.info("jax2onnx: %d of its plugin modules could not be imported (libraries not "
                     "installed; this export uses none of them)", len(skipped))


def export(model: PIPsTracker, params: Any, out_dir: str, fmt: str, *, window: int, iters: int,
           size: Sequence[int], carry: str = "pips2", functions: Sequence[str] = FUNCTIONS,
           num_frames: int = 24, points: int = 64, weights: Optional[dict] = None,
           vis_threshold: float = 0.0) -> dict:
    """Writes ``functions`` in format ``fmt`` to ``out_dir`` with the sidecar :data:`SIDE_CAR`.

    Args:
      size: model resolution ``(h, w)`` (multiples of 8, >= 128): the frames' fixed size.
      window, iters, carry: the tracking settings baked in (``S`` is the window).
      num_frames: ``T`` of ``track_clip``.
      points: the point count of formats without a symbolic one (ONNX).
      weights: what the sidecar records about the weights (name, info).
      vis_threshold: the visibility logit above which a point-frame is visible (recorded).
    Returns:
      the sidecar's dict.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    limits.check_export(size, window, iters, num_frames, points, "track_clip" in functions)
    h, w = (int(v) for v in size)
    if h % 8 or w % 8 or min(h, w) < 128:
        raise ValueError(f"size {h}x{w}: height and width must be multiples of 8 and >= 128")
    if int(window) < 2 or int(iters) < 1:
        raise ValueError(f"window must be >= 2 and iters >= 1, got {window} and {iters}")
    if int(points) < 1:
        raise ValueError(f"points must be >= 1, got {points}")
    os.makedirs(out_dir, exist_ok=True)
    entries = {}
    for name in functions:
        if name == "window_step":
            fn = window_step_fn(model, params, iters, carry)
        elif name == "track_clip":
            fn = track_clip_fn(model, params, num_frames, window, iters, carry)
        else:
            raise ValueError(f"function must be one of {FUNCTIONS}, got {name!r}")
        spec = io_spec(name, (h, w), window, int(model.latent_dim), num_frames)
        path = os.path.join(out_dir, name + EXTENSIONS[fmt])
        t0 = time.perf_counter()
        if fmt == "stablehlo":
            extra = _write_stablehlo(fn, spec, path)
        elif fmt == "savedmodel":
            extra = _write_savedmodel(fn, spec, path, name)
        else:
            extra = _write_onnx(fn, spec, path, name, int(points))
        entries[name] = {"file": os.path.basename(path), **spec, **extra,
                         "bytes": _size_of(path),
                         "export_seconds": round(time.perf_counter() - t0, 2)}
    side = {
        "format": fmt,
        "functions": entries,
        "settings": {"window": int(window), "iters": int(iters), "carry": carry,
                     "resolution": [h, w], "track_clip_frames": int(num_frames),
                     "vis_threshold": float(vis_threshold)},
        "conventions": {
            "coordinates": "(x, y) pixels of the model-resolution frames; x = 0 is the centre of "
                           "the first column (align_corners=True). Resize frames to the "
                           "resolution and scale coordinates by (w / W, h / H).",
            "frames": "RGB, values in [0, 255] as float32, channels last",
            "window_protocol": "windows of S frames, each starting at the previous one's last "
                               "frame; init = the previous window's last estimate repeated "
                               "(zero velocity) with frame 0 locked; feats1/2/4 from the previous "
                               "window's output; a point's first window with fresh = 1; the last "
                               "window of a finite video ends at its last frame "
                               "(docs/conventions.md, Long videos)",
            "visibility": f"visible where vis_logits > {float(vis_threshold):g} "
                          "(settings.vis_threshold)",
        },
        "model": tracker_config(model),
        "weights": weights or {},
        "jax_version": jax.__version__,
    }
    with open(os.path.join(out_dir, SIDE_CAR), "w") as f:
        json.dump(side, f, indent=2, default=str)
    return side


def _size_of(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


# --------------------------------------------------------------------------------------------------
# objtrack export
# --------------------------------------------------------------------------------------------------


def export_parser():
    import argparse

    from objtrack_jax.cli_args import add_checkpoint_arg, at_least, parse_model_hw

    p = argparse.ArgumentParser(
        prog="objtrack export",
        description="Export the tracker (one window step, and the whole forward pass on a clip of "
                    "--frames frames) with the shipped or a loaded checkpoint's weights: "
                    "StableHLO (jax.export), TensorFlow SavedModel (jax2tf) or ONNX (jax2onnx). "
                    "Writes the artifacts and export.json (settings, input/output conventions) to "
                    "--out. docs/export.md shows how to run each.")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, help="output folder")
    add_checkpoint_arg(p)
    p.add_argument("--resolution", type=parse_model_hw, default=None,
                   help="model input HxW the artifacts take (default: the weights' validated "
                        "short side with a 4:3 frame, e.g. 192x256)")
    p.add_argument("--window", type=at_least(2), default=None,
                   help="frames per window (default: the weights' validated setting)")
    p.add_argument("--iters", type=at_least(1), default=None,
                   help="refinement iterations per window (default: the weights' validated "
                        "setting)")
    p.add_argument("--carry", default=None, choices=("pips2", "paper", "none"),
                   help="template carry across windows (default: the weights' setting, pips2)")
    p.add_argument("--frames", type=at_least(2), default=24,
                   help="frames of the exported whole-clip function (track_clip)")
    p.add_argument("--points", type=at_least(1), default=64,
                   help="point count of the ONNX artifacts (StableHLO and SavedModel take any)")
    p.add_argument("--functions", default=",".join(FUNCTIONS),
                   help=f"comma-separated subset of {','.join(FUNCTIONS)}")
    return p


def export_main(argv=None) -> dict:
    from objtrack_jax.cli_args import load_model_or_exit
    from objtrack_jax.settings import from_info

    parser = export_parser()
    args = parser.parse_args(argv)
    functions = [f.strip() for f in args.functions.split(",") if f.strip()]
    bad = [f for f in functions if f not in FUNCTIONS]
    if bad or not functions:
        parser.error(f"--functions: {bad or 'nothing'} not in {list(FUNCTIONS)}")
    model, params, info = load_model_or_exit(parser, args.checkpoint)
    rec = from_info(info)  # the weights' validated settings
    window = args.window or rec.window
    iters = args.iters or rec.iters
    if args.resolution is None:
        short = int(rec.short_side or 384)
        size = (short, -(-short * 4 // 3 // 8) * 8)
    else:
        size = args.resolution
    weights = {k: v for k, v in (info or {}).items() if isinstance(v, (str, int, float, bool))}
    weights["checkpoint"] = args.checkpoint or "shipped"
    try:
        side = export(model, params, args.out, args.format, window=window, iters=iters,
                      size=size, carry=args.carry or rec.carry, functions=functions,
                      num_frames=args.frames, points=args.points, weights=weights,
                      vis_threshold=rec.vis_threshold)
    except ImportError as e:  # a converter not installed: one line naming it, exit 2
        raise SystemExit(str(e)) from None
    for name, e in side["functions"].items():
        print(f"wrote {os.path.join(args.out, e['file'])} ({e['bytes'] / 2**20:.1f} MB, "
              f"{e['export_seconds']:.0f} s)")
    print(f"wrote {os.path.join(args.out, SIDE_CAR)}")
    return side
