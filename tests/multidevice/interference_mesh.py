"""Run by tests/test_kernels_interference.py in a process with 8 CPU devices: one step of the tiny wave model with
its interference attention through the Pallas kernel, on one device and on a data x fsdp = 2 x 4 mesh (the kernel
under shard_map). Prints one JSON line: whether the program holds a shard_map, and the loss and gradient differences."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from wavejax.config import config_module, set_value, validate
from wavejax.models.gpt import build_model
from wavejax.parallel.sharding import mesh_context

wave_configs = config_module(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "configs", "wave.py"))

assert jax.device_count() == 8
config = wave_configs.get_config("tiny+pallas")
set_value(config, "model.n_layer", 1)
validate(config)
model = build_model(config.model, 65)
tokens = np.random.default_rng(0).integers(0, 65, (8, 21)).astype(np.int32)
params = jax.jit(model.init, static_argnums=2)(jax.random.PRNGKey(0), tokens, True)["params"]
def loss(p):
    logits = model.apply({"params": p}, tokens, True)
    return jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, tokens[..., None], -1)[..., 0])
step = jax.jit(jax.value_and_grad(loss))
flat = lambda r: [np.asarray(r[0])] + [np.asarray(g) for g in jax.tree.leaves(r[1])]
single = flat(step(params))
mesh = jax.make_mesh((2, 4, 1), ("data", "fsdp", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 3)
with mesh_context(mesh):
    text = step.lower(params).as_text()
    sharded = flat(step(params))
scale = max(float(np.abs(a).max()) for a in single[1:])
print(json.dumps({"shard_map": "sdy.manual_computation" in text or "shard_map" in text,
                  "loss": float(np.abs(single[0] - sharded[0])),
                  "grad": max(float(np.abs(a - b).max()) / scale for a, b in zip(single[1:], sharded[1:]))}))
