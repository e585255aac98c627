"""Run by tests/test_kernels_phase.py in a process with 8 CPU devices: loss and gradients of the fused phase kernel
(with noise) on one device and on a data x fsdp = 2 x 4 mesh (the kernel under shard_map over the batch). Prints one
JSON line: whether the program holds a shard_map, and the relative differences."""

import json

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels.kuramoto_attention import kuramoto_dynamics_pallas
from wavejax.parallel.sharding import mesh_context

assert jax.device_count() == 8
rng = np.random.default_rng(0)
theta0 = (np.pi * np.tanh(rng.standard_normal((8, 2, 12, 4)))).astype(np.float32)
omega, k = (0.3 * rng.standard_normal((2, 1, 4))).astype(np.float32), np.array([1.0, 1.5], np.float32)
w = rng.standard_normal(theta0.shape).astype(np.float32)
settings = dict(steps=3, dt=0.1, sign=-1.0, causal=True, noise_key=jax.random.PRNGKey(2), noise_std=0.1)
loss = lambda th, om, kk: jnp.sum(w * jnp.cos(kuramoto_dynamics_pallas(th, om, kk, **settings)))
step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
flat = lambda r: [np.asarray(r[0])] + [np.asarray(g) for g in r[1]]
single = flat(step(theta0, omega, k))
mesh = jax.make_mesh((2, 4, 1), ("data", "fsdp", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 3)
with mesh_context(mesh):
    text = step.lower(theta0, omega, k).as_text()
    sharded = flat(step(theta0, omega, k))
print(json.dumps({"shard_map": "sdy.manual_computation" in text or "shard_map" in text,
                  "rel": [float(np.abs(a - b).max() / np.abs(a).max()) for a, b in zip(single, sharded)]}))
