"""The one pytree that holds a run: step, params, optimizer state, RNG."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer updates done (also the sampler position)
    params: Any
    opt_state: Any
    rng: jax.Array  # raw uint32 key; per-step keys are fold_in(rng, step)


def create_train_state(model, tx, seed: int, block_size: int) -> TrainState:
    """Pure init (jit it with out_shardings to place the state on a mesh)."""
    root = jax.random.PRNGKey(seed)
    init_rng, train_rng = jax.random.split(root)
    tokens = jnp.zeros((1, block_size), jnp.int32)
    params = model.init({"params": init_rng}, tokens, True)["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=train_rng)
