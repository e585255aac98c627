"""Output heads other than the tied one ("tied" is the embedding's own `attend`, handled by the trunk)."""

import flax.linen as nn
import jax.numpy as jnp

from wavejax.nn import init
from wavejax.nn.registry import register_head


class LinearHead(nn.Module):
    """logits = x W (+ b): an untied d -> V projection, in float32."""

    config: object
    vocab_size: int
    use_bias: bool = False

    @nn.compact
    def __call__(self, x):
        dense = init.dense(self.vocab_size, ("embed", "vocab"), use_bias=self.use_bias,
                           dtype=init.dtype_of(self.config.dtype), kernel_init=init.weights(self.config), name="out")
        return dense(x).astype(jnp.float32)


@register_head("linear")
def linear_head(config, vocab_size, name=None):
    return LinearHead(config, vocab_size, name=name)
