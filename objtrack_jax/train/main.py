"""Training entry point (kept thin: flags -> ``train_and_evaluate``).

    python -m objtrack_jax.train.main --config objprior[:tiny] --workdir DIR \
        [--config.optim.lr=1e-3 ...]

``objtrack train`` forwards to :func:`main` with the same flags. Re-running with the same workdir
resumes from its latest checkpoint. Exit status: 0 when done or stopped by ``max_steps_this_run``,
143 when stopped by SIGTERM (after writing a checkpoint), 2 with a one-line ``objtrack train: error:``
message for bad input (a missing config file, an unknown ``--config.key`` with the nearest valid
keys, a workdir that is a file, a data root that does not exist, ...; ``--debug`` or
``OBJTRACK_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import difflib
import errno
import importlib.util
import logging
import os
import sys
from typing import Optional, Sequence

from absl import flags
from ml_collections import config_flags



def _new_flags(argv: Sequence[str] = ()):
    """A fresh flag set per parse of ``argv``: ml_collections finds the ``--config.*`` overrides
    in the argv given at definition (default ``sys.argv``), so one global set could not parse two
    command lines in one process (tests, ``objtrack_jax.cli.main(argv)``)."""
    values = flags.FlagValues()
    config = config_flags.DEFINE_config_file(
        "config", None, "Experiment config: a built-in name (objprior, pips2_baseline, "
        "ablation_attention_only, ablation_objectness_only) or a config file, each with an "
        "optional :tiny, :cpu or :real variant, e.g. objprior:tiny or configs/objprior.py.",
        flag_values=values, lock_config=True,
        sys_argv=list(argv) or None)
    workdir = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and generated "
                                  "data.", flag_values=values)
    return values, config, workdir


def builtin_configs() -> list[str]:
    """Names of the experiment configs shipped with the package (``objprior``, ``pips2_baseline``,
    ...): ``--config NAME[:variant]`` takes one of them from any directory."""
    from objtrack_jax import configs

    folder = os.path.dirname(os.path.abspath(configs.__file__))
    return sorted(f[:-3] for f in os.listdir(folder)
                  if f.endswith(".py") and not f.startswith("_") and f != "common.py")


def resolve_config_spec(spec: str) -> str:
    """``NAME[:variant]`` (a built-in config, see :func:`builtin_configs`) or ``PATH.py[:variant]``
    → ``PATH.py[:variant]``. An existing file wins over a built-in name of the same spelling."""
    path, sep, arg = spec.partition(":")
    if os.path.isfile(path) or path.endswith(".py") or os.sep in path:
        return spec
    if path not in builtin_configs():
        raise FileNotFoundError(
            errno.ENOENT, f"config not found (--config takes a file or one of the built-in "
            f"names {', '.join(builtin_configs())}, optionally with :tiny, :cpu or :real)", path)
    from objtrack_jax import configs

    folder = os.path.dirname(os.path.abspath(configs.__file__))
    return os.path.join(folder, path + ".py") + sep + arg


def _with_config(argv: Sequence[str], spec: str) -> list[str]:
    """``argv`` with every ``--config`` value (not ``--config.key``) replaced by ``spec``."""
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg.startswith("--config="):
            out.append(f"--config={spec}")
        elif arg == "--config" and i + 1 < len(argv):
            out += ["--config", spec]
            skip = True
        else:
            out.append(arg)
    return out


def _flag_value(argv: Sequence[str], name: str) -> Optional[str]:
    """The value of ``--name=V`` or ``--name V`` in ``argv`` (last one wins), else None."""
    value = None
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            value = arg.split("=", 1)[1]
        elif arg == f"--{name}" and i + 1 < len(argv):
            value = argv[i + 1]
    return value


def _override_keys(argv: Sequence[str]) -> list[str]:
    """Dotted keys of the ``--config.a.b=V`` / ``--config.a.b V`` overrides in ``argv``."""
    return [a[len("--config."):].split("=", 1)[0] for a in argv if a.startswith("--config.")]


def _load_config_file(spec: str):
    """``get_config([arg])`` of a ``path.py[:arg]`` config spec (for error messages only)."""
    path, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("_objtrack_config_for_keys", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def config_keys(config, prefix: str = "") -> list[str]:
    """Every dotted key of a ConfigDict (sections and leaves), e.g. ``optim``, ``optim.lr``."""
    keys = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        keys.append(name)
        if hasattr(value, "items") and not isinstance(value, (str, bytes)):
            keys.extend(config_keys(value, name + "."))
    return keys


def unknown_config_key_error(config, key: str) -> ValueError:
    """A ValueError naming ``key`` and the nearest valid keys (difflib) of ``config``."""
    valid = config_keys(config)
    near = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    leaf = key.rsplit(".", 1)[-1]
    near += [k for k in valid if k.rsplit(".", 1)[-1] == leaf and k not in near][:3 - len(near)]
    hint = (f"; nearest valid keys: {', '.join(near)}" if near else
            f"; valid top-level keys: {', '.join(k for k in valid if '.' not in k)}")
    return ValueError(f"unknown config key --config.{key}{hint}")


def parse_flags(argv: Sequence[str]):
    """Parses ``argv`` (``argv[0]`` = program) and returns ``(config, workdir)``; checks everything
    before any work starts.

    Raises:
      ValueError: a missing flag, a bad flag value, an unknown ``--config.key`` (message: the key
        and the nearest valid ones), a ``--workdir`` that is a file.
      FileNotFoundError: the config file does not exist.
    """
    argv = list(argv)
    spec = _flag_value(argv[1:], "config")
    if spec is None:
        raise ValueError("--config is required, e.g. --config objprior:tiny")
    spec = resolve_config_spec(spec)
    argv = [argv[0]] + _with_config(argv[1:], spec)
    path = spec.partition(":")[0]
    if not os.path.isfile(path):
        raise FileNotFoundError(errno.ENOENT, "config file not found (--config)", path)
    workdir = _flag_value(argv[1:], "workdir")
    if workdir is None:
        raise ValueError("--workdir is required (the run's checkpoints and logs go there)")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise NotADirectoryError(errno.ENOTDIR, "--workdir is a file, not a directory", workdir)
    values, config_flag, workdir_flag = _new_flags(argv)
    try:
        rest = values(argv)
    except (flags.Error, AttributeError, KeyError, TypeError) as e:
        try:
            config = _load_config_file(spec)
        except Exception:  # pylint: disable=broad-except
            config = None  # the parse error itself says more
        if config is not None:
            valid = set(config_keys(config))
            for key in _override_keys(argv[1:]):
                if key not in valid:
                    raise unknown_config_key_error(config, key) from e
        msg = str(e).strip("'\"") if isinstance(e, KeyError) else str(e)
        raise ValueError(msg) from e
    if len(rest) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(rest[1:])}")
    return config_flag.value, workdir_flag.value


def run(argv: Sequence[str]) -> int:
    """Parses ``argv`` (``argv[0]`` = program name), trains, returns the exit status (0 or 143)."""
    if any(a in ("-h", "--help", "--helpfull") for a in argv[1:]):
        print(__doc__.strip() + "\n\nflags:\n" + str(_new_flags()[0]))
        return 0
    config, workdir = parse_flags(argv)
    from absl import logging as absl_logging

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()  # absl's own flags keep their defaults
    absl_logging.use_absl_handler()  # what absl's app.run does: log records go to stderr
    # TensorFlow (tf.data, TensorBoard) must not take GPU/TPU memory from JAX.
    from objtrack_jax.data_pipelines.pipeline import hide_accelerators_from_tf
    hide_accelerators_from_tf()
    from objtrack_jax.train.loop import train_and_evaluate

    logging.getLogger("objtrack_jax").setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every save step at INFO
    result = train_and_evaluate(config, workdir)
    summary = {k: v for k, v in result.items() if isinstance(v, (int, float, str)) or v is None}
    print({k: summary[k] for k in sorted(summary)}, flush=True)
    return 143 if result.get("stopped_early") == "SIGTERM" else 0


def main(argv=None):
    """Parses ``argv`` (default ``sys.argv``; ``argv[0]`` is the program name), trains and exits
    with the status of :func:`run` (errors: 2 and one line, via the ``objtrack`` error path)."""
    from objtrack_jax.cli_run import debug_enabled, run_guarded

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = list(sys.argv if argv is None else argv)
    rest = [a for a in argv[1:] if a != "--debug"]
    sys.exit(run_guarded("objtrack train", lambda: run(["objtrack train", *rest]),
                         debug_enabled(argv)))


if __name__ == "__main__":
    main()
