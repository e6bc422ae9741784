"""``objtrack`` command line: thin wrappers around library functions.

Subcommands: demo, convert, synth, train, eval, track. Each parses its own flags and calls into
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

COMMANDS = {
    "demo": "track points on a generated synthetic scene with the shipped weights (or --video)",
    "convert": "convert a PyTorch PIPs++ / object-prior checkpoint to a Flax checkpoint",
    "synth": "generate a synthetic PointOdyssey-layout dataset",
    "train": "train a model (objtrack train --config configs/objprior.py --workdir DIR)",
    "eval": "evaluate on a benchmark (PIPs++ or TAP-Vid protocol)",
    "track": "track points through a video and draw them",
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
        from data_pipelines import synthetic

        return synthetic.main(argv)
    if cmd == "train":
        from objtrack_jax.train import main as train_main

        return train_main.main(["objtrack train"] + argv)
    if cmd == "eval":
        from objtrack_jax.cli_eval import eval_main

        return eval_main(argv)
    if cmd == "track":
        from objtrack_jax.cli_eval import track_main

        return track_main(argv)
    raise AssertionError(cmd)


def main(argv: Optional[Sequence[str]] = None) -> int:
    _quiet_tf()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: objtrack <command> [options]\n\ncommands:")
        for k, v in COMMANDS.items():
            print(f"  {k:<9} {v}")
        print("\n'objtrack <command> --help' for the options of one command.")
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"objtrack: unknown command {cmd!r}; choose from {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    _dispatch(cmd, rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
