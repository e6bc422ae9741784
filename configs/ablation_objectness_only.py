"""Ablation: the paper's setup with the objectness loss (alpha 0.5/3) but without contextual
attention (plain PIPs++ encoder features).

Run::

    objtrack train --config configs/ablation_objectness_only.py --workdir /tmp/abl_objectness \
        --config.data.root=/data/point_odyssey
    python -m objtrack_jax.train.main --config configs/ablation_objectness_only.py:tiny --workdir /tmp/abl_obj_tiny
"""

from objtrack_jax.configs import objprior


def get_config(arg: str | None = None):
    c = objprior.get_config(arg)
    c.model.use_attention = False
    c.loss.alpha = 0.5 / 3
    return c
