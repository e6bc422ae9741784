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

import jax
import numpy as np
import orbax.checkpoint as ocp


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


def load_params(directory: str, step: Optional[int] = None) -> tuple[Any, int]:
    """Loads ``(params, step)`` from a checkpoint directory as host numpy arrays.

    Works with any device count (the saved shardings are ignored) and keeps the saved dtypes
    (float64 too, without ``jax_enable_x64``): for inspection, tests and exporting.
    ``directory`` may be a workdir (its ``checkpoints/`` is used) or the checkpoint root.
    """
    if os.path.isdir(os.path.join(directory, "checkpoints")):
        directory = os.path.join(directory, "checkpoints")
    mngr = ocp.CheckpointManager(
        os.path.abspath(directory),
        item_handlers={"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler()})
    try:
        step = mngr.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {directory}")
        meta = mngr.item_metadata(step)["state"]
        dev = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        # 64-bit types on for the restore only: float64 checkpoints (model.dtype='float64') come
        # back as saved instead of being silently rounded to float32; other dtypes are unchanged.
        with jax.enable_x64(True):
            target = jax.tree.map(
                lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=dev), meta,
                is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "dtype"))
            out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
            params = jax.tree.map(np.asarray, out.state["params"])
    finally:
        mngr.close()
    return params, int(step)
