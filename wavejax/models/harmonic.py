"""Harmonic GPT: wave detector, wave-selective attention, harmonic mixture-of-experts (spec: docs/specs/harmonic_gpt.md).

Faithful (`seed_faithful=True`): the wave tokens are the top-k detector scores of the whole window (a token's
treatment depends on later tokens) and the selection is a hard mask, so the detector never gets a gradient. Default:
a causal selection (a token is a wave token when its score passes the threshold and capacity is left, counted in
position order), the wave tokens' attention output scaled by their score, and a calibration loss on the detector.

Per block (the trunk's pre-LN Block with model.selector = "wave_detector"; h = LN1(x)):

    z_t = w2 · GELU(W1 h_t + b1) + b2,  s_t = sigmoid(z_t)                              (detector, hidden 128)
    k = ceil(fraction · T)
    causal: wave_t = [z_t > 0] and #{u <= t : z_u > 0} <= k      topk: wave_t = [z_t among the k largest of the row]
    y_t = attn(h)_t · (s_t if wave_t else 1)                      wave tokens attend to all u <= t, others to t-W < u <= t
    calibration loss (causal only): λ_cal · BCE(z_t, [z_t among the k largest of the row]) with the target detached,
        so that ~fraction of the scores pass 0 (the Mixture-of-Depths recipe for a causal router)

The calibration target looks at the whole window, as every language-model loss does; the forward computation of
token t reads only tokens <= t. Harmonic MoE (mixer "harmonic_moe"): E experts (D -> mlp_ratio·D -> D, stacked
weights); every token goes through expert 0, the default expert; wave tokens are routed top-1 among all E experts by a
linear router, at most C = ceil(capacity_factor · k / E) per expert and sequence, and their output replaced by
p_router · expert(x) (Switch Transformer); tokens over capacity keep the default expert's output; the Switch
load-balancing loss E · Σ_e f_e · P_e is added with weight moe_aux_weight. Mode coupling is the trunk's
`model.layer_coupling` (wavejax/nn/coupling.py).
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from einops import rearrange

from pallas_kernels.selective_attention import wave_selective_flash_attention
from wavejax.errors import ConfigError
from wavejax.nn import init
from wavejax.nn.attention import QKVProjection
from wavejax.nn.registry import (
    check_faithful,
    check_impl,
    register_attention,
    register_check,
    register_mixer,
    register_selector,
)
from wavejax.ops.selective import (
    Selection,
    capacity,
    scatter_rows,
    selection_indices,
    wave_selective_attention,
    wave_selective_attention_reference,
)
from wavejax.parallel.sharding import per_device_in_context_mesh

SELECTIONS = ("causal", "topk")


def default_harmonic_config() -> ml_collections.ConfigDict:
    """config.model.harmonic: the sound defaults; seed_faithful=True switches to the original's behaviour."""
    h = ml_collections.ConfigDict()
    h.seed_faithful = False  # True: top-k over the whole window, hard mask (no detector gradient), no calibration
    h.fraction = 0.25  # wave capacity k = ceil(fraction * T)
    h.window = 32  # W: the other tokens attend to the last W positions (themselves included)
    h.detector_hidden = 128
    h.selection = "causal"  # causal: score > 0 and capacity left, in position order; topk: the k best of the window
    h.gate = True  # scale the wave tokens' attention output by their score (the detector's gradient path)
    h.calibration_weight = 0.01  # BCE of the scores against the window's top-k (causal selection only)
    h.masked = False  # True: the xla path as dense T×T scores with the mask (the reference) instead of k×T + T×2W
    h.impl = "xla"  # xla | pallas: the flash kernel (pallas_kernels/selective_attention.py; interpret mode on CPU)
    h.n_experts = 4  # harmonic MoE: experts, expert 0 is the default expert of the non-wave tokens
    h.capacity_factor = 1.25  # per-expert capacity C = ceil(capacity_factor * k / n_experts) per sequence
    h.moe_aux_weight = 0.01  # Switch load-balancing loss weight
    return h


FAITHFUL = {"selection": "topk", "gate": False, "calibration_weight": 0.0}  # what seed_faithful=True runs


def resolved(harmonic_config) -> dict:
    """Effective settings: `seed_faithful` runs the original's FAITHFUL values (a flag set against them is refused
    by check_harmonic_config)."""
    h = dict(harmonic_config)
    if h["seed_faithful"]:
        h.update(FAITHFUL)
    return h


def check_harmonic_config(model_config) -> None:
    """ConfigError for impossible harmonic settings (run by wavejax.config.validate when a harmonic part is used)."""
    if "harmonic" not in model_config:
        raise ConfigError("a harmonic part is used but the config has no model.harmonic section; start from configs/harmonic.py.")
    h = model_config.harmonic
    if not 0.0 < h.fraction <= 1.0:
        raise ConfigError(f"model.harmonic.fraction must be in (0, 1], got {h.fraction}.")
    for key in ("window", "detector_hidden", "n_experts"):
        if h[key] < 1:
            raise ConfigError(f"model.harmonic.{key} must be >= 1, got {h[key]}.")
    if not h.capacity_factor > 0:
        raise ConfigError(f"model.harmonic.capacity_factor must be > 0, got {h.capacity_factor}.")
    for key in ("calibration_weight", "moe_aux_weight"):
        if not h[key] >= 0:
            raise ConfigError(f"model.harmonic.{key} must be >= 0, got {h[key]}.")
    if h.selection not in SELECTIONS:
        raise ConfigError(f"model.harmonic.selection must be one of {SELECTIONS}, got {h.selection!r}.")
    check_impl("model.harmonic", h.impl)
    if h.impl == "pallas" and h.masked:
        raise ConfigError("model.harmonic.impl='pallas' and model.harmonic.masked=True contradict each other (the "
                          "kernel replaces the xla path, masked picks the xla path's reference form); drop one.")
    check_faithful("model.harmonic", h, default_harmonic_config(), FAITHFUL)
    if model_config.attn_dropout > 0:
        raise ConfigError("wave_selective attention has no attention-probability dropout; set model.attn_dropout=0.")


def expert_capacity(harmonic: dict, k: int) -> int:
    """Wave tokens one expert takes per sequence."""
    return max(1, math.ceil(harmonic["capacity_factor"] * k / harmonic["n_experts"]))


def topk_membership(z, k: int):
    """[B,T] bool: z[b, t] is among the k largest of its row."""
    _, top = jax.lax.top_k(z, k)
    return jnp.zeros(z.shape, bool).at[jnp.arange(z.shape[0])[:, None], top].set(True)


def causal_selection(z, k: int):
    """wave_t = z_t > 0 and at most k so far, counted in position order: depends on z_u for u <= t only."""
    passes = z > 0
    return passes & (jnp.cumsum(passes, axis=-1) <= k)


# -- the parts -------------------------------------------------------------------------------------------------------

class WaveDetector(nn.Module):
    """Selector "wave_detector": scores every token and picks the block's wave tokens (a Selection)."""

    config: object

    @nn.compact
    def __call__(self, x, deterministic: bool = True) -> Selection:
        c = self.config
        h = resolved(c.harmonic)
        dtype = init.dtype_of(c.dtype)
        hidden = nn.gelu(init.dense(h["detector_hidden"], ("embed", None), dtype=dtype, name="hidden")(x), approximate=False)
        z = init.dense(1, (None, None), dtype=dtype, name="score")(hidden)[..., 0].astype(jnp.float32)
        k = capacity(h["fraction"], x.shape[1])
        top = topk_membership(jax.lax.stop_gradient(z), k)
        is_wave = top if h["selection"] == "topk" else causal_selection(z, k)
        idx, valid = selection_indices(is_wave, k)
        if h["calibration_weight"] > 0 and h["selection"] == "causal":
            bce = optax.sigmoid_binary_cross_entropy(z, top.astype(jnp.float32)).mean()
            self.sow("losses", "calibration", h["calibration_weight"] * bce)
        self.sow("diagnostics", "wave_fraction", is_wave.mean())
        self.sow("diagnostics", "pass_fraction", (z > 0).mean())  # over capacity when > fraction
        return Selection(z, jax.nn.sigmoid(z), is_wave, idx, valid)


class WaveSelectiveAttention(nn.Module):
    """Attention "wave_selective": multi-head attention under the wave-selective mask, wave rows scaled by score."""

    config: object

    @nn.compact
    def __call__(self, x, deterministic: bool = True, selection: Selection | None = None):
        c = self.config
        h = resolved(c.harmonic)
        dtype = init.dtype_of(c.dtype)
        q, k, v = QKVProjection(c.n_head, c.d_model, c.use_bias, dtype, init.std_of(c), name="proj")(x)
        if h["impl"] == "pallas":
            kernel = functools.partial(wave_selective_flash_attention, window=h["window"])
            y = per_device_in_context_mesh(kernel, (q, k, v, selection.is_wave))  # a sharded jit cannot split it
        elif h["masked"]:
            y = wave_selective_attention_reference(q, k, v, selection.is_wave, h["window"])
        else:
            y = wave_selective_attention(q, k, v, selection.idx, selection.valid, h["window"])
        if h["gate"]:
            y = y * detector_gate(selection)[:, :, None, None].astype(y.dtype)
        y = rearrange(y, "b t h d -> b t (h d)")
        y = init.dense(c.d_model, ("heads", "embed"), use_bias=c.use_bias, dtype=dtype, kernel_init=init.residual_out(c),
                       name="out")(y)
        return nn.Dropout(c.dropout)(y, deterministic=deterministic)


def detector_gate(selection: Selection):
    """[B,T]: the score s_t for wave tokens, 1 for the others."""
    return jnp.where(selection.is_wave, selection.scores, 1.0)


def experts_ffn(x, w_up, b_up, w_down, b_down):
    """Every expert on its own tokens in one batched computation: x [B,E,C,D] -> [B,E,C,D]."""
    hidden = nn.gelu(jnp.einsum("becd,edf->becf", x, w_up) + b_up[None, :, None], approximate=False)
    return jnp.einsum("becf,efd->becd", hidden, w_down) + b_down[None, :, None]


def route_top1(router_logits, valid, n_experts: int, cap: int):
    """Switch top-1 routing with a per-sequence capacity, tokens served in position order.

    router_logits [B,k,E], valid [B,k] -> (choice [B,k], prob [B,k], keep [B,k], slot [B,k], probs [B,k,E]);
    slot = choice·C + rank within the expert for kept tokens, E·C (a discard slot) for the others."""
    probs = jax.nn.softmax(router_logits.astype(jnp.float32), axis=-1)
    choice = jnp.argmax(probs, axis=-1)
    onehot = jax.nn.one_hot(choice, n_experts, dtype=jnp.int32) * valid[..., None]
    rank = jnp.sum((jnp.cumsum(onehot, axis=1) - 1) * onehot, axis=-1)
    keep = valid & (rank < cap)
    slot = jnp.where(keep, choice * cap + rank, n_experts * cap)
    return choice, jnp.max(probs, axis=-1), keep, slot, probs


def load_balancing_loss(probs, choice, valid, n_experts: int):
    """Switch Transformer: E · Σ_e f_e · P_e over the valid (wave) tokens; 1 when perfectly balanced, E when collapsed."""
    w = valid.astype(jnp.float32)[..., None]
    n = jnp.maximum(w.sum(), 1.0)
    f = (jax.nn.one_hot(choice, n_experts) * w).sum(axis=(0, 1)) / n
    p = (probs * w).sum(axis=(0, 1)) / n
    return n_experts * jnp.sum(f * p), f


def moe_combine(x, idx, valid, router_logits, w_up, b_up, w_down, b_down, cap: int):
    """The harmonic MoE output (before dropout) and its routing: (y, aux_loss, load [E], keep [B,k]).

    Expert 0 on every token; the wave tokens (idx, valid) dispatched to their experts by slot, computed as [B,E,C,D],
    gathered back, scaled by the router probability and written over the default output."""
    b, _, d = x.shape
    n_experts = w_up.shape[0]
    y = experts_ffn(x[:, None], w_up[:1], b_up[:1], w_down[:1], b_down[:1])[:, 0]
    xw = jnp.take_along_axis(x, idx[..., None], axis=1)
    choice, prob, keep, slot, probs = route_top1(router_logits, valid, n_experts, cap)
    bidx = jnp.arange(b)[:, None]
    buf = jnp.zeros((b, n_experts * cap + 1, d), x.dtype).at[bidx, slot].set(xw)  # slot E·C collects the dropped
    out = experts_ffn(buf[:, :-1].reshape(b, n_experts, cap, d), w_up, b_up, w_down, b_down)
    out = jnp.concatenate([out.reshape(b, n_experts * cap, d), jnp.zeros((b, 1, d), out.dtype)], axis=1)
    routed = jnp.take_along_axis(out, slot[..., None], axis=1) * prob[..., None].astype(out.dtype)
    aux, load = load_balancing_loss(probs, choice, valid, n_experts)
    return scatter_rows(y, idx, keep, routed), aux, load, keep


class HarmonicMoE(nn.Module):
    """Mixer "harmonic_moe": default expert for every token, routed experts for the block's wave tokens."""

    config: object

    @nn.compact
    def __call__(self, x, deterministic: bool = True, selection: Selection | None = None):
        c = self.config
        h = resolved(c.harmonic)
        dtype = init.dtype_of(c.dtype)
        e, d, f = h["n_experts"], c.d_model, c.mlp_ratio * c.d_model
        w_up = self.param("w_up", init.named(init.weights(c), "experts", "embed", "mlp"), (e, d, f))
        w_down = self.param("w_down", init.named(init.residual_out(c), "experts", "mlp", "embed"), (e, f, d))
        zeros = nn.initializers.zeros
        b_up = self.param("b_up", init.named(zeros, "experts", "mlp"), (e, f)) if c.use_bias else jnp.zeros((e, f))
        b_down = self.param("b_down", init.named(zeros, "experts", "embed"), (e, d)) if c.use_bias else jnp.zeros((e, d))
        xw = jnp.take_along_axis(x, selection.idx[..., None], axis=1)
        router_logits = init.dense(e, ("embed", None), use_bias=False, dtype=dtype, kernel_init=init.weights(c), name="router")(xw)
        cap = expert_capacity(h, selection.idx.shape[1])
        cast = lambda a: a.astype(dtype)  # noqa: E731
        y, aux, load, keep = moe_combine(x, selection.idx, selection.valid, router_logits, cast(w_up), cast(b_up),
                                         cast(w_down), cast(b_down), cap)
        if h["moe_aux_weight"] > 0:
            self.sow("losses", "load_balance", h["moe_aux_weight"] * aux)
        self.sow("diagnostics", "expert_load", load)
        n_valid = jnp.maximum(selection.valid.sum(), 1)
        self.sow("diagnostics", "moe_dropped", (selection.valid & ~keep).sum() / n_valid)
        return nn.Dropout(c.dropout)(y, deterministic=deterministic)


@register_selector("wave_detector")
def wave_detector(config, name=None):
    return WaveDetector(config, name=name)


@register_attention("wave_selective", uses_selection=True)
def wave_selective(config, name=None):
    return WaveSelectiveAttention(config, name=name)


@register_mixer("harmonic_moe", uses_selection=True)
def harmonic_moe(config, name=None):
    return HarmonicMoE(config, name=name)


for _part in ("wave_detector", "wave_selective", "harmonic_moe"):
    register_check(_part, check_harmonic_config)
