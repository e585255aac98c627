"""Pallas kernels, one file per kernel, each beside the plain-jnp reference it must match.

Kernels arrive with the model families that need them (see DESIGN.md); CPU runs use
`interpret=True`.
"""

import jax

INTERPRET = jax.default_backend() == "cpu"
