"""Online tracking: frames arrive one by one (or in chunks), the state is explicit and fixed.

The PIPs++ window protocol (docs/conventions.md, *Long videos*) is online by construction: a
window of ``S`` frames can run as soon as its last frame has arrived, and all it needs from the
past is the estimate at its first frame and the carried templates. This module makes that state
explicit:

* :class:`OnlineCore` (static settings) with the pure functions
  ``core.init(params, capacity) -> state`` and
  ``core.step(params, state, frames) -> (state, tracks, visible)``; ``state`` is an
  :class:`OnlineState`, a pytree of fixed shapes: the last ``P`` frames (encoded a window at
  a time when the window runs, as offline), each query slot's estimates over those frames, its
  carried templates, its start frame and a mask.
  Memory does not grow with the stream's length, and ``step`` compiles once per chunk size
  (``count`` masks a padded chunk, so a host loop can use one size for everything).
* Query slots (fixed ``capacity``): :meth:`OnlineCore.add` starts queries at the next frame,
  :meth:`OnlineCore.drop` frees slots; both edit the state's arrays (no recompilation).
* :class:`OnlineTracker`, the host class: resizes frames to the model resolution, maps
  coordinates to and from the input video's pixels, assigns slots and gathers the output.

**Same answers as offline.** A query added at frame ``t_a`` is tracked exactly as the forward
segment of :func:`objtrack_jax.tracking.track_queries` for a query at ``t_a``: its own windows
start at ``t_a`` and step by ``S - 1`` frames; a window runs (for every slot whose window ends at
the current frame, all on the last ``S`` frames, so one refinement call serves any mix of
slots) with the zero-velocity initialisation and the carried templates (``carry``). When the
stream ends, :meth:`OnlineCore.finish` runs what the offline engine runs at the end of a video:
the last window shifted back to end at the last frame, or one masked short window for a query
added fewer than ``S`` frames before the end.
The results are bit-equal when the refinement runs on as many points as offline (the host
class rounds its capacity up to a power of two >= 8, as the offline engine pads a group): the
same programs, the same float rounding. The backward half of ``track_queries`` (the frames
before a query's frame) is not online: those frames are gone when the query arrives.

**Latency.** A frame's estimate is final when the window containing it has run and no later
window can change it. The end-of-stream window starts ``S - 1`` frames before the last frame:
it keeps its first frame's position (locked) but replaces that frame's visibility logit and the
positions of the frames after it. So every output is emitted with a fixed delay of ``D = S``
frames: each new frame ``t`` emits the final estimate of frame ``t - D`` (window 8: 8 frames),
and :meth:`finish` emits the last ``D``. Nothing emitted is ever revised.

**The second pass** (``refine_scale``, the shipped weights' x2) is online too: its window ``k``
covers the same frames as the first pass's window ``k`` and starts from the first pass's tracks
on them, which are final once the first pass's window ``k + 1`` has run (before that, the
end-of-stream window could still rewrite them). So it runs one window behind the first pass on
the same frames at the finer resolution, and the delay becomes ``D = 2 (S - 1)`` frames
(window 8: 14). Visibility comes from the first pass, as offline.

**Anchoring** (``TrackingSettings.anchor``, the post-network stage :mod:`objtrack_jax.post`)
runs in the host class on each emitted frame, as ``track_queries`` runs it after the passes and
with the same per-frame driver (:class:`objtrack_jax.post.Stream` over
:func:`objtrack_jax.post.scan_frames`): the query's template is taken from the input frame at
the query when that frame is anchored, each slot carries its state forward in time, and the
input frames are kept until their estimates are emitted (at most ``D`` + one chunk of them). A
frame's refinement needs only that frame, so the latency is unchanged; the results equal the
forward half of :func:`objtrack_jax.post.anchor_tracks`.

**Provisional estimates.** :meth:`OnlineCore.latest` gives each slot's latest position (the end
of its last window, the zero-velocity estimate of every frame after it) without delay.

Layouts: the core works in model pixels, time-major inside the state (``[P, capacity, 2]``) and
returns ``tracks [capacity, K, 2]`` / ``visible [capacity, K]`` (point-major, the tracking API's
layout) for the ``K`` frames of a chunk. Entries for a slot that was not tracking at the emitted
frame (free, dropped, added later, or a frame before the stream's start) are NaN with
``visible`` False.
"""

from objtrack_jax.online.core import (OnlineCore, OnlineState, emitted_frames, finish_window_fn,
                                      make_core, step_fn)
from objtrack_jax.online.tracker import Emitted, OnlineTracker, track_stream

__all__ = ["Emitted", "OnlineCore", "OnlineState", "OnlineTracker", "emitted_frames",
           "finish_window_fn", "make_core", "step_fn", "track_stream"]
