"""Argument helpers shared by the ``objtrack`` subcommands (argparse types and the model loader)."""

from __future__ import annotations

import argparse
from typing import Optional


def parse_hw(text: str) -> tuple[int, int]:
    """``HxW`` (or ``H,W``) → ``(H, W)`` ints; an argparse type."""
    try:
        h, w = text.lower().replace(",", "x").split("x")
        return int(h), int(w)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected HxW such as 384x512, got {text!r}") from e


def add_checkpoint_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=None,
                        help="PyTorch .pth (file or folder), params.msgpack folder or training "
                             "workdir; default: the shipped weights")


def load_model_or_exit(parser: argparse.ArgumentParser, checkpoint: Optional[str]):
    """``(model, params, info)`` of ``--checkpoint`` (None: the shipped weights) via
    :func:`objtrack_jax.model_io.load_model`; a missing or unreadable checkpoint is a usage error
    (``parser.error``, exit 2)."""
    from objtrack_jax import model_io

    try:
        return model_io.load_model(checkpoint)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
