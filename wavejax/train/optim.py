"""The optimizer of a run: global-norm clipping, then the update rule named by `config.train.optimizer` (the
registry in wavejax/nn/optimizers.py) with a linear-warmup + cosine schedule (nanoGPT's: 0 -> lr over warmup_steps,
cosine to min_lr at decay_steps, flat after)."""

from __future__ import annotations

import jax.numpy as jnp
import optax

from wavejax.nn.optimizers import OPTIMIZERS

SCHEDULES = ("cosine", "cosine_clamp")


def schedule(train_config) -> optax.Schedule:
    """cosine: lr (0 -> peak over warmup) then min_lr + (lr - min_lr) * (1 + cos(pi p)) / 2, p from 0 to 1 at
    decay_steps. cosine_clamp (PhaseGPT's LambdaLR): lr * max(min_lr / lr, (1 + cos(pi p)) / 2)."""
    decay = train_config.decay_steps or train_config.steps
    warmup = min(train_config.warmup_steps, decay)
    if decay <= warmup:
        return optax.linear_schedule(0.0, train_config.lr, max(warmup, 1))
    if train_config.schedule == "cosine_clamp":
        lr, floor = train_config.lr, train_config.min_lr / train_config.lr

        def clamped(step):
            step = jnp.asarray(step, jnp.float32)
            p = jnp.clip((step - warmup) / (decay - warmup), 0.0, 1.0)
            cosine = jnp.maximum(floor, 0.5 * (1.0 + jnp.cos(jnp.pi * p)))
            return lr * jnp.where(step < warmup, step / max(warmup, 1), cosine)

        return clamped
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=train_config.lr, warmup_steps=warmup, decay_steps=decay, end_value=train_config.min_lr
    )


def make_optimizer(train_config) -> tuple[optax.GradientTransformation, optax.Schedule]:
    lr = schedule(train_config)
    parts = []
    if train_config.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(train_config.grad_clip))
    parts.append(OPTIMIZERS[train_config.optimizer](train_config, lr))
    return optax.chain(*parts), lr
