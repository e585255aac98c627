"""The device mesh from `config.mesh` and the shardings the train step is jitted with.

Axes are ("data", "fsdp", "model"); a single device is the same code on a 1x1x1 mesh.
Batches are split over data x fsdp; parameters and optimizer state follow the logical-axis rules
of sharding.py.

On a CPU, `mesh.cpu_devices` (set_cpu_devices) shows the cores as devices, so that the data axis runs one program per
core. XLA:CPU spreads a small model's kernels over threads poorly (an elementwise fusion gets one task per 256 KB
of output); one program per core uses them all. Results then equal the one-device run to float rounding (the
gradients are summed across devices in another order).
"""

from __future__ import annotations

import math
import os
import sys

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from wavejax.errors import ConfigError

AXES = ("data", "fsdp", "model")
BATCH_AXES = ("data", "fsdp")
FORCE_FLAG = "xla_force_host_platform_device_count"


def usable_cpus() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _cpu_device_count(n: int) -> int:
    """The CPU devices mesh.cpu_devices = n asks for (0: one per usable core)."""
    return usable_cpus() if n == 0 else n


def _check_cpu_devices(mesh_config, devices) -> None:
    """One warning line when mesh.cpu_devices asks for another number of CPU devices than the process has: JAX
    started before it could be set (the CLI sets it first; a script or notebook must call set_cpu_devices)."""
    want = mesh_config.get("cpu_devices", 1) if hasattr(mesh_config, "get") else 1
    if want == 1 or not devices or devices[0].platform != "cpu":
        return
    count = _cpu_device_count(want)
    if len(devices) != count:
        print(f"warning: mesh.cpu_devices={want} asks for {count} CPU devices, but JAX had started with {len(devices)}; "
              "the run goes on with those (in a script, call wavejax.parallel.mesh.set_cpu_devices before anything "
              "runs JAX).", file=sys.stderr, flush=True)


def set_cpu_devices(n: int, env=None) -> int:
    """Makes the CPU backend show n devices (0: one per usable core); 1 leaves JAX's default of one. Call before
    JAX runs anything (the CLI does, before the task starts). Returns the count set, or 1 when nothing was done."""
    env = os.environ if env is None else env
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"mesh.cpu_devices must be an integer >= 0 (0: one per CPU core, 1: one device), got {n!r}.")
    if n == 1:
        return 1
    count = _cpu_device_count(n)
    if FORCE_FLAG in env.get("XLA_FLAGS", ""):
        raise ConfigError(f"mesh.cpu_devices={n} and XLA_FLAGS (--{FORCE_FLAG}) both set the number of CPU devices; "
                          "keep one of them.")
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:
        raise ConfigError(f"mesh.cpu_devices={n} must be set before JAX has run anything in this process; in a script, "
                          "call wavejax.parallel.mesh.set_cpu_devices right after importing it.") from None
    return count


def mesh_shape(mesh_config, n_devices: int) -> tuple[int, ...]:
    sizes = [int(mesh_config[a]) for a in AXES]
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if n_devices % known:
            raise ConfigError(f"mesh axes {dict(zip(AXES, sizes))} do not divide the {n_devices} available devices.")
        sizes[sizes.index(-1)] = n_devices // known
    if math.prod(sizes) != n_devices:
        raise ConfigError(f"mesh {dict(zip(AXES, sizes))} needs {math.prod(sizes)} devices but {n_devices} are available; set --config.mesh.data=-1.")
    return tuple(sizes)


def make_mesh(mesh_config, devices=None) -> Mesh:
    devices = list(devices if devices is not None else jax.devices())
    _check_cpu_devices(mesh_config, devices)
    shape = mesh_shape(mesh_config, len(devices))
    return Mesh(np.asarray(devices).reshape(shape), AXES, axis_types=(AxisType.Auto,) * len(AXES))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over data x fsdp."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_parallel_size(mesh: Mesh) -> int:
    return mesh.shape["data"] * mesh.shape["fsdp"]
