"""Wave-selective attention: k selected ("wave") queries attend causally to every earlier position, every other
query to the last W positions only (q - k < W). Inputs q, k, v are [B,T,H,D]; `idx` [B,k] holds the selected
positions in increasing order and `valid` [B,k] says which of those k slots hold a selected token (a causal
selection may fill fewer than k).

    mask[b, q, k] = (k <= q) and (is_wave[b, q] or q - k < W)
    out[b, q] = softmax_k(q·k / sqrt(D) over mask[b, q]) · v

`wave_selective_attention_reference` builds the dense [B,H,T,T] scores with that mask (the test reference). The fast
form never does: the k selected queries are gathered and attend to all T keys (k×T scores,
`gathered_global_attention`), every query attends to its window by banded blocks of W (T×2W scores,
`local_attention`), and the selected rows are scattered over the local result. Work and memory fall from T² to
k·T + 2·W·T; against causal dense attention (T²/2 useful scores) the score count ratio is
fraction + (1 - fraction)·W/(T/2) when only the unselected rows are counted in the banded part.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp


class Selection(NamedTuple):
    """A block's token selection, shared by its attention and mixer.

    logits [B,T] float32: the detector's raw scores; scores = sigmoid(logits)
    is_wave [B,T] bool: selected positions
    idx [B,k] int32: the selected positions in increasing order, padded with unselected positions
    valid [B,k] bool: idx[b, j] is a selected position
    """

    logits: jax.Array
    scores: jax.Array
    is_wave: jax.Array
    idx: jax.Array
    valid: jax.Array


def capacity(fraction: float, length: int) -> int:
    """k = ceil(fraction * T), at least 1 and at most T."""
    return max(1, min(length, math.ceil(fraction * length - 1e-9)))


def selection_indices(is_wave, k: int):
    """(idx, valid): the selected positions of each row in increasing order, padded to k with unselected positions
    (themselves in increasing order). Assumes at most k selected per row."""
    t = is_wave.shape[-1]
    pos = jnp.arange(t, dtype=jnp.int32)
    key = jnp.where(is_wave, t - pos, -1 - pos)  # distinct; selected first, each group by increasing position
    _, idx = jax.lax.top_k(key, k)
    idx = idx.astype(jnp.int32)
    return idx, jnp.take_along_axis(is_wave, idx, axis=-1)


def wave_selective_mask(is_wave, window: int):
    """[B,T,T] bool: causal and (query selected or within the last `window` positions)."""
    t = is_wave.shape[-1]
    q = jnp.arange(t)[:, None]
    k = jnp.arange(t)[None, :]
    causal = k <= q
    near = (q - k) < window
    return causal[None] & (is_wave[:, :, None] | near[None])


def _masked_softmax_attention(q, k, v, mask):
    """q [B,Q,H,D], k/v [B,K,H,D], mask broadcastable to [B,H,Q,K] -> [B,Q,H,D]; scores in float32 (or wider)."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    wide = jnp.promote_types(q.dtype, jnp.float32)
    s = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=wide) * scale
    s = jnp.where(mask, s, -jnp.inf)
    s_max = jnp.max(s, axis=-1, keepdims=True)
    s_max = jnp.where(jnp.isfinite(s_max), s_max, 0.0)  # a row with no key gives zeros, not NaN
    p = jnp.exp(s - jax.lax.stop_gradient(s_max))
    p = p / jnp.maximum(p.sum(axis=-1, keepdims=True), 1e-30)
    return jnp.einsum("bhqk,bkhd->bqhd", p.astype(v.dtype), v)


def wave_selective_attention_reference(q, k, v, is_wave, window: int):
    """The masked dense form: [B,H,T,T] scores with `wave_selective_mask`."""
    return _masked_softmax_attention(q, k, v, wave_selective_mask(is_wave, window)[:, None])


def local_attention(q, k, v, window: int):
    """Causal sliding-window attention (each query sees the last `window` positions, itself included) by blocks:
    queries in block n attend to keys in blocks n-1 and n, so scores are [B,T/W,H,W,2W]."""
    b, t, h, d = q.shape
    w = min(window, t)
    nb = -(-t // w)
    pad = nb * w - t
    if pad:
        q, k, v = (jnp.pad(a, ((0, 0), (0, pad), (0, 0), (0, 0))) for a in (q, k, v))
    blocks = lambda a: a.reshape(b, nb, w, h, d)  # noqa: E731
    qb, kb, vb = blocks(q), blocks(k), blocks(v)
    shift = lambda a: jnp.concatenate([jnp.zeros_like(a[:, :1]), a[:, :-1]], axis=1)  # noqa: E731  (block n-1)
    k2 = jnp.concatenate([shift(kb), kb], axis=2)  # [B,nb,2W,H,D]: key j sits at position n*W - W + j
    v2 = jnp.concatenate([shift(vb), vb], axis=2)
    i = jnp.arange(w)[:, None]
    j = jnp.arange(2 * w)[None, :]
    in_window = (j > i) & (j <= i + w)  # 0 <= q - k < W with q = nW + i, k = nW - W + j
    first_block = jnp.arange(nb)[:, None, None] == 0
    mask = in_window[None] & ~(first_block & (j < w)[None])  # block -1 does not exist
    out = jax.vmap(_masked_softmax_attention, in_axes=(1, 1, 1, 0), out_axes=1)(qb, k2, v2, mask[:, None, None])
    return out.reshape(b, nb * w, h, d)[:, :t]


def gathered_global_attention(q, k, v, idx):
    """The queries at positions idx [B,k] attend causally to all keys: [B,k,H,D], with k×T scores."""
    qg = jnp.take_along_axis(q, idx[:, :, None, None], axis=1)
    mask = jnp.arange(k.shape[1])[None, None, None, :] <= idx[:, None, :, None]  # [B,1,k,T]
    return _masked_softmax_attention(qg, k, v, mask)


def scatter_rows(base, idx, valid, rows):
    """base [B,T,...] with base[b, idx[b, j]] replaced by rows[b, j] where valid[b, j]."""
    bidx = jnp.arange(base.shape[0])[:, None]
    current = base[bidx, idx]
    keep = valid.reshape(valid.shape + (1,) * (rows.ndim - 2))
    return base.at[bidx, idx].set(jnp.where(keep, rows, current), unique_indices=True)


def wave_selective_attention(q, k, v, idx, valid, window: int):
    """The gathered + banded form; equals `wave_selective_attention_reference` for is_wave = scatter(valid at idx)."""
    chex.assert_rank([q, k, v], 4)
    chex.assert_equal_shape([q, k, v])
    chex.assert_equal_shape([idx, valid])
    local = local_attention(q, k, v, window)
    return scatter_rows(local, idx, valid, gathered_global_attention(q, k, v, idx))
