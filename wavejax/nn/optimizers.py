"""The optimizer registry (`config.train.optimizer`), weight-decay masks and the base AdamW. A model family
registers its own optimizers beside its model (the Wave-Native ones: wavejax/models/wave_optim.py); the train loop
wraps the chosen one with clipping and the schedule (wavejax/train/optim.py)."""

from __future__ import annotations

import jax
import optax

OPTIMIZERS: dict = {}


def register_optimizer(name: str):
    def deco(fn):
        OPTIMIZERS[name] = fn
        return fn

    return deco


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
