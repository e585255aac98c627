"""Pallas kernels, one file per kernel, each beside the plain-jnp reference it must match (DESIGN.md).

  selective_attention     wave-selective attention (causal ∧ (wave query ∨ q - k < W)), flash-style forward and
                          backward; model.harmonic.impl = "pallas" (default "xla")
  interference_attention  the Wave-Native interference attention I/(E + eps) [/ row sum] · V, flash-style forward and
                          one-pass backward; model.wave.interference_impl = "pallas" (default "xla")
  kuramoto_attention      the phase layer's T Kuramoto steps fused on chip, forward and backward;
                          model.phase.impl = "pallas" (default "xla")
  kuramoto_lattice        several lattice Kuramoto steps per launch on a halo'd tile (backward: the reference's VJP);
                          field.kuramoto.impl = "pallas" (default "xla")

CPU runs use `interpret=True` (`default_interpret()`); the kernels are written for Pallas' Triton GPU backend. GPU timings
come from experiments/bench_kernels.py; until one is measured every switch defaults to the XLA path.
"""

import jax

MIN_TRITON_DIM = 16  # Triton's tl.dot needs every matmul dimension >= 16


def is_power_of_two(n: int) -> bool:
    """Triton block shapes must be powers of two."""
    return n >= 1 and n & (n - 1) == 0


def default_interpret() -> bool:
    """True on CPU, where Pallas runs only in interpret mode. A function, not a constant: asking for the backend at
    import time would start it before jax.distributed.initialize (multi-host runs import the models first)."""
    return jax.default_backend() == "cpu"
