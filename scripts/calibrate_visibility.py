"""Choose the visibility threshold of a model's visibility head on a held-out split.

    python scripts/calibrate_visibility.py --data-root data/real_slow5 --split val \
        [--checkpoint RUN] [--max-videos 8] [--max-points 128] [--out vis.json]

The tracker reports a point-frame visible when its visibility logit is above a threshold (0, i.e.
probability 0.5, unless the weights record another: ``config.json`` ``info.inference.
vis_threshold``). Training data has far more visible than occluded point-frames, so the head's
logits can sit above 0 even where points are hidden. This script tracks the points visible at
frame 0 of each video (the weights' validated settings), collects the logits of every annotated
point-frame after the query frame with its ground-truth visibility, and reports:

* ``auc``: the probability that a visible point-frame gets a higher logit than an occluded one
  (0.5: the head says nothing; 1: perfectly separated);
* for the default threshold 0 and for the threshold that maximises the mean of the two recalls
  (balanced accuracy) — ``best`` — the occlusion accuracy (OA), the recall of occluded
  point-frames and the recall of visible ones;
* ``tracker``: the same three for the visibility the tracker reports at the weights' settings
  (with anchoring on, a point-frame whose patch was not found needs a logit above
  ``AnchorConfig.hide_logit``: objtrack_jax.anchor.fuse_visibility).

Pick the threshold here, on a validation split, never on the benchmark; record it with
``scripts/export_weights.py --vis-threshold``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np


def auc(scores_pos: np.ndarray, scores_neg: np.ndarray) -> float:
    """Mann-Whitney AUC (ties count one half)."""
    if not len(scores_pos) or not len(scores_neg):
        return float("nan")
    allv = np.concatenate([scores_pos, scores_neg])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    i = 0
    while i < len(allv):  # average ranks of ties
        j = i
        while j + 1 < len(allv) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    rp = ranks[:len(scores_pos)].sum()
    n1, n0 = len(scores_pos), len(scores_neg)
    return float((rp - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def rates(pred: np.ndarray, visible: np.ndarray) -> dict:
    """OA and the two recalls of a predicted visibility ``pred``."""
    pred, occ = np.asarray(pred, bool), ~np.asarray(visible, bool)
    return {"occlusion_accuracy": round(100.0 * float(np.mean(pred == ~occ)), 2),
            "occluded_recall": round(100.0 * float(np.mean(~pred[occ])), 2) if occ.any() else None,
            "visible_recall": round(100.0 * float(np.mean(pred[~occ])), 2)
            if (~occ).any() else None}


def at_threshold(logits: np.ndarray, visible: np.ndarray, thr: float) -> dict:
    return {"threshold": round(float(thr), 3), **rates(logits > thr, visible)}


def calibrate(logits: np.ndarray, visible: np.ndarray) -> dict:
    """Flat ``logits`` and bool ``visible`` → AUC, threshold 0 and the balanced-best threshold."""
    logits = np.asarray(logits, np.float64)
    visible = np.asarray(visible, bool)
    cands = np.unique(np.quantile(logits, np.linspace(0, 1, 201)))

    def balanced(t):
        r = at_threshold(logits, visible, t)
        parts = [v for v in (r["occluded_recall"], r["visible_recall"]) if v is not None]
        return np.mean(parts) if parts else 0.0

    best = max(cands, key=balanced) if len(cands) else 0.0
    return {"point_frames": int(len(logits)), "occluded_share": round(float(np.mean(~visible)), 4),
            "auc": round(auc(logits[visible], logits[~visible]), 4),
            "default": at_threshold(logits, visible, 0.0), "best": at_threshold(logits, visible, best)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--max-videos", type=int, default=8)
    p.add_argument("--max-points", type=int, default=128)
    p.add_argument("--threshold", type=float, default=None,
                   help="also report the metrics at this logit threshold (e.g. one chosen on val, "
                        "applied to a test split)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    from objtrack_jax.data_pipelines import pointodyssey
    from objtrack_jax.model_io import load_model
    from objtrack_jax.tracking import track_queries

    model, params, info = load_model(args.checkpoint)
    if not getattr(model, "visibility_head", False):
        sys.exit("calibrate_visibility: error: these weights have no visibility head")
    logits_all, vis_all, pred_all = [], [], []
    for seq in pointodyssey.list_sequences(args.data_root, args.split)[:args.max_videos]:
        anno = pointodyssey.load_annotations(seq)
        num = pointodyssey.sequence_length(seq, anno)
        video = pointodyssey.load_frames(seq, range(num))
        ok = np.flatnonzero(anno["visibs"][0] & anno["valids"][0])
        if len(ok) > args.max_points:
            ok = ok[np.linspace(0, len(ok) - 1, args.max_points).round().astype(int)]
        q = np.concatenate([np.zeros((len(ok), 1)), anno["trajs"][0, ok][:, ::-1]], 1)
        # the logits come from the first pass; the tracker's visibility may also use anchoring
        _, visible, logits = track_queries(model, params, info, video, q.astype(np.float32),
                                           progress=False)
        counted = anno["valids"][1:, ok].T.astype(bool)  # [n, T-1], after the query frame
        logits_all.append(np.asarray(logits)[:, 1:][counted])
        pred_all.append(np.asarray(visible)[:, 1:][counted])
        vis_all.append(anno["visibs"][1:, ok].T.astype(bool)[counted])
        print(f"{os.path.basename(seq)}: {len(ok)} points", file=sys.stderr, flush=True)
    report = calibrate(np.concatenate(logits_all), np.concatenate(vis_all))
    report["tracker"] = rates(np.concatenate(pred_all), np.concatenate(vis_all))
    if args.threshold is not None:
        report["given"] = at_threshold(np.concatenate(logits_all).astype(np.float64),
                                       np.concatenate(vis_all), args.threshold)
    report.update(checkpoint=args.checkpoint or "shipped", data_root=args.data_root,
                  split=args.split)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return report


if __name__ == "__main__":
    main()
