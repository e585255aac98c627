"""Name -> module-factory tables through which config picks a block's parts.

A model family registers its parts here; the GPT trunk (`wavejax/models/gpt.py`) builds every block from these
names, so a variant differs from the baseline only in config fields. Each factory takes the model ConfigDict
(and the vocabulary size for embeddings and heads) and `name=`.

Contracts (inputs/outputs [batch, time, d_model] in the compute dtype unless said otherwise):
  embedding(tokens, deterministic) -> x        with `.attend(x) -> logits` for the tied head
  selector(x, deterministic) -> Selection      per-block token selection (wavejax.nn.selection), shared by the
                                               block's attention and mixer; model.selector = "none" for none
  attention(x, deterministic[, selection]) -> y
  mixer(x, deterministic[, selection]) -> y    may `self.sow("losses", name, scalar)` auxiliary losses
  head(x) -> logits [batch, time, vocab] float32 (model.head; "tied" uses embedding.attend)
Parts registered with `uses_selection=True` are called with the block's Selection and need a selector.
"""

from wavejax.errors import ConfigError

ATTENTIONS: dict = {}
CHECKS: dict = {}  # part name -> check(model_config) raising ConfigError, run by wavejax.config.validate
MIXERS: dict = {}
EMBEDDINGS: dict = {}
SELECTORS: dict = {}
HEADS: dict = {}
USES_SELECTION: set = set()  # (table name, part name) of parts that take the block's Selection


def _register(table: dict, name: str, kind: str = "", uses_selection: bool = False):
    def deco(factory):
        if name in table:
            raise ValueError(f"{name!r} is registered twice")
        table[name] = factory
        if uses_selection:
            USES_SELECTION.add((kind, name))
        return factory

    return deco


def register_attention(name: str, uses_selection: bool = False):
    return _register(ATTENTIONS, name, "attention", uses_selection)


def register_mixer(name: str, uses_selection: bool = False):
    return _register(MIXERS, name, "mixer", uses_selection)


def register_embedding(name: str):
    return _register(EMBEDDINGS, name)


def register_selector(name: str):
    return _register(SELECTORS, name)


def register_head(name: str):
    return _register(HEADS, name)


def uses_selection(kind: str, name: str) -> bool:
    return (kind, name) in USES_SELECTION


def register_check(name: str, check) -> None:
    """A config check for a part's own settings (e.g. model.phase), run when a layer uses that part."""
    CHECKS[name] = check


IMPLS = ("xla", "pallas")  # every family's backend switch (model.X.impl, field.kuramoto.impl): jnp/XLA or a kernel


def check_impl(where: str, impl) -> None:
    if impl not in IMPLS:
        raise ConfigError(f"{where}.impl must be one of {IMPLS}, got {impl!r}.")


def check_faithful(where: str, section, defaults, forced: dict) -> None:
    """With seed_faithful=True a family runs the original's values `forced`; a setting the user moved away from both
    its default and that value would be silently overridden, so it is a ConfigError naming both."""
    if not section.get("seed_faithful", False):
        return
    for key, value in forced.items():
        if key in section and section[key] != value and section[key] != defaults[key]:
            raise ConfigError(f"{where}.seed_faithful=True runs the original's {key}={value!r}, but {where}.{key} is "
                              f"set to {section[key]!r}; drop one of the two.")
