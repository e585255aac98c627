"""The GPT trunk every model family plugs into (nanoGPT layout, in flax.linen).

    x = embedding(tokens)                                  # "learned": wte[tokens] + wpe[pos]
    for each block:  x = x + attention(LN(x));  x = x + mixer(LN(x))     # pre-LN
    logits = embedding.attend(LN(x))                        # tied output head

The attention of each layer, the embedding and the mixer are looked up by name in
`wavejax.nn.registry` from the model config. Consecutive layers with the same parts form one
segment and run under `nn.scan`, so a 12-layer stack compiles one block.
"""

from __future__ import annotations

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

import wavejax.nn  # noqa: F401  (registers the standard parts)
from wavejax.nn import init, registry


class Block(nn.Module):
    config: object
    attention: str

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        c = self.config
        dtype = init.dtype_of(c.dtype)
        ln = lambda name: nn.LayerNorm(epsilon=1e-5, use_bias=c.use_bias, dtype=dtype, name=name)  # noqa: E731
        x = x + registry.ATTENTIONS[self.attention](c, name="attn")(ln("ln1")(x), deterministic)
        x = x + registry.MIXERS[c.mixer](c, name="mixer")(ln("ln2")(x), deterministic)
        return x


class _ScanBlock(nn.Module):
    """Block with the (carry, xs) signature nn.scan wants."""

    config: object
    attention: str
    deterministic: bool

    @nn.compact
    def __call__(self, x, _):
        block = Block(self.config, self.attention, name="block")
        if self.config.remat:
            block = nn.remat(Block, static_argnums=(2,))(self.config, self.attention, name="block")
        return block(x, self.deterministic), None


def layer_attentions(config) -> tuple[str, ...]:
    return tuple(config.layer_attention) or (config.attention,) * config.n_layer


def segments(config) -> list[tuple[str, int]]:
    """Runs of consecutive layers sharing an attention: [(name, count), ...]."""
    return [(name, len(list(group))) for name, group in itertools.groupby(layer_attentions(config))]


class GPT(nn.Module):
    config: object  # the model ConfigDict
    vocab_size: int

    @nn.compact
    def __call__(self, tokens, deterministic: bool = True):
        c = self.config
        embed = registry.EMBEDDINGS[c.embedding](c, self.vocab_size, name="embed")
        x = embed(tokens, deterministic)
        for i, (name, count) in enumerate(segments(c)):
            if c.scan_layers and count > 1:
                stack = nn.scan(
                    _ScanBlock,
                    variable_axes={"params": 0, "intermediates": 0, "losses": 0, "diagnostics": 0},
                    split_rngs={"params": True, "dropout": True},
                    length=count,
                )
                x, _ = stack(c, name, deterministic, name=f"seg{i}")(x, None)
            else:
                for j in range(count):
                    block_cls = nn.remat(Block, static_argnums=(2,)) if c.remat else Block
                    x = block_cls(c, name, name=f"seg{i}_{j}")(x, deterministic)
        x = nn.LayerNorm(epsilon=1e-5, use_bias=c.use_bias, dtype=init.dtype_of(c.dtype), name="ln_f")(x)
        return embed.attend(x)


def build_model(model_config, vocab_size: int) -> GPT:
    """The model for a config; the config is frozen so the module is hashable (jit static arg)."""
    return GPT(ml_collections.FrozenConfigDict(model_config), vocab_size)


def count_params(params) -> int:
    """All parameters; works on arrays and on jax.eval_shape outputs."""
    return int(sum(x.size for x in jax.tree.leaves(params)))


def init_params(model: GPT, rng, block_size: int):
    tokens = jnp.zeros((1, block_size), jnp.int32)
    return jax.jit(lambda r: model.init({"params": r}, tokens, True))(rng)["params"]
