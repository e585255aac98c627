"""Training objectives: token cross-entropy, the auxiliary losses modules sow into "losses", and the registry of
the extra term named by `config.train.loss`.

An objective is registered with the model collections it reads (e.g. "layer_outputs", every block's output, see
`wavejax.models.gpt.layer_outputs_in_order`); the train step makes exactly those collections mutable, so sowing
costs nothing for objectives that do not ask. Its function returns (extra scalar, {name: scalar diagnostics}).
The reported training "loss" is always the plain cross-entropy; the extra term is part of "aux_loss". A model
family registers its objectives beside its model (the Wave-Native ones: wavejax/models/wave_losses.py).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits, targets):
    """Mean next-token cross-entropy in nats, computed in float32."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets).mean()


def masked_cross_entropy(logits, targets):
    """Mean cross-entropy over the scored positions (targets >= 0; synthetic tasks mark the others -1)."""
    scored = targets >= 0
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), jnp.maximum(targets, 0))
    return jnp.sum(jnp.where(scored, ce, 0.0)) / jnp.maximum(jnp.sum(scored), 1)


def masked_accuracy(logits, targets):
    """The fraction of scored positions (targets >= 0) whose most likely token is the target."""
    scored = targets >= 0
    hit = (jnp.argmax(logits, axis=-1) == targets) & scored
    return jnp.sum(hit) / jnp.maximum(jnp.sum(scored), 1)


def auxiliary_loss(collection) -> jax.Array:
    """Sum of every scalar sowed into the "losses" collection (0 when there is none)."""
    leaves = jax.tree.leaves(collection)
    return sum((jnp.sum(jnp.asarray(x, jnp.float32)) for x in leaves), jnp.zeros((), jnp.float32))


class Objective(NamedTuple):
    """extra(logits, targets, variables, model_config, train_config) -> (scalar, {name: scalar})."""

    extra: Callable
    collections: tuple[str, ...] = ()


LOSSES: dict[str, Objective] = {}


def register_loss(name: str, collections: tuple[str, ...] = ()):
    def deco(fn):
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is registered twice")
        LOSSES[name] = Objective(fn, tuple(collections))
        return fn

    return deco


@register_loss("ce")
def _no_extra(logits, targets, variables, model_config, train_config):
    return jnp.zeros((), jnp.float32), {}
