"""The device mesh from `config.mesh` and the shardings the train step is jitted with.

Axes are ("data", "fsdp", "model"); a single device is the same code on a 1x1x1 mesh.
Batches are split over data x fsdp; parameters and optimizer state follow the logical-axis rules
of sharding.py.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from wavejax.errors import ConfigError

AXES = ("data", "fsdp", "model")
BATCH_AXES = ("data", "fsdp")


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
    shape = mesh_shape(mesh_config, len(devices))
    return Mesh(np.asarray(devices).reshape(shape), AXES, axis_types=(AxisType.Auto,) * len(AXES))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over data x fsdp."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_parallel_size(mesh: Mesh) -> int:
    return mesh.shape["data"] * mesh.shape["fsdp"]
