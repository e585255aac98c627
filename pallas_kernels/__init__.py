"""Pallas kernels, one file per kernel, each beside the plain-jnp reference it must match (DESIGN.md).

  selective_attention  wave-selective attention (causal ∧ (wave query ∨ q - k < W)), flash-style forward and
                       backward; model.harmonic.impl = "pallas" (default "xla")
  kuramoto_lattice     several lattice Kuramoto steps per launch on a halo'd tile; field.kuramoto.impl = "pallas"

CPU runs use `interpret=True` (INTERPRET below); the kernels are written for Pallas' Triton GPU backend. GPU timings
come from experiments/bench_kernels.py; until one is measured every switch defaults to the XLA path.
"""

import jax

INTERPRET = jax.default_backend() == "cpu"
