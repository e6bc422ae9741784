"""Learning-rate schedule and optimiser from the config (PIPs++ / paper-code settings).

* one-cycle schedule over ``max_steps + optim.extra_steps`` steps (PyTorch ``OneCycleLR`` with
  ``anneal_strategy='linear'``, ``pct_start=warmup_frac``): linear warm-up from
  ``lr / div_factor`` to ``lr`` over the first ``warmup_frac`` of the steps, then linear decay to
  ``lr / (div_factor * final_div_factor)``;
* gradient clipping to global norm ``clip_norm`` (before the optimiser, as
  ``torch.nn.utils.clip_grad_norm_``);
* AdamW (decoupled weight decay multiplied by the learning rate, as ``torch.optim.AdamW``);
* optionally (``optim.ema_decay`` > 0) an exponential moving average of the parameters after
  each step, kept in the optimiser state (:func:`params_ema`): checkpointed and resumed with it,
  and what :func:`objtrack_jax.model_io.load_model` reads from a run that kept one. The last
  steps of a run at a high learning rate then do not decide the weights alone (docs/drift.md).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class ParamsEMAState(NamedTuple):
    """``ema_params`` = sum over steps k of ``(1 - d) d^(n-k) params_k`` from zeros, and
    ``ema_weight`` = the sum of those coefficients (``1 - d^n``): the average is their ratio,
    independent of the parameters the state was initialised with (a warm start replaces them
    after ``init``)."""

    ema_params: Any
    ema_weight: jax.Array


def params_ema(decay: float) -> optax.GradientTransformation:
    """Keeps an exponential moving average (``decay`` per step) of the parameters after each
    update; the updates pass through unchanged. Put it last in a chain."""
    d = float(decay)
    if not 0.0 < d < 1.0:
        raise ValueError(f"optim.ema_decay must be in (0, 1) (0 switches it off), got {decay!r}")

    def init(params):
        return ParamsEMAState(jax.tree.map(jnp.zeros_like, params), jnp.zeros((), jnp.float32))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("params_ema needs the parameters (tx.update(grads, state, params))")
        new = optax.apply_updates(params, updates)
        ema = jax.tree.map(lambda e, p: (d * e + (1.0 - d) * p).astype(e.dtype),
                           state.ema_params, new)
        return updates, ParamsEMAState(ema, d * state.ema_weight + (1.0 - d))

    return optax.GradientTransformation(init, update)


def ema_average(ema_params, ema_weight):
    """The averaged parameters of a :class:`ParamsEMAState`'s two fields."""
    w = float(ema_weight)
    if not w > 0:
        raise ValueError("the parameter average is empty (no step taken)")
    return jax.tree.map(lambda e: (e / w).astype(e.dtype), ema_params)


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
    """``(tx, schedule)``: clip-by-global-norm followed by AdamW with the one-cycle schedule
    (and the parameter average when ``optim.ema_decay`` > 0)."""
    o = config.optim
    schedule = make_schedule(config)
    parts = []
    if o.clip_norm and o.clip_norm > 0:
        parts.append(optax.clip_by_global_norm(float(o.clip_norm)))
    parts.append(optax.adamw(schedule, b1=float(o.b1), b2=float(o.b2), eps=float(o.eps),
                             weight_decay=float(o.weight_decay)))
    if float(o.get("ema_decay", 0.0) or 0.0) > 0:
        parts.append(params_ema(float(o.ema_decay)))
    return optax.chain(*parts), schedule
