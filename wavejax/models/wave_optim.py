"""The Wave-Native GPT's optimizers (spec: docs/specs/wave_native.md §8), registered by name for
`config.train.optimizer`: "wave_native", "resonant" and "wave_adamw".

Both update rules are optax GradientTransformations with NamedTuple states (orbax restores them). The original decides
what to do to a parameter by its ndim; nn.scan stacks a layer axis onto every parameter of a scanned segment ("segN"
in its path, wavejax/models/gpt.py), so the per-layer ndim is ndim minus the stacked axes, and matrix operations are
batched over those axes. Wave parameters keep the original's shapes (q_phase (1,H,1,W), pos_freq (1,1,W), ...) so
that the same rules hit the same tensors.
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from wavejax.errors import ConfigError
from wavejax.nn.optimizers import adamw, decay_mask, register_optimizer

_SCANNED_SEGMENT = re.compile(r"seg\d+")


def stacked_axes(path) -> int:
    """Leading layer axes nn.scan stacked onto the parameter at `path` (one per scanned segment key "segN")."""
    return sum(1 for k in path if _SCANNED_SEGMENT.fullmatch(str(getattr(k, "key", ""))))


def _learning_rate(lr, count):
    return lr(count) if callable(lr) else lr


def _decay_tree(mask, params):
    if mask is None:
        return jax.tree.map(lambda _: True, params)
    return mask(params) if callable(mask) else mask


def coherent_projection(p, g):
    """U U^T g V^T V with the thin SVD p = U S V^T (float32), batched over leading axes.

    For a full-rank square p, U U^T = V^T V = I and this is g itself; for an m x n p it keeps the part of g in the
    span of the smaller side (for a random g on 1536 x 384 that removes about 75% of its energy)."""
    u, _, vt = jnp.linalg.svd(p.astype(jnp.float32), full_matrices=False)
    ut_g_v = jnp.swapaxes(u, -1, -2) @ g.astype(jnp.float32) @ jnp.swapaxes(vt, -1, -2)
    return (u @ ut_g_v @ vt).astype(g.dtype)


class WaveNativeState(NamedTuple):
    count: jax.Array
    velocity: Any


def wave_native(lr, *, damping: float = 0.1, coherence_weight: float = 0.7, weight_decay: float = 0.01,
                mask=None) -> optax.GradientTransformation:
    """The WaveNativeOptimizer of [K] (§8.2) as an optax transformation. Per parameter p with gradient g:

        g <- g + wd p                                   (coupled L2, where `mask` says so)
        g <- c U U^T g V^T V + (1 - c) g                if p is a matrix (per layer) and c > 0; p = U S V^T (thin SVD);
                                                        kept as g where the SVD gives non-finite numbers
        v <- (1 - gamma) v - lr g;   update = v         (heavy-ball momentum 1 - gamma, effective step lr / gamma)

    What the spec shows: for a square p the projection U U^T g V^T V is g itself (the thin SVD of a square matrix has
    square orthogonal U and V, so U U^T = V^T V = I, whatever the rank), so it changes nothing for the d x d
    attention weights (and [B]'s 2WN x d wave_to_embed, 384 x 384); here square matrices skip the SVD, which is
    exact. It only acts on rectangular matrices (the MLP's 4d x d, the V x d tables, the per-token f and phi
    tables, the head), where it drops the part of g outside the span of the smaller side. No per-parameter
    scaling: this is SGD with momentum, not an Adam variant. The SVD runs on every rectangular matrix at every
    step, O(m n min(m, n)): on a CPU it dominates the step (experiments/benchmarks/wave_optim_cost.py).
    """

    def init_fn(params):
        return WaveNativeState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update_fn(grads, state, params):
        if params is None:
            raise ValueError("wave_native needs the parameters (for weight decay and the SVD projection).")
        lr_t = _learning_rate(lr, state.count)
        decay = _decay_tree(mask, params)

        def leaf(path, g, p, v, dec):
            if dec and weight_decay:
                g = g + weight_decay * p
            # a square p's thin SVD has square orthogonal U and V (whatever its rank): the projection is exactly g
            if p.ndim - stacked_axes(path) == 2 and coherence_weight > 0 and p.shape[-1] != p.shape[-2]:
                projected = coherent_projection(p, g)
                blended = coherence_weight * projected + (1.0 - coherence_weight) * g
                g = jnp.where(jnp.all(jnp.isfinite(projected)), blended, g)
            return (1.0 - damping) * v - lr_t * g

        velocity = jax.tree_util.tree_map_with_path(leaf, grads, params, state.velocity, decay)
        return velocity, WaveNativeState(optax.safe_increment(state.count), velocity)

    return optax.GradientTransformation(init_fn, update_fn)


def resonance_gate(p, u, alpha, eps: float, stacked: int = 0):
    """The RGD gate on a >=2-D update u of parameter p: with P, U the 2-D FFTs of p and u reshaped per layer to
    (shape[0], -1), R = sqrt(|P| / (max|P| + eps) * |U| / (max|U| + eps) + eps), rho = alpha R + (1 - alpha),
    returns Re(IFFT2(U rho)). rho lies in [1 - alpha, ~1]: at most an alpha shrink per Fourier mode."""
    lead = p.shape[:stacked]
    shape2 = (*lead, p.shape[stacked], -1)
    fp = jnp.fft.fft2(p.astype(jnp.float32).reshape(shape2))
    fu = jnp.fft.fft2(u.astype(jnp.float32).reshape(shape2))
    mp, mu = jnp.abs(fp), jnp.abs(fu)
    norm_p = mp / (jnp.max(mp, axis=(-2, -1), keepdims=True) + eps)
    norm_u = mu / (jnp.max(mu, axis=(-2, -1), keepdims=True) + eps)
    rho = alpha * jnp.sqrt(norm_p * norm_u + eps) + (1.0 - alpha)
    return jnp.real(jnp.fft.ifft2(fu * rho)).reshape(u.shape).astype(u.dtype)


class ResonantState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any


def resonant(lr, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.01,
             strength: float = 0.5, warmup: int = 1000, mask=None) -> optax.GradientTransformation:
    """ResonantGradientDescent "RGD" ([B] physics_optim.py, §8.1), the optimizer of the published wave run:
    AdamW whose update of every >=2-D parameter is gated per 2-D Fourier mode (`resonance_gate`). At step k (from 1)

        p' = p (1 - lr wd)                               (decoupled decay, where `mask` says so)
        u = m_hat / (sqrt(v_hat) + eps)                 (Adam moments with bias correction)
        u <- resonance_gate(p', u, alpha_k)             if p is >=2-D per layer; alpha_k = min(1, k / warmup) strength
        p <- p' - lr u

    With strength 0.3 the gate shrinks each mode by at most 30%: RGD is close to AdamW.
    """

    def init_fn(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return ResonantState(jnp.zeros((), jnp.int32), zeros, jax.tree.map(jnp.zeros_like, params))

    def update_fn(grads, state, params):
        if params is None:
            raise ValueError("resonant needs the parameters (for weight decay and the resonance gate).")
        count = optax.safe_increment(state.count)
        k = count.astype(jnp.float32)
        alpha = strength * (jnp.minimum(1.0, k / warmup) if warmup > 0 else 1.0)
        lr_t = _learning_rate(lr, state.count)
        decay = _decay_tree(mask, params)
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, grads)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, grads)

        def leaf(path, m, v, p, dec):
            u = (m / (1 - b1**k)) / (jnp.sqrt(v / (1 - b2**k)) + eps)
            shrink = lr_t * weight_decay if (dec and weight_decay) else 0.0
            stacked = stacked_axes(path)
            if p.ndim - stacked >= 2:
                u = resonance_gate(p * (1.0 - shrink), u, alpha, eps, stacked)
            return -shrink * p - lr_t * u

        updates = jax.tree_util.tree_map_with_path(leaf, mu, nu, params, decay)
        return updates, ResonantState(count, mu, nu)

    return optax.GradientTransformation(init_fn, update_fn)


ANNEALED_PARAMETER = "standard_ratio"  # the physics embedding's standard-embedding ratio r (wavejax/models/wave.py)


def anneal_standard_ratio(anneal_steps: int) -> optax.GradientTransformation:
    """Replaces the update of every parameter named "standard_ratio" so that r <- max(0, r - 1/anneal_steps) each
    step, i.e. r_k = max(0, r_0 - k / anneal_steps) ([K]: r_0 = 1, 3000 steps); anneal_steps = 0 keeps r fixed.
    Stateless; put it last in a chain. The model reads r through stop_gradient, so nothing else should move it."""

    def update_fn(updates, state, params):
        if params is None:
            raise ValueError("anneal_standard_ratio needs the parameters.")

        def leaf(path, u, p):
            if getattr(path[-1], "key", None) != ANNEALED_PARAMETER:
                return u
            if anneal_steps <= 0:
                return jnp.zeros_like(u)
            return jnp.maximum(0.0, p - 1.0 / anneal_steps) - p

        return jax.tree_util.tree_map_with_path(leaf, updates, params), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


WAVE_OPTIM_DEFAULTS = {  # train.wave_optim; the original classes' defaults (configs/wave.py sets the scripts' values)
    "damping": 0.1,  # wave_native gamma
    "coherence_weight": 0.7,  # wave_native c (the [K] scripts passed 0.3)
    "resonance_strength": 0.5,  # resonant (the benchmark used 0.3)
    "resonance_warmup": 1000,  # resonant (the benchmark used 500)
    "anneal_steps": 0,  # physics embedding: steps over which r falls by 1 ([K]: 3000); 0 keeps r fixed
}


def wave_optim_settings(train_config) -> dict:
    """train.wave_optim merged over WAVE_OPTIM_DEFAULTS; ConfigError for an unknown key or an impossible value."""
    given = dict(train_config.get("wave_optim", None) or {})
    unknown = sorted(set(given) - set(WAVE_OPTIM_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown train.wave_optim key(s) {', '.join(unknown)}; "
                          f"known: {', '.join(WAVE_OPTIM_DEFAULTS)}.")
    s = {**WAVE_OPTIM_DEFAULTS, **given}
    checks = {"damping": 0 < s["damping"] <= 1, "coherence_weight": 0 <= s["coherence_weight"] <= 1,
              "resonance_strength": 0 <= s["resonance_strength"] <= 1, "resonance_warmup": s["resonance_warmup"] >= 0,
              "anneal_steps": s["anneal_steps"] >= 0}
    allowed = {"damping": "in (0, 1]", "coherence_weight": "in [0, 1]", "resonance_strength": "in [0, 1]",
               "resonance_warmup": ">= 0", "anneal_steps": ">= 0"}
    for key, ok in checks.items():
        if not (ok and math.isfinite(s[key])):
            raise ConfigError(f"train.wave_optim.{key} must be {allowed[key]}, got {s[key]}.")
    return s


def _mask_fn(train_config):
    return lambda params: decay_mask(params, train_config.decay_mask)


@register_optimizer("wave_native")
def wave_native_optimizer(train_config, lr: optax.Schedule) -> optax.GradientTransformation:
    s = wave_optim_settings(train_config)
    return optax.chain(
        wave_native(lr, damping=s["damping"], coherence_weight=s["coherence_weight"],
                    weight_decay=train_config.weight_decay, mask=_mask_fn(train_config)),
        anneal_standard_ratio(s["anneal_steps"]))


@register_optimizer("resonant")
def resonant_optimizer(train_config, lr: optax.Schedule) -> optax.GradientTransformation:
    s = wave_optim_settings(train_config)
    return optax.chain(
        resonant(lr, b1=train_config.beta1, b2=train_config.beta2, eps=train_config.eps,
                 weight_decay=train_config.weight_decay, strength=s["resonance_strength"],
                 warmup=s["resonance_warmup"], mask=_mask_fn(train_config)),
        anneal_standard_ratio(s["anneal_steps"]))


@register_optimizer("wave_adamw")
def wave_adamw_optimizer(train_config, lr: optax.Schedule) -> optax.GradientTransformation:
    """AdamW with the physics embedding's annealing ratio driven (and kept out of weight decay)."""
    anneal = anneal_standard_ratio(wave_optim_settings(train_config)["anneal_steps"])
    return optax.chain(adamw(train_config, lr), anneal)
