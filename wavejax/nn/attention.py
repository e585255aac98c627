"""Causal multi-head self-attention: the trunk's default ("dense") attention.

softmax(Q K^T / sqrt(d_head) + causal mask) V through `jax.nn.dot_product_attention`, which uses
cuDNN flash attention on GPU for bf16/fp16 inputs. On a CPU, and with attention dropout (which
dot_product_attention lacks), the explicit einsum form runs instead: XLA:CPU runs its backward in
about 60% of dot_product_attention's time (experiments/benchmarks/bench_torch_step.py).
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from einops import rearrange

from wavejax.nn import init
from wavejax.nn.registry import register_attention


def causal_attention_reference(q, k, v, dropout_rng=None, dropout_rate: float = 0.0):
    """Plain einsum attention, [B,T,H,D] inputs; the reference every fast path is tested against."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) * scale
    t = q.shape[1]
    mask = jnp.tril(jnp.ones((t, t), dtype=bool))
    scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1)
    if dropout_rng is not None and dropout_rate > 0.0:
        keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs.shape)
        probs = jnp.where(keep, probs / (1.0 - dropout_rate), 0.0)
    return jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)


class QKVProjection(nn.Module):
    """x [B,T,D] -> q, k, v each [B,T,H,D/H]; shared by attention variants that need plain heads."""

    n_head: int
    d_model: int
    use_bias: bool
    dtype: jnp.dtype
    std: float = 0.02  # of the projection's normal init (model.init_std)

    @nn.compact
    def __call__(self, x):
        qkv = init.dense(3 * self.d_model, ("embed", "qkv"), use_bias=self.use_bias, dtype=self.dtype, kernel_init=init.normal(self.std),
                         name="qkv")(x)
        q, k, v = rearrange(qkv, "b t (three h d) -> three b t h d", three=3, h=self.n_head)
        return q, k, v


class CausalSelfAttention(nn.Module):
    config: object  # the model ConfigDict

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        c = self.config
        dtype = init.dtype_of(c.dtype)
        q, k, v = QKVProjection(c.n_head, c.d_model, c.use_bias, dtype, init.std_of(c), name="proj")(x)
        if c.attn_dropout > 0.0 and not deterministic:
            y = causal_attention_reference(q, k, v, self.make_rng("dropout"), c.attn_dropout)
        elif jax.default_backend() == "cpu":
            y = causal_attention_reference(q, k, v)
        else:
            y = jax.nn.dot_product_attention(q, k, v, is_causal=True)
        y = rearrange(y, "b t h d -> b t (h d)")
        y = init.dense(c.d_model, ("heads", "embed"), use_bias=c.use_bias, dtype=dtype, kernel_init=init.residual_out(c),
                       name="out")(y)
        return nn.Dropout(c.dropout)(y, deterministic=deterministic)


@register_attention("dense")
def dense_attention(config, name=None):
    return CausalSelfAttention(config, name=name)
