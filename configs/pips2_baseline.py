"""PIPs++ baseline: no contextual attention, no objectness loss.

lr 5e-4, global batch 4, S=36, N=128, 256x384 crops, 6 iterations, 200k steps.

Run::

    objtrack train --config configs/pips2_baseline.py --workdir /tmp/pips2_baseline \
        --config.data.root=/data/point_odyssey
    # CPU smoke run (synthetic data generated into the workdir):
    python -m objtrack_jax.train.main --config configs/pips2_baseline.py:tiny --workdir /tmp/pips2_tiny
"""

from objtrack_jax.configs import common


def get_config(arg: str | None = None):
    c = common.get_base_config()
    c.model.use_attention = False
    c.loss.alpha = 0.0
    c.optim.lr = 5e-4
    c.batch_size = 4
    c.max_steps = 200_000
    c.iters = 6
    c.data.clip_len = 36
    c.data.num_points = 128
    c.data.crop_size = (256, 384)
    return common.finalize(c, arg)
