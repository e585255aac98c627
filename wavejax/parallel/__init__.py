"""Device mesh and shardings (see mesh.py)."""

from wavejax.parallel.mesh import AXES, batch_sharding, make_mesh, replicated  # noqa: F401
