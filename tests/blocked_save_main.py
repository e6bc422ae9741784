"""Test helper: the training entry point, held at a chosen checkpoint so that a test can signal
it at a known point instead of racing the training loop.

    python tests/blocked_save_main.py MODE STEP MARKER_FILE -- <objtrack_jax.train.main flags>

``MODE`` is one of

* ``finalize``: orbax writes checkpoint ``STEP`` into ``checkpoints/STEP.orbax-checkpoint-tmp*``
  in a background thread and renames it to ``checkpoints/STEP`` when complete. Here the rename
  never happens: the data is written, then the thread writes ``MARKER_FILE`` (holding the
  temporary directory) and waits forever, so the training stalls at the next save. A SIGKILL then
  lands *during an asynchronous save*.
* ``pause``: when the loop is about to save ``STEP``, every earlier save is first finished
  (written, renamed, old ones deleted), then ``MARKER_FILE`` is written and the loop waits. On
  SIGTERM (the loop's own handler has then set its stop flag) it continues: checkpoint ``STEP`` is
  saved and the run stops as a SIGTERMed run does. A SIGKILL kills it with checkpoints up to
  ``STEP - 1`` on disk and nothing in flight.

Either way the test signals the process only after the marker exists, however slowly the
machine runs: no timing enters the result.
"""

import asyncio
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def _write_marker(marker: str, text: str) -> None:
    with open(marker + ".tmp", "w") as f:
        f.write(text)
    os.replace(marker + ".tmp", marker)


def _block_finalize(block_step: int, marker: str) -> None:
    from orbax.checkpoint._src.path import atomicity

    original = atomicity.AtomicRenameTemporaryPath.finalize

    async def finalize(self, *args, **kwargs):
        if self.get_final().name == str(block_step):
            _write_marker(marker, str(self.get()))
            while True:  # until SIGKILL
                await asyncio.sleep(3600)
        return await original(self, *args, **kwargs)

    atomicity.AtomicRenameTemporaryPath.finalize = finalize


def _stop_requested() -> bool:
    """Whether the training loop's SIGTERM/SIGINT handler (a bound ``_StopSignals._handle``) has
    recorded a signal."""
    handler = signal.getsignal(signal.SIGTERM)
    return getattr(getattr(handler, "__self__", None), "received", None) is not None


def _pause_before_save(pause_step: int, marker: str) -> None:
    from objtrack_jax.train import checkpoint

    original = checkpoint.Checkpointer.save

    def save(self, step, *args, **kwargs):
        if int(step) == pause_step:
            self.wait_until_finished()
            _write_marker(marker, str(step))
            while not _stop_requested():  # SIGKILL ends it here; SIGTERM lets it go on
                time.sleep(0.05)
        return original(self, step, *args, **kwargs)

    checkpoint.Checkpointer.save = save


if __name__ == "__main__":
    mode, step, marker, sep, *rest = sys.argv[1:]
    assert sep == "--" and mode in ("finalize", "pause"), sys.argv
    (_block_finalize if mode == "finalize" else _pause_before_save)(int(step), marker)
    from objtrack_jax.train import main

    main.main([sys.argv[0], *rest])
