"""objtrack_jax: PIPs++ point tracking with object priors, in JAX/Flax.

Importing the package has no side effects (no device initialisation, no file access).
"""

__version__ = "0.1.0"
