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
from einops import rearrange

from pallas_kernels.kuramoto_attention import kuramoto_dynamics_pallas
from wavejax.errors import ConfigError
from wavejax.nn import init
from wavejax.nn.registry import check_faithful, check_impl, register_attention, register_check
from wavejax.ops.phase import (
    CAUSAL_NORMS,
    SIGNS,
    coherence_penalty,
    kuramoto_dynamics,
    order_parameter_channels,
    order_parameter_layer,
    order_parameter_tokens,
)

OUTPUT_FEATURES = ("angle", "cossin")
REG_MODES = ("ceiling", "center", "band")


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
               "causal_norm": CAUSAL_NORMS}
    for key, allowed in choices.items():
        if p[key] not in allowed:
            raise ConfigError(f"model.phase.{key} must be one of {allowed}, got {p[key]!r}.")
    check_impl("model.phase", p.impl)
    check_faithful("model.phase", p, default_phase_config(), FAITHFUL)


FAITHFUL = {"causal": False, "sign": "repulsive", "output_features": "angle", "reg_grad": False,
            "phase_noise": 0.0, "freq_jitter": 0.0}  # what seed_faithful=True runs


def resolved(phase_config) -> dict:
    """Effective settings: `seed_faithful` runs the original's FAITHFUL values (a flag set against them is refused
    by check_phase_config)."""
    p = dict(phase_config)
    if p["seed_faithful"]:
        p.update(FAITHFUL)
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
        u = init.dense(h * o, ("embed", "heads"), dtype=dtype, kernel_init=init.weights(c), name="to_phase")(x)
        theta0 = rearrange(math.pi * jnp.tanh(u.astype(jnp.float32)), "b s (h o) -> b h s o", h=h)
        omega = self.param("omega", init.named(lambda key: p["freq_std"] * jax.random.normal(key, (h, o), jnp.float32),
                                                "heads", None))
        coupling = self.param("coupling", init.named(lambda key: jnp.full((h,), p["coupling_init"], jnp.float32), "heads"))

        training = not deterministic
        omega_eff = omega
        if training and p["freq_jitter"] > 0:  # relative jitter of omega, resampled once per forward
            jitter = jax.random.normal(self.make_rng("dropout"), omega.shape, omega.dtype)
            omega_eff = omega * (1.0 + p["freq_jitter"] * jitter)
        noise_key = self.make_rng("dropout") if training and p["phase_noise"] > 0 else None  # noise on every increment
        dynamics = kuramoto_dynamics_pallas if p["impl"] == "pallas" else kuramoto_dynamics
        theta = dynamics(theta0, omega_eff[:, None, :], coupling, steps=p["steps"], dt=p["dt"],
                         sign=SIGNS[p["sign"]], causal=p["causal"], causal_norm=p["causal_norm"],
                         noise_key=noise_key, noise_std=p["phase_noise"], remat=p["remat"])

        self._track(theta, p)
        feats = rearrange(theta, "b h s o -> b s (h o)")
        if p["output_features"] == "cossin":
            feats = jnp.concatenate([jnp.cos(feats), jnp.sin(feats)], axis=-1)
        y = init.dense(c.d_model, ("heads", "embed"), dtype=dtype, kernel_init=init.weights(c), name="from_phase")(
            feats.astype(dtype))
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
