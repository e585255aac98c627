"""The Wave-Native GPT's training objectives (spec: docs/specs/wave_native.md §9), registered by name for
`config.train.loss`: "wave_coherence" and "qfe"."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from wavejax.models.gpt import layer_outputs_in_order
from wavejax.nn.objectives import register_loss

WAVE_LOSS_DEFAULTS = {  # train.wave_loss (configs/wave.py); the original classes' defaults
    "phase_weight": 0.01,  # wave_coherence lambda_phase
    "energy_weight": 0.01,  # wave_coherence lambda_energy
    "harmonic_weight": 0.01,  # wave_coherence lambda_harm
    "window": 8,  # wave_coherence: positions per phase-variance window
    "qfe_weight": 0.05,  # qfe lambda (the benchmark's 0.05; "full_physics" used 0.1)
    "qfe_threshold": 0.01,  # qfe amplitude gate tau_A
    "qfe_project_dim": 0,  # qfe: 0 = the full vocabulary ([B]); k > 0 = a fixed N(0, 1/k) projection V -> k (later)
}


def wave_loss_settings(train_config) -> dict:
    given = dict(train_config.get("wave_loss", None) or {}) if train_config is not None else {}
    return {**WAVE_LOSS_DEFAULTS, **{k: v for k, v in given.items() if k in WAVE_LOSS_DEFAULTS}}


def _faithful(model_config) -> bool:
    return bool("wave" in model_config and model_config.wave.seed_faithful)


def phase_spread(h, window: int, circular: bool = True):
    """Mean spread over time windows of the rfft phases of h [B,T,D] along the feature axis.

    Cut T into floor(T/window) windows of `window` positions; per window and frequency bin: circular: 1 - |mean_t
    e^{i angle}| (in [0, 1], blind to the +-pi wrap); raw (the original): the unbiased variance of the raw angle."""
    b, t, _ = h.shape
    n = t // window
    if n == 0:
        return jnp.zeros((), jnp.float32)
    spec = jnp.fft.rfft(h[:, : n * window].astype(jnp.float32), axis=-1).reshape(b, n, window, -1)
    if circular:
        unit = spec / jnp.sqrt(jnp.real(spec) ** 2 + jnp.imag(spec) ** 2 + 1e-20)
        return jnp.mean(1.0 - jnp.abs(jnp.mean(unit, axis=2)))
    return jnp.mean(jnp.var(jnp.angle(spec), axis=2, ddof=1))


def energy_drift(hs):
    """Mean over consecutive outputs of mean_{b,t} | |h_l| - |h_{l-1}| | (token norms over the feature axis)."""
    norms = [jnp.linalg.norm(h.astype(jnp.float32), axis=-1) for h in hs]
    return jnp.mean(jnp.stack([jnp.mean(jnp.abs(b - a)) for a, b in zip(norms[:-1], norms[1:])]))


def harmonic_mismatch(amplitudes):
    """Mean |p_n - q_n| with p = |A| normalised over the harmonic axis and q_n = (1/n) / sum_m (1/m)."""
    a = jnp.abs(amplitudes.astype(jnp.float32))
    p = a / (jnp.sum(a, axis=-1, keepdims=True) + 1e-8)
    inv = 1.0 / jnp.arange(1, a.shape[-1] + 1, dtype=jnp.float32)
    return jnp.mean(jnp.abs(p - inv / jnp.sum(inv)))


@register_loss("wave_coherence", collections=("layer_outputs", "wave_harmonics"))
def wave_coherence(logits, targets, variables, model_config, train_config):
    """WaveCoherenceLoss of [K] (§9.2) with the layer outputs really passed in (the original scripts never did, so
    there it was plain cross-entropy): extra = l_p L_phase + l_e L_energy + l_h L_harm, with

    L_phase  = phase_spread(h_l) averaged over the block outputs h_0..h_{L-1} (raw-angle variance when faithful),
    L_energy = energy_drift([e, h_0, ..., h_{L-1}]) (e = the embedding output),
    L_harm   = harmonic_mismatch of the embedding's harmonic amplitudes (0 for the fixed 1/n of "wave_physics"; 0
               when the embedding sows none)."""
    s = wave_loss_settings(train_config)
    hs = layer_outputs_in_order(variables["layer_outputs"], model_config)
    circular = not _faithful(model_config)
    l_phase = jnp.mean(jnp.stack([phase_spread(h, int(s["window"]), circular) for h in hs[1:]]))
    l_energy = energy_drift(hs)
    amps = jax.tree.leaves(variables.get("wave_harmonics", {}))
    l_harm = harmonic_mismatch(amps[0]) if amps else jnp.zeros((), jnp.float32)
    extra = s["phase_weight"] * l_phase + s["energy_weight"] * l_energy + s["harmonic_weight"] * l_harm
    return extra, {"phase": l_phase, "energy": l_energy, "harmonic": l_harm, "coherence": extra}


def spectral_phase_penalty(logits, targets, threshold: float = 0.01, project_dim: int = 0):
    """QFE's coherence term (§9.1). P = softmax(logits), Y = one-hot(targets), both [B,T,V] (optionally projected by a
    fixed R [V,k] ~ N(0, 1/k), key 0); F_o, F_y = rfft over time. With the gate m = (|F_o| > tau) & (|F_y| > tau):

        L = sum m |F_o| |F_y| (1 - cos(arg F_o - arg F_y)) / (sum m + 1e-8)
          = sum m (|F_o| |F_y| - Re(F_o conj F_y)) / (sum m + 1e-8)

    (the second form is used: it has no angle, whose gradient is undefined at 0)."""
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    onehot = jax.nn.one_hot(targets, logits.shape[-1], dtype=jnp.float32)
    if project_dim and logits.shape[-1] > project_dim:
        r = jax.random.normal(jax.random.PRNGKey(0), (logits.shape[-1], project_dim), jnp.float32)
        r = r / math.sqrt(project_dim)
        probs, onehot = probs @ r, onehot @ r
    f_o, f_y = jnp.fft.rfft(probs, axis=1), jnp.fft.rfft(onehot, axis=1)
    a_o, a_y = jnp.abs(jax.lax.stop_gradient(f_o)), jnp.abs(f_y)
    mask = (a_o > threshold) & (a_y > threshold)
    f_o_safe = jnp.where(mask, f_o, 1.0)  # |.| has no gradient at 0: masked entries never reach it
    term = jnp.abs(f_o_safe) * a_y - jnp.real(f_o_safe * jnp.conj(f_y))
    return jnp.sum(jnp.where(mask, term, 0.0)) / (jnp.sum(mask) + 1e-8)


@register_loss("qfe")
def quantum_field_entanglement(logits, targets, variables, model_config, train_config):
    """QuantumFieldEntanglementLoss of [B] (§9.1), the objective of the published wave run: extra = lambda L_coh."""
    s = wave_loss_settings(train_config)
    coherence = spectral_phase_penalty(logits, targets, s["qfe_threshold"], int(s["qfe_project_dim"]))
    return s["qfe_weight"] * coherence, {"qfe_coherence": coherence}
