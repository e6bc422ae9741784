"""Argument helpers shared by the ``objtrack`` subcommands (argparse types and the model loader).

The tracking-setting flags (``--window``, ``--iters``, ``--resolution``, ``--refine-scale``, ...,
and ``--set NAME=VALUE`` for any :class:`~objtrack_jax.settings.TrackingSettings` field) are
checked by the rules of :mod:`objtrack_jax.settings` and handed, as field-name overrides
(:func:`settings_overrides`), to :func:`objtrack_jax.settings.resolve`, the path every entry
point takes.
"""

from __future__ import annotations

import argparse
from typing import Any, Optional


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


def setting_int(name: str):
    """The argparse type of an integer setting's flag: the minimum and its explanation of
    :data:`objtrack_jax.settings.INT_RULES` (one rule for the library, the flags and the app)."""
    from objtrack_jax.settings import INT_RULES

    return at_least(*INT_RULES[name])


def setting_arg(text: str) -> tuple[str, Any]:
    """``--set NAME=VALUE``: any :class:`~objtrack_jax.settings.TrackingSettings` field by its
    name, its value read by :func:`objtrack_jax.settings.parse_value` and checked as the library
    checks it (the same message); an argparse type returning ``(name, value)``."""
    from objtrack_jax.settings import TrackingSettings, parse_value

    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE such as window=16, got {text!r}")
    name = name.strip()
    try:
        parsed = parse_value(name, value)
        TrackingSettings(**{name: parsed})  # the one check of that value
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return name, parsed


# Flags of the tracking settings (argparse dest -> TrackingSettings field).
SETTING_FLAGS = {"window": "window", "iters": "iters", "carry": "carry",
                 "resolution": "resolution", "refine_scale": "refine_scale",
                 "refine_iters": "refine_iters", "anchor": "anchor", "chunk_size": "chunk_size",
                 "max_memory": "max_memory_mb"}


def add_set_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", type=setting_arg, action="append", default=[],
                        metavar="NAME=VALUE", dest="settings_set",
                        help="any tracking setting by its name in TrackingSettings (docs/api.md), "
                             "e.g. --set short_side=256 --set vis_threshold=0.5; repeatable")


def settings_overrides(parser: argparse.ArgumentParser, args,
                       skip: tuple = ()) -> dict:
    """The tracking-setting overrides of parsed ``args``: ``{field: value}`` from the flags of
    :data:`SETTING_FLAGS` the command has (not those in ``skip``: e.g. ``objtrack eval``'s
    ``--resolution`` is the protocol's frame size) and every ``--set``; None: not given. A
    setting given twice is a usage error (``parser.error``)."""
    out = {field: getattr(args, dest) for dest, field in SETTING_FLAGS.items()
           if hasattr(args, dest) and dest not in skip}
    for name, value in getattr(args, "settings_set", None) or []:
        if out.get(name) is not None:
            flag = next((f"--{d.replace('_', '-')}" for d, f in SETTING_FLAGS.items()
                         if f == name), f"--set {name}=")
            parser.error(f"the setting {name} is given twice ({flag} and --set {name}=)")
        out[name] = value
    return out


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
    parser.add_argument("--refine-iters", type=setting_int("refine_iters"), default=None,
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
