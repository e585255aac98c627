"""Helpers shared by test_phase_dynamics, test_phase_layer."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax.core.meta import unbox

from wavejax.models.phase import default_phase_config

from conftest import configs

phase_configs = configs("phase")

PI = math.pi
VOCAB = 65


def _key(i: int):
    return jax.random.PRNGKey(i)


# Test inputs come from numpy: every eager jax.random call with a new shape is an XLA compile (~0.3 s on 2 cores).
def normal(seed: int, shape, scale: float = 1.0, dtype=np.float32):
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), dtype)


def uniform(seed: int, shape, low: float, high: float, dtype=np.float32):
    return jnp.asarray(np.random.default_rng(seed).uniform(low, high, shape), dtype)


def draw_params(shapes, phase, seed: int = 0):
    """Parameters for eval_shape'd `shapes`, drawn the way the layer and the GPT trunk initialise them: kernels and
    embeddings N(0, 0.02^2), biases 0, LayerNorm scales 1, one coupling K0 per head, omega = freq_std N(0,1).
    (A jitted init costs 0.5 s (layer) to 2.5 s (tiny model) of XLA compile on 2 cores; real inits are exercised by
    test_layer_runs_under_x64 and the training run.)"""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = path[-1].key
        if name == "bias":
            value = np.zeros(leaf.shape)
        elif name == "scale":
            value = np.ones(leaf.shape)
        elif name == "coupling":
            value = np.full(leaf.shape, phase.coupling_init)
        elif name == "omega":
            value = phase.freq_std * rng.standard_normal(leaf.shape)
        else:
            value = 0.02 * rng.standard_normal(leaf.shape)
        return jnp.asarray(value, leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def layer_config(d_model: int = 16, n_head: int = 2, dropout: float = 0.0, **phase) -> ml_collections.FrozenConfigDict:
    """The model-config fields KuramotoAttention reads, with a phase section from default_phase_config()."""
    c = ml_collections.ConfigDict({"d_model": d_model, "n_head": n_head, "dropout": dropout, "dtype": "float32"})
    c.phase = default_phase_config()
    for key, value in phase.items():
        c.phase[key] = value
    return ml_collections.FrozenConfigDict(c)


# Layers and models are hashable (frozen configs), so these jitted helpers reuse one compile per configuration.
def init_layer(layer, x, seed: int = 100):
    shapes = unbox(jax.eval_shape(lambda key: layer.init(key, x, True), _key(0))["params"])
    return draw_params(shapes, layer.config.phase, seed)


def apply_layer(layer, params, x, deterministic=True, rng=None, mutable=()):
    rngs = {"dropout": rng} if rng is not None else None
    return layer.apply({"params": params}, x, deterministic, rngs=rngs, mutable=list(mutable) if mutable else False)


apply_layer_jit = jax.jit(apply_layer, static_argnames=("layer", "deterministic", "mutable"))


def _numpy_coupling(theta, causal: bool, norm: str):
    """mean_j sin(theta_i - theta_j) by an explicit float64 loop over i (j <= i when causal)."""
    theta = np.asarray(theta, np.float64)
    s = theta.shape[2]
    out = np.zeros_like(theta)
    for i in range(s):
        js = np.arange(i + 1) if causal else np.arange(s)
        denom = (i + 1 if norm == "count" else s) if causal else s
        out[:, :, i] = np.sin(theta[:, :, i, None, :] - theta[:, :, js, :]).sum(axis=2) / denom
    return out


def _numpy_dynamics(theta0, omega, k, steps, dt, sign, causal, norm):
    """Explicit Euler with the wrap after every step, float64, pairwise (independent of the package)."""
    theta = np.asarray(theta0, np.float64)
    omega, k = np.asarray(omega, np.float64), np.asarray(k, np.float64)[None, :, None, None]
    for _ in range(steps):
        theta = theta + dt * (omega + sign * k * _numpy_coupling(theta, causal, norm))
        theta = np.mod(theta + np.pi, 2 * np.pi) - np.pi
    return theta


def assert_same_angles(a, b, atol):
    """Angles equal modulo 2 pi: compare cos and sin (a raw difference can be 2 pi at the wrap)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    np.testing.assert_allclose(np.cos(a), np.cos(b), atol=atol, rtol=0)
    np.testing.assert_allclose(np.sin(a), np.sin(b), atol=atol, rtol=0)
