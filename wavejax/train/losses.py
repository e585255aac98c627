"""Losses: token cross-entropy plus any auxiliary losses a module sowed into "losses"."""

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits, targets):
    """Mean next-token cross-entropy in nats, computed in float32."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets).mean()


def auxiliary_loss(collection) -> jax.Array:
    """Sum of every scalar sowed into the "losses" collection (0 when there is none)."""
    leaves = jax.tree.leaves(collection)
    return sum((jnp.sum(jnp.asarray(x, jnp.float32)) for x in leaves), jnp.zeros((), jnp.float32))
