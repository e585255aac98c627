"""Pallas kernels, one file per kernel, each beside the plain-jnp reference it must match (DESIGN.md).

  selective_attention  wave-selective attention (causal ∧ (wave query ∨ q - k < W)), flash-style forward and
                       backward; model.harmonic.impl = "pallas" (default "xla")
  kuramoto_lattice     several lattice Kuramoto steps per launch on a halo'd tile; field.kuramoto.impl = "pallas"

CPU runs use `interpret=True` (`default_interpret()`); the kernels are written for Pallas' Triton GPU backend. GPU timings
come from experiments/bench_kernels.py; until one is measured every switch defaults to the XLA path.
"""

import jax


def default_interpret() -> bool:
    """True on CPU, where Pallas runs only in interpret mode. A function, not a constant: asking for the backend at
    import time would start it before jax.distributed.initialize (multi-host runs import the models first)."""
    return jax.default_backend() == "cpu"
