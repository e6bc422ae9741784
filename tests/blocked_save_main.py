"""Test helper: the training entry point with one checkpoint's finalization blocked forever.

    python tests/blocked_save_main.py BLOCK_STEP MARKER_FILE -- <objtrack_jax.train.main flags>

Orbax writes checkpoint ``k`` into ``checkpoints/k.orbax-checkpoint-tmp-*`` in a background
thread and renames it to ``checkpoints/k`` when complete. Here the rename of ``BLOCK_STEP`` never
happens: its data is written, then the thread writes ``MARKER_FILE`` and waits forever, so the
training stalls at the next save. A test can then SIGKILL the process *during an asynchronous
save*, deterministically (no race against the writer), and check that the rerun resumes from
``BLOCK_STEP - 1``.
"""

import asyncio
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def _block_finalize(block_step: int, marker: str) -> None:
    from orbax.checkpoint._src.path import atomicity

    original = atomicity.AtomicRenameTemporaryPath.finalize

    async def finalize(self, *args, **kwargs):
        if self.get_final().name == str(block_step):
            with open(marker + ".tmp", "w") as f:
                f.write(str(self.get()))
            os.replace(marker + ".tmp", marker)
            while True:  # until SIGKILL
                await asyncio.sleep(3600)
        return await original(self, *args, **kwargs)

    atomicity.AtomicRenameTemporaryPath.finalize = finalize


if __name__ == "__main__":
    step, marker, sep, *rest = sys.argv[1:]
    assert sep == "--", sys.argv
    _block_finalize(int(step), marker)
    from objtrack_jax.train import main

    main.main([sys.argv[0], *rest])
