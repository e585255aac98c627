"""Interference attention (the wave family's §4.2) as a flash-style Pallas kernel: forward and backward, tiled so that
no [T,T] or [T,T,W] array is ever written to device memory.

With omega, phase, amp [B,H,T,W], v [B,H,T,D], t = position index, S_q = Σ_w A_qw², per (query q, key k <= q):

    C_qk = Σ_w A_qw A_kw cos((ω_qw − ω_kw)(t_q − t_k) + φ_qw − φ_kw)     P_qk = Σ_w A_qw A_kw
    α_qk = (S_q + S_k + 2 C_qk) / (S_q + S_k + 2 P_qk + 1e-8)  (= I / (E + 1e-8)),  0 for k > q
    out_q = Σ_k α_qk v_k / L_q,  L_q = Σ_k α_qk  (normalize=True; L_q >= α_qq ≈ 1),  or Σ_k α_qk v_k (False)

`interference_attention_reference` (wavejax/ops/wave_attention.py, the original's dense [B,H,T,T,W] form) is the
reference the kernel must match; `interference_attention` there (a lax.scan over key blocks) is the XLA path the
benchmark compares against. No softmax, so no running max: the forward just accumulates α v and L over key blocks.

Kernels (Triton-style, as selective_attention.py; grid (tiles, batch, heads); waves stored [B,H,W,T] so that one
wave's row of a tile is a contiguous [block] vector):
  forward   per query tile, key blocks 0..last causal one; per block a loop over the W waves accumulates C and P
            ([bq, bk] each), then α, acc += α v, L += Σ_k α. Writes out and L (the backward's residual).
  backward  one pass, per key block, over the query tiles from its diagonal on. With g_q = dout_q / L_q and
            Δ_q = dout_q·out_q / L_q (normalize; else g = dout, Δ = 0; both computed outside), it recomputes α, then
            dα = g·vᵀ − Δ, r = dα / (E + eps) (= ∂/∂I), s = −r α (= ∂/∂E), dv_k += Σ_q α_qk g_q, and a second loop
            over waves (one cos and one sin per pair and wave) gives both sides at once, ψ = −2 r A_qw A_kw sin:
              dA_qw += Σ_k 2 A_kw (r cos + s),   dω_qw += Σ_k ψ Δt,   dφ_qw += Σ_k ψ,   dS_q += Σ_k (r + s)
              dA_kw += Σ_q 2 A_qw (r cos + s),   dω_kw −= Σ_q ψ Δt,   dφ_kw −= Σ_q ψ,   dS_k += Σ_q (r + s)
            (S enters I and E alike; dA += 2 A dS comes from autodiff of S outside). The key side stays in registers
            ([W, bk] values updated with a one-hot row select, as flash attention keeps dK, dV); the query side is
            added wave by wave with atomic adds into zero-initialised whole-T outputs (a plain read-modify-write of
            an output ref is not ordered between Triton threads; float sums may differ between GPU runs in the last
            bits). One pass instead of flash attention's two (dq, then dk/dv) halves the recomputation: fwd+bwd asks
            for about 4 sin/cos per causal (query, key, wave) against the blockwise XLA path's 6 (forward,
            rematerialised forward, backward, over all T² pairs); see the benchmark's column.
The trig work dominates everything else.
Everything is wrapped in a jax.custom_vjp (a raw pallas_call has no JVP). Ragged tails: T is padded to a multiple of
the blocks (padded keys sit after every real query; padded queries get a zero cotangent), W and D to powers of two
(D at least 16 when compiled) with zero amplitudes / values, which add nothing to C, P or S. Inputs may be bf16: the
wave arrays are upcast to float32 (float64 stays float64) as the XLA path does; α v uses v's dtype like it.
Dropout: none (the kernel never holds α in memory to drop it); the model refuses impl="pallas" with attn_dropout > 0.

On CPU the kernels run with interpret=True (selected automatically). The model's default is model.wave.impl = "xla".
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from pallas_kernels import attention_interpret, padded_dim
from wavejax.ops.wave_attention import (  # noqa: F401  (the reference and the XLA path it is measured against)
    INTERFERENCE_EPS,
    interference_attention,
    interference_attention_reference,
)

DEFAULT_BLOCK_Q = 64
DEFAULT_BLOCK_K = 64


# -- per-block pieces shared by the two kernels ---------------------------------------------------------------------

class _Side(NamedTuple):
    """One side (queries or keys) of a block: the omega, phase, amp refs ([W, n] each), the block's first column in
    them (0 for a tile, the block's offset for a whole-T ref), its first position and its length."""

    refs: tuple
    start: object
    first: object
    size: int

    def rows(self, w):
        """Wave w's [size] rows of omega, phase and amp."""
        return tuple(ref[w, pl.ds(self.start, self.size)] for ref in self.refs)

    def positions(self):
        return self.first + jnp.arange(self.size)


def _block_alpha(q: _Side, k: _Side, s_q, s_k, n_waves: int):
    """(α, E + eps, Δt, visible) of a query block and a key block ([bq, bk] each), C and P summed over waves."""
    acc_dtype = s_q.dtype
    pos_q, pos_k = q.positions(), k.positions()
    visible = pos_k[None, :] <= pos_q[:, None]
    delta_t = (pos_q[:, None] - pos_k[None, :]).astype(acc_dtype)

    def wave(w, carry):
        cross, prod = carry
        om_q, ph_q, a_q = q.rows(w)
        om_k, ph_k, a_k = k.rows(w)
        aa = a_q[:, None] * a_k[None, :]
        arg = (om_q[:, None] - om_k[None, :]) * delta_t + (ph_q[:, None] - ph_k[None, :])
        return cross + aa * jnp.cos(arg), prod + aa

    zeros = jnp.zeros((q.size, k.size), acc_dtype)
    cross, prod = lax.fori_loop(0, n_waves, wave, (zeros, zeros))
    base = s_q[:, None] + s_k[None, :]
    energy = jnp.where(visible, base + 2 * prod, 1.0) + INTERFERENCE_EPS
    alpha = jnp.where(visible, base + 2 * cross, 0.0) / energy
    return alpha, energy, delta_t, visible


def _score_cotangents(alpha, energy, visible, g_q, v_k, delta_q):
    """r = ∂L/∂I and s = ∂L/∂E ([bq, bk]) from dα = g_q·v_kᵀ − Δ_q."""
    d_alpha = plgpu.dot(g_q, v_k.astype(g_q.dtype), trans_b=True) - delta_q[:, None]
    r = jnp.where(visible, d_alpha / energy, 0.0)
    return r, -r * alpha


def _wave_grads(q: _Side, k: _Side, delta_t, r, s, n_waves: int, query_refs, key_carry):
    """One block's dω, dφ, dA for both sides, from a loop over waves (one cos and one sin per pair and wave): the
    query side (summed over keys) atomically added to wave w's [bq] row of each whole-T ref in query_refs, the key
    side (summed over queries, with ∂arg/∂ω_k = −Δt and ∂arg/∂φ_k = −1) added to key_carry ([W, bk] each, returned).
    Only the key side is held in registers (as flash attention's dK, dV); both sides would double that footprint."""
    width = key_carry[0].shape[0]

    def wave(w, key_acc):
        om_q, ph_q, a_q = q.rows(w)
        om_k, ph_k, a_k = k.rows(w)
        arg = (om_q[:, None] - om_k[None, :]) * delta_t + (ph_q[:, None] - ph_k[None, :])
        psi = -2.0 * r * (a_q[:, None] * a_k[None, :]) * jnp.sin(arg)  # ∂L/∂arg
        amp_term = 2.0 * (r * jnp.cos(arg) + s)  # dI/dA_q = 2 A_k cos, dE/dA_q = 2 A_k (and q <-> k)
        psi_t = psi * delta_t
        query = (psi_t.sum(axis=1), psi.sum(axis=1), (amp_term * a_k[None, :]).sum(axis=1))
        for ref, value in zip(query_refs, query):
            plgpu.atomic_add(ref, (w.astype(jnp.int32), pl.ds(q.start, q.size)), value)
        key = (-psi_t.sum(axis=0), -psi.sum(axis=0), (amp_term * a_q[:, None]).sum(axis=0))
        row = jnp.arange(width)[:, None] == w
        return tuple(a + jnp.where(row, c[None, :], 0.0) for a, c in zip(key_acc, key))

    return lax.fori_loop(0, n_waves, wave, key_carry)


def _key_blocks_seen(q0, block_q: int, block_k: int):
    """Key blocks [0, hi) a causal query tile starting at q0 needs."""
    return (q0 + block_q + block_k - 1) // block_k


# -- kernels ------------------------------------------------------------------------------------------------------

def _forward_kernel(omq_ref, phq_ref, aq_ref, sq_ref, omk_ref, phk_ref, ak_ref, sk_ref, v_ref, o_ref, l_ref, *,
                    normalize: bool, n_waves: int, block_k: int):
    block_q = sq_ref.shape[0]
    q0 = pl.program_id(0) * block_q
    s_q = sq_ref[...]
    q_side, k_refs = _Side((omq_ref, phq_ref, aq_ref), 0, q0, block_q), (omk_ref, phk_ref, ak_ref)
    acc_dtype = jnp.promote_types(v_ref.dtype, s_q.dtype)

    def body(j, carry):
        acc, rowsum = carry
        k0 = j * block_k
        keys = pl.ds(k0, block_k)
        alpha, _, _, _ = _block_alpha(q_side, _Side(k_refs, k0, k0, block_k), s_q, sk_ref[keys], n_waves)
        vb = v_ref[keys, :]
        return acc + plgpu.dot(alpha.astype(vb.dtype), vb).astype(acc_dtype), rowsum + alpha.sum(axis=1)

    init = (jnp.zeros((block_q, v_ref.shape[1]), acc_dtype), jnp.zeros((block_q,), s_q.dtype))
    acc, rowsum = lax.fori_loop(0, _key_blocks_seen(q0, block_q, block_k), body, init)
    if normalize:  # L >= α_qq for real rows; the guard only keeps all-zero padded rows finite
        acc = acc / jnp.where(rowsum > 0, rowsum, 1.0)[:, None].astype(acc_dtype)
    o_ref[...] = acc.astype(o_ref.dtype)
    l_ref[...] = rowsum


def _backward_kernel(omq_ref, phq_ref, aq_ref, sq_ref, g_ref, dl_ref, omk_ref, phk_ref, ak_ref, sk_ref, v_ref,
                     _dom_q_in, _dph_q_in, _da_q_in, _ds_q_in, dom_q_ref, dph_q_ref, da_q_ref, ds_q_ref,
                     dom_k_ref, dph_k_ref, da_k_ref, ds_k_ref, dv_ref, *, n_waves: int, block_q: int):
    """One key block against the query tiles from its diagonal on: the key side and dv in registers, the query side
    added atomically, wave by wave, to the zero-initialised (aliased) whole-T query-side outputs."""
    block_k = sk_ref.shape[0]
    k0 = pl.program_id(0) * block_k
    s_k, vb = sk_ref[...], v_ref[...]
    q_refs, k_side = (omq_ref, phq_ref, aq_ref), _Side((omk_ref, phk_ref, ak_ref), 0, k0, block_k)
    n_q = sq_ref.shape[0] // block_q

    def body(i, carry):
        key_waves, ds_k, dv = carry
        q0 = i * block_q
        rows = pl.ds(q0, block_q)
        g_q = g_ref[rows, :]
        q_side = _Side(q_refs, q0, q0, block_q)
        alpha, energy, delta_t, visible = _block_alpha(q_side, k_side, sq_ref[rows], s_k, n_waves)
        r, s = _score_cotangents(alpha, energy, visible, g_q, vb, dl_ref[rows])
        key_waves = _wave_grads(q_side, k_side, delta_t, r, s, n_waves, (dom_q_ref, dph_q_ref, da_q_ref), key_waves)
        plgpu.atomic_add(ds_q_ref, rows, (r + s).sum(axis=1))
        dv = dv + plgpu.dot(alpha.astype(g_q.dtype), g_q, trans_a=True)
        return key_waves, ds_k + (r + s).sum(axis=0), dv

    zeros = jnp.zeros(dom_k_ref.shape, s_k.dtype)
    init = ((zeros, zeros, zeros), jnp.zeros((block_k,), s_k.dtype), jnp.zeros(dv_ref.shape, g_ref.dtype))
    (dom, dph, da), ds, dv = lax.fori_loop(k0 // block_q, n_q, body, init)
    dom_k_ref[...], dph_k_ref[...], da_k_ref[...], ds_k_ref[...] = dom, dph, da, ds
    dv_ref[...] = dv.astype(dv_ref.dtype)


# -- pallas_calls ---------------------------------------------------------------------------------------------------

def _side_specs(width: int, t: int, dim: int, block: int, whole: bool):
    """BlockSpecs at grid point (tile, b, h) for one side (queries or keys): ([omega, phase, amp, S], a [B,H,T] vector
    array, a [B,H,T,D] row array), each either the tile's `block` positions or (whole) all T of the (b, h) slice."""
    if whole:
        return ([pl.BlockSpec((None, None, width, t), lambda i, b, h: (b, h, 0, 0))] * 3
                + [pl.BlockSpec((None, None, t), lambda i, b, h: (b, h, 0))],
                pl.BlockSpec((None, None, t), lambda i, b, h: (b, h, 0)),
                pl.BlockSpec((None, None, t, dim), lambda i, b, h: (b, h, 0, 0)))
    vec = pl.BlockSpec((None, None, block), lambda i, b, h: (b, h, i))
    return ([pl.BlockSpec((None, None, width, block), lambda i, b, h: (b, h, 0, i))] * 3 + [vec], vec,
            pl.BlockSpec((None, None, block, dim), lambda i, b, h: (b, h, i, 0)))


def _params(num_warps: int = 4):
    """Triton settings; the backward holds more per program."""
    return plgpu.CompilerParams(num_warps=num_warps, num_stages=2)


def _forward(waves, s, v, normalize, n_waves, block_q, block_k, interpret):
    b, h, wp, t = waves[0].shape
    d = v.shape[-1]
    q_specs, q_vec, q_rows = _side_specs(wp, t, d, block_q, whole=False)
    k_specs, _, k_rows = _side_specs(wp, t, d, block_k, whole=True)
    return pl.pallas_call(
        functools.partial(_forward_kernel, normalize=normalize, n_waves=n_waves, block_k=block_k),
        grid=(t // block_q, b, h),
        in_specs=q_specs + k_specs + [k_rows],
        out_specs=[q_rows, q_vec],
        out_shape=[jax.ShapeDtypeStruct(v.shape, v.dtype), jax.ShapeDtypeStruct(s.shape, s.dtype)],
        compiler_params=_params(),
        interpret=interpret,
        name="interference_forward",
    )(*waves, s, *waves, s, v)


def _backward(waves, s, v, g, delta, n_waves, block_q, block_k, interpret):
    b, h, wp, t = waves[0].shape
    d = v.shape[-1]
    wave_shape = jax.ShapeDtypeStruct(waves[0].shape, s.dtype)
    vec_shape = jax.ShapeDtypeStruct(s.shape, s.dtype)
    q_specs, q_vec, q_rows = _side_specs(wp, t, d, block_q, whole=True)
    k_specs, _, k_rows = _side_specs(wp, t, d, block_k, whole=False)
    n_in = 15  # 11 inputs, then the 4 zero-initialised query-side accumulators
    zeros = [jnp.zeros(waves[0].shape, s.dtype) for _ in range(3)] + [jnp.zeros(s.shape, s.dtype)]
    grads = pl.pallas_call(
        functools.partial(_backward_kernel, n_waves=n_waves, block_q=block_q),
        grid=(t // block_k, b, h),
        in_specs=q_specs + [q_rows, q_vec] + k_specs + [k_rows] + q_specs,
        out_specs=q_specs + k_specs + [k_rows],
        out_shape=[wave_shape] * 3 + [vec_shape] + [wave_shape] * 3 + [vec_shape, jax.ShapeDtypeStruct(v.shape,
                                                                                                         v.dtype)],
        input_output_aliases={n_in - 4 + i: i for i in range(4)},
        compiler_params=_params(num_warps=8),
        interpret=interpret,
        name="interference_backward",
    )(*waves, s, g, delta, *waves, s, v, *zeros)
    return [dq + dk for dq, dk in zip(grads[:4], grads[4:8])] + [grads[8]]


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7, 8, 9))
def _interference(omega, phase, amp, s, v, normalize, n_waves, block_q, block_k, interpret):
    """Padded, wave-major inputs: omega, phase, amp [B,H,Wp,Tp], s = Σ_w amp² [B,H,Tp], v [B,H,Tp,Dp]."""
    return _forward((omega, phase, amp), s, v, normalize, n_waves, block_q, block_k, interpret)[0]


def _interference_fwd(omega, phase, amp, s, v, normalize, n_waves, block_q, block_k, interpret):
    out, rowsum = _forward((omega, phase, amp), s, v, normalize, n_waves, block_q, block_k, interpret)
    return out, (omega, phase, amp, s, v, out, rowsum)


def _interference_bwd(normalize, n_waves, block_q, block_k, interpret, residuals, d_out):
    omega, phase, amp, s, v, out, rowsum = residuals
    acc = jnp.promote_types(v.dtype, s.dtype)
    d_out = d_out.astype(acc)
    if normalize:  # dα_qk = (dout_q·v_k − dout_q·out_q) / L_q
        inv = 1.0 / jnp.where(rowsum > 0, rowsum, 1.0)
        g = d_out * inv[..., None]
        delta = jnp.sum(d_out * out.astype(acc), axis=-1) * inv
    else:
        g, delta = d_out, jnp.zeros_like(rowsum)
    d_om, d_ph, d_a, d_s, d_v = _backward((omega, phase, amp), s, v, g, delta.astype(s.dtype), n_waves, block_q,
                                          block_k, interpret)
    return d_om, d_ph, d_a, d_s, d_v


_interference.defvjp(_interference_fwd, _interference_bwd)


# -- public entry point -----------------------------------------------------------------------------------------------

@functools.partial(jax.jit, static_argnames=("normalize", "block_q", "block_k", "interpret"))
def interference_flash_attention(omega, phase, amp, v, *, normalize: bool, block_q: int = DEFAULT_BLOCK_Q,
                                 block_k: int = DEFAULT_BLOCK_K, interpret: bool | None = None):
    """Interference attention by the Pallas kernels: omega, phase, amp [B,H,T,W], v [B,H,T,D] -> [B,H,T,D] (v's dtype).

    Equals `interference_attention_reference(omega, phase, amp, v, normalize)`; differentiable in all four inputs
    through a custom_vjp. Block sizes must be powers of two (and >= 16 when compiled for a GPU); interpret=None picks
    interpret mode on CPU."""
    interpret = attention_interpret(block_q, block_k, interpret)
    if not omega.shape == phase.shape == amp.shape or v.ndim != 4 or v.shape[:3] != omega.shape[:3]:
        raise ValueError(f"omega, phase, amp must share one [B,H,T,W] shape and v be [B,H,T,D]; got {omega.shape}, "
                         f"{phase.shape}, {amp.shape}, {v.shape}.")
    b, h, t, w = omega.shape
    d = v.shape[-1]
    tile = max(block_q, block_k)
    tp = -(-t // tile) * tile
    wp = pl.next_power_of_2(w)
    dp = padded_dim(d, interpret)
    score = jnp.promote_types(omega.dtype, jnp.float32)

    def wave_major(a):  # [B,H,T,W] -> [B,H,Wp,Tp], zeros in the padding (zero amplitude: the pad adds nothing)
        return jnp.pad(a.astype(score), ((0, 0), (0, 0), (0, tp - t), (0, wp - w))).swapaxes(2, 3)

    om, ph, a = wave_major(omega), wave_major(phase), wave_major(amp)
    s = jnp.sum(a * a, axis=2)  # autodiff of S gives dA += 2 A dS
    vp = jnp.pad(v, ((0, 0), (0, 0), (0, tp - t), (0, dp - d)))
    out = _interference(om, ph, a, s, vp, normalize, w, block_q, block_k, interpret)
    return out[:, :, :t, :d]
