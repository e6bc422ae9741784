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


def refine_scale_arg(text: str) -> float:
    """``--refine-scale``: a float >= 1, or 0 for no second pass; an argparse type."""
    try:
        value = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from e
    if not (value == 0 or 1 <= value <= 8):
        raise argparse.ArgumentTypeError(f"{text} is not allowed: must be 0 (one pass) or "
                                         "between 1 and 8 (times the model resolution)")
    return value


def add_refine_args(parser: argparse.ArgumentParser) -> None:
    """``--refine-scale`` / ``--refine-iters`` (the second pass of ``track_queries``)."""
    parser.add_argument("--refine-scale", type=refine_scale_arg, default=None, metavar="X",
                        help="a second pass refines the tracks at X times the model resolution, "
                             "starting from the first pass's (default: the weights' validated "
                             "setting, shipped weights 2; 0: one pass)")
    parser.add_argument("--refine-iters", type=at_least(1), default=None,
                        help="iterations per window of the second pass (default: the weights' "
                             "validated setting, else --iters)")


def refine_settings(args, settings: dict) -> tuple:
    """``(refine_scale, refine_iters)`` from the flags, else the weights' validated ones."""
    scale = settings.get("refine_scale") if args.refine_scale is None else args.refine_scale
    iters = args.refine_iters or settings.get("refine_iters")
    return (scale or None), iters


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
