"""``objtrack`` command line: thin wrappers around library functions.

Subcommands: demo, convert, synth, train, eval, track, app. Each parses its own flags and calls into
the library, so everything here is also usable from Python.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Optional, Sequence

from objtrack_jax.cli_run import debug_enabled, run_guarded

COMMANDS = {
    "demo": "shipped weights vs zero motion, LK and DIS on 4 new real-photo scenes (video of "
            "the first), or on --video",
    "convert": "convert a PyTorch PIPs++ / object-prior checkpoint to a Flax checkpoint",
    "synth": "generate a synthetic PointOdyssey-layout dataset",
    "train": "train a model (objtrack train --config objprior --workdir DIR)",
    "eval": "evaluate on a benchmark (PIPs++ or TAP-Vid protocol)",
    "track": "track points through a video and draw them (--online: frame by frame, with the "
             "per-frame latency)",
    "app": "a local web app: click points on a video in the browser, track them, download the tracks",
    "export": "export the tracker to StableHLO, a TensorFlow SavedModel or ONNX",
}


def _quiet_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def convert_main(argv: Optional[Sequence[str]] = None) -> dict:
    p = argparse.ArgumentParser(
        prog="objtrack convert",
        description="Read a PyTorch checkpoint (file, or a directory meaning its highest "
                    "model-<step>.pth) without torch, check every key, and write a Flax "
                    "inference checkpoint (params.msgpack + config.json). The architecture "
                    "(PIPs++ or the object-prior model) is detected from the keys.")
    p.add_argument("checkpoint", help="PyTorch .pth file or directory of model-*.pth files")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--arch", choices=["auto", "pips2", "objprior"], default="auto",
                   help="expected architecture (error if the checkpoint is another one)")
    args = p.parse_args(argv)
    from objtrack_jax.convert.pips2 import load_torch_checkpoint
    from objtrack_jax.model_io import save_inference_checkpoint

    t0 = time.time()
    model, params, info = load_torch_checkpoint(args.checkpoint)
    if args.arch != "auto" and info["architecture"] != args.arch:
        p.error(f"{args.checkpoint} is a '{info['architecture']}' checkpoint, not '{args.arch}'")
    out = os.path.abspath(args.out)
    parent = os.path.dirname(out) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".convert-", dir=parent)
    try:
        save_inference_checkpoint(tmp, model, params)
        if os.path.exists(out):
            shutil.rmtree(out)
        os.replace(tmp, out)  # atomic publish of the finished directory
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    info = {**info, "out": out, "seconds": round(time.time() - t0, 2)}
    print(json.dumps(info, indent=2))
    return info


def _dispatch(cmd: str, argv: list[str]):
    if cmd == "demo":
        from objtrack_jax.demo import demo_main

        return demo_main(argv)
    if cmd == "convert":
        return convert_main(argv)
    if cmd == "synth":
        from objtrack_jax.data_pipelines import synthetic

        return synthetic.main(argv)
    if cmd == "train":
        from objtrack_jax.train import main as train_main

        return train_main.run(["objtrack train"] + argv)
    if cmd == "eval":
        from objtrack_jax.cli_eval import eval_main

        return eval_main(argv)
    if cmd == "track" and "--online" in argv:
        from objtrack_jax.cli_online import online_main

        return online_main(argv)
    if cmd == "export":
        from objtrack_jax.export import export_main

        return export_main(argv)
    if cmd == "track":
        from objtrack_jax.cli_eval import track_main

        return track_main(argv)
    if cmd == "app":
        from objtrack_jax.app import app_main

        return app_main(argv)
    raise AssertionError(cmd)


def run_command(cmd: str, argv: Sequence[str], debug: bool = False) -> int:
    """Runs one subcommand through :func:`objtrack_jax.cli_run.run_guarded` (the single error
    path: expected failures print ``objtrack <cmd>: error: <message>`` and return 2)."""
    return run_guarded(f"objtrack {cmd}", lambda: _dispatch(cmd, list(argv)), debug)


def enable_compilation_cache() -> Optional[str]:
    """Turns on JAX's persistent compilation cache for the CLI: a second ``objtrack track`` /
    ``eval`` of the same shapes loads its XLA programs instead of compiling them. Directory:
    ``$OBJTRACK_COMPILATION_CACHE`` (``0``/empty: off), default ``~/.cache/objtrack_jax/xla``."""
    path = os.environ.get("OBJTRACK_COMPILATION_CACHE",
                          os.path.join(os.path.expanduser("~"), ".cache", "objtrack_jax", "xla"))
    if path.strip() in ("", "0"):
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``objtrack <command> [--debug] [options]``; returns the exit status (0, 2 = error)."""
    _quiet_tf()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_enabled(argv)
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: objtrack <command> [options]\n\ncommands:")
        for k, v in COMMANDS.items():
            print(f"  {k:<9} {v}")
        print("\n'objtrack <command> --help' for the options of one command; --debug (or "
              "OBJTRACK_DEBUG=1) shows the traceback of an error.")
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"objtrack: unknown command {cmd!r}; choose from {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    if cmd in ("track", "eval", "demo", "app"):
        enable_compilation_cache()
    return run_command(cmd, rest, debug=debug)


if __name__ == "__main__":
    sys.exit(main())
