"""The tracking settings: one frozen object, checked once, carried by the weights.

:class:`TrackingSettings` holds every setting of the tracking engine (window, iterations, model
resolution, the second pass, the template carry, point chunks, memory budget, shape bucketing).
Every entry point takes one and passes it down unchanged: the Python API
(:func:`objtrack_jax.tracking.track_queries`, :func:`objtrack_jax.video_tracking.track_video`),
``objtrack track`` / ``eval`` / ``demo``, :func:`objtrack_jax.evaluation.evaluate`, the scripts
and the evaluation during training. No layer has defaults of its own.

Where the values come from:

* weights record the settings they were validated at in ``config.json`` → ``info.inference``
  (:func:`from_info`; the shipped weights: window 8, 4 iterations, short side 192, a second pass
  at x2 with 4 iterations);
* weights that record nothing (converted PyTorch checkpoints, training workdirs without an
  ``eval`` section) get the class defaults, the PIPs++ protocol's window 128 and 16 iterations,
  one pass, short side :data:`DEFAULT_SHORT_SIDE` for ``track``;
* a caller changes single values with :meth:`TrackingSettings.replace` or :func:`resolve`
  (``None`` keeps the value): ``resolve(info, window=4)``.

One way in: every entry point (``track_queries``, ``track_video``, ``OnlineTracker``,
``functional.make_tracker``, ``evaluate``, ``objtrack track`` / ``track --online`` / ``eval`` /
``demo``, the app) calls :func:`resolve` with what its caller gave, so the same request gives the
same settings everywhere. Precedence, strongest first: keyword overrides (any field by its name),
then ``settings`` (a :class:`TrackingSettings` or a dict of its fields, replacing the weights'
whole), then the weights' validated settings, then the class defaults. Text from a command line
or a form becomes a value by the same rule (:func:`parse_value`). A name that is not a field is an
:class:`UnknownSettingError` (a ``ValueError``) naming it and listing the fields.

Checked once: :meth:`TrackingSettings.__post_init__` rejects a value outside its valid range with
a ``ValueError`` naming the setting, the value and the range; :func:`resolve` also logs a warning
for values far outside those the weights were validated at (e.g. ``window=3`` for weights
validated at 8).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from objtrack_jax.anchor import AnchorConfig

log = logging.getLogger(__name__)

CARRY_MODES = ("pips2", "paper", "none")
DEFAULT_SHORT_SIDE = 384  # weights without a validated short side: the tracking CLI's 384 px
MIN_SIZE = 128  # the tracker's smallest frame side (4 pyramid levels; models/tracker.py)
STRIDE = 8
MAX_REFINE_SCALE = 8.0


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) or (
        hasattr(v, "dtype") and getattr(v.dtype, "kind", "") in "iu" and getattr(v, "ndim", 1) == 0)


def check_refine_scale(value, what: str = "refine_scale") -> Optional[float]:
    """The one rule for the second pass's scale: None, 0 or 1 mean one pass (returned as None);
    otherwise a finite number in (1, :data:`MAX_REFINE_SCALE`] times the model resolution."""
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number (0 or 1: one pass; 1 to {MAX_REFINE_SCALE:g}: "
                         f"a second pass at that multiple of the model resolution), got "
                         f"{value!r}") from None
    if f in (0.0, 1.0):
        return None
    if not math.isfinite(f) or not 1.0 < f <= MAX_REFINE_SCALE:
        raise ValueError(f"{what} must be 0 (one pass) or between 1 and {MAX_REFINE_SCALE:g} "
                         f"(times the model resolution), got {value!r}")
    return f


_ANCHOR_DEFAULT = AnchorConfig()  # the validated anchoring (the one AnchorConfig() built)


def anchor_config(value) -> Optional[AnchorConfig]:
    """The one reading of the ``anchor`` setting: an :class:`~objtrack_jax.anchor.AnchorConfig`
    as it is, a mapping of its fields (``as_dict``'s form), True for the validated defaults;
    False or None: off (None). Anything else: ``ValueError``."""
    if isinstance(value, np.bool_):  # e.g. read back from an .npz
        value = bool(value)
    if value is None or value is False:
        return None
    if value is True:
        return _ANCHOR_DEFAULT
    if isinstance(value, AnchorConfig):
        return value
    if isinstance(value, Mapping):
        try:
            return AnchorConfig(**value)
        except TypeError:
            raise ValueError(f"anchor: unknown field(s) in {dict(value)!r}; AnchorConfig has "
                             f"{[f.name for f in dataclasses.fields(AnchorConfig)]}") from None
    raise ValueError(f"anchor must be True or False, an AnchorConfig or a mapping of its "
                     f"fields, got {value!r}")


def model_hw(value, what: str = "resolution") -> tuple[int, int]:
    """``(h, w)`` the tracker accepts: ints, multiples of 8, at least 128."""
    try:
        h, w = (int(v) for v in value)
        ok = all(float(v) == int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be (height, width), got {value!r}") from None
    if not ok or h % STRIDE or w % STRIDE or h < MIN_SIZE or w < MIN_SIZE:
        raise ValueError(f"{what} {value!r}: height and width must be multiples of {STRIDE} and "
                         f">= {MIN_SIZE} (e.g. {max(MIN_SIZE, -(-h // STRIDE) * STRIDE)}x"
                         f"{max(MIN_SIZE, -(-w // STRIDE) * STRIDE)})")
    return h, w


def default_resolution(height: int, width: int, short_side: int = DEFAULT_SHORT_SIDE,
                       stride: int = STRIDE) -> tuple[int, int]:
    """Model resolution for an ``height × width`` video: aspect kept, short side ``short_side``.

    Both sides are rounded to multiples of ``stride`` and are at least ``MIN_SIZE`` (128).
    """
    scale = short_side / min(height, width)

    def side(s):
        return max(MIN_SIZE, int(round(s * scale / stride)) * stride)

    return side(height), side(width)


def refine_size(size: Sequence[int], refine_scale: Optional[float],
                stride: int = STRIDE) -> Optional[tuple[int, int]]:
    """The second pass's model resolution: ``size`` (H, W) times ``refine_scale``, sides rounded to
    multiples of ``stride``; None when there is no second pass (:func:`check_refine_scale`)."""
    f = check_refine_scale(refine_scale)
    if f is None:
        return None
    return tuple(max(MIN_SIZE, int(round(int(v) * f / stride)) * stride) for v in size)


# The integer settings: smallest value and what it is (the message of a value below it, in the
# library, the CLI flags and the app's form alike).
INT_RULES = {"window": (2, "frames per window; windows overlap by one frame"),
             "iters": (1, "refinement iterations per window"),
             "short_side": (MIN_SIZE, "the model resolution's short side in pixels"),
             "refine_iters": (1, "iterations per window of the second pass"),
             "chunk_size": (1, "points refined at once"),
             "max_memory_mb": (1, "memory budget in MB")}


class UnknownSettingError(ValueError, TypeError):
    """A name that is not a :class:`TrackingSettings` field (a ``ValueError`` for the CLI's error
    path; a ``TypeError`` too, as for an unknown keyword argument)."""


def check_names(names, where: str = "") -> None:
    """:class:`UnknownSettingError` naming the first of ``names`` that is not a
    :class:`TrackingSettings` field, and listing the fields."""
    unknown = [n for n in names if n not in FIELDS]
    if unknown:
        at = f" ({where})" if where else ""
        raise UnknownSettingError(
            f"unknown tracking setting {unknown[0]!r}{at}; the settings are: {', '.join(FIELDS)}")


@dataclasses.dataclass(frozen=True)
class TrackingSettings:
    """Every setting of the tracking engine (module docstring). Frozen; checked on creation.

    Attributes:
      window: frames per window (S_max, >= 2; consecutive windows share one frame).
      iters: refinement iterations per window (>= 1).
      short_side: the model resolution keeps the video's aspect with this short side (sides
        rounded to multiples of 8, >= 128); None: not validated, :data:`DEFAULT_SHORT_SIDE` for
        tracking (the evaluation protocols then use their benchmark's resolution).
      resolution: an explicit model resolution ``(h, w)`` (multiples of 8, >= 128); overrides
        ``short_side``. Pass the video's own size to track without resizing.
      refine_scale: a second pass refines the first pass's tracks at this multiple of the model
        resolution (in (1, 8]); None: one pass (0 and 1 are read as None).
      refine_iters: iterations per window of the second pass (None: ``iters``).
      carry: template carry across windows, one of :data:`CARRY_MODES`.
      chunk_size: at most this many points refined at once (None: from the memory budget,
        :func:`objtrack_jax.memory.point_chunk_size`).
      max_memory_mb: memory budget in MB for chunk sizes (None: half the machine's memory).
      bucket: pad short segments to a full window and point counts to powers of two, and run the
        query groups side by side, so that videos of one shape share compiled programs (same
        results up to float rounding).
      anchor: after the network, re-align every estimate to its query frame's patch
        (:mod:`objtrack_jax.post`, rules in :mod:`objtrack_jax.anchor`: sub-pixel, removes the
        drift that window restarts accumulate): its :class:`~objtrack_jax.anchor.AnchorConfig`,
        or None (off). True / False (``config.json``, ``--anchor`` / ``--no-anchor``) are read
        as the validated ``AnchorConfig()`` / None (:func:`anchor_config`). Not part of PIPs++:
        off by default and for the reproduction protocols.
      vis_threshold: a point-frame is visible where the visibility logit is above this (0:
        probability 0.5; weights may record one chosen on held-out data,
        ``scripts/calibrate_visibility.py``).
    """

    window: int = 128
    iters: int = 16
    short_side: Optional[int] = None
    resolution: Optional[tuple] = None
    refine_scale: Optional[float] = None
    refine_iters: Optional[int] = None
    carry: str = "pips2"
    chunk_size: Optional[int] = None
    max_memory_mb: Optional[int] = None
    bucket: bool = True
    anchor: Optional[AnchorConfig] = None
    vis_threshold: float = 0.0

    def __post_init__(self):
        def need_int(name, minimum, what, optional=False):
            v = getattr(self, name)
            if optional and v is None:
                return
            if not _is_int(v):
                raise ValueError(f"{name} must be an integer ({what}), got {v!r}")
            if int(v) < minimum:
                raise ValueError(f"{name} must be >= {minimum} ({what}), got {v!r}")
            object.__setattr__(self, name, int(v))

        for name, (minimum, what) in INT_RULES.items():
            need_int(name, minimum, what, optional=name not in ("window", "iters"))
        if self.resolution is not None:
            object.__setattr__(self, "resolution", model_hw(self.resolution))
        object.__setattr__(self, "refine_scale", check_refine_scale(self.refine_scale))
        if self.carry not in CARRY_MODES:
            raise ValueError(f"carry must be one of {CARRY_MODES}, got {self.carry!r}")
        try:
            thr = float(self.vis_threshold)
        except (TypeError, ValueError):
            thr = float("nan")
        if isinstance(self.vis_threshold, bool) or not math.isfinite(thr):
            raise ValueError(f"vis_threshold must be a finite number (a visibility logit), got "
                             f"{self.vis_threshold!r}")
        object.__setattr__(self, "vis_threshold", thr)
        if not isinstance(self.bucket, bool):
            raise ValueError(f"bucket must be True or False, got {self.bucket!r}")
        object.__setattr__(self, "anchor", anchor_config(self.anchor))

    # ----------------------------------------------------------------------------------------------

    def replace(self, **changes) -> "TrackingSettings":
        """A copy with ``changes`` applied; a ``None`` value keeps the current one (so optional
        command-line flags can be passed straight through). Unknown names:
        :class:`UnknownSettingError` (a ``TypeError`` and a ``ValueError``)."""
        check_names(changes)
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **changes) if changes else self

    @property
    def second_pass_iters(self) -> int:
        """Iterations per window of the second pass."""
        return self.refine_iters or self.iters

    def model_size(self, height: int, width: int) -> tuple[int, int]:
        """The first pass's model resolution for a ``height × width`` video: ``resolution``, else
        the aspect kept at ``short_side`` (:data:`DEFAULT_SHORT_SIDE` when None)."""
        if self.resolution is not None:
            return tuple(self.resolution)
        return default_resolution(height, width, self.short_side or DEFAULT_SHORT_SIDE)

    def fine_size(self, size: Sequence[int]) -> Optional[tuple[int, int]]:
        """The second pass's model resolution for a first pass at ``size`` (None: one pass)."""
        return refine_size(size, self.refine_scale)

    def as_dict(self) -> dict:
        """JSON-friendly dict of every field (``resolution`` as a list, ``anchor`` None or the
        dict of its :class:`~objtrack_jax.anchor.AnchorConfig` fields, read back as such)."""
        d = dataclasses.asdict(self)
        if d["resolution"] is not None:
            d["resolution"] = list(d["resolution"])
        return d

    def describe(self) -> str:
        """A one-line summary for logs: ``window 8, iters 4, short side 192, second pass x2``."""
        res = (f"resolution {self.resolution[0]}x{self.resolution[1]}" if self.resolution else
               f"short side {self.short_side or DEFAULT_SHORT_SIDE}")
        second = (f", second pass x{self.refine_scale:g} ({self.second_pass_iters} iters)"
                  if self.refine_scale else "")
        changed = [f"{f.name} {getattr(self.anchor, f.name)}"
                   for f in dataclasses.fields(AnchorConfig) if self.anchor is not None
                   and getattr(self.anchor, f.name) != getattr(_ANCHOR_DEFAULT, f.name)]
        anchored = "" if self.anchor is None else ", anchored to the query frame" + (
            f" ({', '.join(changed)})" if changed else "")
        vis = f", visible above logit {self.vis_threshold:g}" if self.vis_threshold else ""
        return (f"window {self.window}, iters {self.iters}, {res}{second}, carry {self.carry}"
                f"{anchored}{vis}")


FIELDS = tuple(f.name for f in dataclasses.fields(TrackingSettings))
_BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True,
               "false": False, "no": False, "off": False, "0": False}
# Old keyword names still accepted (with a DeprecationWarning) -> the field they set.
ALIASES = {"resize_to": "resolution"}


def parse_value(name: str, text: Any) -> Any:
    """The value of setting ``name`` from text (a command-line ``--set name=value``, a form field);
    non-strings are returned as they are. The value is then checked by :class:`TrackingSettings`
    like any other (so a bad one gets the same message whichever way it came)."""
    check_names([name])
    if not isinstance(text, str):
        return text
    t = text.strip()
    if name in INT_RULES:
        try:
            return int(t)
        except ValueError:
            return t  # TrackingSettings: "... must be an integer ..., got 'x'"
    if name in ("refine_scale", "vis_threshold"):
        try:
            return float(t)
        except ValueError:
            return t
    if name == "resolution":
        parts = t.lower().replace(",", "x").split("x")
        try:
            return tuple(int(v) for v in parts)
        except ValueError:
            return t  # model_hw: "resolution must be (height, width), got 'x'"
    if name in ("bucket", "anchor") and t.lower() in _BOOL_WORDS:
        return _BOOL_WORDS[t.lower()]
    return t


# Keys of config.json's info.inference that are tracking settings (the rest: provenance).
_RECORDED_KEYS = ("window", "iters", "short_side", "refine_scale", "refine_iters", "carry",
                  "anchor", "vis_threshold")


def recorded_inference(info: Optional[Mapping]) -> dict:
    """``info['inference']`` of loaded weights (``{}`` when absent); ``TypeError``-free for any
    ``info``."""
    rec = (info or {}).get("inference") if isinstance(info, Mapping) else None
    return dict(rec) if isinstance(rec, Mapping) else {}


def from_info(info: Optional[Mapping], where: str = "") -> TrackingSettings:
    """The settings loaded weights were validated at: ``info['inference']`` as written into
    ``config.json`` by ``scripts/export_weights.py`` (for a training workdir, its ``eval``
    section: :func:`objtrack_jax.model_io.load_model`); missing keys take the class defaults.
    A recorded value outside its range is a ``ValueError`` naming ``where`` (e.g. the
    ``config.json`` path), the key and the value."""
    if isinstance(info, TrackingSettings):
        return info
    if is_settings_mapping(info):
        raise ValueError(f"expected the weights' info (from load_model), got a dict of settings "
                         f"{sorted(info)}: pass it as settings= (objtrack_jax.settings.resolve)")
    rec = recorded_inference(info)
    values = {k: rec[k] for k in _RECORDED_KEYS if rec.get(k) is not None}
    try:
        return TrackingSettings(**values)
    except ValueError as e:
        prefix = f"{where}: " if where else ""
        raise ValueError(f"{prefix}info.inference: {e}") from None


def is_settings_mapping(obj) -> bool:
    """Whether ``obj`` is a dict of settings rather than the weights' ``info``: a mapping with a
    :class:`TrackingSettings` field name among its keys and without the ``architecture`` /
    ``inference`` keys of the info of :func:`objtrack_jax.model_io.load_model`."""
    return (isinstance(obj, Mapping) and bool(set(FIELDS) & set(obj))
            and not {"architecture", "inference"} & set(obj))


def is_recorded(info: Optional[Mapping]) -> bool:
    """Whether the weights record a validated short side (then PointOdyssey-layout videos are
    evaluated at it, aspect kept, rather than at the benchmark's 512x896)."""
    return isinstance(info, TrackingSettings) and info.short_side is not None or \
        "short_side" in recorded_inference(info)


def far_from_validated(settings: TrackingSettings, validated: TrackingSettings,
                       trained: Optional[Mapping] = None) -> list[str]:
    """Notes for settings far outside those the weights were validated at (``validated``) or
    trained with (``trained``: ``clip_len``, ``iters``, ``crop`` as weights record it): a window
    under half or over 4x the validated one (and over 4x the training clips), iterations under
    half or over twice the validated (or trained) ones, a model short side under half or over 4x
    the validated one (or over 4x the training crops'). Empty when nothing is far off."""
    trained = trained or {}
    notes = []
    w, vw = settings.window, validated.window
    clip = int(trained["clip_len"]) if trained.get("clip_len") else None
    if w < max(2, vw / 2) or w > 4 * max(vw, clip or 0):
        notes.append(f"window {w} is far from the validated {vw}"
                     + (f" (trained on {clip}-frame clips)" if clip else ""))
    v = settings.iters
    for ref, how in ((validated.iters, "validated at"), (trained.get("iters"), "trained with")):
        if ref and not int(ref) / 2 <= v <= 2 * int(ref):
            notes.append(f"iters {v} is far from the {ref} iterations these weights were {how}")
            break
    short = (min(settings.resolution) if settings.resolution is not None else settings.short_side)
    if short is not None and validated.short_side:
        if not validated.short_side / 2 <= short <= 4 * validated.short_side:
            notes.append(f"model short side {short} is far from the validated "
                         f"{validated.short_side}")
    crop = trained.get("crop")
    if short is not None and crop and short > 4 * min(int(c) for c in crop):
        notes.append(f"model short side {short} is far above the {crop[0]}x{crop[1]} crops these "
                     "weights were trained on")
    return notes


_warned_no_settings = False


def resolve(source: Union[None, Mapping, TrackingSettings] = None,
            settings: Union[None, Mapping, TrackingSettings] = None, *, warn: bool = True,
            entry: Optional[str] = None, **overrides: Any) -> TrackingSettings:
    """The settings an entry point runs with: the one path of every entry point (module docstring).

    Args:
      source: the loaded weights' ``info`` (from :func:`objtrack_jax.model_io.load_model`), whose
        validated settings are the default; or a :class:`TrackingSettings`; or a dict of
        settings (read as ``settings``); None: the class defaults (weights that record nothing).
      settings: settings given explicitly by the caller, a :class:`TrackingSettings` or a dict of
        its fields (``TrackingSettings(**d)``: the missing ones take the class defaults; the same
        as ``settings.as_dict()`` round-trips). They replace ``source``'s whole; the warning still
        compares with ``source``'s.
      warn: log a warning for values far outside the validated ones (:func:`far_from_validated`;
        only when ``source`` records validated settings).
      entry: the calling entry point's name (``"track_queries"``): when neither ``source`` nor
        ``settings`` is given, a warning (once per process) says that the class defaults apply.
      overrides: single settings by field name (``window=4``); None keeps the value. The old
        names of :data:`ALIASES` still work, with a ``DeprecationWarning``.

    Returns:
      the checked :class:`TrackingSettings`.

    Raises:
      UnknownSettingError: a key of ``settings`` or ``overrides`` that is not a field.
      ValueError: a value outside its range (:class:`TrackingSettings`).
    """
    global _warned_no_settings  # pylint: disable=global-statement
    where = entry or "resolve"
    if source is not None and not isinstance(source, (Mapping, TrackingSettings)):
        raise ValueError(f"{where}: expected the weights' info (from load_model), a "
                         f"TrackingSettings or a dict of settings, got {type(source).__name__}")
    if is_settings_mapping(source):
        if settings is not None:
            raise ValueError(f"{where}: settings given twice (a dict of settings and settings=)")
        source, settings = None, source
    for old, new in ALIASES.items():
        if old in overrides:
            warnings.warn(f"{old}= is deprecated; use {new}= (the TrackingSettings field)",
                          DeprecationWarning, stacklevel=3)
            value = overrides.pop(old)
            if value is not None:
                if overrides.get(new) is not None:
                    raise ValueError(f"{where}: both {old}= and {new}= given; use {new}=")
                overrides[new] = value
    check_names(overrides, entry or "")
    validated = from_info(source)
    if settings is None:
        base = validated
    elif isinstance(settings, TrackingSettings):
        base = settings
    elif isinstance(settings, Mapping):
        check_names(settings, f"{entry}, settings=" if entry else "settings=")
        base = TrackingSettings(**settings)
    else:
        raise ValueError(f"{where}: settings must be a TrackingSettings or a dict of its fields, "
                         f"got {type(settings).__name__}")
    out = base.replace(**overrides)
    if entry and source is None and settings is None and not _warned_no_settings:
        _warned_no_settings = True
        log.warning("%s: no weights info or TrackingSettings given; using the defaults of weights "
                    "that record no validated settings (%s). Pass the weights' info "
                    "(%s(*load_model(), ...)) or settings= to track as `objtrack track` does.",
                    entry, out.describe(), entry)
    recorded = isinstance(source, TrackingSettings) or bool(recorded_inference(source))
    if warn and recorded and out != validated:
        trained = recorded_inference(source).get("trained")
        for note in far_from_validated(out, validated, trained if isinstance(trained, Mapping)
                                       else None):
            log.warning("%s (these weights were validated at: %s)", note, validated.describe())
    return out
