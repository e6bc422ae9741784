"""Every run bounded: hard limits on the sizes of a run, and its time and memory estimated before
any work.

**Hard limits.** A value past one of these is refused with a ``ValueError`` of one line naming
the value, the limit (by its name here) and what to do instead; the CLI prints it as
``objtrack <cmd>: error: ...`` (exit 2), the app shows it in the page. They stop requests that
cannot be meant (``--grid 1000``, ``iters 1e6``, a window of 1e9 frames, 32768x32768 frames)
before anything is allocated, compiled or written:

=====================  ===============  ===================================================
limit                  value            why this value
=====================  ===============  ===================================================
``MAX_POINTS``         65,536           a 256x256 grid; ``--grid-step 4`` at 512x896 is 28,672
``MAX_GRID``           256 per side     ``MAX_POINTS`` as a square grid
``MAX_WINDOW``         256 frames       twice PIPs++'s 128 (the update net sees a whole window)
``MAX_ITERS``          64 per window    four times PIPs++'s 16 (the shipped weights: 4)
``MAX_FRAMES``         100,000          about an hour at 30 fps (``--max-frames`` cuts a video)
``MAX_SIDE``           4096 px          a model input side (first pass, second pass, export)
``MAX_PIXELS``         8,294,400        a model input of 3840x2160 (4K UHD)
``MAX_EXPORT_WINDOWS`` 64               windows that ``track_clip`` unrolls into one graph
=====================  ===============  ===================================================

**The estimate** (:func:`estimate`): ``seconds`` from a time model of the work, ``bytes`` from
:func:`objtrack_jax.memory.estimate_tracking_bytes` (the larger of the two passes). The work
of one pass at model resolution ``h x w`` with ``I`` iterations is counted as the tracker does it
(docs/conventions.md, *Long videos*): every query group's forward and backward segments run
``num_windows`` windows of ``S`` frames; the encoder sees ``S`` frames per window, or every frame
once when the feature maps are shared; the refinement sees every window's ``S`` frames for the
group's points (padded to a power of two, at least 8) ``I`` times. So::

  seconds = COMPILE_S · passes                           (compiling; once per new video size)
          + ENCODE_S  · encoded frames · h · w            (encoder + attention, per pixel)
          + REFINE_S  · refined point-frames · I          (correlation + update net)
          + ANCHOR_S  · points · frames                   (anchoring, when on; padded points)
          + READ_S    · frames · H · W · reads            (decoding and resizing the input)

with ``ENCODE_S`` and ``REFINE_S`` scaled by the model's widths relative to the shipped weights'
(``latent_dim`` 64, encoder stem 32), the query groups' segments counted as the tracker runs them.

Calibration (``python benchmarks/bench_limits.py``; 2026-12-07, the shared 2-core AMD EPYC
machine, load average 9-17 from other jobs): the shipped weights on random frames, each
configuration's second (warm) call, CPU time of the process (``time.process_time``) against the
estimate without compiling. On an idle machine wall time is about the CPU time (the first row: 4.65 s
wall at load 1.6 in an earlier run, 4.85 s CPU); at load 9-17 it was 2.5-5x longer.

==========================================  ========  ==========  ===========
frames x points, input, settings            CPU s     estimate s  wall s
==========================================  ========  ==========  ===========
24 x 16, 192x256, one pass                  4.85      4.72        12.3
24 x 64                                     5.38      5.15        14.3
48 x 16                                     8.96      8.31        34.2
24 x 256                                    7.34      6.88        30.8
24 x 1024                                   13.89     13.76       66.7
24 x 16, 16 iterations                      5.64      5.15        17.2
24 x 256, 16 iterations                     14.07     13.76       44.8
24 x 16, input 384x512 (model 192x256)      5.69      5.25        15.3
24 x 256, anchored                          10.49     10.12       31.6
24 x 256, second pass x2                    24.52     26.96       79.0
24 x 16, window 16                          4.90      4.72        28.7
==========================================  ========  ==========  ===========

Compiling (first call minus second) took 11 s at load 1.6 (``COMPILE_S`` = 12 per pass). On a
machine with more cores the estimate is high (an upper bound); on an accelerator it is the CPU's
and is only printed, not enforced, unless a budget is given.

**The budget** (:func:`check_budget`): ``objtrack track`` prints the estimate before it starts
and refuses a run estimated over ``--max-minutes`` (default :data:`DEFAULT_MAX_MINUTES` on CPU),
naming the flag; the app refuses one over its run budget (``objtrack app --max-minutes``).
Library calls check the hard limits only (a Python caller asked for the work deliberately) and
log a warning with the estimate when it is over the default budget.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np

log = logging.getLogger(__name__)

MAX_POINTS = 65_536
MAX_GRID = 256
MAX_WINDOW = 256
MAX_ITERS = 64
MAX_FRAMES = 100_000
MAX_SIDE = 4096
MAX_PIXELS = 3840 * 2160
MAX_EXPORT_WINDOWS = 64
DEFAULT_MAX_MINUTES = 30.0

# The time model (module docstring): seconds on the 2-core machine, shipped weights' widths.
COMPILE_S = 12.0          # per pass, a new video size (the persistent cache makes it less)
ENCODE_S = 2.8e-6         # per encoded frame and model pixel
REFINE_S = 7.0e-5         # per refined point-frame and iteration
ANCHOR_S = 5.0e-4         # per point (padded) and frame
READ_S = 1.5e-7           # per input pixel read and resized
SHIPPED_LATENT = 64
SHIPPED_STEM = 32

# How the values are called where they come from: the API's keyword arguments by default; the
# CLI passes CLI_NAMES.
API_NAMES = {"window": "window", "iters": "iters", "refine_iters": "refine_iters",
             "resolution": "resolution", "points": "query points", "frames": "frames",
             "max_minutes": "max_minutes"}
CLI_NAMES = {"window": "--window", "iters": "--iters", "refine_iters": "--refine-iters",
             "resolution": "--resolution", "points": "queries", "frames": "frames",
             "max_minutes": "--max-minutes"}


def refuse(what: str, limit: int, name: str, hint: str) -> None:
    """Raises the one-line ``ValueError`` of a value over a limit:
    ``"<what>; the limit is <limit> (limits.<name>); <hint>"``."""
    raise ValueError(f"{what}; the limit is {limit:,} (limits.{name}); {hint}")


def _shown(v: float) -> str:
    """A value as the user wrote it: ``1000000000``, ``0.5``."""
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _number(value, what: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if math.isnan(f):
        raise ValueError(f"{what} must be a number, got {value!r}")
    return f


def check_points(n, what: str = "query points",
                 hint: str = "track fewer points, e.g. a coarser grid (--grid-step) or part of "
                             "the queries at a time") -> int:
    """``n`` (the number of points of a run) as an int; ``ValueError`` over :data:`MAX_POINTS`."""
    n = _number(n, what)
    if n > MAX_POINTS:
        refuse(f"{n:,.0f} {what}", MAX_POINTS, "MAX_POINTS", hint)
    return int(n)


def check_grid(grid, flag: str = "grid") -> int:
    """An ``N x N`` grid's ``N``; ``ValueError`` over :data:`MAX_GRID` (``N²`` over
    :data:`MAX_POINTS`), naming ``flag``."""
    g = _number(grid, flag)
    if g > MAX_GRID:
        refuse(f"{flag} {_shown(g)} gives {g * g:,.0f} points", MAX_POINTS, "MAX_POINTS",
               f"use {flag} {MAX_GRID} or less, or a dense grid with --grid-step")
    return int(g)


def check_frames(num_frames, what: str = "frames") -> int:
    """``ValueError`` over :data:`MAX_FRAMES`."""
    t = _number(num_frames, what)
    if t > MAX_FRAMES:
        refuse(f"{t:,.0f} {what}", MAX_FRAMES, "MAX_FRAMES",
               "track part of the video (--max-frames, or cut it into pieces)")
    return int(t)


def check_window(window, name: str = "window") -> int:
    """``ValueError`` over :data:`MAX_WINDOW`."""
    w = _number(window, name)
    if w > MAX_WINDOW:
        refuse(f"{name} {_shown(w)} frames", MAX_WINDOW, "MAX_WINDOW",
               f"use a smaller {name} (PIPs++ uses 128, the shipped weights 8)")
    return int(w)


def check_iters(iters, name: str = "iters") -> int:
    """``ValueError`` over :data:`MAX_ITERS`."""
    i = _number(iters, name)
    if i > MAX_ITERS:
        refuse(f"{name} {_shown(i)} iterations per window", MAX_ITERS, "MAX_ITERS",
               f"use a smaller {name} (PIPs++ uses 16, the shipped weights 4)")
    return int(i)


def check_size(size: Sequence, what: str = "resolution") -> tuple:
    """A model input size ``(h, w)``; ``ValueError`` when a side is over :data:`MAX_SIDE` or the
    area over :data:`MAX_PIXELS`."""
    h, w = (_number(v, what) for v in size)
    if max(h, w) > MAX_SIDE:
        refuse(f"{what} {h:.0f}x{w:.0f} has a side of {max(h, w):,.0f} px", MAX_SIDE, "MAX_SIDE",
               f"use a smaller {what}")
    if h * w > MAX_PIXELS:
        refuse(f"{what} {h:.0f}x{w:.0f} has {h * w:,.0f} pixels", MAX_PIXELS, "MAX_PIXELS",
               f"use a smaller {what}")
    return int(h), int(w)


def check_settings(s, names: Mapping[str, str] = API_NAMES) -> None:
    """The hard limits of a :class:`~objtrack_jax.settings.TrackingSettings`: window, iterations
    (both passes) and an explicit resolution; ``names``: how each is called in messages."""
    check_window(s.window, names["window"])
    check_iters(s.iters, names["iters"])
    if s.refine_iters is not None:
        check_iters(s.refine_iters, names["refine_iters"])
    if s.resolution is not None:
        check_size(s.resolution, names["resolution"])


# --------------------------------------------------------------------------------------------------
# The estimate
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A run's estimated cost: ``seconds`` (wall, on this machine's CPU cores), ``bytes`` (host
    memory) and ``parts`` (seconds per term of the time model)."""

    seconds: float
    bytes: int
    parts: dict

    def describe(self) -> str:
        """``"about 3.2 min and 1.4 GB"``."""
        s, b = self.seconds, self.bytes
        when = f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"
        size = f"{b / 2 ** 20:,.0f} MB" if b < 2 ** 30 else f"{b / 2 ** 30:,.1f} GB"
        return f"about {when} and {size}"


def _segment_windows(length: int, window: int) -> int:
    from objtrack_jax.inference import num_windows

    return num_windows(int(length), int(window))


def _padded(n: int) -> int:
    from objtrack_jax.post import padded_count

    return padded_count(n) if n <= 4096 else -(-n // 4096) * 4096


def _work(num_frames: int, groups: Mapping[int, int], window: int, shared: bool):
    """``(encoded frames, refined point-frames)`` of one pass (module docstring)."""
    win_frames, point_frames, segments = 0, 0, 0
    s = int(window)
    for t, n in groups.items():
        k = _segment_windows(num_frames - t, s) + _segment_windows(t + 1, s)
        segments += (num_frames - t > 1) + (t > 0)
        win_frames += k * s
        point_frames += _padded(n) * k * s
    encoded = num_frames if shared and segments > 1 else win_frames
    return encoded, point_frames


def _widths(model) -> tuple[float, float]:
    """``(encoder, refinement)`` cost factors of ``model`` relative to the shipped weights."""
    if model is None:
        return 1.0, 1.0
    stem = int(tuple(getattr(model, "encoder_dims", (SHIPPED_STEM,)))[0])
    latent = int(getattr(model, "latent_dim", SHIPPED_LATENT))
    return (stem / SHIPPED_STEM) ** 2, latent / SHIPPED_LATENT


def estimate(model, num_points: int, num_frames: int, height: int, width: int, s,
             query_frames=None) -> Estimate:
    """The time and memory of tracking ``num_points`` points through ``num_frames`` frames of
    ``height x width`` with settings ``s`` (module docstring). ``query_frames``: the points'
    query frames, as an array or a ``{frame: points}`` mapping (None: all at frame 0); nothing
    of the size of the points is allocated."""
    from objtrack_jax import memory
    from objtrack_jax.memory import estimate_tracking_bytes

    n, t_len = int(num_points), int(num_frames)
    if isinstance(query_frames, Mapping):
        groups = {min(max(int(f), 0), max(t_len - 1, 0)): int(c) for f, c in query_frames.items()}
    elif query_frames is None or len(query_frames) == 0:
        groups = {0: n}
    else:
        frames, counts = np.unique(np.clip(np.round(np.asarray(query_frames, np.float64)), 0,
                                           max(t_len - 1, 0)).astype(np.int64), return_counts=True)
        groups = {int(f): int(c) for f, c in zip(frames, counts)}
    latent = int(getattr(model, "latent_dim", SHIPPED_LATENT))
    enc_w, ref_w = _widths(model)
    budget = (s.max_memory_mb or memory.default_budget_mb()) * 2 ** 20
    size = s.model_size(height, width)
    passes = [(size, s.iters)] + [(f, s.second_pass_iters) for f in [s.fine_size(size)] if f]
    parts = dict(compile=0.0, encode=0.0, refine=0.0, anchor=0.0, read=0.0)
    need = 0
    for (h, w), iters in passes:
        shared = t_len * (h // 8) * (w // 8) * latent * 4 <= budget / 8
        encoded, point_frames = _work(t_len, groups, s.window, shared)
        parts["compile"] += COMPILE_S
        parts["encode"] += ENCODE_S * enc_w * encoded * h * w
        parts["refine"] += REFINE_S * ref_w * point_frames * iters
        parts["read"] += READ_S * t_len * height * width * (1 if shared else 2)
        need = max(need, estimate_tracking_bytes(n, t_len, height, width, (h, w), s.window,
                                                 latent, streamed=True))
    if s.anchor:
        parts["anchor"] = COMPILE_S / 4 + ANCHOR_S * _padded(n) * t_len
        parts["read"] += READ_S * t_len * height * width
    parts = {k: round(v, 3) for k, v in parts.items()}
    return Estimate(float(sum(parts.values())), int(need), parts)


def check_run(model, num_points: int, num_frames: int, height: int, width: int, s,
              query_frames=None, names: Mapping[str, str] = API_NAMES, warn: bool = False,
              points_what: Optional[str] = None) -> Estimate:
    """Every hard limit of a tracking run (frames, settings, both passes' model sizes, points);
    returns its :func:`estimate`. The one call of every entry point before its work.

    ``points_what``: how the points are named when there are too many (e.g. ``"--grid 1000
    gives 1,000,000 points"``); the refusal adds their estimated memory and time. ``warn``: log a
    warning with the estimate when it is over :data:`DEFAULT_MAX_MINUTES` on CPU (the library's
    calls: refused only by a budget, which commands and the app set)."""
    check_frames(num_frames, names["frames"])
    check_settings(s, names)
    size = s.model_size(height, width)
    check_size(size, f"model resolution (from {names['resolution']})")
    fine = s.fine_size(size)
    if fine is not None:
        check_size(fine, "second-pass resolution (refine_scale x the model resolution)")
    est = estimate(model, num_points, num_frames, height, width, s, query_frames)
    if _number(num_points, names["points"]) > MAX_POINTS:
        what = points_what or f"{num_points:,.0f} {names['points']}"
        gib, when = est.bytes / 2 ** 30, est.describe().split(" and ")[0]
        refuse(f"{what}, which needs an estimated {gib:,.1f} GiB and {when}", MAX_POINTS,
               "MAX_POINTS", "track fewer points (a coarser grid, --grid-step, or part of the "
               "queries at a time)")
    budget = default_max_minutes() if warn else None
    if budget is not None and est.seconds > 60 * budget:
        log.warning("tracking %s points through %s frames is estimated at %s (objtrack_jax.limits; "
                    "commands refuse a run over %g min unless --max-minutes is raised)",
                    f"{num_points:,}", f"{num_frames:,}", est.describe(), budget)
    return est


def check_stream(window, iters, refine_iters, size, fine_size, points) -> None:
    """The hard limits of an online tracker (:class:`objtrack_jax.online.OnlineTracker`): its
    window, iterations, model sizes and query slots."""
    check_window(window)
    check_iters(iters)
    if refine_iters is not None:
        check_iters(refine_iters, "refine_iters")
    check_size(size, "model resolution")
    if fine_size is not None:
        check_size(fine_size, "second-pass resolution (refine_scale x the model resolution)")
    check_points(points, "query slots (capacity)")


def check_export(size, window, iters, num_frames, points, track_clip: bool = True) -> None:
    """The hard limits of ``objtrack export``: the frame size (:func:`check_size`), window,
    iterations, points, and the windows that ``track_clip`` unrolls (``num_frames`` frames)."""
    check_size(size, "the export resolution (--resolution)")
    check_window(window, "--window")
    check_iters(iters, "--iters")
    check_points(points, "points (--points)", "export fewer --points")
    check_frames(num_frames, "frames (--frames)")
    if track_clip:
        from objtrack_jax.inference import num_windows

        k = num_windows(int(num_frames), int(window))
        if k > MAX_EXPORT_WINDOWS:
            refuse(f"track_clip of --frames {num_frames} with --window {window} unrolls {k:,} "
                   "windows into one graph", MAX_EXPORT_WINDOWS, "MAX_EXPORT_WINDOWS",
                   "export fewer --frames, or only window_step (--functions window_step) and "
                   "run it in a loop (docs/export.md)")


def default_max_minutes() -> Optional[float]:
    """:data:`DEFAULT_MAX_MINUTES` on CPU; None (no budget) on an accelerator, where the CPU
    time model does not apply."""
    import jax

    return DEFAULT_MAX_MINUTES if jax.default_backend() == "cpu" else None


def check_budget(est: Estimate, max_minutes: Optional[float], what: str = "the run",
                 flag: str = "--max-minutes") -> None:
    """``ValueError`` when ``est`` is over ``max_minutes`` (None: no budget), naming ``flag``."""
    if max_minutes is None:
        return
    limit = _number(max_minutes, flag)
    if est.seconds > 60 * limit:
        raise ValueError(f"{what} is estimated at {est.describe()}, over the time budget of "
                         f"{limit:g} min ({flag}); raise {flag} to run it anyway, or track fewer "
                         "points or frames, with fewer iterations or at a smaller resolution")


def positive_minutes(text: Any) -> float:
    """``--max-minutes``: a number > 0 (an argparse type)."""
    import argparse

    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a number of minutes, got {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number of minutes, got {text!r}")
    return value


def check_command(model, s, num_points: int, num_frames: int, height: int, width: int,
                  query_frames=None, max_minutes: Optional[float] = None,
                  prog: str = "objtrack track", echo=print,
                  points_what: Optional[str] = None) -> Estimate:
    """What a command does before its work: every hard limit (named by their flags,
    :data:`CLI_NAMES`), the estimate printed, and a run over the budget refused (``max_minutes``
    None: :func:`default_max_minutes`)."""
    est = check_run(model, num_points, num_frames, height, width, s, query_frames, CLI_NAMES,
                    points_what=points_what)
    budget = default_max_minutes() if max_minutes is None else max_minutes
    if echo is not None:
        echo(f"{prog}: {num_points:,} points x {num_frames:,} frames estimated at "
             f"{est.describe()} (objtrack_jax.limits, calibrated on a 2-core CPU)"
             + (f"; time budget {budget:g} min (--max-minutes)" if budget else ""))
    check_budget(est, budget, f"tracking {num_points:,} points through {num_frames:,} frames")
    return est


def add_budget_arg(parser) -> None:
    """``--max-minutes`` (:func:`check_command`'s budget)."""
    parser.add_argument("--max-minutes", type=positive_minutes, default=None, metavar="MIN",
                        help="refuse a run whose estimated time is over MIN minutes (default "
                             f"{DEFAULT_MAX_MINUTES:g} on CPU, none on an accelerator; the "
                             "estimate is printed before the work starts)")
