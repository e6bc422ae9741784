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

A latest checkpoint that cannot be restored (truncated or corrupt files) is not fatal:
:func:`restore_or_init` logs a warning naming its step, resumes from the newest checkpoint that
does restore, and moves the bad ones (never deleted) to ``<checkpoints>_unrestorable/<step>`` so
that the resumed run can save its own steps again.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Optional

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


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

    def all_steps(self) -> list[int]:
        """Steps of the finished checkpoints on disk, ascending."""
        return sorted(int(s) for s in self.manager.all_steps())

    def set_aside(self, steps, barrier: Optional[Callable[[], None]] = None) -> list[str]:
        """Moves checkpoints ``steps`` to ``<directory>_unrestorable/<step>`` (kept, not deleted)
        and reloads the step list; process 0 moves, ``barrier`` (if given) syncs the others.
        Returns the new paths."""
        aside = self.directory + "_unrestorable"
        moved = []
        for step in steps:
            src, dst = os.path.join(self.directory, str(step)), os.path.join(aside, str(step))
            suffix = 1
            while os.path.exists(dst):
                dst, suffix = os.path.join(aside, f"{step}.{suffix}"), suffix + 1
            if jax.process_index() == 0 and os.path.exists(src):
                os.makedirs(aside, exist_ok=True)
                os.replace(src, dst)
            moved.append(dst)
        if barrier is not None:
            barrier()
        self.manager.reload()
        return moved

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


def restore_or_init(checkpointer: Checkpointer, abstract_state, init_fn: Callable[[], Any],
                    barrier: Optional[Callable[[], None]] = None) -> tuple[Any, dict, Optional[int]]:
    """Resumes from the newest checkpoint that restores, else ``init_fn()`` when there is none.

    A checkpoint that fails to restore is skipped with a warning naming its step, and the next
    older one is tried. Once one restores, the newer unrestorable ones are moved aside
    (:meth:`Checkpointer.set_aside`; ``barrier`` syncs processes) so that the resumed run can
    write those steps again. When none restores, nothing is moved and a ValueError lists each
    step's error (e.g. a config whose model does not match the checkpoints).

    Returns ``(state, data_state, restored_step)``; ``data_state`` is ``{}`` and ``restored_step``
    None for a fresh start.
    """
    steps = checkpointer.all_steps()
    if not steps:
        return init_fn(), {}, None
    failed: list[tuple[int, Exception]] = []
    for step in reversed(steps):
        try:
            state, data_state = checkpointer.restore(abstract_state, step)
        except Exception as e:  # pylint: disable=broad-except  (any unreadable checkpoint)
            failed.append((step, e))
            log.warning("checkpoint step %d (%s) cannot be restored: %s: %s; trying an older one",
                        step, os.path.join(checkpointer.directory, str(step)), type(e).__name__,
                        _first_line(e))
            continue
        if failed:
            moved = checkpointer.set_aside([s for s, _ in failed], barrier)
            log.warning("resuming from step %d, the newest checkpoint that restores; unrestorable "
                        "step(s) %s moved to %s (not deleted)", step, [s for s, _ in failed],
                        os.path.dirname(moved[0]))
        return state, data_state, step
    details = "; ".join(f"step {s}: {type(e).__name__}: {_first_line(e)}" for s, e in failed)
    raise ValueError(f"{checkpointer.directory}: no checkpoint can be restored ({details}). "
                     "Nothing was moved or deleted; a config that differs from the one the run was "
                     "started with also causes this.") from failed[0][1]


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "")[:limit]
