"""Multi-host start-up: `jax.distributed.initialize()` when the environment describes a multi-process job.

Recognised (checked in this order):
  JAX_COORDINATOR_ADDRESS (+ JAX_NUM_PROCESSES, JAX_PROCESS_ID)  an explicit coordinator, host:port
  SLURM_JOB_ID with SLURM_NTASKS (or SLURM_NPROCS) > 1          srun; JAX reads the rest from SLURM's variables
  OMPI_COMM_WORLD_SIZE > 1                                      mpirun (Open MPI)
Anything else is a single-process run and nothing is done. After start-up every process sees all devices of the
job (`jax.devices()`), owns `jax.local_devices()`, and reads only its own rows of each global batch; metrics,
progress bars and samples come from process 0, and orbax writes checkpoints from all processes together.
"""

from __future__ import annotations

import os

from wavejax.errors import ConfigError


def _int(env, name: str, default: int = 0) -> int:
    try:
        return int(env.get(name, default))
    except ValueError:
        raise ConfigError(f"environment variable {name}={env.get(name)!r} is not an integer.") from None


def cluster_kind(env=None) -> str | None:
    """"explicit", "slurm", "openmpi", or None for a single-process run."""
    env = os.environ if env is None else env
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return "explicit"
    if env.get("SLURM_JOB_ID") and max(_int(env, "SLURM_NTASKS"), _int(env, "SLURM_NPROCS")) > 1:
        return "slurm"
    if _int(env, "OMPI_COMM_WORLD_SIZE") > 1:
        return "openmpi"
    return None


def initialize_arguments(env=None) -> dict | None:
    """Keyword arguments for jax.distributed.initialize, or None when the job is single-process."""
    env = os.environ if env is None else env
    kind = cluster_kind(env)
    if kind is None:
        return None
    if kind == "explicit":
        if "JAX_NUM_PROCESSES" not in env or "JAX_PROCESS_ID" not in env:
            raise ConfigError("JAX_COORDINATOR_ADDRESS is set, so JAX_NUM_PROCESSES and JAX_PROCESS_ID must be set too.")
        return {"coordinator_address": env["JAX_COORDINATOR_ADDRESS"], "num_processes": _int(env, "JAX_NUM_PROCESSES"),
                "process_id": _int(env, "JAX_PROCESS_ID")}
    return {}  # SLURM and Open MPI: JAX's cluster detection fills everything in


_started = False


def maybe_initialize(env=None) -> bool:
    """Starts JAX's distributed runtime once when the environment asks for it; True if it did. Call before any
    computation (the CLI does, first thing)."""
    global _started
    kwargs = initialize_arguments(env)
    if kwargs is None or _started:
        return False
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes talk over gloo; GPUs use NCCL
    jax.distributed.initialize(**kwargs)
    _started = True
    return True
