"""Learning-rate schedule and optimiser from the config (PIPs++ / paper-code settings).

* one-cycle schedule over ``max_steps + optim.extra_steps`` steps (PyTorch ``OneCycleLR`` with
  ``anneal_strategy='linear'``, ``pct_start=warmup_frac``): linear warm-up from
  ``lr / div_factor`` to ``lr`` over the first ``warmup_frac`` of the steps, then linear decay to
  ``lr / (div_factor * final_div_factor)``;
* gradient clipping to global norm ``clip_norm`` (before the optimiser, as
  ``torch.nn.utils.clip_grad_norm_``);
* AdamW (decoupled weight decay multiplied by the learning rate, as ``torch.optim.AdamW``).
"""

from __future__ import annotations

import optax


def make_schedule(config) -> optax.Schedule:
    """The one-cycle learning-rate schedule ``step -> lr``."""
    o = config.optim
    total = int(config.max_steps) + int(o.extra_steps)
    warmup = max(1, int(round(float(o.warmup_frac) * total)))
    peak = float(o.lr)
    start = peak / float(o.div_factor)
    end = start / float(o.final_div_factor)
    return optax.join_schedules(
        [optax.linear_schedule(start, peak, warmup),
         optax.linear_schedule(peak, end, max(1, total - warmup))],
        boundaries=[warmup])


def make_optimizer(config) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """``(tx, schedule)``: clip-by-global-norm followed by AdamW with the one-cycle schedule."""
    o = config.optim
    schedule = make_schedule(config)
    parts = []
    if o.clip_norm and o.clip_norm > 0:
        parts.append(optax.clip_by_global_norm(float(o.clip_norm)))
    parts.append(optax.adamw(schedule, b1=float(o.b1), b2=float(o.b2), eps=float(o.eps),
                             weight_decay=float(o.weight_decay)))
    return optax.chain(*parts), schedule
