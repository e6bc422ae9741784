"""Prints the README ablation table (markdown) from the JSON files of ``scripts/run_ablation.sh``.

    python scripts/ablation_table.py runs/ablation
"""

import json
import os
import sys

ROWS = [("zero_motion", "zero-motion baseline", "", ""),
        ("pips2_baseline", "PIPs++ baseline", "", ""),
        ("ablation_objectness_only", "+ objectness loss", "✓", ""),
        ("ablation_attention_only", "+ contextual attention", "", "✓"),
        ("objprior", "both (the paper; shipped weights)", "✓", "✓")]


def main(runs: str) -> None:
    print("| model | objectness | attention | d_avg ↑ | survival ↑ | MTE ↓ | train s |")
    print("|---|:-:|:-:|--:|--:|--:|--:|")
    for key, name, obj, att in ROWS:
        path = os.path.join(runs, key + ".json")
        if not os.path.exists(path):
            print(f"| {name} | {obj} | {att} | (missing {path}) | | | |")
            continue
        with open(path) as f:
            mean = json.load(f)["mean"]
        secs = ""
        log = os.path.join(runs, key, "metrics.jsonl")
        if os.path.exists(log):
            with open(log) as f:
                rows = [json.loads(line) for line in f if line.strip()]
            if len(rows) > 1:
                secs = f"{rows[-1]['time'] - rows[0]['time']:.0f}"
        print(f"| {name} | {obj} | {att} | {mean['d_avg']:.1f} | {mean['survival']:.1f} | "
              f"{mean['median_l2']:.1f} | {secs} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/ablation")
