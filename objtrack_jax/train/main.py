"""Training entry point (kept thin: flags -> ``train_and_evaluate``).

    python -m objtrack_jax.train.main --config configs/objprior.py[:tiny] --workdir DIR \
        [--config.optim.lr=1e-3 ...]

``objtrack train`` forwards to :func:`main` with the same flags. Re-running with the same workdir
resumes from its latest checkpoint. Exit status: 0 when done or stopped by ``max_steps_this_run``,
143 when stopped by SIGTERM (after writing a checkpoint).
"""

from __future__ import annotations

import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, e.g. configs/objprior.py or configs/objprior.py:tiny.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and generated data.")


def _run(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # TensorFlow (tf.data, TensorBoard) must not take GPU/TPU memory from JAX.
    from data_pipelines.pipeline import hide_accelerators_from_tf
    hide_accelerators_from_tf()
    from objtrack_jax.train.loop import train_and_evaluate

    logging.getLogger("objtrack_jax").setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every save step at INFO
    result = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    summary = {k: v for k, v in result.items() if isinstance(v, (int, float, str)) or v is None}
    print({k: summary[k] for k in sorted(summary)}, flush=True)
    if result.get("stopped_early") == "SIGTERM":
        sys.exit(143)


def main(argv=None):
    """Parses ``argv`` (default ``sys.argv``) and trains. ``argv[0]`` is the program name."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(_run, argv=argv)


if __name__ == "__main__":
    main()
