"""Cross-layer ("mode") coupling: block ℓ adds proj_ℓ(Σ_{i in S(ℓ)} c_{ℓ,i} · h_i) to its residual stream, where h_i is
the output of block i < ℓ, c_{ℓ,i} a learned scalar coupling strength (initialised to 0, so the model starts as the
uncoupled trunk) and proj_ℓ a D×D projection. The source sets S(ℓ) come from `model.layer_coupling`:

  none    no coupling (the standard trunk)
  all     S(ℓ) = {0, ..., ℓ-1}: every earlier layer (Harmonic GPT's ModeCoupling as its spec describes it)
  report  the status report's sparse form, read as "layer i feeds layer i+1 if i is odd and layer i+8 if i is even"
          (0-indexed); at 4 layers this is the single pair 1 -> 2
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from wavejax.nn import init

COUPLINGS = ("none", "all", "report")


def coupling_sources(form: str, n_layer: int) -> list[tuple[int, ...]]:
    """S(ℓ) for every layer ℓ: the earlier layers whose outputs feed it."""
    if form == "none":
        return [()] * n_layer
    if form == "all":
        return [tuple(range(layer)) for layer in range(n_layer)]
    if form == "report":
        return [tuple(i for i in range(layer) if layer == (i + 1 if i % 2 else i + 8)) for layer in range(n_layer)]
    raise ValueError(f"unknown layer coupling {form!r}; choose one of {COUPLINGS}")


class ModeCoupling(nn.Module):
    """proj(Σ_i c_i · h_i) over the given earlier layer outputs h_i [B,T,D]."""

    config: object
    n_sources: int

    @nn.compact
    def __call__(self, earlier):
        c = self.config
        dtype = init.dtype_of(c.dtype)
        strength = self.param("strength", init.named(nn.initializers.zeros, None), (self.n_sources,), jnp.float32)
        mixed = sum(strength[i].astype(dtype) * h.astype(dtype) for i, h in enumerate(earlier))
        return init.dense(c.d_model, ("embed", None), use_bias=c.use_bias, dtype=dtype, kernel_init=init.residual_out(c),
                          name="proj")(mixed)
