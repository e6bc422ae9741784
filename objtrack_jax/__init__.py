"""objtrack_jax: PIPs++ point tracking with object priors, in JAX/Flax.

Importing the package has no side effects (no device initialisation, no file access).
"""

__version__ = "0.1.0"


def load_pretrained(name: str = "objprior_synth"):
    """``(model, params, info)`` of the weights shipped with the package (see
    :mod:`objtrack_jax.model_io`)."""
    from objtrack_jax.model_io import load_pretrained as _load

    return _load(name)
