"""Wave-Native GPT (spec: docs/specs/wave_native.md): wave-packet embeddings, wave attentions, the resonance MLP and
the collapse head, as parts of the GPT trunk; settings in `config.model.wave` (configs/wave.py).

Faithful (`model.wave.seed_faithful=True`): physics-embedding evaluation at ratio 0 (the original validated a path it
did not train), unnormalised interference weights, pure-wave attention always quadratic, raw-angle phase variance in
the coherence loss. Default: evaluation at the training ratio, row-normalised interference, `pure_mode` honoured.

Embeddings (t = position index 0..T-1 in the window, i = token id, n = 1..N harmonics, w = 1..W waves):

"wave_packet" (§3A, the version behind the published benchmark): learned f[i,w], a[i,w,n], phi[i,w], p[w], rho,
    theta[w,n] = 2 pi n f[i,w] + phi[i,w] + t p[w]            (f is a phase offset: it never multiplies t)
    feats = [a sin theta ; a cos theta]  (w-major, n fastest, 2WN long),  g = sigmoid(rho)
    e = LN(g W_e feats + (1 - g) E[i])                          (E a V x d lookup table, N(0,1) in the original)
"wave_physics" (§3B, the later "physics-first" version): fixed f_i = sqrt(i+1) (mass 1/(i+1)), a_n = 1/n,
    learned phi[i,w], p[w];  e = LN((1 - r) W_e feats + r E[i]),  r = the annealing ratio (a parameter the wave
    optimizers lower by 1/anneal_steps per step, see wavejax/train/optim.py; [K] used r = max(0, 1 - step/3000)).
Each embedding's `attend` is the tied head x E^T. Mixer "wave_mlp": W_2 dropout(GELU(h) + 0.1 sin(h)), h = W_1 x.
Head "wave_collapse": Linear_with_bias(LN(x)) (the [B] model has no ln_f: set model.final_norm=False).

Attentions (their math in wavejax/ops/wave_attention.py; q/k/omega/... are [B,H,T,W] with W = model.wave.num_waves,
v is [B,H,T,D], D = d/H):

"wave_cosine" (§4.1, the "hybrid" module behind every published number): cosine-similarity softmax attention,
    s_qk = <q_hat, k_hat> / tau,  q_hat = (q + q_phase) / |q + q_phase|,  tau a learned scalar (init sqrt(W)),
    causal softmax, dropout, x v.
"wave_interference" (§4.2): omega = W_f x, phi = W_p x, A = softplus(W_a x) + 1e-8, t = position index,
    I_qk = sum_w A_qw^2 + A_kw^2 + 2 A_qw A_kw cos((omega_qw - omega_kw)(t_q - t_k) + phi_qw - phi_kw),
    E_qk = sum_w (A_qw + A_kw)^2,  alpha_qk = I_qk / (E_qk + 1e-8) for k <= q, 0 for k > q  (alpha in [0, 1],
    alpha_qq = 1); sound default: alpha_qk / sum_k alpha_qk. No softmax. Computed blockwise over keys
    (`interference_attention`, lax.scan with a rematerialised body): memory O(B*H*T*block*W) forward and backward;
    `interference_attention_reference` builds the original's [B,H,T,T,W] tensors. model.wave.impl =
    "pallas" runs pallas_kernels/interference_attention.py instead (no attention dropout; default "xla").
"wave_pure" (§4.4): q = W^(1/4) normalise(sin(f_q t + p_q)), k likewise (f, p linear in x).
    quadratic: a_qk = kernel(sigma_h <q,k>) / sqrt(q + 1) for k <= q (no sum-to-1), kernel elu+1 | sigmoid | exp;
    linear: out_q = sum_{k<=q} (phi(q).phi(k)) v_k / (sum_{k<=q} phi(q).phi(k) + 1e-6), phi = the kernel applied to
    q and k, computed in chunks (`pure_wave_linear`, O(T)); `pure_wave_linear_reference` is its T x T form. The
    two modes are different models: kernel(q.k) does not factor as phi(q).phi(k) for any of the three kernels.
None of them has residual dropout (the original has none); model.attn_dropout drops attention weights.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from einops import rearrange

from pallas_kernels.interference_attention import interference_flash_attention
from wavejax.errors import ConfigError
from wavejax.nn import init
from wavejax.nn.registry import (
    check_faithful,
    check_impl,
    register_attention,
    register_check,
    register_embedding,
    register_head,
    register_mixer,
)
from wavejax.ops.wave_attention import (
    INTERFERENCE_EPS,
    KERNELS,
    PURE_MODES,
    cosine_attention_reference,
    cosine_attention_weights,
    interference_attention,
    interference_weights_reference,
    pure_wave_features,
    pure_wave_linear,
    pure_wave_linear_weights,
    pure_wave_quadratic,
    pure_wave_quadratic_weights,
    row_normalized,
)
from wavejax.parallel.sharding import per_device_in_context_mesh


def compute_dtype(model_config):
    """The config's compute dtype ("float32" | "bfloat16"; the tests also use "float64")."""
    return jnp.dtype(model_config.dtype)


HARMONICS_COLLECTION = "wave_harmonics"  # the embedding's harmonic amplitudes, for the coherence loss
PARTS = ("wave_packet", "wave_physics", "wave_cosine", "wave_interference", "wave_pure", "wave_mlp", "wave_collapse")


def default_wave_config() -> ml_collections.ConfigDict:
    """config.model.wave: the sound defaults; seed_faithful=True switches on the original's behaviour."""
    w = ml_collections.ConfigDict()
    w.seed_faithful = False  # True: eval at ratio 0, unnormalised interference, quadratic pure-wave, raw-angle variance
    w.num_waves = 48  # W per token (embeddings) and per head (attentions)
    w.num_harmonics = 4  # N
    w.simple_embed_std = 0.02  # init std of the lookup table E ([B] kept PyTorch's N(0,1); [K]/[M] used 0.02)
    w.wave_ratio_init = 0.5  # wave_packet: rho, the gate is sigmoid(rho)
    w.standard_ratio_init = 0.0  # wave_physics: r at step 0 ([K]: 1.0, lowered to 0 by train.wave_optim.anneal_steps)
    w.interference_block = 64  # keys per block of the blockwise interference attention (and the kernel's tiles)
    # xla: the blockwise lax.scan; pallas: the flash-style interference kernel (pallas_kernels/interference_attention.py,
    # interpret mode on CPU)
    w.impl = "xla"
    w.interference_normalize = True  # divide alpha by its row sum (the original: False, rows sum to ~(t+1) mean alpha)
    w.pure_kernel = "elu_plus_one"  # elu_plus_one | sigmoid | exp
    w.pure_mode = "quadratic"  # quadratic | linear (the original ignored this and always ran quadratic)
    w.linear_chunk = 64  # positions per chunk of the O(T) linear attention
    w.mlp_sin_scale = 0.1  # GELU(h) + mlp_sin_scale * sin(h)
    return w


FAITHFUL = {"interference_normalize": False, "pure_mode": "quadratic"}  # what seed_faithful=True runs


def resolved(wave_config) -> dict:
    """Effective settings: `seed_faithful` runs the original's FAITHFUL values (a flag set against them is refused
    by check_wave_config) and evaluates the physics embedding at ratio 0."""
    p = dict(wave_config)
    p["eval_ratio_zero"] = bool(p["seed_faithful"])
    if p["seed_faithful"]:
        p.update(FAITHFUL)
    return p


def check_wave_config(model_config) -> None:
    """ConfigError for impossible wave settings (run by wavejax.config.validate when a layer uses a wave part)."""
    if "wave" not in model_config:
        raise ConfigError("a wave part (e.g. model.embedding='wave_packet') needs a model.wave section; "
                          "start from configs/wave.py.")
    w = model_config.wave
    for key in ("num_waves", "num_harmonics", "interference_block", "linear_chunk"):
        if not w[key] >= 1:
            raise ConfigError(f"model.wave.{key} must be >= 1, got {w[key]}.")
    if not w.simple_embed_std > 0:
        raise ConfigError(f"model.wave.simple_embed_std must be > 0, got {w.simple_embed_std}.")
    if not 0.0 <= w.standard_ratio_init <= 1.0:
        raise ConfigError(f"model.wave.standard_ratio_init must be in [0, 1], got {w.standard_ratio_init}.")
    for key in ("wave_ratio_init", "mlp_sin_scale"):
        if not math.isfinite(w[key]):
            raise ConfigError(f"model.wave.{key} must be finite, got {w[key]}.")
    if w.pure_kernel not in KERNELS:
        raise ConfigError(f"model.wave.pure_kernel must be one of {tuple(KERNELS)}, got {w.pure_kernel!r}.")
    if w.pure_mode not in PURE_MODES:
        raise ConfigError(f"model.wave.pure_mode must be one of {PURE_MODES}, got {w.pure_mode!r}.")
    check_faithful("model.wave", w, default_wave_config(), FAITHFUL)
    check_interference_kernel(model_config)


def check_interference_kernel(model_config) -> None:
    """The kernel's limits: power-of-two blocks >= 16, and no attention dropout (it never holds alpha to drop)."""
    w = model_config.wave
    check_impl("model.wave", w.impl)
    if w.impl != "pallas" or "wave_interference" not in (tuple(model_config.get("layer_attention", ()))
                                                       or (model_config.attention,)):
        return
    if w.interference_block & (w.interference_block - 1) or w.interference_block < 16:
        raise ConfigError(f"model.wave.impl='pallas' needs model.wave.interference_block to be a power "
                          f"of two >= 16 (the kernel's tile, as Triton needs), got {w.interference_block}.")
    if model_config.attn_dropout > 0:
        raise ConfigError("model.wave.impl='pallas' has no attention dropout; set model.attn_dropout=0 "
                          "or model.wave.impl='xla'.")


# -- embeddings ------------------------------------------------------------------------------------------------------

def wave_packet_features(offset, phase, pos_freq, amp):
    """[a sin theta ; a cos theta] flattened w-major with n fastest: [B,T,2WN].

    theta[b,t,w,n] = offset[b,t,w,n] + phase[b,t,w] + t * pos_freq[w]  (offset = 2 pi n f, the per-harmonic phase)
    offset [B,T,W,N], phase [B,T,W], pos_freq [W], amp broadcastable to [B,T,W,N]."""
    b, t, w, n = offset.shape
    pos = jnp.arange(t, dtype=offset.dtype)[:, None] * pos_freq  # [T,W]; not multiplied by n
    theta = offset + (phase + pos[None])[..., None]
    return jnp.concatenate([(amp * jnp.sin(theta)).reshape(b, t, w * n), (amp * jnp.cos(theta)).reshape(b, t, w * n)],
                           axis=-1)


def harmonic_numbers(n: int, dtype=jnp.float32):
    return jnp.arange(1, n + 1, dtype=dtype)


def zipf_phase_offsets(vocab_size: int, n: int) -> np.ndarray:
    """2 pi n sqrt(i+1) mod 2 pi, [V,N]: the physics embedding's fixed per-token, per-harmonic phase offset
    (computed in float64 and wrapped, so large token ids keep their precision in float32)."""
    base = np.sqrt(np.arange(1, vocab_size + 1, dtype=np.float64))[:, None]
    return np.mod(2 * np.pi * np.arange(1, n + 1)[None, :] * base, 2 * np.pi).astype(np.float32)


def _uniform(low: float, high: float):
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, low, high)


class _WaveEmbeddingBase(nn.Module):
    config: object
    vocab_size: int

    def table(self):
        c = self.config
        return init.embed(self.vocab_size, c.d_model, ("vocab", "embed"), embedding_init=init.normal(c.wave.simple_embed_std),
                          dtype=compute_dtype(c))

    def projection(self):
        c = self.config
        return init.dense(c.d_model, (None, "embed"), dtype=compute_dtype(c), kernel_init=init.weights(c))

    def norm(self):
        c = self.config
        return init.layer_norm(use_bias=c.use_bias, dtype=compute_dtype(c))

    def pos_freq(self):
        w = self.config.wave.num_waves
        return self.param("pos_freq", init.named(init.normal(0.1), None, None, None), (1, 1, w), jnp.float32).reshape(w)

    def attend(self, x):
        """Tied output head: logits = x E^T, in float32."""
        return self.simple_table.attend(x.astype(compute_dtype(self.config))).astype(jnp.float32)


class WavePacketEmbedding(_WaveEmbeddingBase):
    """§3A: learned frequencies, amplitudes and phases per token, mixed with a lookup table by a learned gate."""

    def setup(self):
        c = self.config
        v, w, n = self.vocab_size, c.wave.num_waves, c.wave.num_harmonics

        def freq_init(key, shape, dtype=jnp.float32):
            return jnp.linspace(0.5, 5.0, shape[1], dtype=dtype)[None] + 0.1 * jax.random.normal(key, shape, dtype)

        self.freq = self.param("freq", init.named(freq_init, "vocab", None), (v, w))
        self.amp = self.param("amp", init.named(init.normal(0.5 / math.sqrt(n * w)), "vocab", None, None), (v, w, n))
        self.phase = self.param("phase", init.named(_uniform(0.0, 2 * math.pi), "vocab", None), (v, w))
        self.pos = self.pos_freq()
        self.wave_ratio = self.param("wave_ratio", init.named(lambda _: jnp.asarray(c.wave.wave_ratio_init, jnp.float32)))
        self.simple_table = self.table()
        self.to_embed = self.projection()
        self.ln = self.norm()

    def __call__(self, tokens, deterministic: bool = True):
        dt = compute_dtype(self.config)
        n = self.config.wave.num_harmonics
        harmonics = harmonic_numbers(n, self.freq.dtype)
        offset = 2 * math.pi * self.freq[tokens][..., None] * harmonics  # [B,T,W,N]
        feats = wave_packet_features(offset, self.phase[tokens], self.pos, self.amp[tokens])
        wave = self.to_embed(feats.astype(dt))
        gate = jax.nn.sigmoid(self.wave_ratio)
        self.sow("diagnostics", "wave_gate", jax.lax.stop_gradient(gate))
        self.sow(HARMONICS_COLLECTION, "amplitudes", self.amp)
        return self.ln(gate.astype(dt) * wave + (1 - gate).astype(dt) * self.simple_table(tokens))


class PhysicsWaveEmbedding(_WaveEmbeddingBase):
    """§3B: fixed Zipf-mass frequencies and 1/n amplitudes, learned phases, annealed against a lookup table."""

    def setup(self):
        c = self.config
        v, w = self.vocab_size, c.wave.num_waves
        self.phase = self.param("phase", init.named(_uniform(0.0, 2 * math.pi), "vocab", None), (v, w))
        self.pos = self.pos_freq()
        # r is set by the optimizer (stop_gradient: it gets no gradient), see wavejax.train.optim.anneal_standard_ratio
        self.standard_ratio = self.param(
            "standard_ratio", init.named(lambda _: jnp.asarray(c.wave.standard_ratio_init, jnp.float32)))
        self.simple_table = self.table()
        self.to_embed = self.projection()
        self.ln = self.norm()

    def __call__(self, tokens, deterministic: bool = True):
        c = self.config
        dt = compute_dtype(c)
        n, w = c.wave.num_harmonics, c.wave.num_waves
        harmonics = harmonic_numbers(n, self.phase.dtype)
        offsets = jnp.asarray(zipf_phase_offsets(self.vocab_size, n), self.phase.dtype)[tokens]  # [B,T,N]
        offset = jnp.broadcast_to(offsets[:, :, None, :], (*tokens.shape, w, n))
        feats = wave_packet_features(offset, self.phase[tokens], self.pos, 1.0 / harmonics)
        wave = self.to_embed(feats.astype(dt))
        ratio = jax.lax.stop_gradient(self.standard_ratio)
        if deterministic and resolved(c.wave)["eval_ratio_zero"]:
            ratio = jnp.zeros_like(ratio)  # [K] evaluated and generated with r = 0 whatever r training used
        self.sow("diagnostics", "standard_ratio", ratio)
        self.sow(HARMONICS_COLLECTION, "amplitudes", jnp.broadcast_to(1.0 / harmonics, (self.vocab_size, w, n)))
        return self.ln((1 - ratio).astype(dt) * wave + ratio.astype(dt) * self.simple_table(tokens))


# -- MLP and head ----------------------------------------------------------------------------------------------------

def resonance_activation(h, sin_scale: float = 0.1):
    """GELU(h) + sin_scale * sin(h), GELU exact (erf)."""
    return nn.gelu(h, approximate=False) + sin_scale * jnp.sin(h)


class WaveResonanceMLP(nn.Module):
    """fc2(dropout(GELU(fc1 x) + 0.1 sin(fc1 x))), then dropout (§5)."""

    config: object

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        c = self.config
        dt = compute_dtype(c)
        h = init.dense(c.mlp_ratio * c.d_model, ("embed", "mlp"), use_bias=c.use_bias, dtype=dt, kernel_init=init.weights(c),
                       name="up")(x)
        h = nn.Dropout(c.dropout)(resonance_activation(h, c.wave.mlp_sin_scale), deterministic=deterministic)
        y = init.dense(c.d_model, ("mlp", "embed"), use_bias=c.use_bias, dtype=dt, kernel_init=init.residual_out(c),
                       name="down")(h)
        return nn.Dropout(c.dropout)(y, deterministic=deterministic)


class CollapseHead(nn.Module):
    """logits = Linear(LN(x)) with bias, in float32 (§5)."""

    config: object
    vocab_size: int

    @nn.compact
    def __call__(self, x):
        c = self.config
        dt = compute_dtype(c)
        x = init.layer_norm(use_bias=c.use_bias, dtype=dt, name="ln")(x)
        return init.dense(self.vocab_size, ("embed", "vocab"), dtype=dt, kernel_init=init.weights(c), name="out")(x).astype(
            jnp.float32)


@register_embedding("wave_packet")
def wave_packet_embedding(config, vocab_size, name=None):
    return WavePacketEmbedding(config, vocab_size, name=name)


@register_embedding("wave_physics")
def wave_physics_embedding(config, vocab_size, name=None):
    return PhysicsWaveEmbedding(config, vocab_size, name=name)


@register_mixer("wave_mlp")
def wave_mlp(config, name=None):
    return WaveResonanceMLP(config, name=name)


@register_head("wave_collapse")
def wave_collapse_head(config, vocab_size, name=None):
    return CollapseHead(config, vocab_size, name=name)


for _part in PARTS:
    register_check(_part, check_wave_config)


# -- the trunk parts -----------------------------------------------------------------------------------------------

def _heads(x, n_head: int):
    return rearrange(x, "b t (h f) -> b h t f", h=n_head)


def _merge(y):
    return rearrange(y, "b h t d -> b t (h d)")


class _WaveAttentionBase(nn.Module):
    """Shared plumbing: projections, head split/merge, attention dropout key, the output projection."""

    config: object  # the model ConfigDict; settings in config.wave

    def dense(self, features: int, name: str, out: bool = False):
        c = self.config
        kernel_init = init.residual_out(c) if out else init.weights(c)
        axes = ("heads", "embed") if out else ("embed", "heads")
        return init.dense(features, axes, use_bias=c.use_bias, dtype=compute_dtype(c), kernel_init=kernel_init, name=name)

    def settings(self):
        """(model config, resolved wave settings, heads H, waves W)."""
        c = self.config
        p = resolved(c.wave)
        return c, p, c.n_head, p["num_waves"]

    def dropout_rng(self, deterministic: bool):
        return self.make_rng("dropout") if (not deterministic and self.config.attn_dropout > 0.0) else None

    def keep_weights(self, weights_fn) -> None:
        """Attention weights [B,H,T,T] into "intermediates" (for the wave diagnostics), only when asked for."""
        if self.is_mutable_collection("intermediates"):
            self.sow("intermediates", "weights", jax.lax.stop_gradient(weights_fn()))

    def project_out(self, y):
        return self.dense(self.config.d_model, "out", out=True)(_merge(y).astype(compute_dtype(self.config)))


class CosineWaveAttention(_WaveAttentionBase):
    """§4.1: cosine-similarity softmax attention with one learned temperature per layer (init sqrt(W))."""

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        c, _, h, w = self.settings()
        q = _heads(self.dense(h * w, "q")(x), h)
        k = _heads(self.dense(h * w, "k")(x), h)
        v = _heads(self.dense(c.d_model, "v")(x), h)
        # shapes as the original's parameters (their ndim decides what the wave optimizers do to them)
        q = q + self.param("q_phase", init.named(nn.initializers.zeros, None, "heads", None, None), (1, h, 1, w),
                               jnp.float32).astype(q.dtype)
        k = k + self.param("k_phase", init.named(nn.initializers.zeros, None, "heads", None, None), (1, h, 1, w),
                               jnp.float32).astype(k.dtype)
        temperature = self.param("temperature", init.named(lambda _: jnp.full((1,), math.sqrt(w), jnp.float32), None))[0]
        self.sow("diagnostics", "temperature", jax.lax.stop_gradient(temperature))
        self.keep_weights(lambda: cosine_attention_weights(q, k, temperature))
        y = cosine_attention_reference(q, k, v, temperature, self.dropout_rng(deterministic), c.attn_dropout)
        return self.project_out(y)


class InterferenceAttention(_WaveAttentionBase):
    """§4.2: attention weights from wave interference, energy-normalised, blockwise over keys."""

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        c, p, h, w = self.settings()
        omega = _heads(self.dense(h * w, "freq")(x), h)
        phase = _heads(self.dense(h * w, "phase")(x), h)
        amp = jax.nn.softplus(_heads(self.dense(h * w, "amp")(x), h)) + INTERFERENCE_EPS
        v = _heads(self.dense(c.d_model, "v")(x), h)
        normalize = p["interference_normalize"]
        self.keep_weights(lambda: row_normalized(interference_weights_reference(omega, phase, amp), normalize))
        if p["impl"] == "pallas":  # no dropout there: check_wave_config refuses it
            block = p["interference_block"]
            kernel = functools.partial(interference_flash_attention, normalize=normalize, block_q=block, block_k=block)
            y = per_device_in_context_mesh(kernel, (omega, phase, amp, v))  # a sharded jit cannot split a kernel
        else:
            y = interference_attention(omega, phase, amp, v, normalize=normalize, block_size=p["interference_block"],
                                       dropout_rng=self.dropout_rng(deterministic), dropout_rate=c.attn_dropout)
        return self.project_out(y)


class PureWaveAttention(_WaveAttentionBase):
    """§4.4: sinusoid q/k features, a kernel instead of softmax; quadratic or (sound default honours it) linear."""

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        c, p, h, w = self.settings()
        q = pure_wave_features(_heads(self.dense(h * w, "q_freq")(x), h), _heads(self.dense(h * w, "q_phase")(x), h))
        k = pure_wave_features(_heads(self.dense(h * w, "k_freq")(x), h), _heads(self.dense(h * w, "k_phase")(x), h))
        v = _heads(self.dense(c.d_model, "v")(x), h)
        kernel = p["pure_kernel"]
        scale = self.param("scale", init.named(nn.initializers.ones, "heads", None, None), (h, 1, 1), jnp.float32)  # sigma_h; exists in both modes
        if p["pure_mode"] == "linear":  # the original's linear mode: no per-head scale, no dropout
            self.keep_weights(lambda: pure_wave_linear_weights(q, k, kernel))
            y = pure_wave_linear(q, k, v, kernel, p["linear_chunk"])
        else:
            self.keep_weights(lambda: pure_wave_quadratic_weights(q, k, scale, kernel))
            y = pure_wave_quadratic(q, k, v, scale, kernel, self.dropout_rng(deterministic), c.attn_dropout)
        return self.project_out(y)


@register_attention("wave_cosine")
def wave_cosine_attention(config, name=None):
    return CosineWaveAttention(config, name=name)


@register_attention("wave_interference")
def wave_interference_attention(config, name=None):
    return InterferenceAttention(config, name=name)


@register_attention("wave_pure")
def wave_pure_attention(config, name=None):
    return PureWaveAttention(config, name=name)
