"""Optimizers as optax chains, chosen by `config.train.optimizer`.

Every optimizer is wrapped the same way: global-norm clipping first, then the update rule
with a linear-warmup + cosine schedule (nanoGPT's: 0 -> lr over warmup_steps, cosine to
min_lr at decay_steps, flat after). Weight decay applies to matrices and embeddings only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS: dict = {}


def register_optimizer(name: str):
    def deco(fn):
        OPTIMIZERS[name] = fn
        return fn

    return deco


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


def _leaf_names(params):
    return jax.tree_util.tree_map_with_path(lambda path, _: getattr(path[-1], "key", None), params)


DECAY_MASKS = {
    # nanoGPT decays every 2-D tensor; decided by name, not ndim, because under nn.scan a LayerNorm scale is
    # stacked to [layers, d] and must stay undecayed.
    "matrices": lambda name: name in ("kernel", "embedding"),
    # PhaseGPT's name filter (no 'bias', 'norm', 'embedding' in the name): LayerNorm scales, omega and the
    # coupling K are decayed too.
    "phasegpt": lambda name: name not in ("bias", "embedding"),
    "all": lambda name: True,  # PhaseGPT's Phase B script: AdamW weight decay on every parameter
}


def decay_mask(params, kind: str = "matrices"):
    """True where weight decay applies."""
    keep = DECAY_MASKS[kind]
    return jax.tree.map(keep, _leaf_names(params))


@register_optimizer("adamw")
def adamw(train_config, lr: optax.Schedule) -> optax.GradientTransformation:
    return optax.adamw(
        lr, b1=train_config.beta1, b2=train_config.beta2, eps=train_config.eps,
        weight_decay=train_config.weight_decay, mask=lambda params: decay_mask(params, train_config.decay_mask),
    )


def make_optimizer(train_config) -> tuple[optax.GradientTransformation, optax.Schedule]:
    lr = schedule(train_config)
    parts = []
    if train_config.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(train_config.grad_clip))
    parts.append(OPTIMIZERS[train_config.optimizer](train_config, lr))
    return optax.chain(*parts), lr
