"""PhaseGPT: Kuramoto phase-coupled oscillator "attention" (spec: docs/specs/phasegpt.md).

Faithful (`seed_faithful=True`): non-causal all-to-all coupling with the original's repulsive sign, raw angles into
the output projection, a coherence regulariser that gets no gradient. Default: causal prefix coupling, the
textbook attractive sign, cos/sin output features, and a regulariser whose gradient reaches the parameters.

Per head h and oscillator channel o, token i (x = LN(h) of the block, [B,S,D]):

    theta^0 = pi * tanh(W_in x + b_in)                                   reshaped to [B,H,S,O]
    theta^{t+1} = wrap(theta^t + dt * (omega_{h,o} + s * K_h * mean_{j in N(i)} sin(theta_i^t - theta_j^t)))
    y = Dropout(W_out features(theta^T) + b_out)

with s = +1 (original, repulsive for K > 0) or -1 (textbook, attractive), N(i) = all positions (original) or j <= i
(causal), wrap(a) = ((a + pi) mod 2 pi) - pi. The mean over j is computed exactly in mean-field form,
mean_j sin(theta_i - theta_j) = sin(theta_i) * mean_j cos(theta_j) - cos(theta_i) * mean_j sin(theta_j),
with prefix sums when causal, so no [B,H,S,S,O] tensor is ever built (`kuramoto_coupling_reference` builds it,
for the tests).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

import ml_collections

from wavejax.errors import ConfigError
from wavejax.nn import init
from wavejax.nn.registry import register_attention, register_check

SIGNS = {"repulsive": 1.0, "attractive": -1.0}
OUTPUT_FEATURES = ("angle", "cossin")
REG_MODES = ("ceiling", "center", "band")
CAUSAL_NORMS = ("count", "length")
IMPLS = ("xla", "pallas")


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


def default_phase_config() -> ml_collections.ConfigDict:
    """config.model.phase: the sound defaults; seed_faithful=True switches to the original's behaviour."""
    p = ml_collections.ConfigDict()
    p.seed_faithful = False  # True: non-causal, repulsive, raw angles, detached regulariser, no noise/jitter
    p.oscillators = 32  # O per head
    p.coupling_init = 1.0  # K0, one learnable coupling per head
    p.freq_std = 0.1  # omega[H,O] ~ freq_std * N(0,1), learnable
    p.steps = 10  # explicit-Euler steps T
    p.dt = 0.1
    p.causal = True  # prefix means: position i is coupled only to j <= i (the original couples to all j)
    p.causal_norm = "count"  # count: divide the prefix sum by i+1; length: by S (the original's scale)
    p.sign = "attractive"  # attractive: textbook Kuramoto; repulsive: the original's sin(theta_i - theta_j)
    p.output_features = "cossin"  # cossin: [cos, sin] of the final phases; angle: raw wrapped angles (original)
    p.phase_noise = 0.0  # training only: std of Gaussian noise added to each Euler increment
    p.freq_jitter = 0.0  # training only: omega * (1 + jitter * N(0,1)), resampled every forward
    p.reg_lambda = 0.0  # coherence regulariser weight (0 = off)
    p.reg_mode = "ceiling"  # ceiling | center | band, on the batch-mean per-token R
    p.reg_target = 0.45
    p.reg_grad = True  # False: the original's detached phases, so the penalty has zero gradient
    p.remat = True  # recompute each Euler step in the backward pass: only theta^t is stored per step
    # xla: kuramoto_dynamics (lax.scan); pallas: all T steps in one fused kernel (pallas_kernels/kuramoto_attention.py,
    # interpret mode on CPU). xla stays the default until the kernel has been timed on a GPU.
    p.impl = "xla"
    return p


def check_phase_config(model_config) -> None:
    """ConfigError for impossible phase settings (called by wavejax.config.validate when a layer is "phase")."""
    if "phase" not in model_config:
        raise ConfigError("a layer uses attention 'phase' but the config has no model.phase section; start from configs/phase.py.")
    p = model_config.phase
    for key in ("oscillators", "steps"):
        if p[key] < 1:
            raise ConfigError(f"model.phase.{key} must be >= 1, got {p[key]}.")
    for key in ("dt", "freq_std", "phase_noise", "freq_jitter", "reg_lambda"):
        if not p[key] >= 0:
            raise ConfigError(f"model.phase.{key} must be >= 0, got {p[key]}.")
    choices = {"sign": tuple(SIGNS), "output_features": OUTPUT_FEATURES, "reg_mode": REG_MODES,
               "causal_norm": CAUSAL_NORMS, "impl": IMPLS}
    for key, allowed in choices.items():
        if p.get(key, allowed[0]) not in allowed:  # impl may be absent (an older run's config): its default
            raise ConfigError(f"model.phase.{key} must be one of {allowed}, got {p[key]!r}.")


def resolved(phase_config) -> dict:
    """Effective settings: `seed_faithful` forces the original's behaviour whatever the individual flags say."""
    p = dict(phase_config)
    p.setdefault("impl", "xla")  # absent from run directories written before the kernel existed
    if p["seed_faithful"]:
        p.update(causal=False, sign="repulsive", output_features="angle", reg_grad=False, phase_noise=0.0, freq_jitter=0.0)
    return p


# -- the layer -------------------------------------------------------------------------------------------------

class KuramotoAttention(nn.Module):
    """Drop-in replacement for a block's attention (registered as "phase"). Settings in config.phase."""

    config: object  # the model ConfigDict; the layer reads config.phase

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        c = self.config
        p = resolved(c.phase)
        dtype = init.dtype_of(c.dtype)
        b, s, _ = x.shape
        h, o = c.n_head, p["oscillators"]
        u = nn.Dense(h * o, use_bias=True, dtype=dtype, kernel_init=init.normal(), name="to_phase")(x)
        theta0 = math.pi * jnp.tanh(u.astype(jnp.float32)).reshape(b, s, h, o).transpose(0, 2, 1, 3)  # [B,H,S,O]
        omega = self.param("omega", lambda key: p["freq_std"] * jax.random.normal(key, (h, o), jnp.float32))
        coupling = self.param("coupling", lambda key: jnp.full((h,), p["coupling_init"], jnp.float32))

        training = not deterministic
        omega_eff = omega
        if training and p["freq_jitter"] > 0:  # relative jitter of omega, resampled once per forward
            jitter = jax.random.normal(self.make_rng("dropout"), omega.shape, omega.dtype)
            omega_eff = omega * (1.0 + p["freq_jitter"] * jitter)
        noise_key = self.make_rng("dropout") if training and p["phase_noise"] > 0 else None  # noise on every increment
        dynamics = kuramoto_dynamics
        if p["impl"] == "pallas":  # imported here: the kernel module imports this one for its reference
            from pallas_kernels.kuramoto_attention import kuramoto_dynamics_pallas as dynamics
        theta = dynamics(theta0, omega_eff[:, None, :], coupling, steps=p["steps"], dt=p["dt"],
                         sign=SIGNS[p["sign"]], causal=p["causal"], causal_norm=p["causal_norm"],
                         noise_key=noise_key, noise_std=p["phase_noise"], remat=p["remat"])

        self._track(theta, p)
        feats = theta.transpose(0, 2, 1, 3).reshape(b, s, h * o)
        if p["output_features"] == "cossin":
            feats = jnp.concatenate([jnp.cos(feats), jnp.sin(feats)], axis=-1)
        y = nn.Dense(c.d_model, use_bias=True, dtype=dtype, kernel_init=init.normal(), name="from_phase")(feats.astype(dtype))
        return nn.Dropout(c.dropout)(y, deterministic=deterministic)

    def _track(self, theta, p) -> None:
        """Order parameters into the "diagnostics" collection; the coherence penalty into "losses"."""
        tracked = jax.lax.stop_gradient(theta)
        self.sow("intermediates", "phases", tracked)  # final phases [B,H,S,O], when "intermediates" is mutable
        self.sow("diagnostics", "R_tokens", order_parameter_tokens(tracked))
        self.sow("diagnostics", "R_channels", order_parameter_channels(tracked).mean(axis=(0, 2)))
        self.sow("diagnostics", "R_layer", order_parameter_layer(tracked).mean(axis=0))
        if p["reg_lambda"] > 0:
            source = theta if p["reg_grad"] else tracked  # the original handed the regulariser detached phases
            r_mean = order_parameter_channels(source).mean()
            self.sow("losses", "coherence", coherence_penalty(r_mean, p["reg_mode"], p["reg_target"], p["reg_lambda"]))


@register_attention("phase")
def phase_attention(config, name=None):
    return KuramotoAttention(config, name=name)


register_check("phase", check_phase_config)
