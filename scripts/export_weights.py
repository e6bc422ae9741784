"""Exports a training workdir as shipped weights (``params.msgpack`` + ``config.json``).

    python scripts/export_weights.py --workdir RUN --out objtrack_jax/weights/objprior_synth \
        --previous objtrack_jax/weights/objprior_synth/config.json --data "..." \
        [--result NAME=EVAL.json ...] --window 8 --iters 4 --short-side 192 [--refine-scale 2]

``config.json``'s ``info`` records how the weights were made: the training config, the total steps
and CPU-hours over all warm-started stages (``--previous``: the config.json of the weights this
run started from), the data, the validated tracking settings (``inference``: window, iterations,
short side, the second pass's scale and iterations, and what training used, which ``objtrack eval/track/demo`` default to and warn
against) and held-out results (``--result name=path`` of ``objtrack eval --out`` JSONs).

Every export also records the still-clip drift check (``scripts/still_drift.py``: how far the
points slide on a still scene at the validated settings) under ``info.results.still_drift``:
``--still-drift JSON`` takes an existing report (``still_drift.py --out``) of the same workdir,
otherwise it is run here (``--still-photos`` x 100 frames at 384x512, a few minutes on a CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _train_seconds(workdir: str) -> float:
    """Seconds of training: the sum over log rows of (steps in the row / steps_per_sec)."""
    total, prev = 0.0, 0
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if "steps_per_sec" in row and row.get("steps_per_sec"):
                total += (row["step"] - prev) / row["steps_per_sec"]
                prev = row["step"]
            elif "step" in row and "loss" in row:
                prev = row["step"]
    return total


def main(argv=None) -> str:
    from objtrack_jax import model_io  # pylint: disable=import-outside-toplevel

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--previous", default=None, help="config.json of the warm-start weights")
    p.add_argument("--data", default="", help="what the run was trained on (free text)")
    p.add_argument("--hardware", default="2-core CPU")
    p.add_argument("--result", action="append", default=[], metavar="NAME=EVAL.json")
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--iters", type=int, default=4)
    p.add_argument("--short-side", type=int, required=True,
                   help="validated short side (pick it on a held-out val split, not the test set)")
    p.add_argument("--refine-scale", type=float, default=0.0,
                   help="validated scale of the second, finer pass (0: none; pick it on val)")
    p.add_argument("--refine-iters", type=int, default=None,
                   help="its iterations per window (default: --iters)")
    p.add_argument("--still-drift", default=None, metavar="JSON",
                   help="scripts/still_drift.py --out report of this workdir (else it is run)")
    p.add_argument("--still-photos", type=int, default=2)
    p.add_argument("--vis-threshold", type=float, default=None,
                   help="visibility logit threshold chosen on val "
                        "(scripts/calibrate_visibility.py); default: none recorded (0)")
    p.add_argument("--anchor", action=argparse.BooleanOptionalAction, default=True,
                   help="record anchoring to the query frame (objtrack_jax.anchor) as validated "
                        "(default: on; pick it on val)")
    args = p.parse_args(argv)

    model, params, _ = model_io.load_model(args.workdir)
    with open(os.path.join(args.workdir, "config.json")) as f:
        cfg = json.load(f)
    _, step = model_io.load_params(args.workdir)
    seconds = _train_seconds(args.workdir)
    stages = []
    if args.previous:
        with open(args.previous) as f:
            prev = json.load(f).get("info", {})
        stages = list(prev.get("stages", [])) or [{
            "steps": prev.get("steps"), "data": prev.get("data"),
            "cpu_hours": round(prev.get("train_seconds_between_first_and_last_log", 0) / 3600, 3),
            "trained_by": prev.get("trained_by")}]
    stages.append({"steps": int(step), "data": args.data, "cpu_hours": round(seconds / 3600, 3),
                   "trained_by": f"objtrack train --config configs/objprior.py:real "
                                 f"(workdir {os.path.basename(os.path.normpath(args.workdir))})",
                   "warm_start": cfg.get("init_from") or None})
    results = {}
    for item in args.result:
        name, _, path = item.partition("=")
        with open(path) as f:
            res = json.load(f)
        results[name] = {"mean": {k: v for k, v in res["mean"].items()
                                  if k in ("d_avg", "d_1", "d_2", "d_4", "d_8", "d_16", "survival",
                                           "median_l2", "num_videos")},
                         "window": res["config"].get("window"), "iters": res["config"].get("iters"),
                         "resolution": res["config"].get("resolution"),
                         "refine_scale": res["config"].get("refine_scale"),
                         "refine_iters": res["config"].get("refine_iters"),
                         "baseline": res["config"].get("baseline"),
                         "data_root": res["config"].get("data_root"),
                         "split": res["config"].get("split")}
    if args.still_drift:
        with open(args.still_drift) as f:
            drift = json.load(f)
        if os.path.abspath(str(drift.get("checkpoint"))) != os.path.abspath(args.workdir):
            raise SystemExit(f"export_weights: error: {args.still_drift} measured "
                             f"{drift.get('checkpoint')!r}, not --workdir {args.workdir!r}")
    else:
        import importlib.util  # pylint: disable=import-outside-toplevel

        spec = importlib.util.spec_from_file_location(
            "still_drift", os.path.join(os.path.dirname(os.path.abspath(__file__)), "still_drift.py"))
        still = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(still)
        settings = ["--window", str(args.window), "--iters", str(args.iters),
                    "--refine-scale", str(args.refine_scale or 0),
                    "--anchor" if args.anchor else "--no-anchor"]
        drift = still.main(["--checkpoint", args.workdir, "--photos", str(args.still_photos)]
                           + settings)
    results["still_drift"] = {"by_frame": drift["by_frame"], "jitter_px": drift["jitter_px"],
                              "points": drift["points"], "size": drift.get("size"),
                              "settings": drift.get("settings")}
    info = {
        "trained_by": "objtrack_jax, warm-started stages listed in 'stages'",
        "hardware": args.hardware,
        "steps": int(sum(s.get("steps") or 0 for s in stages)),
        "cpu_hours": round(sum(s.get("cpu_hours") or 0 for s in stages), 3),
        "stages": stages,
        "data": args.data,
        "config": {k: cfg[k] for k in ("model", "loss", "optim", "batch_size", "max_steps", "iters")
                   if k in cfg},
        "inference": {"window": args.window, "iters": args.iters, "short_side": args.short_side,
                      **({"refine_scale": args.refine_scale,
                          "refine_iters": args.refine_iters or args.iters}
                         if args.refine_scale else {}),
                      "anchor": bool(args.anchor),
                      **({"vis_threshold": args.vis_threshold}
                         if args.vis_threshold is not None else {}),
                      "trained": model_io.trained_settings(cfg)},
        "results": results,
    }
    model_io.save_inference_checkpoint(args.out, model, params, extra=info)
    print(f"wrote {args.out}: step {step}, {info['steps']} steps in all, "
          f"{info['cpu_hours']} CPU-hours")
    return args.out


if __name__ == "__main__":
    main()
