"""Package list for setuptools (everything else is in pyproject.toml).

The repository's ``configs/`` and ``data_pipelines/`` folders install as the subpackages
``objtrack_jax.configs`` and ``objtrack_jax.data_pipelines``: no generic top-level module names
in site-packages. Every package folder under ``objtrack_jax/`` is found automatically.
"""

from setuptools import find_packages, setup

PACKAGE_DIR = {"objtrack_jax.configs": "configs", "objtrack_jax.data_pipelines": "data_pipelines"}
PACKAGES = sorted(find_packages(include=["objtrack_jax", "objtrack_jax.*"]) + list(PACKAGE_DIR))

if __name__ == "__main__":
    setup(packages=PACKAGES, package_dir=PACKAGE_DIR)
