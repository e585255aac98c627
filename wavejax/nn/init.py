"""Initialisers shared by the trunk and the model families (nanoGPT's scheme), and the layer constructors that
declare every parameter's logical axis names where it is made (`named`): wavejax.parallel.sharding maps those names
onto the mesh. Names: "embed" (model width), "mlp" (hidden units), "qkv" and "heads" (attention features), "vocab",
"length" (positions), "experts", "norm" (LayerNorm parameters), and None for an axis that is never split."""

import math

import flax.linen as nn
import jax.numpy as jnp


def normal(std: float = 0.02):
    return nn.initializers.normal(stddev=std)


def std_of(model_config) -> float:
    """model.init_std: the std of the normal initialisers (0.02 is GPT-2's, tuned for width 768; at width 64 it leaves
    attention logits so small that learning to look things up stalls for thousands of steps, ~1/sqrt(d_model) does not)."""
    return float(model_config.get("init_std", 0.02))


def weights(model_config):
    """The normal initialiser of weight matrices and embeddings, with model.init_std."""
    return normal(std_of(model_config))


def residual_out(model_config, std: float | None = None):
    """Output projections into the residual stream: std / sqrt(2 * n_layer) (GPT-2), or plain std when
    model.scaled_residual_init is off (PhaseGPT's init); std defaults to model.init_std."""
    std = std_of(model_config) if std is None else std
    if not model_config.scaled_residual_init:
        return normal(std)
    return nn.initializers.normal(stddev=std / math.sqrt(2 * model_config.n_layer))


def dtype_of(name: str):
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[name]


def named(initializer, *axes):
    """`initializer` for a parameter whose dimensions carry these logical axis names (one per dimension)."""
    return nn.with_logical_partitioning(initializer, tuple(axes))


class Dense(nn.Dense):
    """nn.Dense applied to its input flattened to [N, features_in] and reshaped back (same parameters, same math).

    The kernel's gradient then contracts one axis instead of [batch, length]: XLA:CPU lays the two-axis contraction
    out as a strided transpose fused with the producer (the GELU backward took 5 ms of a 70 ms step at nanoGPT's CPU
    size; experiments/benchmarks/bench_torch_step.py)."""

    def __call__(self, inputs):
        lead = inputs.shape[:-1]
        y = super().__call__(inputs.reshape(-1, inputs.shape[-1]))
        return y.reshape(*lead, y.shape[-1])


def dense(features: int, axes: tuple, *, kernel_init=nn.linear.default_kernel_init, use_bias: bool = True,
          dtype=None, name: str | None = None) -> nn.Dense:
    """nn.Dense with its kernel named `axes` (input axis, output axis) and its bias named by the output axis; its
    input is flattened to two axes (Dense)."""
    return Dense(features, use_bias=use_bias, dtype=dtype, name=name, kernel_init=named(kernel_init, *axes),
                 bias_init=named(nn.initializers.zeros_init(), axes[-1]))


def layer_norm(*, use_bias: bool, dtype=None, name: str | None = None) -> nn.LayerNorm:
    """The trunk's LayerNorm (epsilon 1e-5), its scale and bias named "norm" (never split)."""
    return nn.LayerNorm(epsilon=1e-5, use_bias=use_bias, dtype=dtype, name=name,
                        scale_init=named(nn.initializers.ones_init(), "norm"),
                        bias_init=named(nn.initializers.zeros_init(), "norm"))


def embed(num: int, features: int, axes: tuple, *, embedding_init=None, dtype=None, name: str | None = None):
    """nn.Embed with its table named `axes` (rows, features)."""
    return nn.Embed(num, features, dtype=dtype, name=name, embedding_init=named(embedding_init or normal(), *axes))
