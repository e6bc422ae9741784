"""Packaging: the package list in pyproject.toml, built-in config names, the lean install's imports."""

import os
import subprocess
import sys
import tomllib

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_every_package_folder_is_listed_and_nothing_installs_top_level():
    setup = _pyproject()["tool"]["setuptools"]
    listed = set(setup["packages"])
    mapped = setup.get("package-dir", {})
    assert all(p == "objtrack_jax" or p.startswith("objtrack_jax.") for p in listed), listed
    for pkg, folder in mapped.items():
        assert pkg in listed, f"{pkg} is mapped in [tool.setuptools.package-dir] but not listed"
        assert os.path.isfile(os.path.join(ROOT, folder, "__init__.py")), folder
    on_disk = set()
    for base, pkg in [("objtrack_jax", "objtrack_jax")] + [(f, p) for p, f in mapped.items()]:
        for dirpath, dirnames, files in os.walk(os.path.join(ROOT, base)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            if "__init__.py" in files:
                rel = os.path.relpath(dirpath, os.path.join(ROOT, base))
                on_disk.add(pkg if rel == "." else pkg + "." + rel.replace(os.sep, "."))
    missing = on_disk - listed
    assert not missing, (f"package folders missing from [tool.setuptools] packages in "
                         f"pyproject.toml (they would not be installed): {sorted(missing)}")


def test_builtin_config_names_resolve_from_any_directory(tmp_path, monkeypatch):
    pytest.importorskip("ml_collections")
    from objtrack_jax.train import main as train_main

    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    names = train_main.builtin_configs()
    assert {"objprior", "pips2_baseline", "ablation_attention_only",
            "ablation_objectness_only"} <= set(names)
    assert "common" not in names
    config, workdir = train_main.parse_flags(
        ["objtrack train", "--config", "pips2_baseline:tiny", "--workdir", str(tmp_path / "w"),
         "--config.optim.lr=0.25"])
    assert config.optim.lr == 0.25 and not config.model.use_attention
    config, _ = train_main.parse_flags(
        ["objtrack train", "--config=objprior", "--workdir", str(tmp_path / "w")])
    assert config.model.use_attention
    with pytest.raises(FileNotFoundError, match="built-in names .*objprior"):
        train_main.parse_flags(["objtrack train", "--config", "objpriorr:tiny",
                                "--workdir", str(tmp_path / "w")])


def test_cli_train_unknown_builtin_name_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "objtrack_jax.cli", "train", "--config", "nosuchconfig",
         "--workdir", str(tmp_path / "w")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("objtrack train: error: nosuchconfig"), lines
