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
    """``HxW`` that the tracker accepts (:func:`objtrack_jax.settings.model_hw`: multiples of 8,
    >= 128; checked at start-up); an argparse type."""
    from objtrack_jax.settings import model_hw

    try:
        return model_hw(parse_hw(text), what=repr(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


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
    """``--refine-scale``: 0 (one pass) or a number in (1, 8], the rule of
    :func:`objtrack_jax.settings.check_refine_scale`; an argparse type."""
    from objtrack_jax.settings import check_refine_scale

    try:
        value = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from e
    try:
        check_refine_scale(value, what="--refine-scale")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def add_refine_args(parser: argparse.ArgumentParser) -> None:
    """``--refine-scale`` / ``--refine-iters`` (the second pass of ``track_queries``) and
    ``--anchor`` / ``--no-anchor``."""
    parser.add_argument("--refine-scale", type=refine_scale_arg, default=None, metavar="X",
                        help="a second pass refines the tracks at X times the model resolution, "
                             "starting from the first pass's (default: the weights' validated "
                             "setting, shipped weights 2; 0: one pass)")
    parser.add_argument("--refine-iters", type=at_least(1), default=None,
                        help="iterations per window of the second pass (default: the weights' "
                             "validated setting, else --iters)")
    parser.add_argument("--anchor", action=argparse.BooleanOptionalAction, default=None,
                        help="re-align every estimate to its query frame's patch after the "
                             "network (sub-pixel; no drift on still content; docs/drift.md). "
                             "Default: the weights' validated setting (shipped weights: on; "
                             "PyTorch checkpoints: off)")


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
