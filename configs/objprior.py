"""The paper's model ("Leveraging Object Priors for Point Tracking"): PIPs++ with the
contextual-attention stack and the objectness loss (alpha = 0.5/3 as the official code).

lr 5e-3, global batch 2, S=24, N=128, 384x512 crops, 6 iterations.

Run::

    objtrack train --config configs/objprior.py --workdir /tmp/objprior \
        --config.data.root=/data/point_odyssey
    # CPU smoke run (synthetic data generated into the workdir):
    python -m objtrack_jax.train.main --config configs/objprior.py:tiny --workdir /tmp/objprior_tiny
"""

from objtrack_jax.configs import common


def get_config(arg: str | None = None):
    c = common.get_base_config()
    c.model.use_attention = True
    c.loss.alpha = 0.5 / 3
    c.optim.lr = 5e-3
    c.batch_size = 2
    c.max_steps = 200_000
    c.iters = 6
    c.data.clip_len = 24
    c.data.num_points = 128
    c.data.crop_size = (384, 512)
    return common.finalize(c, arg)
