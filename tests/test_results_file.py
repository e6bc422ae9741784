"""README.md, docs/model_card.md, docs/benchmarks.md and the shipped ``config.json`` agree with
the shipped weights' results file (``objtrack_jax/weights/objprior_synth/results.json``, layout
in ``scripts/results_file.py``).

``PRINTED`` lists where the docs print a figure of the file: a passage as it stands in the doc
(whitespace and line breaks do not matter) with ``{entry.key}`` where a figure stands
(``training.steps``, ``stage_3.cpu_hours``, ``config.window`` for ``info.inference`` of
config.json, ``entry.date`` for a date; a leading ``^`` starts a line, a trailing ``|`` ends a
table row). Each passage must be found with numbers in those places, and each number must be
the file's value rounded half up to the printed decimals: a doc figure that drifts from the file
fails here, naming the doc, the entry and both values. A reworded passage fails as not found:
update its line here with the doc. No model runs.
"""

import decimal
import importlib.util
import json
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS = os.path.join(ROOT, "objtrack_jax", "weights", "objprior_synth")


def _results_module():
    spec = importlib.util.spec_from_file_location(
        "results_file", os.path.join(ROOT, "scripts", "results_file.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


results_file = _results_module()
R, B, C = "README.md", "docs/benchmarks.md", "docs/model_card.md"


def _row(label, entry, keys, bold=()):
    """The table row ``| label | v1 | v2 |`` of ``entry``'s ``keys`` (bold where listed)."""
    cells = [f"**{{{entry}.{k}}}**" if k in bold else f"{{{entry}.{k}}}" for k in keys]
    return f"^| {label} | " + " | ".join(cells) + " |"


_REAL = ("d_1", "d_2", "d_4", "d_8", "d_16", "d_avg", "survival", "median_l2")
_PROC = ("d_1", "d_2", "d_avg", "survival", "median_l2")
_STATIC = ("drift_px_50", "drift_px_100", "drift_px_199", "jitter_px", "d_1", "d_avg", "survival")


def _still(entry):
    return " | ".join(f"{{{entry}.median_px_{f}}} ({{{entry}.p90_px_{f}}})" for f in (1, 7, 49, 99))


PRINTED = [
    # README.md
    (R, "It takes {demo_default.wall_s} s and {demo_default.peak_rss_gb} GB peak RSS on a 2-core "
        "AMD EPYC ({demo_default.date}, load ≈3"),
    (R, "The venv takes {lean_install.disk_mib} MiB on disk ({lean_install.disk_gib} GiB; "
        "{lean_install.file_data_gb} GB of file data), installed in {lean_install.wall_s} s "
        "({lean_install.date}, Python 3.11"),
    (R, "window {config.window}, {config.iters} iterations, short side {config.short_side} px, "
        "then a second pass at twice that resolution"),
    (R, "runs one pass ({real_eval_one_pass.wall_s} s against {real_eval_default.wall_s} s on the "
        "real-content benchmark below)"),
    (R, "{training.steps} steps on generated real-photo scenes, {training.cpu_hours} CPU-hours"),
    (R, "measured {real_eval_default.date}. Every figure"),
    (R, "| **shipped model, default** (second pass ×2, anchored) | **{real_eval_default.d_1}** | "
        "**{real_eval_default.d_avg}** | **{real_eval_default.survival}** | "
        "**{real_eval_default.median_l2}** | **{procedural_default.d_avg}** |"),
    (R, "| shipped model, one pass (`--refine-scale 0`), anchored | {real_eval_one_pass.d_1} | "
        "{real_eval_one_pass.d_avg} | {real_eval_one_pass.survival} | "
        "{real_eval_one_pass.median_l2} | {procedural_one_pass.d_avg} |"),
    (R, "| shipped model, network only, no anchoring (`--no-anchor`) | "
        "{real_eval_network_only.d_1} | {real_eval_network_only.d_avg} | "
        "{real_eval_network_only.survival} | {real_eval_network_only.median_l2} | "
        "{procedural_network_only.d_avg} |"),
    (R, "| zero motion | {real_eval_zero.d_1} | {real_eval_zero.d_avg} | {real_eval_zero.survival} "
        "| {real_eval_zero.median_l2} | {procedural_zero.d_avg} |"),
    (R, "| Lucas–Kanade (OpenCV, forward–backward check) | {real_eval_lk.d_1} | "
        "{real_eval_lk.d_avg} | {real_eval_lk.survival} | {real_eval_lk.median_l2} | "
        "{procedural_lk.d_avg} |"),
    (R, "| DIS flow (OpenCV), chained | {real_eval_dis.d_1} | {real_eval_dis.d_avg} | "
        "{real_eval_dis.survival} | {real_eval_dis.median_l2} | {procedural_dis.d_avg} |"),
    (R, "d_1 {real_eval_default.d_1} against {real_eval_network_only.d_1} for the network alone"),
    (R, "median drift {static_default.drift_px_100} px at frame 100 and "
        "{static_default.drift_px_199} px at frame 199, jitter {static_default.jitter_px} px "
        "(network alone: {static_network_only.drift_px_100}, {static_network_only.drift_px_199}, "
        "{static_network_only.jitter_px}; Lucas–Kanade {static_lk.drift_px_100}, "
        "{static_lk.drift_px_199}, {static_lk.jitter_px})"),
    (R, "the {camel_background.points} grid points on the motionless background stay a median "
        "{camel_background.median_px_199} px from their query at frame 199 (`python "
        "scripts/camel_static.py --png camel_static.png`, {camel_background.date})"),
    (R, "it finds {visibility_real_eval.head_occluded_recall} % of the occluded point-frames "
        "(occlusion accuracy {visibility_real_eval.head_occlusion_accuracy} %)"),
    (R, "{visibility_real_eval.occluded_recall} % of the occluded point-frames found, occlusion "
        "accuracy {visibility_real_eval.occlusion_accuracy} %, "
        "{visibility_real_eval.visible_recall} % of the visible ones kept"),
    (R, "{visibility_real_eval.date}; the rule was chosen on the validation scenes, where it lifts "
        "the recall from {visibility_val.head_occluded_recall} to {visibility_val.occluded_recall} "
        "% at accuracy {visibility_val.occlusion_accuracy} %"),
    (R, "{camel_background.over_2px_pct} % of the background points are more than 2 px off at "
        "frame 199 (90th percentile {camel_background.p90_px_199} px)"),
    (R, "({real_eval_default.survival} against {real_eval_dis.survival})"),
    # docs/model_card.md
    (C, "**{training.steps} steps** of batch 2, **{training.cpu_hours} CPU-hours** in all"),
    *[(C, f"^| {i} | {{stage_{i}.steps}} | ") for i in range(1, 10)],
    *[(C, f"{{stage_{i}.cpu_hours}} |\n| {i + 1} | ") for i in range(1, 9)],
    (C, "| 9 | {stage_9.steps} | real-photo (4) | whole 192×256 frames | 128 | 3e-4, annealed | "
        "{stage_9.cpu_hours} |"),
    (C, "**window {config.window}, {config.iters} iterations, short side {config.short_side} px"),
    (C, "d_1 {val_network_only.d_1} → {val_default.d_1}, d_avg {val_network_only.d_avg} → "
        "{val_default.d_avg}, survival {val_network_only.survival} → {val_default.survival}; "
        "occluded point-frames found {visibility_val.head_occluded_recall} → "
        "{visibility_val.occluded_recall} % at occlusion accuracy "
        "{visibility_val.head_occlusion_accuracy} → {visibility_val.occlusion_accuracy} %"),
    (C, "(network only, {val_refine_x2.date}, 2-core machine"),
    (C, _row("one pass, short side 192", "val_refine_none",
             ("d_avg", "survival", "median_l2")) + " {val_refine_none.wall_s} s |"),
    (C, _row("+ second pass ×2 (kept)", "val_refine_x2", ("d_avg", "survival", "median_l2"),
             bold=("d_avg", "survival", "median_l2")) + " {val_refine_x2.wall_s} s |"),
    (C, _row("+ second pass ×2.5", "val_refine_x2_5",
             ("d_avg", "survival", "median_l2")) + " {val_refine_x2_5.wall_s} s |"),
    (C, "PIPs++ protocol; {real_eval_default.date}), d_1 / d_avg / survival (%) / MTE (px): the "
        "shipped default (second pass ×2, anchored) {real_eval_default.d_1} / "
        "{real_eval_default.d_avg} / {real_eval_default.survival} / {real_eval_default.median_l2}; "
        "one pass, anchored (`--refine-scale 0`) {real_eval_one_pass.d_1} / "
        "{real_eval_one_pass.d_avg} / {real_eval_one_pass.survival} / "
        "{real_eval_one_pass.median_l2}; network only, no anchoring (`--no-anchor`) "
        "{real_eval_network_only.d_1} / {real_eval_network_only.d_avg} / "
        "{real_eval_network_only.survival} / {real_eval_network_only.median_l2}; Lucas–Kanade "
        "{real_eval_lk.d_1} / {real_eval_lk.d_avg} / {real_eval_lk.survival} / "
        "{real_eval_lk.median_l2}, DIS flow {real_eval_dis.d_1} / {real_eval_dis.d_avg} / "
        "{real_eval_dis.survival} / {real_eval_dis.median_l2}, zero motion {real_eval_zero.d_1} / "
        "{real_eval_zero.d_avg} / {real_eval_zero.survival} / {real_eval_zero.median_l2}. On the "
        "procedural test split, d_avg: default {procedural_default.d_avg}, one pass "
        "{procedural_one_pass.d_avg}, network only {procedural_network_only.d_avg} (LK "
        "{procedural_lk.d_avg}, DIS {procedural_dis.d_avg})"),
    (C, "is {still_clip_network_only_3_photos.median_px_1} px after one frame, "
        "{still_clip_network_only_3_photos.median_px_7} px after 7, "
        "{still_clip_network_only_3_photos.median_px_49} px at frame 49 and "
        "**{still_clip_network_only_3_photos.median_px_99} px at frame 99**, up and very slightly "
        "left (mean ({still_clip_network_only_3_photos.mean_dx_99}, "
        "{still_clip_network_only_3_photos.mean_dy_99}) px); `python scripts/still_drift.py "
        "--frames 100 --no-anchor`, {still_clip_network_only_3_photos.date}, 2-core AMD EPYC, "
        "load ≈10"),
    (C, "median {still_clip_default.median_px_99} px at frame 99, 90th percentile "
        "{still_clip_default.p90_px_99} px; `python scripts/still_drift.py --photos 1`"),
    (C, "camel.mp4, {camel_background.over_2px_pct} % of the static background points are more "
        "than 2 px off at frame 199 (90th percentile {camel_background.p90_px_199} px)"),
    (C, "({visibility_real_eval.head_occluded_recall} % of the occluded point-frames of the "
        "real-content benchmark, occlusion accuracy {visibility_real_eval.head_occlusion_accuracy}"
        " %)"),
    (C, "{visibility_real_eval.occluded_recall} % found at occlusion accuracy "
        "{visibility_real_eval.occlusion_accuracy} % on the real-content benchmark"),
    (C, "on camel.mp4 {camel_background.visible_pct} % of the point-frames are reported visible"),
    (C, "(d_1 {real_eval_network_only.d_1} on the real-content benchmark, Lucas–Kanade "
        "{real_eval_lk.d_1}); with the stage-8 weights, one frame after the query its median "
        "error was {error_profile_x2.median_px_1} px against LK's {error_profile_lk.median_px_1} "
        "px"),
    (C, "Anchored, d_1 is {real_eval_default.d_1}."),
    (C, "survival {real_eval_default.survival} % against DIS flow's {real_eval_dis.survival} %"),
    # docs/benchmarks.md
    (B, "| {lean_install.disk_mib} MiB on disk (`du -sk`), {lean_install.file_data_mb} MB "
        "({lean_install.file_data_mib} MiB) of file data | {lean_install.wall_s} s (wheels from "
        "PyPI, pip cache warm) | {lean_install.date}, 2-core AMD EPYC, Python 3.11.7, load ≈12 | "),
    (B, "| shipped, default (second pass ×2, anchored) | {demo_default.wall_s} s | "
        "{demo_default.peak_rss_gb} GB | {demo_default.date}, 2-core AMD EPYC, load ≈3"),
    (B, "| shipped, second pass ×2, network only (no anchoring) | {demo_network_only.wall_s} s | "
        "{demo_network_only.peak_rss_gb} GB | {demo_network_only.date}, 2-core, nothing else"),
    (B, "| shipped, default (second pass ×2, anchored) | {camel_background.wall_s} s | "
        "{camel_background.peak_rss_gb} GB | {camel_background.date}, 2-core AMD EPYC, "
        "load ≈3–5 |"),
    (B, "384×688) | shipped, second pass ×2, network only (no anchoring) | "
        "{camel_track_network_only.wall_s} s | {camel_track_network_only.peak_rss_gb} GB | "
        "{camel_track_network_only.date}, 2-core, nothing else running |"),
    (B, "--max-frames 100 --no-anchor` | shipped, second pass ×2, network only (no anchoring) | "
        "{camel_track_100_network_only.wall_s} s | {camel_track_100_network_only.peak_rss_gb} GB "
        "| {camel_track_100_network_only.date}, 2-core AMD EPYC, load ≈12"),
    (B, "model d_1 {demo_default.d_1}, d_avg {demo_default.d_avg}, survival "
        "{demo_default.survival}, AJ {demo_default.average_jaccard}, OA "
        "{demo_default.occlusion_accuracy}; LK d_avg {demo_default.lk_d_avg}, DIS "
        "{demo_default.dis_d_avg}, zero motion {demo_default.zero_d_avg}."),
    (B, _row("**shipped model, default (second pass ×2, anchored)**", "real_eval_default", _REAL,
             bold=("d_1", "d_2", "d_16", "d_avg", "survival", "median_l2"))),
    (B, _row("shipped model, one pass (`--refine-scale 0`), anchored", "real_eval_one_pass",
             _REAL)),
    (B, _row("shipped model, network only, no anchoring (`--no-anchor`)", "real_eval_network_only",
             _REAL)),
    (B, _row("zero motion", "real_eval_zero", _REAL) + "\n| Lucas–Kanade"),
    (B, _row("Lucas–Kanade", "real_eval_lk", _REAL) + "\n| DIS flow"),
    (B, _row("DIS flow", "real_eval_dis", _REAL, bold=("d_4", "d_8"))),
    (B, "Measured {real_eval_default.date} on the 2-core AMD EPYC (accuracy does not depend on the "
        "machine): the model took {real_eval_default.wall_s} s (default, peak RSS "
        "{real_eval_default.peak_rss_gb} GB) and {real_eval_one_pass.wall_s} s (one pass), at load "
        "≈ 3–5 beside a training run at nice 19, and {real_eval_network_only.wall_s} s "
        "(`--no-anchor`, at load ≈ 4–6); LK {real_eval_lk.wall_s} s, DIS "
        "{real_eval_dis.wall_s} s."),
    (B, "lifts d_1 from {real_eval_network_only.d_1} to {real_eval_default.d_1}, d_avg from "
        "{real_eval_network_only.d_avg} to {real_eval_default.d_avg} and survival from "
        "{real_eval_network_only.survival} to {real_eval_default.survival}:"),
    (B, "Measured {procedural_default.date}, same machine."),
    (B, _row("**shipped model, default (second pass ×2, anchored)**", "procedural_default", _PROC,
             bold=_PROC)),
    (B, _row("shipped model, one pass, anchored", "procedural_one_pass", _PROC)),
    (B, _row("shipped model, network only, no anchoring (`--no-anchor`)",
             "procedural_network_only", _PROC)),
    (B, _row("zero motion", "procedural_zero", _PROC) + "\n| Lucas–Kanade"),
    (B, _row("Lucas–Kanade", "procedural_lk", _PROC) + "\n| DIS flow"),
    (B, _row("DIS flow", "procedural_dis", _PROC) + "\n\nThe model took"),
    (B, "The model took {procedural_default.wall_s} s (default) and {procedural_one_pass.wall_s} s "
        "(one pass) at load ≈ 3–5 beside a training run at nice 19, and "
        "{procedural_network_only.wall_s} s (`--no-anchor`) at load ≈ 4–6."),
    (B, "| 1 (median true motion 2.5 px): median error | {error_profile_x2.median_px_1} px | "
        "{error_profile_one_pass.median_px_1} px | {error_profile_lk.median_px_1} px |"),
    (B, "| 1: points within 1 px | {error_profile_x2.within_1px_pct_1} % | "
        "{error_profile_one_pass.within_1px_pct_1} % | {error_profile_lk.within_1px_pct_1} % |"),
    (B, "| 23: median error | {error_profile_x2.median_px_23} px | "
        "{error_profile_one_pass.median_px_23} px | {error_profile_lk.median_px_23} px |"),
    (B, "`--photos 1` | 1 (144) | " + _still("still_clip_default")
        + " | {still_clip_default.jitter_px} | {still_clip_default.wall_s} s | "
          "{still_clip_default.date}, 2-core AMD EPYC, load ≈3–5 |"),
    (B, "`--photos 1 --no-anchor` | 1 (144) | " + _still("still_clip_network_only")
        + " | {still_clip_network_only.jitter_px} | {still_clip_network_only.wall_s} s | "
          "{still_clip_network_only.date}, 2-core AMD EPYC, load ≈8–13 |"),
    (B, "`--frames 100 --no-anchor` | 3 (432) | " + _still("still_clip_network_only_3_photos")
        + " | {still_clip_network_only_3_photos.jitter_px} | "
          "{still_clip_network_only_3_photos.wall_s} s | {still_clip_network_only_3_photos.date}, "
          "2-core AMD EPYC, load ≈10 |"),
    (B, "({still_clip_network_only_3_photos.mean_dx_1}, "
        "{still_clip_network_only_3_photos.mean_dy_1}) px at frame 1, "
        "({still_clip_network_only_3_photos.mean_dx_7}, "
        "{still_clip_network_only_3_photos.mean_dy_7}) at 7, "
        "({still_clip_network_only_3_photos.mean_dx_49}, "
        "{still_clip_network_only_3_photos.mean_dy_49}) at 49, "
        "({still_clip_network_only_3_photos.mean_dx_99}, "
        "{still_clip_network_only_3_photos.mean_dy_99}) at 99"),
    (B, "{static_default.date}, 2-core AMD EPYC: the default run (`--trackers model`) took "
        "{static_default.wall_s} s at load ≈3–5 beside a training run at nice 19 (peak RSS "
        "{static_default.peak_rss_mb} MB), the network-only run and the baselines at load 8–11 at "
        "the start (the model's pass {static_network_only.wall_s} s)"),
    (B, _row("**shipped model, default (second pass ×2, anchored)**", "static_default", _STATIC,
             bold=("drift_px_50", "drift_px_100", "drift_px_199", "d_1", "d_avg"))
        + " {static_default.occluded_recall} % |"),
    (B, _row("shipped model, network only, no anchoring (`--no-anchor`)", "static_network_only",
             _STATIC) + " {static_network_only.occluded_recall} % |"),
    (B, _row("zero motion", "static_zero", _STATIC) + " |\n| Lucas–Kanade"),
    (B, _row("Lucas–Kanade", "static_lk", _STATIC) + " {static_lk.occluded_recall} % |"),
    (B, _row("DIS", "static_dis", _STATIC) + " |\n\nDiagnosis"),
]

_FIELD = re.compile(r"\{([a-z0-9_]+)\.([a-z0-9_]+)\}")
_NUMBER = r"([−-]?\+?\d[\d,]*(?:\.\d+)?)"
_DATE = r"(\d{4}-\d{2}-\d{2})"


def _squash(text: str) -> str:
    """Markdown as lines of meaning: each table row one line, each paragraph (or list item) one
    line however it is wrapped, runs of whitespace one space."""
    out, prose = [], False
    for line in text.split("\n"):
        line = re.sub(r"\s+", " ", line).strip()
        if not line:
            prose = False
        elif line.startswith("|") or not prose:
            out.append("\n" + line)
            prose = not line.startswith("|")
        else:
            out.append(" " + line)
    return "".join(out)


def _pattern(template: str):
    """The regular expression of a ``PRINTED`` passage and its ``(entry, key)`` fields in order;
    a passage that starts with ``^`` starts a line, one that ends with ``|`` ends a row."""
    text = _squash(template.lstrip("^")).lstrip("\n")
    parts, fields, pos = [], [], 0
    for m in _FIELD.finditer(text):
        parts.append(re.escape(text[pos:m.start()]))
        parts.append(_DATE if m.group(2) == "date" else _NUMBER)
        fields.append((m.group(1), m.group(2)))
        pos = m.end()
    parts.append(re.escape(text[pos:]))
    start = r"(?:^|(?<=\n))" if template.startswith("^") else ""
    end = r"(?=\n|$)" if template.endswith("|") else ""
    return start + "".join(parts) + end, fields


def _lookup(doc: dict, config: dict, entry: str, key: str):
    if entry == "config":
        return config["info"]["inference"][key]
    if entry == "training":
        return doc["training"][key]
    if entry.startswith("stage_"):
        return doc["training"]["stages"][int(entry[len("stage_"):]) - 1][key]
    rec = doc["entries"][entry]
    return rec[key] if key in ("date",) else rec["values"][key]


def _agrees(printed: str, value) -> bool:
    """Whether ``printed`` (as the doc has it: ``1,035.6``, ``−8.55``, ``+0.39``) is ``value``
    rounded half up to the printed decimals."""
    text = printed.replace(",", "").replace("−", "-").replace("+", "")
    places = len(text.split(".")[1]) if "." in text else 0
    want = decimal.Decimal(repr(float(value))).quantize(
        decimal.Decimal(1).scaleb(-places), rounding=decimal.ROUND_HALF_UP)
    return decimal.Decimal(text) == want


def mismatches(doc_name: str, text: str, template: str, results: dict, config: dict) -> list:
    """What a doc ``text`` gets wrong about ``template``'s figures (empty when it agrees)."""
    pattern, fields = _pattern(template)
    m = re.search(pattern, _squash(text))
    if m is None:
        return [f"{doc_name}: passage not found (reworded? update PRINTED): "
                f"{_squash(template)[:160]!r}"]
    out = []
    for (entry, key), printed in zip(fields, m.groups()):
        value = _lookup(results, config, entry, key)
        ok = printed == value if key == "date" else _agrees(printed, value)
        if not ok:
            out.append(f"{doc_name}: prints {printed} for {entry}.{key}, the results file has "
                       f"{value!r} (in: {_squash(template)[:100]!r})")
    return out


@pytest.fixture(scope="module")
def shipped():
    results = results_file.load(os.path.join(WEIGHTS, "results.json"))
    with open(os.path.join(WEIGHTS, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    docs = {}
    for name in (R, B, C):
        with open(os.path.join(ROOT, name), encoding="utf-8") as f:
            docs[name] = f.read()
    return results, config, docs


def test_every_entry_has_values_command_date_machine(shipped):
    results, _, _ = shipped
    assert results["entries"], "the results file has no entries"
    assert results_file.problems(results) == []
    for name, entry in results["entries"].items():
        assert entry["values"] and entry["command"] and entry["machine"], name
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", entry["date"]), name


def test_config_json_holds_no_paths_and_no_history(shipped):
    _, config, _ = shipped
    assert set(config) == {"model", "info"} and set(config["info"]) == {"inference"}, (
        f"config.json: expected 'model' and info.inference only, got {sorted(config)} / "
        f"{sorted(config.get('info', {}))} (results and training stages live in results.json)")
    history = {"stages", "warm_start", "data", "trained_by", "results", "hardware", "steps",
               "cpu_hours", "config"}

    def walk(node, where):
        if isinstance(node, dict):
            for k, v in node.items():
                assert k not in history and not k.endswith("_chosen_on"), f"{where}.{k}: history"
                walk(v, f"{where}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")
        elif isinstance(node, str):
            assert not results_file.has_absolute_path(node), f"{where}: a machine path: {node!r}"
            assert len(node) <= 40, f"{where}: prose in config.json: {node[:60]!r}"

    walk(config, "config.json")


def test_config_json_settings_are_the_default_entries_settings(shipped):
    results, config, _ = shipped
    recorded = config["info"]["inference"]
    defaults = [n for n in results["entries"] if n.endswith("_default")]
    assert "real_eval_default" in defaults
    for name in defaults:
        settings = results["entries"][name]["settings"]
        for key in ("window", "iters", "short_side", "refine_scale", "refine_iters", "anchor"):
            assert settings.get(key) == recorded.get(key), (
                f"results.json {name}.settings.{key} = {settings.get(key)!r}, config.json "
                f"info.inference.{key} = {recorded.get(key)!r}")


def test_docs_print_the_results_files_figures(shipped):
    results, config, docs = shipped
    found = []
    for doc_name, template in PRINTED:
        found += mismatches(doc_name, docs[doc_name], template, results, config)
    assert not found, "\n".join(found)


def test_every_entry_is_printed_somewhere(shipped):
    results, _, _ = shipped
    used = {m.group(1) for _, t in PRINTED for m in _FIELD.finditer(t)}
    assert not set(results["entries"]) - used, (
        f"entries no doc prints (print them or drop them): "
        f"{sorted(set(results['entries']) - used)}")


def test_a_drifted_figure_or_date_is_caught(shipped):
    results, config, docs = shipped
    template = PRINTED[0][1]
    assert mismatches(R, docs[R], template, results, config) == []
    wall = results["entries"]["demo_default"]["values"]["wall_s"]
    drifted = docs[R].replace(f"It takes {wall:g} s", f"It takes {wall + 1:g} s")
    assert drifted != docs[R]
    assert any("demo_default.wall_s" in p for p in mismatches(R, drifted, template, results,
                                                              config))
    date = results["entries"]["demo_default"]["date"]
    moved = docs[R].replace(f"AMD EPYC ({date}", "AMD EPYC (2020-01-01")
    assert any("demo_default.date" in p for p in mismatches(R, moved, template, results, config))
    assert mismatches(R, "nothing", template, results, config)[0].startswith("README.md: passage")


@pytest.mark.parametrize("printed, value, ok", [
    ("47.6", 47.6, True), ("47.6", 47.64, True), ("47.6", 47.66, False), ("48", 47.6, True),
    ("2.03", 2.025, True), ("1,035.6", 1035.6, True), ("−8.55", -8.55, True),
    ("+0.39", 0.39, True), ("0.99", 0.988, True), ("82", 83, False)])
def test_printed_precision(printed, value, ok):
    assert _agrees(printed, value) is ok


def test_an_entry_from_an_eval_json_replaces_one_entry(tmp_path):
    """``scripts/results_file.py set``: one entry written from an ``objtrack eval --out`` JSON,
    the others kept; the command rebuilt from what the run was given."""
    path = tmp_path / "results.json"
    results_file.write(str(path), {"entries": {"other": {"values": {"d_avg": 1.0}}}})
    ev = tmp_path / "ev.json"
    ev.write_text(json.dumps({
        "mean": {"d_1": 47.61, "d_avg": 61.49, "survival": 76.9, "median_l2": 11.1,
                 "num_videos": 10},
        "seconds": 208.04,
        "config": {"dataset": "synthetic", "data_root": "data/real_eval", "split": "test",
                   "baseline": None, "settings": {"window": 8, "iters": 4, "short_side": 192,
                                                  "refine_scale": 2.0, "refine_iters": 4,
                                                  "anchor": False, "carry": "template"}}}))
    assert results_file.main(["--file", str(path), "set", "net", "--eval", str(ev), "--what",
                              "network only", "--machine", "2-core AMD EPYC", "--load", "2",
                              "--date", "2026-12-07"]) == 0
    doc = results_file.load(str(path))
    entry = doc["entries"]["net"]
    assert doc["entries"]["other"] == {"values": {"d_avg": 1.0}}
    assert entry["values"] == {"d_1": 47.61, "d_avg": 61.49, "survival": 76.9, "median_l2": 11.1,
                               "num_videos": 10, "wall_s": 208.0}
    assert entry["settings"] == {"window": 8, "iters": 4, "short_side": 192, "refine_scale": 2.0,
                                 "refine_iters": 4, "anchor": False}
    assert entry["command"] == ("objtrack eval --dataset synthetic --data-root data/real_eval "
                                "--split test --no-anchor")
    assert (entry["date"], entry["machine"], entry["load"]) == ("2026-12-07", "2-core AMD EPYC",
                                                                "2")
    assert results_file.problems(doc) == [
        "entries.other: no 'what'", "entries.other: no 'settings'", "entries.other: no 'command'",
        "entries.other: no 'date'", "entries.other: no 'machine'", "entries.other: no 'load'"]
    with pytest.raises(SystemExit):  # a machine path in a command is refused
        results_file.main(["--file", str(path), "set", "x", "--eval", str(ev), "--what", "x",
                           "--command", "objtrack eval --data-root /home/me/data"])
