"""Exports a training workdir as shipped weights: ``params.msgpack``, ``config.json`` and
``results.json``.

    python scripts/export_weights.py --workdir RUN --out objtrack_jax/weights/objprior_synth \
        --previous objtrack_jax/weights/objprior_synth --data "objtrack synth --preset real" \
        [--result NAME=EVAL.json ...] --window 8 --iters 4 --short-side 192 [--refine-scale 2]

``config.json`` holds what the code reads: the architecture (``model``) and the validated tracking
settings (``info.inference``: window, iterations, short side, the second pass's scale and
iterations, anchoring, and what training used, which ``objtrack eval/track/demo`` default to and
warn against); no paths, no history. ``results.json`` (layout: ``scripts/results_file.py``) holds
how the weights were made (``training``: the stages' steps, CPU-hours and data, the earlier
stages taken from ``--previous``, the results.json or folder of the weights this run started
from) and the held-out results (``entries``: ``--result name=path`` of ``objtrack eval --out``
JSONs, each with its settings, command, date and machine).

Every export also records the still-clip drift check (``scripts/still_drift.py``: how far the
points slide on a still scene at the validated settings) as the entry ``still_clip_export``:
``--still-drift JSON`` takes an existing report (``still_drift.py --out``) of the same workdir,
otherwise it is run here (``--still-photos`` x 100 frames at 384x512, a few minutes on a CPU).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
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


def _script(name: str):
    """``scripts/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


results_file = _script("results_file")


def _previous_stages(path: str) -> list:
    """The training stages of the weights a run started from: ``path`` is their folder, their
    ``results.json`` or an older ``config.json`` (``info.stages``); machine paths and free-text
    history are not carried over."""
    if os.path.isdir(path):
        path = os.path.join(path, results_file.RESULTS_FILE)
    with open(path) as f:
        doc = json.load(f)
    stages = (doc.get("training") or doc.get("info") or {}).get("stages") or []
    keep = ("steps", "cpu_hours", "data", "crop", "points", "lr")
    return [{"stage": i + 1, **{k: s.get(k) for k in keep if s.get(k) is not None}}
            for i, s in enumerate(stages)]


def _still_entry(drift: dict, args) -> dict:
    """The still-clip drift report (``still_drift.py``) as a results entry."""
    values = {}
    for row in drift["by_frame"]:
        values[f"median_px_{row['frame']}"] = row["median_px"]
        values[f"p90_px_{row['frame']}"] = row["p90_px"]
    values.update(jitter_px=drift["jitter_px"], points=drift["points"])
    if drift.get("seconds") is not None:
        values["wall_s"] = drift["seconds"]
    anchor = "" if args.anchor else " --no-anchor"
    photos = max(1, int(drift["points"]) // 144)  # a 12 x 12 grid per photo
    plural = "s" if photos > 1 else ""
    return {"what": f"still clip ({photos} photo{plural} x 100 frames at 384x512, "
                    f"{drift['points']} points), the validated settings",
            "settings": {"window": args.window, "iters": args.iters,
                         "short_side": args.short_side, "refine_scale": args.refine_scale or 0.0,
                         "anchor": bool(args.anchor)},
            "values": values,
            "command": f"python scripts/still_drift.py --photos {photos}{anchor}",
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "machine": args.machine or results_file.this_machine(),
            "load": args.load or "not recorded"}


def main(argv=None) -> str:
    from objtrack_jax import model_io  # pylint: disable=import-outside-toplevel

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--previous", default=None,
                   help="the warm-start weights' folder or results.json (their training stages)")
    p.add_argument("--data", default="", help="the command that made the run's data")
    p.add_argument("--hardware", default="2-core CPU")
    p.add_argument("--machine", default=None, help="where the --result runs ran (default: here)")
    p.add_argument("--load", default=None, help="the load average while they ran")
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
    stages = _previous_stages(args.previous) if args.previous else []
    data = cfg.get("data") or {}
    stages.append({"stage": len(stages) + 1, "steps": int(step),
                   "cpu_hours": round(seconds / 3600, 3), "data": args.data,
                   "crop": "x".join(str(v) for v in data.get("crop_size") or ()) or None,
                   "points": data.get("num_points"), "lr": (cfg.get("optim") or {}).get("lr")})
    entries = {}
    for item in args.result:
        name, _, path = item.partition("=")
        with open(path) as f:
            res = json.load(f)
        date = datetime.datetime.fromtimestamp(
            os.path.getmtime(path), datetime.timezone.utc).strftime("%Y-%m-%d")
        config = res.get("config") or {}
        what = (f"objtrack eval on {config.get('data_root') or config.get('dataset') or name} "
                f"({config.get('split')} split)"
                + (f", {config['baseline']} baseline" if config.get("baseline") else ""))
        entries[name] = results_file.entry_from_eval(res, what=what, date=date,
                                                     machine=args.machine, load=args.load)
    if args.still_drift:
        with open(args.still_drift) as f:
            drift = json.load(f)
        if os.path.abspath(str(drift.get("checkpoint"))) != os.path.abspath(args.workdir):
            raise SystemExit(f"export_weights: error: {args.still_drift} measured "
                             f"{drift.get('checkpoint')!r}, not --workdir {args.workdir!r}")
    else:
        still = _script("still_drift")
        settings = ["--window", str(args.window), "--iters", str(args.iters),
                    "--refine-scale", str(args.refine_scale or 0),
                    "--anchor" if args.anchor else "--no-anchor"]
        drift = still.main(["--checkpoint", args.workdir, "--photos", str(args.still_photos)]
                           + settings)
    entries["still_clip_export"] = _still_entry(drift, args)
    inference = {"window": args.window, "iters": args.iters, "short_side": args.short_side,
                 **({"refine_scale": args.refine_scale,
                     "refine_iters": args.refine_iters or args.iters}
                    if args.refine_scale else {}),
                 "anchor": bool(args.anchor),
                 **({"vis_threshold": args.vis_threshold}
                    if args.vis_threshold is not None else {}),
                 "trained": model_io.trained_settings(cfg)}
    model_io.save_inference_checkpoint(args.out, model, params, extra={"inference": inference})
    training = {"steps": int(sum(s.get("steps") or 0 for s in stages)),
                "cpu_hours": round(sum(s.get("cpu_hours") or 0 for s in stages), 3),
                "hardware": args.hardware, "stages": stages}
    doc = {"weights": os.path.basename(os.path.normpath(args.out)), "training": training,
           "entries": entries}
    found = results_file.problems(doc)
    if found:
        raise SystemExit("export_weights: error: " + "; ".join(found))
    results_file.write(os.path.join(args.out, results_file.RESULTS_FILE), doc)
    print(f"wrote {args.out}: step {step}, {training['steps']} steps in all, "
          f"{training['cpu_hours']} CPU-hours")
    return args.out


if __name__ == "__main__":
    main()
