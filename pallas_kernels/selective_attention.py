"""Wave-selective attention as a flash-style Pallas kernel (forward and recompute-based backward).

The mask is wavejax.ops.selective's: causal and (the query is a wave token or q - k < W),

    mask[b, q, k] = (k <= q) and (is_wave[b, q] or q - k < W)
    out[b, q] = softmax_k(q·k / sqrt(D) over mask[b, q]) · v

and `wave_selective_attention_reference` (the masked dense [B,H,T,T] form) is the reference the kernel must match.

Why the queries are permuted: wave tokens are scattered (a 25% selection leaves almost every 64-query tile with a
wave query), so per-tile "has a wave query" flags would skip almost nothing. The wrapper therefore reorders the queries
(stable): the wave queries first, in increasing position, then the others, in increasing position. A query tile is
then either (a) wave queries, which need the key blocks [0, last position], or (b) local queries spanning about
block_q / (1 - fraction) consecutive positions, which need only the key blocks from (first position - W + 1) to their
last position (a boundary tile holding both kinds takes the union). The key-block range of every query tile and the
query-tile ranges of every key block (for dk/dv) are computed outside the kernel with searchsorted on the permuted
positions; the kernels loop only over those ranges and mask element-wise inside them. Work is then about
k·T/2 + (T - k)·(block_q / (1 - fraction) + W) scores instead of T²/2, so it scales with the wave fraction and the
window. Outputs are gathered back to position order; the permutation's gather/scatter is left to XLA.

Kernels (Triton-style, as jax.experimental.pallas.ops.gpu.attention; grid (tiles, batch, heads)):
  forward   online softmax in base 2 over the tile's key blocks; writes out and lse (log2-sum-exp) per query
  dq        per query tile, recomputes p = 2^(s·log2e - lse) over the same key blocks; dq += (p ∘ (dO·Vᵀ - Δ)) K / √D
  dk, dv    per key block, loops over the query tiles that see it (wave tiles, then local tiles);
            dv += pᵀ dO, dk += (p ∘ (dO·Vᵀ - Δ))ᵀ Q / √D, with Δ = rowsum(O ∘ dO) computed outside
Everything is wrapped in a jax.custom_vjp (a raw pallas_call has no JVP). Ragged tails: T is padded to a multiple of
the blocks (padded queries sit last, padded keys are seen only by padded queries, whose cotangent is zero) and the
head dimension to a power of two (at least 16 when compiled) with zeros: Triton needs power-of-two block shapes and
matmul dimensions >= 16. f32 inputs use the default dot precision (TF32 on recent NVIDIA GPUs, as XLA's own f32
matmuls there), so on a GPU expect agreement with the reference near 1e-3 for f32; the 1e-4 checks run on CPU.

On CPU the kernels run with interpret=True (selected automatically). The models' default is impl="xla".
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from pallas_kernels import attention_interpret, padded_dim
from wavejax.ops.selective import wave_selective_attention_reference, wave_selective_mask  # noqa: F401  (the reference)

MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)  # finite: a fully masked block never makes inf - inf = NaN
LOG2E = math.log2(math.e)
DEFAULT_BLOCK_Q = 64
DEFAULT_BLOCK_K = 64


def _visible(pos, wave, kpos, window: int):
    """[bq, bk] bool: the wave-selective mask for query positions pos [bq] (wave flags wave [bq]) and keys kpos [bk]."""
    dist = pos[:, None] - kpos[None, :]
    return (dist >= 0) & ((wave[:, None] != 0) | (dist < window))


def _log2_scores(q, kb, scale: float):
    """[bq, bk] scores in base 2: q·kᵀ · scale · log2(e), accumulated in float32 (or float64)."""
    return plgpu.dot(q, kb, trans_b=True) * (scale * LOG2E)


# -- kernels ------------------------------------------------------------------------------------------------------

def _forward_kernel(q_ref, k_ref, v_ref, pos_ref, wave_ref, lo_ref, hi_ref, o_ref, lse_ref, *,
                    scale: float, window: int, block_k: int):
    tile = pl.program_id(0)
    q = q_ref[...]
    pos = pos_ref[...]
    wave = wave_ref[...]
    acc_dtype = jnp.promote_types(q.dtype, jnp.float32)
    block_q, head_dim = q.shape

    def body(j, carry):
        o, m, l = carry
        keys = pl.ds(j * block_k, block_k)
        kb, vb = k_ref[keys, :], v_ref[keys, :]
        visible = _visible(pos, wave, j * block_k + jnp.arange(block_k), window)
        s = jnp.where(visible, _log2_scores(q, kb, scale), MASK_VALUE)
        m_next = jnp.maximum(m, s.max(axis=-1))
        p = jnp.where(visible, jnp.exp2(s - m_next[:, None]), 0.0)
        correction = jnp.exp2(m - m_next)
        l_next = correction * l + p.sum(axis=-1)
        o_next = correction[:, None] * o + plgpu.dot(p.astype(vb.dtype), vb)
        return o_next, m_next, l_next

    init = (jnp.zeros((block_q, head_dim), acc_dtype), jnp.full((block_q,), MASK_VALUE, acc_dtype),
            jnp.zeros((block_q,), acc_dtype))
    o, m, l = lax.fori_loop(lo_ref[tile], hi_ref[tile], body, init)
    l_safe = jnp.where(l > 0, l, 1.0)  # a row with no visible key gives zeros, as the reference does
    o_ref[...] = (o / l_safe[:, None]).astype(o_ref.dtype)
    # a row with no key gets lse = +huge, so the backward's recomputed p = 2^(s - lse) is 0, never inf
    lse_ref[...] = jnp.where(l > 0, m + jnp.log2(l_safe), -MASK_VALUE).astype(lse_ref.dtype)


def _probs_and_dscores(q, do, lse, delta, pos, wave, kb, vb, kpos, scale: float, window: int):
    """Recomputed probabilities p [bq, bk] and the score cotangent ds = p ∘ (dO·Vᵀ - Δ) / √D."""
    visible = _visible(pos, wave, kpos, window)
    p = jnp.where(visible, jnp.exp2(_log2_scores(q, kb, scale) - lse[:, None]), 0.0)
    dp = plgpu.dot(do, vb, trans_b=True) - delta[:, None]
    return p, p * dp * scale


def _dq_kernel(q_ref, do_ref, lse_ref, delta_ref, pos_ref, wave_ref, k_ref, v_ref, lo_ref, hi_ref, dq_ref, *,
               scale: float, window: int, block_k: int):
    tile = pl.program_id(0)
    q, do, lse, delta = q_ref[...], do_ref[...], lse_ref[...], delta_ref[...]
    pos, wave = pos_ref[...], wave_ref[...]

    def body(j, dq):
        keys = pl.ds(j * block_k, block_k)
        kb = k_ref[keys, :]
        _, ds = _probs_and_dscores(q, do, lse, delta, pos, wave, kb, v_ref[keys, :],
                                   j * block_k + jnp.arange(block_k), scale, window)
        return dq + plgpu.dot(ds.astype(kb.dtype), kb)

    dq = lax.fori_loop(lo_ref[tile], hi_ref[tile], body, jnp.zeros(q.shape, lse.dtype))
    dq_ref[...] = dq.astype(dq_ref.dtype)


def _dkdv_kernel(q_ref, do_ref, lse_ref, delta_ref, pos_ref, wave_ref, k_ref, v_ref, wave_lo_ref, wave_hi_ref,
                 local_lo_ref, local_hi_ref, dk_ref, dv_ref, *, scale: float, window: int, block_q: int):
    block = pl.program_id(0)
    kb, vb = k_ref[...], v_ref[...]
    block_k = kb.shape[0]
    kpos = block * block_k + jnp.arange(block_k)
    acc_dtype = lse_ref.dtype

    def body(t, carry):
        dk, dv = carry
        rows = pl.ds(t * block_q, block_q)
        q, do = q_ref[rows, :], do_ref[rows, :]
        p, ds = _probs_and_dscores(q, do, lse_ref[rows], delta_ref[rows], pos_ref[rows], wave_ref[rows],
                                   kb, vb, kpos, scale, window)
        dv = dv + plgpu.dot(p.astype(do.dtype), do, trans_a=True)
        dk = dk + plgpu.dot(ds.astype(q.dtype), q, trans_a=True)
        return dk, dv

    zeros = jnp.zeros(kb.shape, acc_dtype)
    wave_hi = wave_hi_ref[block]
    carry = lax.fori_loop(wave_lo_ref[block], wave_hi, body, (zeros, zeros))
    # the local range may start inside the last wave tile, which the first loop has done already
    dk, dv = lax.fori_loop(jnp.maximum(local_lo_ref[block], wave_hi), local_hi_ref[block], body, carry)
    dk_ref[...] = dk.astype(dk_ref.dtype)
    dv_ref[...] = dv.astype(dv_ref.dtype)


# -- pallas_calls ---------------------------------------------------------------------------------------------------

def _row_tile(block: int, head_dim: int):
    """BlockSpec of one [block, D] tile of a [B, T, H, D] array at grid point (tile, b, h)."""
    return pl.BlockSpec((None, block, None, head_dim), lambda i, b, h: (b, i, h, 0))


def _whole(shape_tail):
    """BlockSpec of the whole (b, h) slice of [B, T, H, D] ([T, D]) or of a per-row [B, N] array ([N])."""
    if len(shape_tail) == 2:
        return pl.BlockSpec((None, shape_tail[0], None, shape_tail[1]), lambda i, b, h: (b, 0, h, 0))
    return pl.BlockSpec((None, shape_tail[0]), lambda i, b, h: (b, 0))


def _vec_tile(block: int):
    """BlockSpec of one [block] tile of a [B, T] row array."""
    return pl.BlockSpec((None, block), lambda i, b, h: (b, i))


def _head_vec_tile(block: int):
    """BlockSpec of one [block] tile of a [B, H, T] array (lse, Δ)."""
    return pl.BlockSpec((None, None, block), lambda i, b, h: (b, h, i))


def _head_vec_whole(length: int):
    return pl.BlockSpec((None, None, length), lambda i, b, h: (b, h, 0))


def _forward(qp, k, v, meta, window, scale, block_q, block_k, interpret):
    b, t, h, d = qp.shape
    acc = jnp.promote_types(qp.dtype, jnp.float32)
    n_q = meta["q_lo"].shape[1]
    kernel = functools.partial(_forward_kernel, scale=scale, window=window, block_k=block_k)
    return pl.pallas_call(
        kernel,
        grid=(t // block_q, b, h),
        in_specs=[_row_tile(block_q, d), _whole((t, d)), _whole((t, d)), _vec_tile(block_q), _vec_tile(block_q),
                  _whole((n_q,)), _whole((n_q,))],
        out_specs=[_row_tile(block_q, d), _head_vec_tile(block_q)],
        out_shape=[jax.ShapeDtypeStruct(qp.shape, qp.dtype), jax.ShapeDtypeStruct((b, h, t), acc)],
        compiler_params=plgpu.CompilerParams(num_warps=4, num_stages=2),
        interpret=interpret,
        name="wave_selective_forward",
    )(qp, k, v, meta["pos"], meta["wave"], meta["q_lo"], meta["q_hi"])


def _backward(qp, k, v, out, lse, do, meta, window, scale, block_q, block_k, interpret):
    b, t, h, d = qp.shape
    delta = jnp.einsum("bthd,bthd->bht", out.astype(lse.dtype), do.astype(lse.dtype))
    params = plgpu.CompilerParams(num_warps=4, num_stages=2)
    n_q, n_k = meta["q_lo"].shape[1], meta["wave_lo"].shape[1]
    dq = pl.pallas_call(
        functools.partial(_dq_kernel, scale=scale, window=window, block_k=block_k),
        grid=(t // block_q, b, h),
        in_specs=[_row_tile(block_q, d), _row_tile(block_q, d), _head_vec_tile(block_q), _head_vec_tile(block_q),
                  _vec_tile(block_q), _vec_tile(block_q), _whole((t, d)), _whole((t, d)),
                  _whole((n_q,)), _whole((n_q,))],
        out_specs=_row_tile(block_q, d),
        out_shape=jax.ShapeDtypeStruct(qp.shape, qp.dtype),
        compiler_params=params,
        interpret=interpret,
        name="wave_selective_dq",
    )(qp, do, lse, delta, meta["pos"], meta["wave"], k, v, meta["q_lo"], meta["q_hi"])
    dk, dv = pl.pallas_call(
        functools.partial(_dkdv_kernel, scale=scale, window=window, block_q=block_q),
        grid=(t // block_k, b, h),
        in_specs=[_whole((t, d)), _whole((t, d)), _head_vec_whole(t), _head_vec_whole(t), _whole((t,)),
                  _whole((t,)), _row_tile(block_k, d), _row_tile(block_k, d)] + [_whole((n_k,))] * 4,
        out_specs=[_row_tile(block_k, d), _row_tile(block_k, d)],
        out_shape=[jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)],
        compiler_params=params,
        interpret=interpret,
        name="wave_selective_dkdv",
    )(qp, do, lse, delta, meta["pos"], meta["wave"], k, v, meta["wave_lo"], meta["wave_hi"], meta["local_lo"],
      meta["local_hi"])
    return dq, dk, dv


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7, 8))
def _flash(qp, k, v, meta, window, scale, block_q, block_k, interpret):
    """Permuted-query flash attention: qp [B,Tp,H,Dp] in wave-first order, k/v [B,Tp,H,Dp] in position order,
    meta the int32 arrays of `tile_schedule` (no gradient)."""
    return _forward(qp, k, v, meta, window, scale, block_q, block_k, interpret)[0]


def _flash_fwd(qp, k, v, meta, window, scale, block_q, block_k, interpret):
    out, lse = _forward(qp, k, v, meta, window, scale, block_q, block_k, interpret)
    return out, (qp, k, v, meta, out, lse)


def _flash_bwd(window, scale, block_q, block_k, interpret, residuals, do):
    qp, k, v, meta, out, lse = residuals
    dq, dk, dv = _backward(qp, k, v, out, lse, do, meta, window, scale, block_q, block_k, interpret)
    return dq, dk, dv, None


_flash.defvjp(_flash_fwd, _flash_bwd)


# -- the tile schedule (computed outside the kernels) -------------------------------------------------------------

def _ceil_div(a, b: int):
    return (a + b - 1) // b  # not pl.cdiv: its lax.div rejects int32 / Python int under x64


def tile_schedule(is_wave, window: int, block_q: int, block_k: int):
    """The permutation and the block ranges the kernels loop over, for is_wave [B, Tp] (Tp a multiple of both blocks).

    Returns a dict of int32 arrays:
      order [B,Tp]     permuted row r holds position order[r]: the wave positions ascending, then the others ascending
      pos, wave        order and is_wave[order] (wave as 0/1)
      q_lo, q_hi [B,NQ]       key blocks [q_lo, q_hi) of query tile i: from min over its rows of (0 if wave else
                              pos - W + 1) to its last position
      wave_lo, wave_hi [B,NK] query tiles of the wave rows whose position is >= the key block's first key
      local_lo, local_hi      query tiles of the local rows with first key <= pos <= last key + W - 1
    """
    b, t = is_wave.shape
    positions = jnp.arange(t, dtype=jnp.int32)
    sort_key = jnp.where(is_wave, positions, t + positions)
    order = jnp.argsort(sort_key, axis=-1).astype(jnp.int32)
    wave = jnp.take_along_axis(is_wave, order, axis=-1)
    first_key = jnp.where(wave, 0, jnp.maximum(order - window + 1, 0))
    n_q, n_k = t // block_q, t // block_k
    q_lo = first_key.reshape(b, n_q, block_q).min(-1) // block_k
    q_hi = _ceil_div(order.reshape(b, n_q, block_q).max(-1) + 1, block_k)

    block_first = jnp.arange(n_k, dtype=jnp.int32) * block_k
    block_last = block_first + block_k - 1
    n_wave = wave.sum(-1, dtype=jnp.int32)[:, None]
    wave_sorted = jnp.where(wave, order, t)  # ascending: wave rows come first
    local_sorted = jnp.where(wave, -1, order)  # ascending: local rows come last
    search = jax.vmap(lambda a, x, side: jnp.searchsorted(a, x, side=side).astype(jnp.int32), in_axes=(0, None, None))
    wave_first = search(wave_sorted, block_first, "left")
    has_wave = wave_first < n_wave
    wave_lo = jnp.where(has_wave, wave_first // block_q, 0)
    wave_hi = jnp.where(has_wave, _ceil_div(n_wave, block_q), 0)
    local_first = search(local_sorted, block_first, "left")
    local_end = search(local_sorted, block_last + window - 1, "right")
    has_local = local_first < local_end
    local_lo = jnp.where(has_local, local_first // block_q, 0)
    local_hi = jnp.where(has_local, _ceil_div(local_end, block_q), 0)
    return {"order": order, "pos": order, "wave": wave.astype(jnp.int32), "q_lo": q_lo.astype(jnp.int32),
            "q_hi": q_hi.astype(jnp.int32), "wave_lo": wave_lo, "wave_hi": wave_hi, "local_lo": local_lo,
            "local_hi": local_hi}


def scheduled_score_blocks(schedule) -> jax.Array:
    """[B]: key blocks the forward pass visits, summed over query tiles (× block_q·block_k = scores computed)."""
    return (schedule["q_hi"] - schedule["q_lo"]).sum(-1)


# -- public entry point -----------------------------------------------------------------------------------------------

@functools.partial(jax.jit, static_argnames=("window", "block_q", "block_k", "interpret"))
def wave_selective_flash_attention(q, k, v, is_wave, window: int, block_q: int = DEFAULT_BLOCK_Q,
                                   block_k: int = DEFAULT_BLOCK_K, interpret: bool | None = None):
    """Wave-selective attention by the Pallas kernels: q, k, v [B,T,H,D], is_wave [B,T] bool -> [B,T,H,D].

    Equals `wave_selective_attention_reference(q, k, v, is_wave, window)`; differentiable in q, k, v through a
    custom_vjp. Block sizes must be powers of two (and >= 16 when compiled for a GPU); interpret=None picks interpret
    mode on CPU."""
    interpret = attention_interpret(block_q, block_k, interpret)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}.")
    if not q.shape == k.shape == v.shape or is_wave.shape != q.shape[:2]:
        raise ValueError(f"q, k, v must share one [B,T,H,D] shape and is_wave be [B,T]; got {q.shape}, {k.shape}, "
                         f"{v.shape}, {is_wave.shape}.")
    b, t, h, d = q.shape
    tp = -(-t // max(block_q, block_k)) * max(block_q, block_k)
    dp = padded_dim(d, interpret)
    pad = lambda a: jnp.pad(a, ((0, 0), (0, tp - t), (0, 0), (0, dp - d)))  # noqa: E731
    schedule = tile_schedule(jnp.pad(is_wave.astype(bool), ((0, 0), (0, tp - t))), window, block_q, block_k)
    order = schedule.pop("order")
    qp = jnp.take_along_axis(pad(q), order[:, :, None, None], axis=1)
    scale = 1.0 / math.sqrt(d)  # the unpadded head dimension
    out_p = _flash(qp, pad(k), pad(v), schedule, window, scale, block_q, block_k, interpret)
    inverse = jnp.argsort(order, axis=-1)
    return jnp.take_along_axis(out_p, inverse[:, :, None, None], axis=1)[:, :t, :, :d]
