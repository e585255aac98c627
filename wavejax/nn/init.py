"""Initialisers shared by the trunk and the model families (nanoGPT's scheme)."""

import math

import flax.linen as nn


def normal(std: float = 0.02):
    return nn.initializers.normal(stddev=std)


def residual_out(model_config, std: float = 0.02):
    """Output projections into the residual stream: std / sqrt(2 * n_layer) (GPT-2), or plain std when
    model.scaled_residual_init is off (PhaseGPT's init)."""
    if not model_config.scaled_residual_init:
        return normal(std)
    return nn.initializers.normal(stddev=std / math.sqrt(2 * model_config.n_layer))


def dtype_of(name: str):
    import jax.numpy as jnp

    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[name]
