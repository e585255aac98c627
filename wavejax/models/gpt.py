"""The GPT trunk every model family plugs into (nanoGPT layout, in flax.linen).

    x = embedding(tokens)                                   # "learned": wte[tokens] + wpe[pos]
    for each block ℓ:                                       # pre-LN
        sel = selector(LN1(x))                              # optional token selection (model.selector)
        x = x + attention(LN1(x)[, sel])
        x = x + coupling_ℓ(h_0 .. h_{ℓ-1})                  # optional cross-layer coupling (model.layer_coupling)
        x = x + mixer(LN2(x)[, sel])                        # none for model.mixer = "none" (attention only)
        h_ℓ = x
    logits = head(LN_f(x))                                  # "tied": embedding.attend; LN_f optional

The attention of each layer, the embedding, selector, mixer and head are looked up by name in
`wavejax.nn.registry` from the model config. Consecutive layers with the same parts form one
segment and run under `nn.scan`, so a 12-layer stack compiles one block; a stack with cross-layer
coupling is unrolled (each layer reads the outputs of the layers before it).

Every block output h_ℓ (and the embedding output) is sown into the "layer_outputs" collection, which
costs nothing unless a loss asks for it (`layer_outputs_in_order`).
"""

from __future__ import annotations

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

import wavejax.nn  # noqa: F401  (registers the standard parts)
from wavejax.nn import init, registry
from wavejax.nn.coupling import ModeCoupling, coupling_sources
from wavejax.parallel.sharding import constrain

ACTIVATION = ("batch", "length", "act_embed")  # logical names of the residual stream [B,T,D]

SCANNED_COLLECTIONS = ("params", "intermediates", "losses", "diagnostics", "layer_outputs")


class Block(nn.Module):
    config: object
    attention: str
    layer: int = 0  # index in the stack (which earlier layers it couples to)

    @nn.compact
    def __call__(self, x, deterministic: bool = True, earlier: tuple = ()):
        c = self.config
        dtype = init.dtype_of(c.dtype)
        ln = lambda name: init.layer_norm(use_bias=c.use_bias, dtype=dtype, name=name)  # noqa: E731
        h = ln("ln1")(x)
        selection = None if c.selector == "none" else registry.SELECTORS[c.selector](c, name="selector")(h, deterministic)

        def part(kind, table, name, inp):
            kw = {"selection": selection} if registry.uses_selection(kind, name) else {}
            return table[name](c, name="attn" if kind == "attention" else "mixer")(inp, deterministic, **kw)

        x = x + part("attention", registry.ATTENTIONS, self.attention, h)
        if earlier:
            x = x + ModeCoupling(c, len(earlier), name="coupling")(earlier)
        if c.mixer != "none":
            x = x + part("mixer", registry.MIXERS, c.mixer, ln("ln2")(x))
        x = constrain(x, ACTIVATION)
        self.sow("layer_outputs", "h", x)
        return x


class _ScanBlock(nn.Module):
    """Block with the (carry, xs) signature nn.scan wants."""

    config: object
    attention: str
    deterministic: bool

    @nn.compact
    def __call__(self, x, _):
        block_cls = nn.remat(Block, static_argnums=(2,)) if self.config.remat else Block
        return block_cls(self.config, self.attention, name="block")(x, self.deterministic), None


def layer_attentions(config) -> tuple[str, ...]:
    return tuple(config.layer_attention) or (config.attention,) * config.n_layer


def segments(config) -> list[tuple[str, int]]:
    """Runs of consecutive layers sharing an attention: [(name, count), ...]."""
    return [(name, len(list(group))) for name, group in itertools.groupby(layer_attentions(config))]


def scanned(config, count: int) -> bool:
    """Whether a segment of `count` layers runs under nn.scan (coupled stacks are unrolled)."""
    return config.scan_layers and count > 1 and config.layer_coupling == "none"


def scan_unroll(config, count: int) -> int:
    """How many layers of a scanned segment each loop iteration runs: model.scan_unroll, or for 0 (auto) the whole
    segment on a CPU (one straight-line program, which XLA:CPU runs about 20% faster at nanoGPT's CPU size:
    experiments/benchmarks/bench_torch_step.py) and 1 elsewhere (one compiled block, the point of the scan on a GPU).
    The parameters are stacked either way, so a checkpoint moves between backends."""
    unroll = int(config.get("scan_unroll", 0))
    if unroll <= 0:
        return count if jax.default_backend() == "cpu" else 1
    return min(unroll, count)


class GPT(nn.Module):
    config: object  # the model ConfigDict
    vocab_size: int

    @nn.compact
    def __call__(self, tokens, deterministic: bool = True):
        c = self.config
        embed = registry.EMBEDDINGS[c.embedding](c, self.vocab_size, name="embed")
        x = constrain(embed(tokens, deterministic), ACTIVATION)
        self.sow("layer_outputs", "embedded", x)
        sources = coupling_sources(c.layer_coupling, c.n_layer)
        outputs, layer = [], 0  # outputs: h_ℓ of the unrolled layers, for the coupling
        block_cls = nn.remat(Block, static_argnums=(2,)) if c.remat else Block
        for i, (name, count) in enumerate(segments(c)):
            if scanned(c, count):
                stack = nn.scan(_ScanBlock, variable_axes={k: 0 for k in SCANNED_COLLECTIONS},
                                split_rngs={"params": True, "dropout": True}, length=count, unroll=scan_unroll(c, count),
                                metadata_params={nn.PARTITION_NAME: "layers"})  # the stacked axis's logical name
                x, _ = stack(c, name, deterministic, name=f"seg{i}")(x, None)
            else:
                for j in range(count):
                    earlier = tuple(outputs[s] for s in sources[layer + j])
                    x = block_cls(c, name, layer + j, name=f"seg{i}_{j}")(x, deterministic, earlier)
                    outputs.append(x)
            layer += count
        if c.final_norm:
            x = init.layer_norm(use_bias=c.use_bias, dtype=init.dtype_of(c.dtype), name="ln_f")(x)
        if c.head == "tied":
            return embed.attend(x)
        return registry.HEADS[c.head](c, self.vocab_size, name="head")(x)


def layer_outputs_in_order(collection, config) -> list:
    """The sown "layer_outputs" as [embedding output, h_0, ..., h_{L-1}], each [B,T,D], in layer order
    (a scanned segment's stacked outputs are split back into layers)."""
    out = [collection["embedded"][0]]
    for i, (_, count) in enumerate(segments(config)):
        if scanned(config, count):
            stacked = collection[f"seg{i}"]["block"]["h"][0]
            out.extend(stacked[j] for j in range(count))
        else:
            out.extend(collection[f"seg{i}_{j}"]["h"][0] for j in range(count))
    return out


def build_model(model_config, vocab_size: int) -> GPT:
    """The model for a config; the config is frozen so the module is hashable (jit static arg)."""
    return GPT(ml_collections.FrozenConfigDict(model_config), vocab_size)


def init_params(model: GPT, rng, block_size: int):
    tokens = jnp.zeros((1, block_size), jnp.int32)
    return nn.meta.unbox(jax.jit(lambda r: model.init({"params": r}, tokens, True))(rng)["params"])
