"""Ablation: the paper's setup with contextual attention but without the objectness loss (alpha 0).

Run::

    objtrack train --config configs/ablation_attention_only.py --workdir /tmp/abl_attention \
        --config.data.root=/data/point_odyssey
    python -m objtrack_jax.train.main --config configs/ablation_attention_only.py:tiny --workdir /tmp/abl_att_tiny
"""

from objtrack_jax.configs import objprior


def get_config(arg: str | None = None):
    c = objprior.get_config(arg)
    c.model.use_attention = True
    c.loss.alpha = 0.0
    return c
