"""Pallas kernels, one file per kernel, each beside the plain-jnp reference it must match (DESIGN.md).

  selective_attention     wave-selective attention (causal ∧ (wave query ∨ q - k < W)), flash-style forward and
                          backward; model.harmonic.impl = "pallas" (default "xla")
  interference_attention  the Wave-Native interference attention I/(E + eps) [/ row sum] · V, flash-style forward and
                          one-pass backward; model.wave.impl = "pallas" (default "xla")
  kuramoto_attention      the phase layer's T Kuramoto steps fused on chip, forward and backward;
                          model.phase.impl = "pallas" (default "xla")
  kuramoto_lattice        several lattice Kuramoto steps per launch on a halo'd tile (backward: the reference's VJP);
                          field.kuramoto.impl = "pallas" (default "xla")

CPU runs use `interpret=True` (`default_interpret()`); the kernels are written for Pallas' Triton GPU backend. GPU timings
come from experiments/benchmarks/bench_kernels.py; until one is measured every switch defaults to the XLA path.

JAX 0.11 deprecated Pallas' Triton backend: lowering a kernel for a GPU warns "The Pallas Triton backend is deprecated
and will be removed". The kernels keep working; the warning is shown once per process (not at every lowering, and not
hidden), and docs/KERNELS.md says what it means and how the kernels move to Mosaic GPU.
"""

import warnings

import jax
from jax.experimental import pallas as pl

TRITON_DEPRECATION = "The Pallas Triton backend is deprecated"
warnings.filterwarnings("once", message=TRITON_DEPRECATION, category=DeprecationWarning)

MIN_TRITON_DIM = 16  # Triton's tl.dot needs every matmul dimension >= 16


def is_power_of_two(n: int) -> bool:
    """Triton block shapes must be powers of two."""
    return n >= 1 and n & (n - 1) == 0


def default_interpret() -> bool:
    """True on CPU, where Pallas runs only in interpret mode. A function, not a constant: asking for the backend at
    import time would start it before jax.distributed.initialize (multi-host runs import the models first)."""
    return jax.default_backend() == "cpu"


def attention_interpret(block_q: int, block_k: int, interpret: bool | None) -> bool:
    """The attention kernels' block checks (powers of two; >= MIN_TRITON_DIM when compiled for a GPU), returning
    interpret resolved (None: default_interpret())."""
    if not (is_power_of_two(block_q) and is_power_of_two(block_k)):
        raise ValueError(f"block_q and block_k must be powers of two, got {block_q} and {block_k}.")
    interpret = default_interpret() if interpret is None else interpret
    if not interpret and min(block_q, block_k) < MIN_TRITON_DIM:
        raise ValueError(f"compiled for a GPU (Triton), block_q and block_k must be >= {MIN_TRITON_DIM}, got "
                         f"{block_q} and {block_k}.")
    return interpret


def padded_dim(d: int, interpret: bool) -> int:
    """A head (or value) dimension padded for the kernels: the next power of two, at least MIN_TRITON_DIM compiled."""
    return pl.next_power_of_2(d) if interpret else max(pl.next_power_of_2(d), MIN_TRITON_DIM)


def lower_for_gpu(fn, *args, device_kind: str = "NVIDIA H100 80GB HBM3"):
    """`jax.jit(fn).trace(*args).lower(...)` for CUDA on any machine, this CPU one included: Triton lowering asks the
    device for its compute capability, so an abstract H100 stands in where there is no GPU."""
    from jax.sharding import AbstractDevice, AbstractMesh, use_abstract_mesh

    device = AbstractDevice(device_kind=device_kind, num_cores=None, platform="gpu")
    with use_abstract_mesh(AbstractMesh((1,), ("gpu",), abstract_device=device)):
        return jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",))
