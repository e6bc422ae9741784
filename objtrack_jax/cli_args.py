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


def parse_model_hw(text: str) -> tuple[int, int]:
    """``HxW`` that the tracker accepts: both multiples of 8 and >= 128 (checked at start-up)."""
    from objtrack_jax.models.tracker import MIN_SIZE

    h, w = parse_hw(text)
    if h % 8 or w % 8 or h < MIN_SIZE or w < MIN_SIZE:
        raise argparse.ArgumentTypeError(
            f"{text!r}: height and width must be multiples of 8 and >= {MIN_SIZE} (e.g. "
            f"{max(MIN_SIZE, -(-h // 8) * 8)}x{max(MIN_SIZE, -(-w // 8) * 8)})")
    return h, w


def at_least(minimum: int, what: str = ""):
    """An argparse int type that rejects values below ``minimum``, naming the value and range."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from e
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is not allowed: must be >= {minimum}"
                                             + (f" ({what})" if what else ""))
        return value

    parse.__name__ = f"int>={minimum}"
    return parse


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
