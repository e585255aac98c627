"""The one pytree that holds a run: step, params, optimizer state, RNG."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer updates done (also the sampler position)
    params: Any
    opt_state: Any
    rng: jax.Array  # raw uint32 key; per-step keys are fold_in(rng, step)


def init_boxed_params(model, seed: int, block_size: int):
    """The model's parameters as `model.init` makes them: each in a box carrying its logical axis names."""
    init_rng = jax.random.split(jax.random.PRNGKey(seed))[0]
    return model.init({"params": init_rng}, jnp.zeros((1, block_size), jnp.int32), True)["params"]


def create_train_state(model, tx, seed: int, block_size: int) -> TrainState:
    """Pure init (jit it with out_shardings to place the state on a mesh); the parameters are unboxed."""
    train_rng = jax.random.split(jax.random.PRNGKey(seed))[1]
    params = nn.meta.unbox(init_boxed_params(model, seed, block_size))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=train_rng)
