"""Prints the ablation table of docs/benchmarks.md (markdown) from the JSON files of
``scripts/run_ablation.sh``.

    python scripts/ablation_table.py runs/ablation

Each experiment's row is the mean over the seeds found (``<experiment>_s<seed>.json``), with each
seed's d_avg listed so the spread between seeds can be read next to the spread between models.
"""

import glob
import json
import os
import re
import sys

ROWS = [("pips2_baseline", "PIPs++ baseline", "", ""),
        ("ablation_objectness_only", "+ objectness loss", "✓", ""),
        ("ablation_attention_only", "+ contextual attention", "", "✓"),
        ("objprior", "both (the paper)", "✓", "✓")]


def _train_seconds(workdir: str) -> float | None:
    log = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(log):
        return None
    with open(log) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows = [r for r in rows if "time" in r]
    return rows[-1]["time"] - rows[0]["time"] if len(rows) > 1 else None


def _load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)["mean"]


def main(runs: str) -> None:
    print("| model | objectness | attention | d_avg ↑ (mean) | d_avg per seed | survival ↑ | "
          "MTE ↓ | train s / run |")
    print("|---|:-:|:-:|--:|--:|--:|--:|--:|")
    zero = os.path.join(runs, "zero_motion.json")
    if os.path.exists(zero):
        m = _load(zero)
        print(f"| zero-motion baseline | | | {m['d_avg']:.1f} | | {m['survival']:.1f} | "
              f"{m['median_l2']:.1f} | |")
    for key, name, obj, att in ROWS:
        paths = sorted(glob.glob(os.path.join(runs, key + "_s*.json")),
                       key=lambda p: int(re.search(r"_s(\d+)\.json$", p).group(1)))
        if not paths:
            print(f"| {name} | {obj} | {att} | (no {key}_s*.json in {runs}) | | | | |")
            continue
        means = [_load(p) for p in paths]
        avg = {k: sum(m[k] for m in means) / len(means) for k in ("d_avg", "survival", "median_l2")}
        per_seed = " / ".join(f"{m['d_avg']:.1f}" for m in means)
        secs = [s for s in (_train_seconds(p[:-len(".json")]) for p in paths) if s is not None]
        secs_txt = f"{sum(secs) / len(secs):.0f}" if secs else ""
        print(f"| {name} | {obj} | {att} | {avg['d_avg']:.1f} | {per_seed} | "
              f"{avg['survival']:.1f} | {avg['median_l2']:.1f} | {secs_txt} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/ablation")
