"""The Wave-Native GPT's attention math in plain jnp (spec: docs/specs/wave_native.md §4): cosine ("hybrid")
attention, interference attention (the [B,H,T,T,W] reference and the blockwise O(T·block) form) and pure-wave
attention (quadratic, and the O(T) linear form with its T x T reference). q/k/omega/... are [B,H,T,W], v is [B,H,T,D].
The model parts (wavejax/models/wave.py) and the interference kernel (pallas_kernels/interference_attention.py) build
on these; the kernel is tested against `interference_attention_reference`.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

INTERFERENCE_EPS = 1e-8  # the original's eps in softplus(.) + eps and in I / (E + eps)
LINEAR_EPS = 1e-6  # the original linear attention's denominator guard

KERNELS = {
    "elu_plus_one": lambda s: jax.nn.elu(s) + 1.0,
    "sigmoid": jax.nn.sigmoid,
    "exp": jnp.exp,
}
PURE_MODES = ("quadratic", "linear")


def l2_normalize(x, eps: float = 1e-12):
    """x / max(|x|, eps) over the last axis (torch.nn.functional.normalize)."""
    return x / jnp.maximum(jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True)), eps)


def causal_mask(t: int):
    """[T,T] bool, True where key k <= query q."""
    return jnp.tril(jnp.ones((t, t), dtype=bool))


def _dropout(weights, rng, rate: float):
    if rng is None or rate <= 0.0:
        return weights
    keep = jax.random.bernoulli(rng, 1.0 - rate, weights.shape)
    return jnp.where(keep, weights / (1.0 - rate), 0.0)


def _score_dtype(x):
    """Scores in at least float32 (bf16 inputs are upcast; float64 stays float64)."""
    return jnp.promote_types(x.dtype, jnp.float32)


# -- cosine ("hybrid") attention -----------------------------------------------------------------------------------

def cosine_attention_weights(q, k, temperature):
    """softmax_k(<q_hat, k_hat> / tau) over k <= q; q, k [B,H,T,W] -> [B,H,T,T]."""
    dt = _score_dtype(q)
    s = jnp.einsum("bhqw,bhkw->bhqk", l2_normalize(q.astype(dt)), l2_normalize(k.astype(dt))) / temperature
    s = jnp.where(causal_mask(q.shape[2]), s, jnp.finfo(dt).min)
    return jax.nn.softmax(s, axis=-1)


def cosine_attention_reference(q, k, v, temperature, dropout_rng=None, dropout_rate: float = 0.0):
    """Cosine-similarity attention with a learned temperature (§4.1); v [B,H,T,D] -> [B,H,T,D]."""
    chex.assert_rank([q, k, v], 4)
    weights = _dropout(cosine_attention_weights(q, k, temperature), dropout_rng, dropout_rate)
    return jnp.einsum("bhqk,bhkd->bhqd", weights.astype(v.dtype), v)


# -- interference attention ----------------------------------------------------------------------------------------

def interference_weights_reference(omega, phase, amp):
    """alpha [B,H,T,T] = I / (E + 1e-8), zero above the diagonal, by the original's [B,H,T,T,W] tensors."""
    t = omega.shape[2]
    pos = jnp.arange(t, dtype=omega.dtype)
    dt = pos[:, None] - pos[None, :]  # t_q - t_k
    arg = (omega[:, :, :, None, :] - omega[:, :, None, :, :]) * dt[None, None, :, :, None] + (
        phase[:, :, :, None, :] - phase[:, :, None, :, :])
    a_q, a_k = amp[:, :, :, None, :], amp[:, :, None, :, :]
    intensity = jnp.sum(a_q**2 + a_k**2 + 2 * a_q * a_k * jnp.cos(arg), axis=-1)
    energy = jnp.sum((a_q + a_k) ** 2, axis=-1)
    mask = causal_mask(t)
    return jnp.where(mask, intensity, 0.0) / (jnp.where(mask, energy, 1.0) + INTERFERENCE_EPS)


def interference_attention_reference(omega, phase, amp, v, normalize: bool, dropout_rng=None,
                                     dropout_rate: float = 0.0):
    """(alpha [/ row sum]) v with alpha from `interference_weights_reference`; the plain form for tests and kernels."""
    alpha = interference_weights_reference(omega, phase, amp)
    if normalize:
        alpha = alpha / jnp.sum(alpha, axis=-1, keepdims=True)  # >= alpha_qq = 1, never 0
    alpha = _dropout(alpha, dropout_rng, dropout_rate)
    return jnp.einsum("bhqk,bhkd->bhqd", alpha.astype(v.dtype), v)


def _blocks(x, block: int, pad: int):
    """[B,H,T,...] -> [T/block, B,H,block,...] (keys zero-padded at the end)."""
    if pad:
        x = jnp.pad(x, [(0, 0), (0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 3))
    b, h, t = x.shape[:3]
    return jnp.moveaxis(x.reshape(b, h, t // block, block, *x.shape[3:]), 2, 0)


def interference_attention(omega, phase, amp, v, *, normalize: bool, block_size: int = 64, dropout_rng=None,
                           dropout_rate: float = 0.0):
    """The interference attention of `interference_attention_reference`, blockwise over keys.

    A lax.scan over key blocks accumulates alpha v and the row sums of alpha; each step builds only the
    [B,H,T,block,W] cosine tensor, and its body is rematerialised so the backward pass stores no per-block
    intermediates either. With E_qk = S_q + S_k + 2 P_qk (S = sum_w A^2, P = sum_w A_q A_k) only the cross term
    needs the W axis. Dropout keys are folded per block (the same mask law, not the same draws as the reference).
    """
    chex.assert_rank([omega, phase, amp, v], 4)
    chex.assert_equal_shape([omega, phase, amp])
    chex.assert_equal_shape_prefix([omega, v], 3)
    b, h, t, w = omega.shape
    block = max(1, min(block_size, t))
    n_blocks = -(-t // block)
    pad = n_blocks * block - t
    dt_score = _score_dtype(omega)
    omega, phase, amp = (a.astype(dt_score) for a in (omega, phase, amp))
    pos = jnp.arange(t)
    pos_f = pos.astype(dt_score)
    sq_q = jnp.sum(amp**2, axis=-1)  # [B,H,T]
    keys = (jnp.arange(n_blocks), _blocks(omega, block, pad), _blocks(phase, block, pad), _blocks(amp, block, pad),
            _blocks(v, block, pad))

    def step(carry, xs):
        acc, row_sum = carry
        j, om_k, ph_k, a_k, v_k = xs
        k_pos = j * block + jnp.arange(block)
        delta_t = pos_f[:, None] - k_pos.astype(dt_score)[None, :]  # [T,block]
        arg = (omega[:, :, :, None, :] - om_k[:, :, None, :, :]) * delta_t[None, None, :, :, None] + (
            phase[:, :, :, None, :] - ph_k[:, :, None, :, :])
        cross = jnp.einsum("bhqw,bhkw,bhqkw->bhqk", amp, a_k, jnp.cos(arg))
        prod = jnp.einsum("bhqw,bhkw->bhqk", amp, a_k)
        sq_k = jnp.sum(a_k**2, axis=-1)[:, :, None, :]
        valid = (k_pos[None, :] <= pos[:, None]) & (k_pos < t)[None, :]
        base = sq_q[..., None] + sq_k
        alpha = jnp.where(valid, base + 2 * cross, 0.0) / (jnp.where(valid, base + 2 * prod, 1.0) + INTERFERENCE_EPS)
        row_sum = row_sum + jnp.sum(alpha, axis=-1)
        if dropout_rng is not None and dropout_rate > 0.0:
            alpha = _dropout(alpha, jax.random.fold_in(dropout_rng, j), dropout_rate)
        acc = acc + jnp.einsum("bhqk,bhkd->bhqd", alpha.astype(v_k.dtype), v_k).astype(acc.dtype)
        return (acc, row_sum), None

    init_carry = (jnp.zeros((b, h, t, v.shape[-1]), jnp.promote_types(v.dtype, dt_score)),
                  jnp.zeros((b, h, t), dt_score))
    (acc, row_sum), _ = jax.lax.scan(jax.checkpoint(step), init_carry, keys)
    if normalize:
        acc = acc / row_sum[..., None]
    return acc.astype(v.dtype)


# -- pure-wave attention -------------------------------------------------------------------------------------------

def pure_wave_features(freq, phase):
    """W^(1/4) normalise(sin(f t + p)) over the W axis; freq, phase [B,H,T,W], t = position index."""
    t, w = freq.shape[2], freq.shape[3]
    pos = jnp.arange(t, dtype=freq.dtype)[:, None]
    return l2_normalize(jnp.sin(freq * pos + phase)) * (w ** 0.25)


def pure_wave_quadratic_weights(q, k, scale, kernel: str):
    """a_qk = kernel(scale_h <q,k>) / sqrt(q+1) for k <= q, else 0; q, k [B,H,T,W], scale [H,1,1] -> [B,H,T,T]."""
    dt = _score_dtype(q)
    t = q.shape[2]
    s = jnp.einsum("bhqw,bhkw->bhqk", q.astype(dt), k.astype(dt)) * scale.astype(dt)[None]
    mask = causal_mask(t)
    a = jnp.where(mask, KERNELS[kernel](jnp.where(mask, s, 0.0)), 0.0)  # = kernel(-inf) above the diagonal
    return a / jnp.sqrt(jnp.arange(1, t + 1, dtype=dt))[:, None]


def pure_wave_quadratic(q, k, v, scale, kernel: str, dropout_rng=None, dropout_rate: float = 0.0):
    weights = _dropout(pure_wave_quadratic_weights(q, k, scale, kernel), dropout_rng, dropout_rate)
    return jnp.einsum("bhqk,bhkd->bhqd", weights.astype(v.dtype), v)


def pure_wave_linear_weights(q, k, kernel: str):
    """The linear attention's weights in T x T form: phi(q).phi(k) for k <= q, divided by (row sum + 1e-6)."""
    dt = _score_dtype(q)
    phi_q, phi_k = KERNELS[kernel](q.astype(dt)), KERNELS[kernel](k.astype(dt))
    a = jnp.where(causal_mask(q.shape[2]), jnp.einsum("bhqw,bhkw->bhqk", phi_q, phi_k), 0.0)
    return a / (jnp.sum(a, axis=-1, keepdims=True) + LINEAR_EPS)


def pure_wave_linear_reference(q, k, v, kernel: str):
    """Causal linear attention computed quadratically (the reference `pure_wave_linear` is tested against)."""
    return jnp.einsum("bhqk,bhkd->bhqd", pure_wave_linear_weights(q, k, kernel).astype(v.dtype), v)


def pure_wave_linear(q, k, v, kernel: str, chunk_size: int = 64):
    """O(T) causal linear attention: a lax.scan over chunks of C positions carries S = sum_k phi(k) v_k^T [W,D] and
    Z = sum_k phi(k) [W]; inside a chunk the causal C x C part is exact. Memory O(B*H*(T*C + W*D))."""
    chex.assert_rank([q, k, v], 4)
    chex.assert_equal_shape([q, k])
    b, h, t, w = q.shape
    chunk = max(1, min(chunk_size, t))
    n_chunks = -(-t // chunk)
    pad = n_chunks * chunk - t
    dt = _score_dtype(q)
    phi_q, phi_k = KERNELS[kernel](q.astype(dt)), KERNELS[kernel](k.astype(dt))
    xs = (_blocks(phi_q, chunk, pad), _blocks(phi_k, chunk, pad), _blocks(v.astype(dt), chunk, pad))
    tril = causal_mask(chunk)  # padded keys sit after every real query, so causality already hides them

    def step(carry, blk):
        s, z = carry
        qc, kc, vc = blk
        intra = jnp.where(tril, jnp.einsum("bhqw,bhkw->bhqk", qc, kc), 0.0)
        num = jnp.einsum("bhqw,bhwd->bhqd", qc, s) + jnp.einsum("bhqk,bhkd->bhqd", intra, vc)
        den = jnp.einsum("bhqw,bhw->bhq", qc, z) + jnp.sum(intra, axis=-1)
        out = num / (den[..., None] + LINEAR_EPS)
        s = s + jnp.einsum("bhkw,bhkd->bhwd", kc, vc)
        z = z + jnp.sum(kc, axis=2)
        return (s, z), out

    init_carry = (jnp.zeros((b, h, w, v.shape[-1]), dt), jnp.zeros((b, h, w), dt))
    _, out = jax.lax.scan(step, init_carry, xs)  # [n_chunks, B,H,C,D]
    out = jnp.moveaxis(out, 0, 2).reshape(b, h, n_chunks * chunk, v.shape[-1])[:, :, :t]
    return out.astype(v.dtype)


def row_normalized(alpha, normalize: bool):
    return alpha / jnp.sum(alpha, axis=-1, keepdims=True) if normalize else alpha
