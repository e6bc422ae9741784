"""The tracks file: one ``.npz`` layout for every tracking result, and its reader.

``objtrack track`` (:func:`objtrack_jax.video_tracking.track_video`), ``objtrack track --online``
(:mod:`objtrack_jax.cli_online`) and the app's download (:func:`objtrack_jax.app.engine.write_tracks`)
all write their tracks with :func:`write_tracks_npz`; :func:`read_tracks_npz` reads any of them
back and checks it. The layout (docs/conventions.md, *The tracks file*), ``N`` points, ``T``
frames, every coordinate in pixels of the input video (x = 0 the centre of the first column):

==================  ======================  =====================================================
key                 shape, dtype            meaning
==================  ======================  =====================================================
``tracks``          ``[N, T, 2]`` float32   ``(x, y)``; equal to the query at its query frame
                                            (NaN where a point was not tracked: online, before
                                            its query frame)
``visible``         ``[N, T]`` bool         predicted visibility; absent when the model has no
                                            visibility head
``vis_logits``      ``[N, T]`` float32      the visibility logits (optional)
``has_visibility``  ``[]`` bool             whether ``visible`` is there
``query_points``    ``[N, 3]`` float32      the queries ``(t, y, x)``
``resolution``      ``[2]`` int64           the first pass's model ``(h, w)``
``video_size``      ``[2]`` int64           the input video's ``(H, W)``
``info_json``       ``[]`` str              JSON: ``settings`` (the
                                            :class:`~objtrack_jax.settings.TrackingSettings` used,
                                            ``resolution`` the model size it gave), ``writer``
                                            (``objtrack track``, ``objtrack track --online``,
                                            ``objtrack app``), and what the writer adds (video
                                            name, frames, fps, weights)
``tracks_<m>``      ``[N, T, 2]`` float32   another method ``m``'s tracks (the app's comparisons:
                                            ``lk``, ``dis``)
``visible_<m>``     ``[N, T]`` bool         its visibility, when it predicts one
(other keys)        any                     the writer's extras, e.g. online ``step_ms`` ``[T]``
                                            and ``latency_frames`` ``[]``
==================  ======================  =====================================================

Everything is a plain array (``numpy.load(path)`` needs no pickle).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping, NamedTuple, Optional, Sequence, Union

import numpy as np

LAYOUT_KEYS = ("tracks", "visible", "vis_logits", "has_visibility", "query_points", "resolution",
               "video_size", "info_json")


class TracksFile(NamedTuple):
    """A tracks file read back (:func:`read_tracks_npz`; shapes in the module docstring).

    Attributes:
      tracks: float32 ``[N, T, 2]`` (x, y).
      visible: bool ``[N, T]``, or None without a visibility head.
      vis_logits: float32 ``[N, T]`` or None.
      queries: float32 ``[N, 3]`` (t, y, x).
      settings: the tracking settings used, as a dict of
        :class:`~objtrack_jax.settings.TrackingSettings` fields.
      resolution: the first pass's model ``(h, w)``, or None.
      video_size: the input video's ``(H, W)``, or None.
      info: the whole ``info_json`` (``settings``, ``writer``, the writer's additions).
      methods: ``{name: (tracks [N, T, 2], visible [N, T] or None)}`` of the other methods.
      extra: the writer's other arrays by key.
    """

    tracks: np.ndarray
    visible: Optional[np.ndarray]
    vis_logits: Optional[np.ndarray]
    queries: np.ndarray
    settings: dict
    resolution: Optional[tuple]
    video_size: Optional[tuple]
    info: dict
    methods: dict
    extra: dict


def _settings_dict(settings) -> dict:
    from objtrack_jax.settings import TrackingSettings, check_names

    if isinstance(settings, TrackingSettings):
        return settings.as_dict()
    if not isinstance(settings, Mapping):
        raise ValueError(f"settings must be the TrackingSettings used (or its as_dict()), got "
                         f"{type(settings).__name__}")
    check_names(settings, "the tracks file's settings")
    return dict(settings)


def _check(where: str, tracks, visible, vis_logits, queries, methods) -> None:
    """The layout's shape rules (one ValueError naming the key, the shape and the expected one)."""
    def shape_error(key, got, want):
        raise ValueError(f"{where}: {key} must be {want}, got shape {tuple(got)}")

    if tracks.ndim != 3 or tracks.shape[2] != 2:
        shape_error("tracks", tracks.shape, "[N, T, 2] (x, y)")
    n, t = tracks.shape[:2]
    if queries.shape != (n, 3):
        shape_error("query_points", queries.shape, f"[N, 3] (t, y, x) with N = {n}")
    for key, a in (("visible", visible), ("vis_logits", vis_logits)):
        if a is not None and a.shape != (n, t):
            shape_error(key, a.shape, f"[N, T] = [{n}, {t}]")
    if visible is not None and visible.dtype != bool:
        raise ValueError(f"{where}: visible must be bool, got {visible.dtype}")
    for name, (m_tracks, m_visible) in methods.items():
        if m_tracks.shape != (n, t, 2):
            shape_error(f"tracks_{name}", m_tracks.shape, f"[N, T, 2] = [{n}, {t}, 2]")
        if m_visible is not None and m_visible.shape != (n, t):
            shape_error(f"visible_{name}", m_visible.shape, f"[N, T] = [{n}, {t}]")


def write_tracks_npz(path: str, tracks, visible, queries, settings, *, writer: str,
                     vis_logits=None, resolution: Optional[Sequence[int]] = None,
                     video_size: Optional[Sequence[int]] = None,
                     methods: Optional[Mapping[str, tuple]] = None,
                     info: Optional[Mapping[str, Any]] = None,
                     extra: Optional[Mapping[str, Any]] = None) -> str:
    """Writes the tracks file at ``path`` (layout in the module docstring); returns ``path``.

    Args:
      path: the ``.npz`` to write (its folder is made).
      tracks: ``[N, T, 2]`` (x, y); visible: ``[N, T]`` bool, or None without a visibility head;
      queries: ``[N, 3]`` (t, y, x).
      settings: the :class:`~objtrack_jax.settings.TrackingSettings` used (or its ``as_dict()``);
        with ``resolution``, its ``resolution`` is recorded as that model size.
      writer: who wrote it (``"objtrack track"``, ...).
      vis_logits: ``[N, T]`` or None; resolution: the model ``(h, w)``; video_size: ``(H, W)``.
      methods: other methods ``{name: (tracks [N, T, 2], visible [N, T] or None)}``.
      info: more JSON-friendly facts for ``info_json`` (video name, fps, weights, ...).
      extra: more arrays under their own keys (not a layout key, nor ``tracks_*`` / ``visible_*``).
    """
    tracks = np.asarray(tracks, np.float32)
    visible = None if visible is None else np.asarray(visible, bool)
    vis_logits = None if vis_logits is None else np.asarray(vis_logits, np.float32)
    queries = np.asarray(queries, np.float32)
    methods = {str(k): (np.asarray(tr, np.float32), None if v is None else np.asarray(v, bool))
               for k, (tr, v) in (methods or {}).items()}
    _check(path, tracks, visible, vis_logits, queries, methods)
    meta = dict(info or {})
    meta["writer"] = writer
    meta["settings"] = _settings_dict(settings)
    if resolution is not None:
        meta["settings"]["resolution"] = [int(v) for v in resolution]
    arrays = {"tracks": tracks, "query_points": queries,
              "has_visibility": np.asarray(visible is not None)}
    if visible is not None:
        arrays["visible"] = visible
    if vis_logits is not None:
        arrays["vis_logits"] = vis_logits
    if resolution is not None:
        arrays["resolution"] = np.asarray([int(v) for v in resolution], np.int64)
    if video_size is not None:
        arrays["video_size"] = np.asarray([int(v) for v in video_size], np.int64)
    for name, (m_tracks, m_visible) in methods.items():
        arrays[f"tracks_{name}"] = m_tracks
        if m_visible is not None:
            arrays[f"visible_{name}"] = m_visible
    for key, value in (extra or {}).items():
        if key in LAYOUT_KEYS or key in arrays or key.startswith(("tracks_", "visible_")):
            raise ValueError(f"{path}: extra array {key!r} would replace a key of the tracks "
                             f"file's layout")
        arrays[key] = np.asarray(value)
    arrays["info_json"] = np.asarray(json.dumps(meta, default=_json_default))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, **arrays)
    return path


def _json_default(obj):
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    raise TypeError(f"not JSON-serialisable in a tracks file's info: {type(obj).__name__}")


def read_tracks_npz(path: Union[str, os.PathLike]) -> TracksFile:
    """Reads and checks a tracks file written by :func:`write_tracks_npz` (any writer).

    Raises:
      ValueError: not an ``.npz``, a missing key, a shape outside the layout, or an ``info_json``
        that is not JSON (the message names the file and the key).
    """
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a readable .npz ({e})") from None
    missing = [k for k in ("tracks", "query_points", "info_json") if k not in data]
    if missing:
        raise ValueError(f"{path}: not a tracks file, missing key(s) {missing} (layout: "
                         f"objtrack_jax.tracks_io)")
    try:
        info = json.loads(str(data["info_json"]))
    except ValueError as e:
        raise ValueError(f"{path}: info_json is not JSON ({e})") from None
    if not isinstance(info, dict) or not isinstance(info.get("settings"), dict):
        raise ValueError(f"{path}: info_json must be a JSON object with the 'settings' used")
    visible = data.get("visible")
    if bool(data.get("has_visibility", visible is not None)) != (visible is not None):
        raise ValueError(f"{path}: has_visibility is {bool(data['has_visibility'])} but visible "
                         f"is {'absent' if visible is None else 'there'}")
    names = sorted({k.split("_", 1)[1] for k in data if k.startswith("tracks_")})
    methods = {m: (data[f"tracks_{m}"], data.get(f"visible_{m}")) for m in names}
    tracks, queries = data["tracks"], data["query_points"]
    _check(path, tracks, visible, data.get("vis_logits"), queries, methods)
    taken = set(LAYOUT_KEYS) | {f"tracks_{m}" for m in names} | {f"visible_{m}" for m in names}
    hw = lambda key: tuple(int(v) for v in data[key]) if key in data else None  # noqa: E731
    return TracksFile(tracks=tracks, visible=visible, vis_logits=data.get("vis_logits"),
                      queries=queries, settings=info["settings"], resolution=hw("resolution"),
                      video_size=hw("video_size"), info=info, methods=methods,
                      extra={k: v for k, v in data.items() if k not in taken})
