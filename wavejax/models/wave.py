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
Attentions: wavejax/models/wave_attention.py.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from wavejax.errors import ConfigError
from wavejax.models import wave_attention  # noqa: F401  (registers the wave attentions)
from wavejax.models.wave_attention import KERNELS, PURE_MODES, compute_dtype
from wavejax.nn import init
from wavejax.nn.registry import register_check, register_embedding, register_head, register_mixer

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
    # xla: the blockwise lax.scan; pallas: the flash-style kernel (pallas_kernels/interference_attention.py,
    # interpret mode on CPU). "xla" stays the default until the kernel has been timed on a GPU.
    w.interference_impl = "xla"
    w.interference_normalize = True  # divide alpha by its row sum (the original: False, rows sum to ~(t+1) mean alpha)
    w.pure_kernel = "elu_plus_one"  # elu_plus_one | sigmoid | exp
    w.pure_mode = "quadratic"  # quadratic | linear (the original ignored this and always ran quadratic)
    w.linear_chunk = 64  # positions per chunk of the O(T) linear attention
    w.mlp_sin_scale = 0.1  # GELU(h) + mlp_sin_scale * sin(h)
    return w


def resolved(wave_config) -> dict:
    """Effective settings: `seed_faithful` forces the original's behaviour whatever the individual flags say."""
    p = dict(wave_config)
    p["eval_ratio_zero"] = bool(p["seed_faithful"])
    if p["seed_faithful"]:
        p.update(interference_normalize=False, pure_mode="quadratic")
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
    check_interference_impl(model_config)


INTERFERENCE_IMPLS = ("xla", "pallas")


def check_interference_impl(model_config) -> None:
    """The kernel's limits: power-of-two blocks >= 16, and no attention dropout (it never holds alpha to drop)."""
    w = model_config.wave
    impl = w.get("interference_impl", "xla")  # absent from run directories written before the kernel existed
    if impl not in INTERFERENCE_IMPLS:
        raise ConfigError(f"model.wave.interference_impl must be one of {INTERFERENCE_IMPLS}, got {impl!r}.")
    if impl != "pallas" or "wave_interference" not in (tuple(model_config.get("layer_attention", ()))
                                                       or (model_config.attention,)):
        return
    if w.interference_block & (w.interference_block - 1) or w.interference_block < 16:
        raise ConfigError(f"model.wave.interference_impl='pallas' needs model.wave.interference_block to be a power "
                          f"of two >= 16 (the kernel's tile, as Triton needs), got {w.interference_block}.")
    if model_config.attn_dropout > 0:
        raise ConfigError("model.wave.interference_impl='pallas' has no attention dropout; set model.attn_dropout=0 "
                          "or model.wave.interference_impl='xla'.")


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
        return nn.Embed(self.vocab_size, c.d_model, embedding_init=init.normal(c.wave.simple_embed_std),
                        dtype=compute_dtype(c))

    def projection(self):
        c = self.config
        return nn.Dense(c.d_model, use_bias=True, dtype=compute_dtype(c), kernel_init=init.normal())

    def norm(self):
        c = self.config
        return nn.LayerNorm(epsilon=1e-5, use_bias=c.use_bias, dtype=compute_dtype(c))

    def pos_freq(self):
        w = self.config.wave.num_waves
        return self.param("pos_freq", init.normal(0.1), (1, 1, w), jnp.float32).reshape(w)

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

        self.freq = self.param("freq", freq_init, (v, w))
        self.amp = self.param("amp", init.normal(0.5 / math.sqrt(n * w)), (v, w, n))
        self.phase = self.param("phase", _uniform(0.0, 2 * math.pi), (v, w))
        self.pos = self.pos_freq()
        self.wave_ratio = self.param("wave_ratio", lambda _: jnp.asarray(c.wave.wave_ratio_init, jnp.float32))
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
        self.phase = self.param("phase", _uniform(0.0, 2 * math.pi), (v, w))
        self.pos = self.pos_freq()
        # r is set by the optimizer (stop_gradient: it gets no gradient), see wavejax.train.optim.anneal_standard_ratio
        self.standard_ratio = self.param("standard_ratio",
                                         lambda _: jnp.asarray(c.wave.standard_ratio_init, jnp.float32))
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
        h = nn.Dense(c.mlp_ratio * c.d_model, use_bias=c.use_bias, dtype=dt, kernel_init=init.normal(), name="up")(x)
        h = nn.Dropout(c.dropout)(resonance_activation(h, c.wave.mlp_sin_scale), deterministic=deterministic)
        y = nn.Dense(c.d_model, use_bias=c.use_bias, dtype=dt, kernel_init=init.residual_out(c), name="down")(h)
        return nn.Dropout(c.dropout)(y, deterministic=deterministic)


class CollapseHead(nn.Module):
    """logits = Linear(LN(x)) with bias, in float32 (§5)."""

    config: object
    vocab_size: int

    @nn.compact
    def __call__(self, x):
        c = self.config
        dt = compute_dtype(c)
        x = nn.LayerNorm(epsilon=1e-5, use_bias=c.use_bias, dtype=dt, name="ln")(x)
        return nn.Dense(self.vocab_size, use_bias=True, dtype=dt, kernel_init=init.normal(), name="out")(x).astype(
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

from wavejax.analysis import wave_diagnostics  # noqa: E402,F401  (registers the "wave" end-of-run report)
