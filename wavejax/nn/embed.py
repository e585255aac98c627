"""Token embedding plus learned absolute positions, with the tied output head."""

import flax.linen as nn
import jax.numpy as jnp

from wavejax.nn import init
from wavejax.nn.registry import register_embedding


class LearnedEmbedding(nn.Module):
    config: object
    vocab_size: int

    def setup(self):
        c = self.config
        self.dtype = init.dtype_of(c.dtype)
        self.wte = init.embed(self.vocab_size, c.d_model, ("vocab", "embed"), embedding_init=init.weights(c), dtype=self.dtype)
        self.wpe = init.embed(c.block_size, c.d_model, ("length", "embed"), embedding_init=init.weights(c), dtype=self.dtype)
        self.drop = nn.Dropout(c.dropout)

    def __call__(self, tokens, deterministic: bool = True):
        pos = jnp.arange(tokens.shape[1])
        x = self.wte(tokens) + self.wpe(pos)[None]
        return self.drop(x, deterministic=deterministic)

    def attend(self, x):
        """Tied output head: logits = x @ wte^T, in float32."""
        return self.wte.attend(x.astype(self.dtype)).astype(jnp.float32)


@register_embedding("learned")
def learned_embedding(config, vocab_size, name=None):
    return LearnedEmbedding(config, vocab_size, name=name)
