"""objtrack_jax: PIPs++ point tracking with object priors, in JAX/Flax.

The public API (docs/api.md)::

    from objtrack_jax import load_model, track_queries
    model, params, info = load_model()                 # the shipped weights (or a checkpoint path)
    tracks, visible, logits = track_queries(model, params, info, video, queries)

* :func:`load_model` / :func:`load_pretrained`: ``(model, params, info)``; ``info`` carries the
  settings the weights were validated at;
* :func:`track_queries`: queries ``[N, 3]`` as (t, y, x) at any frame of a video of any length ->
  tracks ``[N, T, 2]`` as (x, y), with the weights' validated settings (those of ``objtrack
  track``); :func:`track_video`: the same on a video file, writing the annotated video;
* :class:`TrackingSettings`: every tracking setting in one frozen object;
* :mod:`objtrack_jax.functional`: the model as a pure, jit- and vmap-able function of
  ``(params, video [B, T, H, W, 3], queries [B, N, 3])`` (``make_tracker``);
* :func:`evaluate`: the PIPs++ / TAP-Vid protocols for any tracker in those conventions.

Importing the package has no side effects (no device initialisation, no file access): the names
above are loaded on first use.
"""

__version__ = "0.1.0"

_PUBLIC = {
    "load_model": "objtrack_jax.model_io",
    "track_queries": "objtrack_jax.tracking",
    "track_video": "objtrack_jax.video_tracking",
    "TrackingSettings": "objtrack_jax.settings",
    "make_tracker": "objtrack_jax.functional",
    "evaluate": "objtrack_jax.evaluation",
}

__all__ = ["load_pretrained", *_PUBLIC]


def load_pretrained(name: str = "objprior_synth"):
    """``(model, params, info)`` of the weights shipped with the package (see
    :mod:`objtrack_jax.model_io`)."""
    from objtrack_jax.model_io import load_pretrained as _load

    return _load(name)


def __getattr__(name):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'objtrack_jax' has no attribute {name!r}")
