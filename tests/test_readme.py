"""The README says what the program does: its Python quickstart runs as written, its command table
agrees with ``--help``, its links resolve, and it stays short."""

import contextlib
import io
import os
import re

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")


def _readme() -> str:
    with open(README, encoding="utf-8") as f:
        return f.read()


def _section(text: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert m, f"README.md has no '## {title}' section"
    return m.group(1)


def test_readme_is_short_and_keeps_the_two_commands():
    text = _readme()
    assert len(text.splitlines()) <= 250, f"README.md has {len(text.splitlines())} lines (≤ 250)"
    install = _section(text, "Install and run")
    assert "pip install -r requirements.txt && pip install -e . && objtrack demo" in install
    assert "python3 -m pytest -q -n 2 --dist loadfile" in _section(text, "Test")
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    assert "python3 -m pytest -q -n 2 --dist loadfile" in ci, ".ci/run must run the README's test command"


def test_readme_links_resolve():
    text = _readme()
    missing = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not re.match(r"[a-z]+://", target) and not os.path.exists(os.path.join(ROOT, target)):
            missing.append(target)
    assert not missing, f"README.md links to missing files: {missing}"


def test_readme_quickstart_runs_as_written(tmp_path, monkeypatch):
    """The first ```python block of README.md, executed unchanged on a small video named as in the
    block (the user's own file there)."""
    from objtrack_jax.video_io import write_video

    blocks = re.findall(r"```python\n(.*?)```", _readme(), flags=re.S)
    assert blocks, "README.md has no ```python block"
    code = blocks[0]
    assert len(code.strip().splitlines()) <= 15, "the quickstart should stay about ten lines"
    names = re.findall(r"""read_video\(["']([^"']+)["']\)""", code)
    assert names, "the quickstart reads a video with read_video('<file>')"
    rng = np.random.default_rng(0)
    scene = (rng.random((200, 260, 3)) * 255).astype(np.uint8)
    frames = np.stack([scene[2 * t:2 * t + 128, 3 * t:3 * t + 160] for t in range(12)])
    monkeypatch.chdir(tmp_path)
    write_video(names[0], frames, fps=12)
    namespace = {"__name__": "__main__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md quickstart", "exec"), namespace)  # pylint: disable=exec-used
    tracks, visible = namespace["tracks"], namespace["visible"]
    n = len(namespace["queries"])
    assert tracks.shape == (n, len(frames), 2) and np.isfinite(tracks).all()
    assert visible.shape == (n, len(frames))
    q = np.asarray(namespace["queries"])  # each track starts at its query
    np.testing.assert_allclose(tracks[np.arange(n), q[:, 0].astype(int)], q[:, [2, 1]], atol=1e-3)
    assert str(tracks.shape) in out.getvalue()


def _help(command: str) -> str:
    from objtrack_jax import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            code = cli.main([command, "--help"])
        except SystemExit as e:
            code = e.code
    assert code in (0, None), f"objtrack {command} --help exited with {code}"
    return out.getvalue()


def _table_rows(text: str) -> dict:
    rows = {}
    for line in _section(text, "Commands").splitlines():
        m = re.match(r"\|\s*`objtrack (\w+)([^`]*)`\s*\|", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def test_cli_table_agrees_with_help():
    pytest.importorskip("ml_collections")  # objtrack train --help needs the [train] extra
    from objtrack_jax import cli

    rows = _table_rows(_readme())
    assert set(rows) == set(cli.COMMANDS), (
        f"README command table {sorted(rows)} != objtrack commands {sorted(cli.COMMANDS)}")
    top = io.StringIO()
    with contextlib.redirect_stdout(top):
        cli.main(["--help"])
    for command, usage in rows.items():
        assert re.search(rf"^\s+{command}\s", top.getvalue(), flags=re.M), command
        text = _help(command)
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", usage):
            assert flag in text, f"README: objtrack {command} {flag}, not in its --help"
        for choices in re.findall(r"\{([^}]*)\}", usage):
            for choice in choices.split(","):
                assert choice.strip() in text, (
                    f"README: objtrack {command} choice {choice!r}, not in its --help")
    from objtrack_jax.configs import common
    from objtrack_jax.train.main import builtin_configs

    train = rows["train"]
    for variant in re.findall(r":(\w+)", train):
        assert variant in common.VARIANTS, f"README: --config variant :{variant} does not exist"
    named = set(re.findall(r"`(\w+)`", _section(_readme(), "Commands").split("objtrack train")[1]
                           .split("\n")[0]))
    assert set(builtin_configs()) <= named, (
        f"README's train row should name every built-in config {builtin_configs()}")


STORY = re.compile(r"\b(this|previous|earlier|the next) session\b|\bwas lent\b|\bno GPU lent\b|"
                   r"\bwe (fixed|added|changed|tried)\b|\bin this README's history\b", re.I)


def test_docs_state_facts_not_history():
    files = [README] + [os.path.join(ROOT, "docs", f) for f in sorted(os.listdir(
        os.path.join(ROOT, "docs"))) if f.endswith(".md")]
    found = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        # quotations of other projects' texts ("...", possibly over lines) are theirs
        text = re.sub(r'"[^"]*"', lambda m: "\n" * m.group().count("\n"), text)
        for i, line in enumerate(text.splitlines(), 1):
            if STORY.search(line):
                found.append(f"{os.path.relpath(path, ROOT)}:{i}: {line.strip()[:100]}")
    assert not found, "README/docs tell how the work was done:\n" + "\n".join(found)
