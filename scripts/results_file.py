"""The results file of shipped weights (``objtrack_jax/weights/<name>/results.json``): every
published figure of those weights and of the baselines run beside them, each with the settings,
the command, the date, the machine and its load. README.md, docs/model_card.md and
docs/benchmarks.md print these figures; ``tests/test_results_file.py`` checks that they agree.

It lives beside ``params.msgpack`` and ``config.json`` because its figures belong to those
weights: new weights come with a new file (``scripts/export_weights.py`` writes it), and an
installed package carries the figures of the weights it ships. ``config.json`` holds only what
the code reads (the architecture and the validated settings, ``info.inference``).

Layout::

    {"weights": "objprior_synth",
     "training": {"steps", "cpu_hours", "hardware",
                  "stages": [{"stage", "steps", "cpu_hours", "data", "crop", "points", "lr"}]},
     "entries": {NAME: {"what":     what was measured (one line),
                        "settings": the tracking settings it ran with (window, iters,
                                    short_side, refine_scale, refine_iters, anchor) or
                                    {"baseline": "lk" | "dis" | "zero", ...},
                        "values":   {metric: number}, as measured (docs print them rounded),
                        "command":  the command that reproduces it (from the repository root),
                        "data":     the command that builds its data (optional),
                        "date":     "YYYY-MM-DD", "machine": "...", "load": "..."}}}

Metric names follow ``objtrack eval --out``'s ``mean`` (``d_1`` .. ``d_16``, ``d_avg``,
``survival``, ``median_l2`` = MTE in px) and add ``wall_s`` / ``peak_rss_gb`` where a run's time
and memory are published.

One entry from an ``objtrack eval --out`` JSON (replaces an entry of that name)::

    python scripts/results_file.py set real_eval_default --eval EVAL.json \
        --what "real-content benchmark, shipped default" --machine "2-core AMD EPYC" \
        --load "2-3" [--command "objtrack eval ..."] [--date 2026-12-07] [--rss-gb 0.97]

``python scripts/results_file.py check`` lists what is wrong with the shipped file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
from typing import Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_FILE = os.path.join(REPO, "objtrack_jax", "weights", "objprior_synth", "results.json")
RESULTS_FILE = "results.json"  # its name beside params.msgpack + config.json
REQUIRED = ("what", "settings", "values", "command", "date", "machine", "load")
EVAL_METRICS = ("d_1", "d_2", "d_4", "d_8", "d_16", "d_avg", "survival", "median_l2",
                "occlusion_accuracy", "average_jaccard", "num_videos")
SETTING_KEYS = ("window", "iters", "short_side", "resolution", "refine_scale", "refine_iters",
                "anchor")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ABSOLUTE = re.compile(r"(^|[\s=:'\"(])(/[A-Za-z0-9_.-]+){2,}|[A-Za-z]:\\")


def load(path: str = DEFAULT_FILE) -> dict:
    """The results file as a dict; ``ValueError`` naming the file when it is not a JSON object."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), dict):
        raise ValueError(f"{path}: expected a JSON object with an 'entries' object")
    return doc


def has_absolute_path(text: str) -> bool:
    """Whether ``text`` holds an absolute file path (``/a/b``, ``C:\\``) rather than one relative
    to the repository."""
    return bool(_ABSOLUTE.search(text))


def problems(doc: dict) -> list[str]:
    """What is missing or malformed in a results file (empty when it is complete)."""
    out = []
    for name, entry in doc.get("entries", {}).items():
        if not isinstance(entry, dict):
            out.append(f"entries.{name}: expected an object, got {type(entry).__name__}")
            continue
        for key in REQUIRED:
            if entry.get(key) in (None, "", {}):
                out.append(f"entries.{name}: no '{key}'")
        values = entry.get("values") or {}
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                out.append(f"entries.{name}.values.{key}: expected a number, got {value!r}")
        if entry.get("date") and not _DATE.match(str(entry["date"])):
            out.append(f"entries.{name}.date: expected YYYY-MM-DD, got {entry['date']!r}")
        for key in ("command", "data"):
            if has_absolute_path(str(entry.get(key) or "")):
                out.append(f"entries.{name}.{key}: holds an absolute path: {entry[key]!r}")
    training = doc.get("training") or {}
    stages = training.get("stages") or []
    if stages and training.get("steps") != sum(s.get("steps") or 0 for s in stages):
        out.append(f"training.steps {training.get('steps')} is not the sum of the stages' steps")
    return out


def command_from_eval(config: dict) -> str:
    """The ``objtrack eval`` command line an eval JSON's ``config`` section ran (the options that
    differ from the defaults)."""
    parts = ["objtrack eval", f"--dataset {config.get('dataset', 'synthetic')}"]
    if config.get("data_root"):
        parts.append(f"--data-root {config['data_root']}")
    if config.get("split"):
        parts.append(f"--split {config['split']}")
    if config.get("baseline"):
        parts.append(f"--baseline {config['baseline']}")
    else:
        settings = config.get("settings") or config
        if settings.get("refine_scale") in (0, 0.0, None) and "refine_scale" in settings:
            parts.append("--refine-scale 0")
        if settings.get("anchor") is False:
            parts.append("--no-anchor")
    for key, flag in (("max_videos", "--max-videos"), ("max_points", "--max-points")):
        if config.get(key):
            parts.append(f"{flag} {config[key]}")
    if config.get("still"):
        parts.append("--still")
    return " ".join(parts)


def this_machine() -> str:
    """This machine's CPU, as entries name it: ``2-core AMD EPYC 7B13``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), "")
    except OSError:
        model = ""
    return f"{os.cpu_count()}-core {model or 'CPU'}"


def entry_from_eval(res: dict, what: str, command: Optional[str] = None,
                    date: Optional[str] = None, machine: Optional[str] = None,
                    load: Optional[str] = None, rss_gb: Optional[float] = None) -> dict:
    """One entry from an ``objtrack eval --out`` JSON (``res``): its mean metrics, the settings it
    ran with, its wall time; ``command`` defaults to :func:`command_from_eval`, ``machine`` to this
    machine's CPU."""
    config = res.get("config") or {}
    mean = res.get("mean") or {}
    values = {k: round(float(mean[k]), 4) if k != "num_videos" else int(mean[k])
              for k in EVAL_METRICS if mean.get(k) is not None}
    if res.get("seconds") is not None:
        values["wall_s"] = round(float(res["seconds"]), 1)
    if rss_gb is not None:
        values["peak_rss_gb"] = float(rss_gb)
    if config.get("baseline"):
        settings = {"baseline": config["baseline"], "resolution": config.get("resolution")}
    else:
        source = config.get("settings") or config
        settings = {k: source.get(k) for k in SETTING_KEYS if source.get(k) is not None}
    return {"what": what, "settings": settings, "values": values,
            "command": command or command_from_eval(config),
            "date": date or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "machine": machine or this_machine(), "load": load or "not recorded"}


def write(path: str, doc: dict) -> None:
    """Writes ``doc`` to ``path`` (indent 2, UTF-8, atomic rename)."""
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(path + ".tmp", path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    p.add_argument("--file", default=DEFAULT_FILE,
                   help="the results file (default: the shipped weights')")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("set", help="write one entry from an objtrack eval --out JSON")
    s.add_argument("name")
    s.add_argument("--eval", required=True, metavar="JSON")
    s.add_argument("--what", required=True)
    s.add_argument("--command", default=None)
    s.add_argument("--date", default=None,
                   help="YYYY-MM-DD (default: the day the JSON was written)")
    s.add_argument("--machine", default=None)
    s.add_argument("--load", default=None, help="the load average while it ran")
    s.add_argument("--rss-gb", type=float, default=None)
    sub.add_parser("check", help="list what is missing in the results file")
    args = p.parse_args(argv)
    try:
        doc = load(args.file)
    except (OSError, ValueError) as e:
        p.error(str(e))
    if args.cmd == "check":
        found = problems(doc)
        print("\n".join(found) if found else
              f"{args.file}: {len(doc['entries'])} entries, complete")
        return 1 if found else 0
    try:
        with open(args.eval, encoding="utf-8") as f:
            res = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        p.error(f"--eval {args.eval}: {e}")
    if not isinstance(res, dict) or not isinstance(res.get("mean"), dict):
        p.error(f"--eval {args.eval}: expected an objtrack eval --out JSON with a 'mean' object")
    date = args.date or datetime.datetime.fromtimestamp(
        os.path.getmtime(args.eval), datetime.timezone.utc).strftime("%Y-%m-%d")
    entry = entry_from_eval(res, args.what, command=args.command, date=date,
                            machine=args.machine, load=args.load, rss_gb=args.rss_gb)
    old = doc["entries"].get(args.name) or {}
    if old.get("data"):
        entry["data"] = old["data"]
    doc["entries"][args.name] = entry
    found = problems({"entries": {args.name: entry}})
    if found:
        p.error("; ".join(found))
    write(args.file, doc)
    print(f"wrote entries.{args.name} of {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
