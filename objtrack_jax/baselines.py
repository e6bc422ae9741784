"""Classical point-tracking baselines, on exactly a learned tracker's queries and resolution.

A learned tracker should be compared with these first:

* ``zero``: every query stays where it is (no motion);
* ``lk``: OpenCV's pyramidal Lucas-Kanade (``calcOpticalFlowPyrLK``; 21x21 window, 3 pyramid
  levels), chained frame to frame from each query's frame, forwards and backwards;
* ``dis``: OpenCV's DIS dense optical flow (``DISOpticalFlow``, 'medium' preset) between consecutive
  frames, sampled bilinearly at each point's current position and chained the same way.

Every baseline has the signature of :func:`track`: a video ``[T, H, W, 3]`` (uint8, or float in
[0, 255]) and queries ``[N, 3]`` as ``(t, y, x)`` pixels -> ``(tracks [N, T, 2] as (x, y),
visible [N, T] bool or None)``. LK reports a point lost when its status flag drops or its
forward-backward error exceeds ``fb_threshold`` px; from then on the point keeps its last position
and is predicted occluded (LK does not recover lost points). DIS and zero motion predict no
occlusion (``visible`` is None).
"""

from __future__ import annotations

from typing import Callable, Optional

import cv2
import numpy as np

BASELINES = ("zero", "lk", "dis")
LK_WINDOW = 21
LK_LEVELS = 3


def _grey(video: np.ndarray) -> np.ndarray:
    v = np.asarray(video)
    if v.ndim != 4 or v.shape[-1] != 3:
        raise ValueError(f"video must be [T, H, W, 3], got shape {v.shape}")
    if v.dtype != np.uint8:
        v = np.clip(np.round(v), 0, 255).astype(np.uint8)
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in v])


def _check_queries(queries: np.ndarray, num_frames: int) -> np.ndarray:
    q = np.asarray(queries, np.float64)
    if q.ndim != 2 or q.shape[1] != 3:
        raise ValueError(f"queries must be [N, 3] as (t, y, x), got shape {q.shape}")
    t = np.round(q[:, 0]).astype(int)
    if q.shape[0] and (t.min() < 0 or t.max() >= num_frames):
        raise ValueError(f"query frames must be in [0, {num_frames - 1}], got "
                         f"[{t.min()}, {t.max()}]")
    return q


def zero_motion(video: np.ndarray, queries: np.ndarray):
    """Every query stays at its (x, y) in all frames; no occlusion prediction."""
    q = _check_queries(queries, video.shape[0])
    return np.repeat(q[:, None, [2, 1]].astype(np.float32), video.shape[0], axis=1), None


def _chain(num_frames: int, queries: np.ndarray, step: Callable) -> tuple[np.ndarray, np.ndarray]:
    """Runs ``step(t_from, t_to, points [n, 2] float32, alive [n] bool) -> (points, alive)`` from
    each query's frame forwards to T-1 and backwards to 0; returns tracks [N, T, 2], alive [N, T]."""
    n = queries.shape[0]
    tq = np.round(queries[:, 0]).astype(int)
    tracks = np.zeros((n, num_frames, 2), np.float32)
    alive = np.zeros((n, num_frames), bool)
    for direction in (1, -1):
        pts = np.zeros((n, 2), np.float32)
        ok = np.zeros(n, bool)
        frames = range(num_frames) if direction == 1 else range(num_frames - 1, -1, -1)
        for t in frames:
            start = tq == t
            pts[start] = queries[start][:, [2, 1]]
            ok[start] = True
            started = (tq <= t) if direction == 1 else (tq >= t)
            tracks[started, t] = pts[started]
            alive[started, t] = ok[started]
            t_next = t + direction
            if 0 <= t_next < num_frames and started.any():
                idx = np.flatnonzero(started)
                new_pts, new_ok = step(t, t_next, pts[idx], ok[idx])
                pts[idx], ok[idx] = new_pts, new_ok
    return tracks, alive


def lucas_kanade(video: np.ndarray, queries: np.ndarray, window: int = LK_WINDOW,
                 levels: int = LK_LEVELS, fb_threshold: float = 2.0):
    """Pyramidal Lucas-Kanade chained frame to frame (module docstring)."""
    grey = _grey(video)
    q = _check_queries(queries, grey.shape[0])
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)
    kw = dict(winSize=(window, window), maxLevel=levels - 1, criteria=crit)

    def step(t0, t1, pts, ok):
        if not ok.any():
            return pts, ok
        p = pts[ok].reshape(-1, 1, 2).astype(np.float32)
        p1, st, _ = cv2.calcOpticalFlowPyrLK(grey[t0], grey[t1], p, None, **kw)
        p0, st_b, _ = cv2.calcOpticalFlowPyrLK(grey[t1], grey[t0], p1, None, **kw)
        fb = np.linalg.norm(p0.reshape(-1, 2) - p.reshape(-1, 2), axis=-1)
        good = (st[:, 0] == 1) & (st_b[:, 0] == 1) & (fb < fb_threshold)
        good &= np.isfinite(p1.reshape(-1, 2)).all(-1)
        out, alive = pts.copy(), ok.copy()
        sel = np.flatnonzero(ok)
        out[sel[good]] = p1.reshape(-1, 2)[good]
        alive[sel[~good]] = False
        return out, alive

    tracks, alive = _chain(grey.shape[0], q, step)
    return tracks, alive


def dis_flow(video: np.ndarray, queries: np.ndarray, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM):
    """DIS dense optical flow between consecutive frames, chained (module docstring)."""
    grey = _grey(video)
    q = _check_queries(queries, grey.shape[0])
    dis = cv2.DISOpticalFlow_create(preset)
    cache: dict[tuple[int, int], np.ndarray] = {}

    def flow(t0, t1):
        if (t0, t1) not in cache:
            cache[(t0, t1)] = dis.calc(grey[t0], grey[t1], None)
        return cache[(t0, t1)]

    def step(t0, t1, pts, ok):
        f = flow(t0, t1)
        x = pts[:, 0:1].astype(np.float32)
        y = pts[:, 1:2].astype(np.float32)
        d = cv2.remap(f, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[:, 0]
        return pts + d, ok

    tracks, _ = _chain(grey.shape[0], q, step)
    return tracks, None


_FNS = {"zero": zero_motion, "lk": lucas_kanade, "dis": dis_flow}


def track(name: str, video: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Runs baseline ``name`` (one of :data:`BASELINES`)."""
    if name not in _FNS:
        raise ValueError(f"unknown baseline {name!r}; choose from {BASELINES}")
    return _FNS[name](video, queries)
