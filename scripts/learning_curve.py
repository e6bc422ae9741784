"""Learning curves of one or more training runs as a PNG, with classical baselines as lines.

    python scripts/learning_curve.py RUN_DIR [RUN_DIR ...] --out docs/learning_curve.png \
        [--baseline NAME=D_AVG ...] [--start D_AVG] [--title TEXT]

Reads ``<run>/metrics.jsonl`` (written by ``objtrack train``): the training loss (left panel, every
log row, a running mean over 5 rows drawn on top) and the periodic held-out ``eval/d_avg`` (right
panel). ``--start`` adds the step-0 score (e.g. the warm-start weights evaluated the same way);
``--baseline lk=45.4`` draws a horizontal reference line on the right panel. Steps are offset by
``<run>/config.json``'s ``info.start_step`` when present (continued runs).
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np


def read_rows(run: str) -> list[dict]:
    path = os.path.join(run, "metrics.jsonl")
    if not os.path.exists(path):
        raise SystemExit(f"learning_curve: error: {path} does not exist (not a training run?)")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--baseline", action="append", default=[], metavar="NAME=D_AVG")
    p.add_argument("--start", type=float, default=None, help="eval d_avg at step 0")
    p.add_argument("--title", default="")
    args = p.parse_args(argv)

    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    fig, (ax_l, ax_e) = plt.subplots(1, 2, figsize=(11, 4))
    for run in args.runs:
        rows = read_rows(run)
        name = os.path.basename(os.path.normpath(run))
        tr = [(r["step"], r["loss"]) for r in rows if "loss" in r]
        if tr:
            s, l = np.array(tr).T
            ax_l.plot(s, l, alpha=0.3)
            k = min(5, len(l))
            ax_l.plot(s[k - 1:], np.convolve(l, np.ones(k) / k, "valid"), label=name)
        ev = [(r["step"], r["eval/d_avg"]) for r in rows if "eval/d_avg" in r]
        if args.start is not None:
            ev = [(0, args.start)] + ev
        if ev:
            s, d = np.array(ev).T
            ax_e.plot(s, d, "o-", label=name)
    for item in args.baseline:
        name, _, value = item.partition("=")
        ax_e.axhline(float(value), ls="--", lw=1, color="grey")
        ax_e.text(ax_e.get_xlim()[0], float(value), f" {name} {float(value):.1f}", va="bottom",
                  fontsize=8, color="dimgrey")
    ax_l.set(xlabel="step", ylabel="training loss", yscale="log", title="training loss")
    ax_e.set(xlabel="step", ylabel="d_avg (higher is better)", title="held-out d_avg")
    ax_l.legend(fontsize=8)
    ax_e.legend(fontsize=8)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
