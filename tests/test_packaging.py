"""Packaging: the package list in pyproject.toml, built-in config names, the lean install's imports."""

import os
import re
import runpy
import subprocess
import sys
import tomllib

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_package_list_maps_configs_and_data_pipelines_under_objtrack_jax():
    setup = runpy.run_path(os.path.join(ROOT, "setup.py"), run_name="setup_for_test")
    listed, mapped = set(setup["PACKAGES"]), setup["PACKAGE_DIR"]
    assert all(p == "objtrack_jax" or p.startswith("objtrack_jax.") for p in listed), listed
    assert mapped == {"objtrack_jax.configs": "configs",
                      "objtrack_jax.data_pipelines": "data_pipelines"}
    for pkg, folder in mapped.items():
        assert pkg in listed and os.path.isfile(os.path.join(ROOT, folder, "__init__.py")), pkg
    on_disk = set()
    for base, pkg in [("objtrack_jax", "objtrack_jax")] + [(f, p) for p, f in mapped.items()]:
        for dirpath, dirnames, files in os.walk(os.path.join(ROOT, base)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            if "__init__.py" in files:
                rel = os.path.relpath(dirpath, os.path.join(ROOT, base))
                on_disk.add(pkg if rel == "." else pkg + "." + rel.replace(os.sep, "."))
    assert on_disk <= listed, f"package folders that would not be installed: {on_disk - listed}"


def test_lean_dependencies_hold_no_extra():
    """The tracking install lists none of the packages behind an extra (extras.MODULE_EXTRA)."""
    from objtrack_jax import extras

    project = _pyproject()["project"]
    lean = {re.split(r"[<>=!~ \[]", d)[0].lower() for d in project["dependencies"]}
    optional = project["optional-dependencies"]
    for name in ("train", "data", "dev", "app", "export", "all"):
        assert name in optional, f"extra [{name}] missing from pyproject.toml"
    heavy = {"tensorflow-cpu", "tensorflow", "tensorflow-datasets", "tensorboard",
             "orbax-checkpoint", "ml_collections", "ml-collections", "scikit-image",
             "scikit-learn", "matplotlib", "pytest", "pillow", "chex"}
    assert not lean & heavy, f"heavy packages in the lean dependencies: {lean & heavy}"
    assert set(extras.MODULE_EXTRA.values()) <= set(optional)


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


def _run_without(modules, argv, tmp_path):
    """``objtrack ARGV`` in a fresh interpreter where importing any of ``modules`` fails as if
    the package were not installed."""
    code = ("import sys\n"
            f"for m in {list(modules)!r}: sys.modules[m] = None\n"
            "from objtrack_jax import cli\n"
            f"sys.exit(cli.main({list(argv)!r}))\n")
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("modules,argv,extra", [
    (["skimage", "sklearn"], ["synth", "--out", "data", "--preset", "real", "--num-seqs", "1", "--no-progress"],
     "data"),
    (["tensorflow"], ["train", "--config", "pips2_baseline:tiny", "--workdir", "w"], "train"),
])
def test_missing_extra_is_one_line_naming_the_extra(tmp_path, modules, argv, extra):
    proc = _run_without(modules, argv, tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"objtrack {argv[0]}: error: ")
    assert f"pip install 'objtrack_jax[{extra}]'" in lines[0] and modules[0] in lines[0], lines


def test_require_names_the_extra(monkeypatch):
    from objtrack_jax import extras

    monkeypatch.setitem(sys.modules, "skimage", None)  # as if scikit-image were not installed
    monkeypatch.setitem(sys.modules, "skimage.data", None)  # (also when an earlier test imported it)
    with pytest.raises(extras.MissingExtraError, match=r"the photos needs the 'data' extra "
                       r"\(skimage is not installed\): pip install 'objtrack_jax\[data\]'"):
        extras.require("skimage.data", "the photos")
    with pytest.raises(ModuleNotFoundError) as info:  # not an extra's module: the usual error
        extras.require("objtrack_no_such_module", "nothing")
    assert not isinstance(info.value, extras.MissingExtraError)


def test_training_modules_name_the_train_extra_on_import():
    code = ("import sys\nsys.modules['tensorflow'] = None\n"
            "try:\n    import objtrack_jax.train.loop\nexcept ModuleNotFoundError as e:\n"
            "    print(type(e).__name__, e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert "MissingExtraError" in proc.stdout and "objtrack_jax[train]" in proc.stdout, (
        proc.stdout + proc.stderr)
