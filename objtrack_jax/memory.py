"""Memory budget for inference: chunk sizes from a budget, and freed memory handed back.

The tracker's two inference memory settings (:class:`~objtrack_jax.models.tracker.PIPsTracker`
fields) are ``encode_chunk`` (frames through the encoder at once) and ``chunk_mb`` (the working
set of the refinement: correlation patches and update-network activations, computed in point
chunks). :func:`inference_model` picks both from a budget (``--max-memory``), and rolls the refinement loop
(``unroll_iters=False``: a smaller program, same speed without gradients, measured). Training keeps
the defaults (everything at once, unrolled), the fastest path under ``jax.grad``.

Estimates (XLA:CPU buffer assignment, full-width PIPs++, fp32): the encoder needs about
490 bytes of scratch per input pixel per frame (224 MB for one 512x896 frame), scaling with the
stem width; the refinement's scratch is ``chunk_mb`` plus O(N*S*C) templates.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Optional, Sequence

import jax
import numpy as np

ENCODER_BYTES_PER_PIXEL = 490  # one frame, full width (stem 64), float32
DEFAULT_CHUNK_MB = 64
MAX_ENCODE_CHUNK = 8


def machine_memory_mb() -> int:
    """Physical memory, or the cgroup limit when lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2 ** 20
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                raw = f.read().strip()
            if raw.isdigit():
                total = min(total, int(raw) // 2 ** 20)
        except OSError:
            pass
    return int(total)


def available_memory_bytes() -> Optional[int]:
    """Memory available now: MemAvailable from /proc/meminfo (Linux), capped at the cgroup limit
    (:func:`machine_memory_mb`); else the physical memory; None when unknown."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    try:
        limit = machine_memory_mb() * 2 ** 20
    except (ValueError, OSError, AttributeError):
        return avail
    return limit if avail is None else min(avail, limit)


def check_memory(estimate: int, what: str, hint: str = "") -> None:
    """MemoryError (before allocating) when ``estimate`` bytes exceed :func:`available_memory_bytes`."""
    avail = available_memory_bytes()
    if avail is not None and estimate > avail:
        raise MemoryError(f"{what} needs an estimated {estimate / 2**30:.1f} GiB but only "
                          f"{avail / 2**30:.1f} GiB of memory is available; refusing before "
                          f"allocating{'; ' + hint if hint else ''}")


def default_budget_mb() -> int:
    """Half the machine's memory (the rest: weights, compiled programs, video buffers, others)."""
    return machine_memory_mb() // 2


def encoder_frame_mb(height: int, width: int, stem_width: int = 64, itemsize: int = 4) -> float:
    """Estimated encoder scratch of one ``height x width`` frame, in MB."""
    return ENCODER_BYTES_PER_PIXEL * height * width * (stem_width / 64) * (itemsize / 4) / 2 ** 20


def memory_settings(height: int, width: int, max_memory_mb: Optional[int] = None,
                    stem_width: int = 64, itemsize: int = 4) -> dict:
    """``{'encode_chunk', 'chunk_mb', 'unroll_iters'}`` for frames of ``height x width``.

    ``chunk_mb`` is ``DEFAULT_CHUNK_MB`` or a sixteenth of the budget when that is smaller (at
    least 8); the encoder takes as many frames at once as fit ``chunk_mb`` (at least one, at
    most ``MAX_ENCODE_CHUNK``). Small chunks cost no speed on CPU (measured: one 256x256 frame at a
    time encodes as fast as eight at once), so the default budget does not buy bigger ones.
    """
    budget = default_budget_mb() if max_memory_mb is None else int(max_memory_mb)
    if budget <= 0:
        raise ValueError(f"max_memory_mb must be positive, got {max_memory_mb}")
    chunk_mb = int(max(8, min(DEFAULT_CHUNK_MB, budget // 16)))
    frame = encoder_frame_mb(height, width, stem_width, itemsize)
    encode_chunk = int(max(1, min(MAX_ENCODE_CHUNK, chunk_mb // max(frame, 1e-6))))
    return dict(encode_chunk=encode_chunk, chunk_mb=chunk_mb, unroll_iters=False)


POINT_CHUNK_BYTES_PER_FEATURE = 10 * 4  # resident [n, S, C] float32 arrays per refine call
MAX_POINT_CHUNK = 4096


def point_chunk_size(window: int, latent_dim: int = 128, max_memory_mb: Optional[int] = None,
                     itemsize: int = 4) -> int:
    """Points refined per call of the refinement (``chunk_size`` of the long-video engine) for a
    budget: a power of two in [8, ``MAX_POINT_CHUNK``] whose O(n·S·C) arrays (the three carried
    templates in and out, the re-sampled ones, coordinates: about ten ``[n, S, C]`` arrays) take
    at most a sixteenth of the budget. All chunks of a window share its one encoding; the carried
    templates of every point (``3·N·S·C``) stay resident between windows."""
    budget = default_budget_mb() if max_memory_mb is None else int(max_memory_mb)
    if budget <= 0:
        raise ValueError(f"max_memory_mb must be positive, got {max_memory_mb}")
    per_point = max(int(window), 1) * int(latent_dim) * POINT_CHUNK_BYTES_PER_FEATURE * itemsize / 4
    n = int(budget * 2 ** 20 / 16 // per_point)
    return int(min(MAX_POINT_CHUNK, max(8, 1 << max(0, n.bit_length() - 1))))


def inference_model(model, height: int, width: int, max_memory_mb: Optional[int] = None):
    """``model`` with its inference memory settings chosen for ``height x width`` frames."""
    import jax.numpy as jnp

    return model.clone(**memory_settings(height, width, max_memory_mb,
                                         int(tuple(model.encoder_dims)[0]),
                                         jnp.dtype(model.dtype).itemsize))


def estimate_tracking_bytes(num_points: int, num_frames: int, height: int, width: int,
                            model_size: Sequence[int], window: int, latent_dim: int = 128,
                            streamed: bool = False) -> int:
    """A rough lower bound of the host memory :func:`objtrack_jax.tracking.track_queries` needs:
    the input frames (a window of them when ``streamed`` from a
    :class:`~objtrack_jax.video_io.FrameSource`, else the whole video) and a window resized, the
    encoded window (4-level pyramid), the output tracks/logits with their stitching copies, and
    the three carried templates of every point."""
    h, w = (int(s) for s in model_size)
    s_win = max(1, min(int(window), int(num_frames)))
    frames = (s_win if streamed else num_frames) * height * width * 3 + s_win * h * w * 3 * 4
    fmaps = s_win * (h // 8) * (w // 8) * latent_dim * 4 * 4 // 3
    tracks = num_points * num_frames * 3 * 4 * 3
    templates = num_points * s_win * latent_dim * 3 * 4
    return int(frames + fmaps + tracks + templates)


def release_freed_memory() -> bool:
    """Returns freed heap memory to the OS (glibc ``malloc_trim``); False where unavailable.

    XLA's compiler frees ~120 MB after compiling the tracker, which glibc keeps; without a trim
    the first window's buffers come on top of it in the peak RSS.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False


class TrimmedJit:
    """``jax.jit(fn)`` compiled ahead of time per input signature, with
    :func:`release_freed_memory` between compiling and the first run, so that the compiler's
    freed scratch is not under the first run's buffers in the peak RSS (measured at config (a):
    peak 600 -> 475 MB). Positional array/pytree arguments only."""

    def __init__(self, fn):
        self._jit = jax.jit(fn)
        self._compiled = {}

    def __call__(self, *args):
        leaves, tree = jax.tree_util.tree_flatten(args)
        key = (tree, tuple((np.shape(x), np.result_type(x)) for x in leaves))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._jit.lower(*args).compile()
            release_freed_memory()
        return compiled(*args)
