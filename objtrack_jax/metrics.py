"""Point-tracking metrics: the TAP-Vid protocol and the PIPs++ protocol (definitions:
docs/conventions.md, *Evaluation protocols and metrics*).

Everything is vectorised numpy (no Python loops over points or frames). Empty denominators never
raise ``RuntimeWarning``; what each metric returns for them is stated in its docstring.

NaN convention: a ratio whose denominator is empty (0/0: e.g. a video with no visible point on a
scored frame for ``pts_within_δ``) is ``nan``, exactly as tapnet's ``compute_tapvid_metrics``
gives it (there with a warning, here without). :func:`average_metrics` (the benchmark mean over
videos) skips ``nan`` entries; a metric with no finite entry averages to ``nan``.

Conventions
-----------
* TAP-Vid: ``query_points`` [b, n, 3] as (t, y, x); tracks [b, n, T, 2] as (x, y) pixels in a
  256×256 frame; occlusion flags bool [b, n, T] (True = occluded).
* PIPs++: trajectories [B, S, N, 2] as (x, y) pixels of an ``image_size`` = (H, W) frame; ``valids``
  [B, S, N] in {0, 1}. Errors are rescaled to a 256×256 frame before thresholding.

Per-video outputs have a leading batch axis (one entry per video); :func:`average_metrics` averages
them over videos (the benchmark number) and :func:`format_table` prints them.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

TAPVID_THRESHOLDS = (1, 2, 4, 8, 16)
PIPS_THRESHOLDS = (1, 2, 4, 8, 16)

TAPVID_KEYS = (
    "occlusion_accuracy",
    *(f"pts_within_{d}" for d in TAPVID_THRESHOLDS),
    *(f"jaccard_{d}" for d in TAPVID_THRESHOLDS),
    "average_jaccard",
    "average_pts_within_thresh",
)
PIPS_KEYS = (*(f"d_{d}" for d in PIPS_THRESHOLDS), "d_avg", "survival", "median_l2")


def _safe_divide(num: np.ndarray, den: np.ndarray, empty_value: float) -> np.ndarray:
    """num / den elementwise, ``empty_value`` where den == 0, without any floating-point warning."""
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    empty = den == 0
    return np.where(empty, empty_value, num / np.where(empty, 1.0, den))


# --------------------------------------------------------------------------------------------------
# TAP-Vid
# --------------------------------------------------------------------------------------------------


def tapvid_evaluation_mask(query_points: np.ndarray, num_frames: int, query_mode: str) -> np.ndarray:
    """Which frames are scored, bool [b, n, T].

    'first': frames strictly after the query frame; 'strided': every frame except the query frame.
    The query frame is ``round(query_points[..., 0])``.
    """
    query_t = np.round(np.asarray(query_points)[..., 0]).astype(np.int64)[..., None]  # [b, n, 1]
    t = np.arange(num_frames)[None, None, :]
    if query_mode == "first":
        return t > query_t
    if query_mode == "strided":
        return t != query_t
    raise ValueError(f"query_mode must be 'first' or 'strided', got {query_mode!r}")


def tapvid_metrics(
    query_points: np.ndarray,
    gt_occluded: np.ndarray,
    gt_tracks: np.ndarray,
    pred_occluded: np.ndarray,
    pred_tracks: np.ndarray,
    query_mode: str,
    get_trackwise_metrics: bool = False,
    empty_value: float = np.nan,
) -> dict[str, np.ndarray]:
    """TAP-Vid metrics: the values of tapnet's ``compute_tapvid_metrics`` (docs/conventions.md).

    The squared distances are computed in the inputs' precision (float32 tracks: float32
    arithmetic, as tapnet), so a prediction exactly on a threshold counts as tapnet counts it.

    Args:
      query_points: [b, n, 3] as (t, y, x); only t is used (to pick the scored frames).
      gt_occluded: bool [b, n, T], True where the ground-truth point is occluded.
      gt_tracks: [b, n, T, 2] ground-truth (x, y) pixels in a 256×256 frame.
      pred_occluded: bool [b, n, T], True where the prediction says occluded.
      pred_tracks: [b, n, T, 2] predicted (x, y) pixels in a 256×256 frame.
      query_mode: 'first' (score frames strictly after the query frame) or 'strided' (score every
        frame except the query frame).
      get_trackwise_metrics: if True every value is [b, n] (one per track) instead of [b].
      empty_value: value returned where a ratio has an empty denominator (0/0, e.g. a track never
        visible on a scored frame: no ground-truth positives and no predicted positives). Default
        ``nan``, tapnet's value (module docstring: means skip it). No warning either way.

    Raises:
      ValueError: shapes that do not match, an unknown ``query_mode``, non-numeric tracks, a
        non-finite query or a query frame outside [0, T-1] (tapnet would index out of range, or
        wrap a negative frame around to the end). Non-finite track coordinates are never within δ.

    Returns:
      dict with the 13 keys of ``TAPVID_KEYS``, each float64 [b] (or [b, n] track-wise):
      ``occlusion_accuracy`` = Σ[(pred_occ == gt_occ) ∧ E] / ΣE;
      ``pts_within_δ`` = Σ[within_δ ∧ vis ∧ E] / Σ[vis ∧ E] (ignores predicted occlusion);
      ``jaccard_δ`` = TP / (Σ[vis ∧ E] + FP) with TP = within ∧ vis ∧ pred_vis ∧ E and
      FP = pred_vis ∧ (¬vis ∨ ¬within) ∧ E; within_δ = ‖pred − gt‖² < δ² (strict), δ ∈ {1,2,4,8,16};
      ``average_jaccard`` and ``average_pts_within_thresh`` are the means over δ.
    """
    gt_occluded = np.asarray(gt_occluded, bool)
    pred_occluded = np.asarray(pred_occluded, bool)
    gt_tracks = np.asarray(gt_tracks)  # input precision kept (tapnet's arithmetic)
    pred_tracks = np.asarray(pred_tracks)
    query_points = np.asarray(query_points)
    if gt_tracks.ndim != 4 or gt_tracks.shape[-1] != 2:
        raise ValueError(f"gt_tracks must be [b, n, T, 2], got {gt_tracks.shape}")
    if pred_tracks.shape != gt_tracks.shape:
        raise ValueError(f"pred_tracks {pred_tracks.shape} != gt_tracks {gt_tracks.shape}")
    if gt_occluded.shape != gt_tracks.shape[:3] or pred_occluded.shape != gt_tracks.shape[:3]:
        raise ValueError(f"occlusion flags must be {gt_tracks.shape[:3]}, got gt "
                         f"{gt_occluded.shape} and pred {pred_occluded.shape}")
    if query_points.shape != (*gt_tracks.shape[:2], 3):
        raise ValueError(f"query_points must be {(*gt_tracks.shape[:2], 3)}, got {query_points.shape}")
    for name, arr in (("gt_tracks", gt_tracks), ("pred_tracks", pred_tracks),
                      ("query_points", query_points)):
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if not np.all(np.isfinite(query_points)):
        bad = np.argwhere(~np.isfinite(query_points))[0]
        raise ValueError(f"query_points has a non-finite value at index {tuple(int(i) for i in bad)}")
    num_frames = gt_tracks.shape[2]
    query_t = np.round(query_points[..., 0]) if query_points.size else np.zeros(0)
    if query_t.size and (query_t.min() < 0 or query_t.max() > num_frames - 1):
        raise ValueError(f"query frames (query_points[..., 0]) must lie in [0, {num_frames - 1}], "
                         f"got [{query_t.min():g}, {query_t.max():g}]")

    evaluate = tapvid_evaluation_mask(query_points, gt_tracks.shape[2], query_mode)  # [b, n, T]
    axes = (-1,) if get_trackwise_metrics else (-2, -1)  # sum over T (and n); works for [k, b, n, T]

    def total(mask):
        return np.sum(mask, axis=axes)

    out = {}
    out["occlusion_accuracy"] = _safe_divide(
        total((pred_occluded == gt_occluded) & evaluate), total(evaluate), empty_value)

    visible = ~gt_occluded
    pred_visible = ~pred_occluded
    with np.errstate(invalid="ignore", over="ignore"):  # a nan/inf track is simply not within δ
        sq_dist = np.sum(np.square(pred_tracks - gt_tracks), axis=-1)  # [b, n, T], input precision
    gt_positives = total(visible & evaluate)
    # All thresholds at once: within [k, b, n, T]; δ² is an exact integer as in tapnet.
    thresholds = np.asarray(TAPVID_THRESHOLDS, np.int64).reshape(-1, 1, 1, 1)
    within = sq_dist[None] < np.square(thresholds)
    pts_within = _safe_divide(total(within & visible & evaluate), gt_positives, empty_value)
    true_pos = total(within & visible & pred_visible & evaluate)
    false_pos = total(pred_visible & (~visible | ~within) & evaluate)
    jaccard = _safe_divide(true_pos, gt_positives + false_pos, empty_value)
    for k, delta in enumerate(TAPVID_THRESHOLDS):
        out[f"pts_within_{delta}"] = pts_within[k]
    for k, delta in enumerate(TAPVID_THRESHOLDS):
        out[f"jaccard_{delta}"] = jaccard[k]
    out["average_jaccard"] = np.mean(jaccard, axis=0)
    out["average_pts_within_thresh"] = np.mean(pts_within, axis=0)
    return {k: out[k] for k in TAPVID_KEYS}


# --------------------------------------------------------------------------------------------------
# PIPs++
# --------------------------------------------------------------------------------------------------


def masked_median(values: np.ndarray, mask: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Averaging median (numpy's: mean of the two middle values for an even count) over ``mask``.

    Returns ``(median, count)``; where ``count == 0`` the median is nan (no warning is raised).
    """
    values = np.moveaxis(np.asarray(values, np.float64), axis, -1)
    mask = np.moveaxis(np.asarray(mask, bool), axis, -1)
    count = mask.sum(-1)
    if values.shape[-1] == 0:  # no entries at all: every median is empty
        return np.full(count.shape, np.nan), count
    ordered = np.sort(np.where(mask, values, np.inf), axis=-1)  # masked entries sort to the end
    lo = np.maximum((count - 1) // 2, 0)
    hi = count // 2
    lo_v = np.take_along_axis(ordered, lo[..., None], -1)[..., 0]
    hi_v = np.take_along_axis(ordered, hi[..., None], -1)[..., 0]
    nonempty = count > 0  # empty rows hold inf at lo/hi: zero them before adding, then mark nan
    median = np.where(nonempty, 0.5 * (np.where(nonempty, lo_v, 0.0) + np.where(nonempty, hi_v, 0.0)),
                      np.nan)
    return median, count


def pips_metrics(
    trajs_e: np.ndarray,
    trajs_g: np.ndarray,
    valids: np.ndarray,
    image_size: Sequence[int],
    survival_threshold: float = 16.0,
) -> dict[str, np.ndarray]:
    """PIPs++ evaluation metrics, one value per video (docs/conventions.md).

    Args:
      trajs_e: [B, S, N, 2] estimated (x, y) pixels in an ``image_size`` frame; B = videos.
      trajs_g: [B, S, N, 2] ground-truth (x, y) pixels in the same frame.
      valids: [B, S, N], 1 where the ground truth counts (PointOdyssey: annotated; TAP-Vid: visible;
        CroHD: annotated and ≥ 32 px from the border).
      image_size: (H, W) of the frame the trajectories live in. Errors are rescaled to a 256×256
        frame: ``dist = ‖(e − g) / (W/256, H/256)‖``.
      survival_threshold: distance (256-scale px) beyond which a valid point is "lost" (PIPs++ 16,
        the paper's PointOdyssey test 50).

    Returns:
      dict with ``PIPS_KEYS``, each float64 [B]:
      ``d_δ`` = 100·Σ_{t≥1} valid·[dist < δ] / (1e-6 + Σ_{t≥1} valid) for δ ∈ {1,2,4,8,16} (frame 0,
      the query frame, is excluded; no valid frame gives 0); ``d_avg`` = mean of the five;
      ``survival`` = 100·mean_{t,n} cumprod_t(1 − [dist > thr]·valid) over all frames (``nan``
      for a video without frames or points);
      ``median_l2`` = mean over trajectories of the (averaging) median of dist over that trajectory's
      valid frames, frame 0 included. A trajectory with no valid frame has no median and is left out
      of the mean; a video where no trajectory has a valid frame gets ``nan`` (which
      :func:`average_metrics` then skips).

      Empty input: a video with no points (N = 0) or no frames has nothing to score and gets
      ``nan`` for **every** metric, as the TAP-Vid metrics give 0/0 (module docstring), so
      :func:`average_metrics` skips it. (A video with points but no valid frame keeps the PIPs++
      scripts' values above: d_δ = 0, survival = 100, median_l2 = nan.)
    """
    trajs_e = np.asarray(trajs_e, np.float64)
    trajs_g = np.asarray(trajs_g, np.float64)
    valids = np.asarray(valids, np.float64)
    if trajs_e.ndim != 4 or trajs_e.shape[-1] != 2:
        raise ValueError(f"trajs_e must be [B, S, N, 2], got {trajs_e.shape}")
    if trajs_g.shape != trajs_e.shape:
        raise ValueError(f"trajs_g {trajs_g.shape} != trajs_e {trajs_e.shape}")
    if valids.shape != trajs_e.shape[:3]:
        raise ValueError(f"valids must be {trajs_e.shape[:3]}, got {valids.shape}")
    height, width = (float(s) for s in image_size)
    scale = np.array([width / 256.0, height / 256.0])
    dist = np.linalg.norm((trajs_e - trajs_g) / scale, axis=-1)  # [B, S, N]

    out = {}
    dist_t, valid_t = dist[:, 1:], valids[:, 1:]
    denom = 1e-6 + valid_t.sum(axis=(1, 2))
    for delta in PIPS_THRESHOLDS:
        out[f"d_{delta}"] = 100.0 * np.sum(valid_t * (dist_t < delta), axis=(1, 2)) / denom
    out["d_avg"] = np.mean([out[f"d_{d}"] for d in PIPS_THRESHOLDS], axis=0)

    ok = 1.0 - (dist > survival_threshold) * valids
    num_entries = np.full(ok.shape[0], ok.shape[1] * ok.shape[2], np.float64)
    out["survival"] = 100.0 * _safe_divide(np.sum(np.cumprod(ok, axis=1), axis=(1, 2)), num_entries,
                                           np.nan)

    median, count = masked_median(dist, valids > 0, axis=1)  # [B, N]
    has_valid = count > 0
    n_valid = has_valid.sum(axis=1)
    out["median_l2"] = _safe_divide(np.sum(np.where(has_valid, median, 0.0), axis=1), n_valid, np.nan)
    if trajs_e.shape[1] == 0 or trajs_e.shape[2] == 0:  # nothing to score: nan for every metric
        return {k: np.full(trajs_e.shape[0], np.nan) for k in PIPS_KEYS}
    return {k: out[k] for k in PIPS_KEYS}


# --------------------------------------------------------------------------------------------------
# Aggregation and printing
# --------------------------------------------------------------------------------------------------


def split_videos(metrics: Mapping[str, np.ndarray], names: Sequence[str] | None = None,
                 name_key: str = "video") -> list[dict]:
    """Turns a dict of per-video arrays [B] into B dicts of Python floats (one row per video)."""
    arrays = {k: np.atleast_1d(np.asarray(v, np.float64)) for k, v in metrics.items()}
    num = len(next(iter(arrays.values()))) if arrays else 0
    if names is not None and len(names) != num:
        raise ValueError(f"{len(names)} names for {num} videos")
    rows = []
    for i in range(num):
        row = {name_key: names[i]} if names is not None else {}
        row.update({k: float(v[i]) for k, v in arrays.items()})
        rows.append(row)
    return rows


def average_metrics(per_video: Iterable[Mapping[str, object]]) -> dict[str, float]:
    """Mean over videos of per-video metric dicts (the benchmark number).

    Each dict maps metric name → a scalar or an array with one entry per video (e.g. the [B] output
    of :func:`pips_metrics` / :func:`tapvid_metrics`); entries are concatenated over dicts, then
    averaged. ``nan`` entries (e.g. a video without any valid trajectory for ``median_l2``) are
    skipped; a metric with no finite entry averages to ``nan``. Non-numeric values (names) are
    ignored.
    """
    collected: dict[str, list[np.ndarray]] = {}
    for metrics in per_video:
        for key, value in metrics.items():
            arr = np.asarray(value)
            if arr.dtype.kind not in "biuf":
                continue
            collected.setdefault(key, []).append(arr.astype(np.float64).reshape(-1))
    averaged = {}
    for key, parts in collected.items():
        values = np.concatenate(parts)
        finite = np.isfinite(values)
        averaged[key] = float(_safe_divide(np.sum(np.where(finite, values, 0.0)), finite.sum(), np.nan))
    return averaged


def format_table(rows: Sequence[Mapping[str, object]], keys: Sequence[str], name_key: str = "video",
                 precision: int = 2, add_mean: bool = True) -> str:
    """A plain-text table: one line per row (``rows[i][name_key]`` first, then ``keys``).

    With ``add_mean`` a final ``mean`` line holds :func:`average_metrics` of the rows. Missing
    values print as ``-``.
    """
    def cell(value):
        if value is None:
            return "-"
        if isinstance(value, (float, int, np.floating, np.integer)):
            return f"{float(value):.{precision}f}"
        return str(value)

    table = [[name_key, *keys]]
    for i, row in enumerate(rows):
        table.append([str(row.get(name_key, i)), *(cell(row.get(k)) for k in keys)])
    if add_mean and rows:
        mean = average_metrics(rows)
        table.append(["mean", *(cell(mean.get(k)) for k in keys)])
    widths = [max(len(line[c]) for line in table) for c in range(len(table[0]))]
    lines = []
    for r, line in enumerate(table):
        cells = [line[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(line[1:], widths[1:])]
        lines.append("  ".join(cells))
        if r == 0 or (add_mean and rows and r == len(table) - 2):
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Drift and jitter (still and slow scenes)
# --------------------------------------------------------------------------------------------------

DRIFT_FRAMES = (50, 100, 200)


def occlusion_rates(pred_visible, visibs, valids) -> dict:
    """``occlusion_accuracy`` (% of valid point-frames whose predicted visibility is right) and
    ``occlusion_recall`` (% of valid occluded point-frames predicted occluded; None without one)
    of bool ``pred_visible`` against ``visibs``, arrays of one shape, over ``valids`` > 0."""
    pred = np.asarray(pred_visible, bool)
    vis = np.asarray(visibs, bool)
    counted = np.asarray(valids) > 0
    occ = counted & ~vis
    return {"occlusion_accuracy": 100.0 * float(np.mean((pred == vis)[counted])),
            "occlusion_recall": 100.0 * float(np.mean(~pred[occ])) if occ.any() else None}


def drift_metrics(trajs_e: np.ndarray, trajs_g: np.ndarray, valids: np.ndarray,
                  frames: Sequence[int] = DRIFT_FRAMES) -> dict[str, float]:
    """How far tracks slide from the truth over time, and how much they shake, in pixels of the
    frame the trajectories live in (no 256-rescaling).

    Args:
      trajs_e, trajs_g: ``[S, N, 2]`` (x, y) estimated and true tracks of one video, queried at
        frame 0.
      valids: ``[S, N]``, 1 where the truth counts.
      frames: frame indices ``t`` for the drift entries (skipped where ``t >= S``).

    Returns:
      ``drift_med_<t>`` / ``drift_p90_<t>``: median / 90th percentile over the points valid at
      frame ``t`` of ``‖e_t − g_t‖``; ``jitter``: the median over valid consecutive frame pairs of
      the frame-to-frame residual ``‖(e_{t+1} − e_t) − (g_{t+1} − g_t)‖`` (0 for a track that
      moves exactly with the truth, whatever its offset). An entry with no valid point is NaN.
    """
    e = np.asarray(trajs_e, np.float64)
    g = np.asarray(trajs_g, np.float64)
    v = np.asarray(valids) > 0
    if e.ndim != 3 or e.shape[-1] != 2 or g.shape != e.shape or v.shape != e.shape[:2]:
        raise ValueError(f"drift_metrics needs trajs_e/trajs_g [S, N, 2] and valids [S, N], got "
                         f"{e.shape}, {g.shape}, {v.shape}")
    dist = np.linalg.norm(e - g, axis=-1)
    out = {}
    for t in frames:
        if t >= e.shape[0]:
            continue
        d = dist[t][v[t]]
        out[f"drift_med_{t}"] = float(np.median(d)) if d.size else float("nan")
        out[f"drift_p90_{t}"] = float(np.percentile(d, 90)) if d.size else float("nan")
    resid = np.linalg.norm(np.diff(e, axis=0) - np.diff(g, axis=0), axis=-1)
    both = v[1:] & v[:-1]
    out["jitter"] = float(np.median(resid[both])) if both.any() else float("nan")
    return out
