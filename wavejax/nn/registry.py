"""Name -> module-factory tables through which config picks a block's parts.

A model family registers its attention, embedding or mixer here; the GPT trunk
(`wavejax/models/gpt.py`) builds every block from these names, so a variant differs from the
baseline only in config fields. Each factory takes the model ConfigDict and `name=`.

Contracts (all inputs/outputs [batch, time, d_model] in the compute dtype):
  attention(x, deterministic) -> y
  mixer(x, deterministic) -> y       may `self.sow("losses", name, scalar)` auxiliary losses
  embedding(tokens, deterministic) -> x, and `.attend(x) -> logits` for the tied head
"""

ATTENTIONS: dict = {}
CHECKS: dict = {}  # part name -> check(model_config) raising ConfigError, run by wavejax.config.validate
MIXERS: dict = {}
EMBEDDINGS: dict = {}


def _register(table: dict, name: str):
    def deco(factory):
        if name in table:
            raise ValueError(f"{name!r} is registered twice")
        table[name] = factory
        return factory

    return deco


def register_attention(name: str):
    return _register(ATTENTIONS, name)


def register_mixer(name: str):
    return _register(MIXERS, name)


def register_embedding(name: str):
    return _register(EMBEDDINGS, name)


def register_check(name: str, check) -> None:
    """A config check for a part's own settings (e.g. model.phase), run when a layer uses that part."""
    CHECKS[name] = check
