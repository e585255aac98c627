"""Device mesh (mesh.py), logical-axis sharding rules (sharding.py) and multi-host start-up (distributed.py)."""

from wavejax.parallel.mesh import AXES, batch_sharding, make_mesh, replicated  # noqa: F401
from wavejax.parallel.sharding import (  # noqa: F401
    LOGICAL_RULES,
    constrain,
    in_mesh,
    mesh_context,
    param_names,
    param_shardings,
    state_shardings,
)
