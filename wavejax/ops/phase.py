"""Phase-oscillator math of the PhaseGPT layer, in plain jnp (spec: docs/specs/phasegpt.md): the Kuramoto coupling
(pairwise reference and mean-field form), T explicit-Euler steps in lax.scan, the order parameters and the coherence
regulariser. The model (wavejax/models/phase.py) and the fused kernel (pallas_kernels/kuramoto_attention.py) both
build on these; the kernel is tested against `kuramoto_dynamics`.
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp

CAUSAL_NORMS = ("count", "length")
SIGNS = {"repulsive": 1.0, "attractive": -1.0}  # s in the step: +1 the original's, -1 the textbook's


def wrap(theta):
    """Angles into [-pi, pi), as the original: ((theta + pi) mod 2 pi) - pi."""
    return jnp.mod(theta + math.pi, 2 * math.pi) - math.pi


# -- coupling: reference and mean-field ------------------------------------------------------------------------

def _prefix_counts(s: int, causal_norm: str, dtype):
    if causal_norm == "count":
        return jnp.arange(1, s + 1, dtype=dtype)[:, None]  # position i averages over its i+1 predecessors
    return jnp.full((s, 1), s, dtype=dtype)  # divide by S: the original's scale, early tokens feel little coupling


def kuramoto_coupling_reference(theta, causal: bool, causal_norm: str = "count"):
    """mean_j sin(theta_i - theta_j) by the naive pairwise tensor [B,H,S,S,O]; theta [B,H,S,O]."""
    diff = theta[:, :, :, None, :] - theta[:, :, None, :, :]  # [b,h,i,j,o] = theta_i - theta_j
    s = jnp.sin(diff)
    if not causal:
        return s.mean(axis=3)
    n = theta.shape[2]
    mask = jnp.tril(jnp.ones((n, n), theta.dtype))[None, None, :, :, None]
    return (s * mask).sum(axis=3) / _prefix_counts(n, causal_norm, theta.dtype)


def kuramoto_coupling(theta, causal: bool, causal_norm: str = "count"):
    """Same as the reference in O(B*H*S*O): sin(theta_i) * C_i - cos(theta_i) * S_i with (prefix) means C, S."""
    c, s = jnp.cos(theta), jnp.sin(theta)
    if causal:
        counts = _prefix_counts(theta.shape[2], causal_norm, theta.dtype)
        mc, ms = jnp.cumsum(c, axis=2) / counts, jnp.cumsum(s, axis=2) / counts
    else:
        mc, ms = c.mean(axis=2, keepdims=True), s.mean(axis=2, keepdims=True)
    return s * mc - c * ms


def step_noise_draw(noise_key, t, shape, dtype):
    """Step t's standard normals, from fold_in(noise_key, t): what kuramoto_dynamics adds (times noise_std) and the
    fused Pallas kernel is handed, so both paths add the same numbers."""
    return jax.random.normal(jax.random.fold_in(noise_key, t), shape, dtype)


def kuramoto_dynamics(theta0, omega, coupling_k, *, steps: int, dt: float, sign: float, causal: bool,
                      causal_norm: str = "count", noise_key=None, noise_std: float = 0.0,
                      coupling_fn=kuramoto_coupling, remat: bool = True):
    """Integrates `steps` explicit-Euler Kuramoto steps with lax.scan.

    theta0 [B,H,S,O]; omega broadcastable to it ([H,1,O] or [B,H,1,O]); coupling_k [H]. With a noise_key,
    noise_std * N(0,1) is added to every step's increment (drawn per step from fold_in(noise_key, t)).
    remat recomputes each step's intermediates in the backward pass, so only theta^t is stored per step
    (about T*B*H*S*O floats). Returns theta^T, wrapped.
    """
    chex.assert_rank(theta0, 4)
    chex.assert_shape(coupling_k, (theta0.shape[1],))
    k = coupling_k[None, :, None, None]

    def step(theta, t):
        d = omega + sign * k * coupling_fn(theta, causal, causal_norm)
        theta = theta + dt * d
        if noise_key is not None:
            theta = theta + noise_std * step_noise_draw(noise_key, t, theta.shape, theta.dtype)
        return wrap(theta), None

    if remat:
        step = jax.checkpoint(step)
    theta, _ = jax.lax.scan(step, theta0, jnp.arange(steps))
    return theta


# -- order parameters and the coherence regulariser --------------------------------------------------------------

def order_parameter_tokens(theta):
    """The Kuramoto order parameter across tokens, |mean_j e^{i theta_j}| per (b,h,o), averaged to [H]."""
    r = jnp.hypot(jnp.cos(theta).mean(axis=2), jnp.sin(theta).mean(axis=2))  # [B,H,O]
    return r.mean(axis=(0, 2))


def order_parameter_channels(theta):
    """The original's coherence_utils definition: |mean_o e^{i theta}| per token (across the O channels), [B,H,S]."""
    return jnp.hypot(jnp.cos(theta).mean(axis=-1), jnp.sin(theta).mean(axis=-1))


def order_parameter_layer(theta):
    """The original's PhaseAttention.calculate_order_parameter: |mean_{s,o} e^{i theta}|, [B,H]."""
    return jnp.hypot(jnp.cos(theta).mean(axis=(2, 3)), jnp.sin(theta).mean(axis=(2, 3)))


def order_parameter_interpret(theta):
    """The original interpretability script: phi[s,o] = arithmetic mean over heads of the raw angles, then
    R_s = |mean_o e^{i phi[s,o]}|. theta [H,S,O] (one sequence) -> [S]. Near 0.88 even for unsynchronised phases."""
    phi = theta.mean(axis=0)
    return jnp.hypot(jnp.cos(phi).mean(axis=-1), jnp.sin(phi).mean(axis=-1))


def coherence_penalty(r_mean, mode: str, target: float, lam: float):
    """The original coherence_regularizer on the batch-mean R (per-token definition)."""
    if mode == "ceiling":
        return lam * jnp.maximum(0.0, r_mean - target) ** 2
    if mode == "center":
        return lam * (r_mean - target) ** 2
    if mode == "band":
        return lam * (jnp.maximum(0.0, (target - 0.1) - r_mean) ** 2 + jnp.maximum(0.0, r_mean - (target + 0.1)) ** 2)
    raise ValueError(f"unknown coherence regulariser mode {mode!r}")
