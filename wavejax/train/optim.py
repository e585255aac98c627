"""Optimizers as optax chains, chosen by `config.train.optimizer`.

Every optimizer is wrapped the same way: global-norm clipping first, then the update rule
with a linear-warmup + cosine schedule (nanoGPT's: 0 -> lr over warmup_steps, cosine to
min_lr at decay_steps, flat after). Weight decay applies to matrices and embeddings only.
"""

from __future__ import annotations

import jax
import optax

OPTIMIZERS: dict = {}


def register_optimizer(name: str):
    def deco(fn):
        OPTIMIZERS[name] = fn
        return fn

    return deco


def schedule(train_config) -> optax.Schedule:
    decay = train_config.decay_steps or train_config.steps
    warmup = min(train_config.warmup_steps, decay)
    if decay <= warmup:
        return optax.linear_schedule(0.0, train_config.lr, max(warmup, 1))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=train_config.lr, warmup_steps=warmup, decay_steps=decay, end_value=train_config.min_lr
    )


DECAYED_NAMES = ("kernel", "embedding")


def decay_mask(params):
    """True for weight matrices and embeddings (nanoGPT decays every 2-D tensor). Decided by name,
    not ndim: under nn.scan a LayerNorm scale is stacked to [layers, d] and must stay undecayed."""
    return jax.tree_util.tree_map_with_path(lambda path, _: getattr(path[-1], "key", None) in DECAYED_NAMES, params)


@register_optimizer("adamw")
def adamw(train_config, lr: optax.Schedule) -> optax.GradientTransformation:
    return optax.adamw(
        lr, b1=train_config.beta1, b2=train_config.beta2, eps=train_config.eps,
        weight_decay=train_config.weight_decay, mask=decay_mask,
    )


def make_optimizer(train_config) -> tuple[optax.GradientTransformation, optax.Schedule]:
    lr = schedule(train_config)
    parts = []
    if train_config.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(train_config.grad_clip))
    parts.append(OPTIMIZERS[train_config.optimizer](train_config, lr))
    return optax.chain(*parts), lr
