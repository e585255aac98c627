"""Baseline sequence mixers the field compares against, as trunk attentions:

"rope": the dense causal softmax attention with rotary position embeddings (Su et al., 2021) on queries and keys:
    scores depend on token content and relative offset, the positional scheme of current GPTs (the learned absolute
    positions of the embedding stay).
"local": causal sliding-window softmax attention, each query sees the last `model.local_window` positions (itself
    included): the window alone, without Harmonic GPT's selected global tokens (wavejax.ops.selective.local_attention).
"linear": causal linear attention (Katharopoulos et al., 2020) with the elu+1 feature map,
    out_q = sum_{k<=q} (phi(q).phi(k)) v_k / (sum_{k<=q} phi(q).phi(k) + 1e-6), computed in chunks in O(T) time and
    memory (wavejax.ops.wave_attention.pure_wave_linear): a fixed-size recurrent state, the regime of state-space and
    linear-RNN models.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from einops import rearrange

from wavejax.errors import ConfigError
from wavejax.nn import init
from wavejax.nn.attention import QKVProjection
from wavejax.nn.registry import register_attention, register_check
from wavejax.ops.selective import local_attention
from wavejax.ops.wave_attention import pure_wave_linear


def rotary(x, base: float = 10000.0):
    """Rotary position embedding of x [B,T,H,D] (D even): channel pairs (i, i + D/2) rotated by angle t * base^(-2i/D)."""
    t, d = x.shape[1], x.shape[-1]
    freq = base ** (-jnp.arange(d // 2, dtype=jnp.float32) * 2.0 / d)
    angle = jnp.arange(t, dtype=jnp.float32)[:, None] * freq[None, :]  # [T, D/2]
    cos, sin = jnp.cos(angle)[None, :, None, :], jnp.sin(angle)[None, :, None, :]
    a, b = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    return jnp.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1).astype(x.dtype)


class _Mixer(nn.Module):
    config: object  # the model ConfigDict
    kind: str  # "rope" | "local" | "linear"

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        c = self.config
        dtype = init.dtype_of(c.dtype)
        q, k, v = QKVProjection(c.n_head, c.d_model, c.use_bias, dtype, init.std_of(c), name="proj")(x)  # [B,T,H,D]
        if self.kind == "rope":
            y = jax.nn.dot_product_attention(rotary(q), rotary(k), v, is_causal=True)
        elif self.kind == "local":
            y = local_attention(q, k, v, c.local_window)
        else:
            heads = lambda a: rearrange(a, "b t h d -> b h t d")  # noqa: E731
            y = rearrange(pure_wave_linear(heads(q), heads(k), heads(v), "elu_plus_one", c.get("linear_chunk", 64)),
                          "b h t d -> b t h d").astype(dtype)
        y = init.dense(c.d_model, ("heads", "embed"), use_bias=c.use_bias, dtype=dtype, kernel_init=init.residual_out(c),
                       name="out")(rearrange(y, "b t h d -> b t (h d)"))
        return nn.Dropout(c.dropout)(y, deterministic=deterministic)


@register_attention("rope")
def rope_attention(config, name=None):
    return _Mixer(config, "rope", name=name)


@register_attention("local")
def local_window_attention(config, name=None):
    return _Mixer(config, "local", name=name)


@register_attention("linear")
def linear_attention(config, name=None):
    return _Mixer(config, "linear", name=name)


def check_local(model_config) -> None:
    if model_config.get("local_window", 0) < 1:
        raise ConfigError("attention 'local' needs model.local_window >= 1 (the positions each query sees).")


register_check("local", check_local)
