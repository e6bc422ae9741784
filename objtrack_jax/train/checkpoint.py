"""Orbax checkpointing of everything needed to resume exactly.

A checkpoint at step ``k`` (directory ``<workdir>/checkpoints/<k>``) holds two items:

* ``state``: the :class:`~objtrack_jax.train.state.TrainState` (params, opt_state, step, rng);
* ``data``: the input pipeline's position as JSON (``TrainIterator.state()``: the next batch index
  ``step`` and the data ``seed``; for streamed TFRecord TFDS data also ``raw_positions``, one per
  process).

Saving is asynchronous (device arrays are copied to host, then written in a background thread) and
atomic: orbax writes into a temporary directory and renames it when complete, so a run killed
mid-save leaves the previous checkpoint intact. ``max_to_keep`` old checkpoints are kept. Always call
:meth:`Checkpointer.wait_until_finished` (or :meth:`close`) before the process exits.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

import orbax.checkpoint as ocp

# The read-only loader lives with the rest of the weight I/O; re-exported for existing callers.
from objtrack_jax.model_io import load_params  # noqa: F401  pylint: disable=unused-import


class Checkpointer:
    """A thin wrapper over ``ocp.CheckpointManager`` with the project's two items."""

    def __init__(self, directory: str, *, every_steps: int = 1000, keep: int = 3,
                 async_save: bool = True):
        self.directory = os.path.abspath(directory)
        self.every_steps = max(1, int(every_steps))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=int(keep) if keep else None,
            save_interval_steps=1,  # the interval is applied in save()
            enable_async_checkpointing=bool(async_save),
            create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("state", "data"))

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def save(self, step: int, state, data_state: dict, *, force: bool = False) -> bool:
        """Saves when ``step`` is a multiple of ``every_steps`` (or ``force``); returns whether it
        saved. Returns once the arrays are copied to host; the write continues in the background."""
        if not force and step % self.every_steps:
            return False
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  data=ocp.args.JsonSave(dict(data_state)))
        return self.manager.save(int(step), args=args, force=force)

    def restore(self, abstract_state, step: Optional[int] = None):
        """``(state, data_state)`` of ``step`` (default: latest), placed as ``abstract_state``'s
        shardings."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        out = self.manager.restore(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
        return out.state, dict(out.data)

    def wait_until_finished(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


def restore_or_init(checkpointer: Checkpointer, abstract_state,
                    init_fn: Callable[[], Any]) -> tuple[Any, dict, Optional[int]]:
    """Resumes from the latest checkpoint if there is one, else ``init_fn()``.

    Returns ``(state, data_state, restored_step)``; ``data_state`` is ``{}`` and ``restored_step``
    None for a fresh start.
    """
    step = checkpointer.latest_step()
    if step is None:
        return init_fn(), {}, None
    state, data_state = checkpointer.restore(abstract_state, step)
    return state, data_state, step
