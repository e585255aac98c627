"""The holographic store: SO(4) context matrices, quantised-key slot routing, a slot memory of superposed bindings,
an exact-match episodic cache on device, three decoders and generation (spec: docs/specs/holographic.md section 3).

Faithful (`routing="digits"`, `decoder="coherence"`): the original's level digits (4 k[14-2l] + k[15-2l]) mod 16,
which use only a few coarse coefficients, and its Grace-then-coherence decoder. Default: a uniform hash of all 16
quantised coefficients and the plain transpose-unbind + cosine decoder. Nothing here is learned by gradient descent.

    context   C(t_1..t_L) = R(0)E_1R(0)^T R(1)E_2R(1)^T ... R(L-1)E_LR(L-1)^T   (R = position rotation, spec 2.3)
              = (F_1 F_2 ... F_L) R(L)^T  with F_t = E_t R(1)  (R(i)^T R(i+1) = R(1): the positions fold into a fixed
              right factor of every embedding, so all windows of a stream share one table and one sliding product)
    key       trunc(c_k(C) s_k^n / res), n = 3, res = phi^-12                        (clifford.basin_key)
    slot      hash(key) mod 16^levels  |  sum_l ((4 key[14-2l] + key[15-2l]) mod 16) 16^l   (routing)
    write     M[slot] += phi^-1 C E_target ;  count[slot] += 1                         (scatter-add over the batch)
    read      R = C^T M[slot] = phi^-1 E_target + crosstalk of the other pairs in the slot; score every token
    cache     a device hash table: 62-bit rolling hashes of the exact token windows -> the last target written
              (the original's dict; built by scatter-max rounds of linear probing, no sort)
"""

from __future__ import annotations

import dataclasses
import functools
import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from tqdm.auto import tqdm

from wavejax.memory import clifford as cl
from wavejax.memory.so4 import position_rotation_factors
from wavejax.parallel.sharding import BatchSplit
from wavejax.rundir import check_interrupted

ROUTINGS = ("hash", "digits")
DECODERS = ("cosine", "vorticity", "coherence")
MAX_LEVELS = 7  # 16^7 slots (17 GB of float32) still index with int32; a level uses two of the 16 coefficients


@dataclasses.dataclass(frozen=True)
class StoreSpec:
    """The static settings of a store (hashable: jitted functions take it as a static argument)."""

    vocab_size: int
    context_length: int
    levels: int = 4
    routing: str = "hash"
    key_power: int = 3
    key_resolution: float = cl.PHI**-12
    position_scales: int = 2  # 0: no position rotations
    learning_rate: float = cl.PHI_INV
    stream_chunk: int = 1 << 16  # windows per chunk when a stream is learned or read back (rounded to a multiple of L)

    @property
    def chunk(self) -> int:
        """Windows per stream chunk: a multiple of L, so block boundaries sit at the same stream offsets in every
        chunk and a window's context is computed the same way whenever it is learned or read."""
        return max(self.context_length, (self.stream_chunk // self.context_length) * self.context_length)

    @property
    def n_slots(self) -> int:
        return 16**self.levels

    @property
    def pad_id(self) -> int:
        """The padding token (embedding I); windows shorter than context_length are left-padded with it."""
        return self.vocab_size


@flax.struct.dataclass
class EpisodicCache:
    """Exact-match cache: an open-addressing hash table (a power of two of slots, linear probing from slot h1 & mask;
    an empty slot has target -1), keyed by the two window hashes (stream_hashes / window_hashes)."""

    h1: jax.Array  # [slots] uint32
    h2: jax.Array  # [slots] uint32
    target: jax.Array  # [slots] int32: the last target written for that window, -1 for an empty slot
    size: jax.Array  # [] int32: distinct windows held


@flax.struct.dataclass
class Memory:
    embeddings: jax.Array  # [V, 4, 4] token embeddings E_t in SO(4)
    table: jax.Array  # [V+1, 4, 4] the context factors F_t = E_t R(1), and I for the padding token (context_table)
    slots: jax.Array  # [16^levels, 4, 4] sum of lr * C E_target over the pairs routed to each slot
    counts: jax.Array  # [16^levels] int32 pairs written to each slot
    cache: EpisodicCache


def empty_table(slots: int) -> EpisodicCache:
    return EpisodicCache(h1=jnp.zeros((slots,), jnp.uint32), h2=jnp.zeros((slots,), jnp.uint32),
                         target=jnp.full((slots,), -1, jnp.int32), size=jnp.zeros((), jnp.int32))


def empty_cache(capacity: int) -> EpisodicCache:
    """An empty cache for `capacity` distinct windows (a table of table_slots(capacity) slots)."""
    return empty_table(table_slots(capacity))


def init_memory(spec: StoreSpec, embeddings, cache_capacity: int = 0) -> Memory:
    embeddings = jnp.asarray(embeddings)
    if embeddings.shape != (spec.vocab_size, 4, 4):
        raise ValueError(f"embeddings have shape {embeddings.shape}, expected ({spec.vocab_size}, 4, 4)")
    return Memory(embeddings=embeddings, table=jnp.asarray(context_table(spec, embeddings)),
                  slots=jnp.zeros((spec.n_slots, 4, 4), embeddings.dtype),
                  counts=jnp.zeros((spec.n_slots,), jnp.int32), cache=empty_cache(cache_capacity))


# -- contexts ---------------------------------------------------------------------------------------------------------

def padded_embeddings(embeddings):
    """[V+1, 4, 4]: the embeddings and the identity for the padding token."""
    return jnp.concatenate([embeddings, jnp.eye(4, dtype=embeddings.dtype)[None]], axis=0)


def context_table(spec: StoreSpec, embeddings) -> np.ndarray:
    """F_t = E_t R(1) for every token, and I for the padding token: [V+1, 4, 4] (numpy, the embeddings' dtype).

    Computed in float64 and rounded once: R(1) in float32 is off from orthogonal by ~1e-7 in its scale, and as a
    factor of every token that error would add up coherently, to ~5e-5 over 1024 tokens."""
    e = np.asarray(embeddings)
    table = e.astype(np.float64) @ position_rotation_factors(1, spec.position_scales)
    return np.concatenate([table, np.eye(4)[None]]).astype(e.dtype)


@functools.lru_cache(maxsize=None)
def closing_rotations(n_scales: int, length: int) -> np.ndarray:
    """R(n)^T for n = 0 .. length: [length + 1, 4, 4] float64, computed on the host as the original does (numpy
    angles n 2 pi / phi^k in float64). In float32 the angle alpha n would be off by up to half an ulp of alpha n
    (6e-5 rad at n = 512), enough to move a context across a key boundary."""
    return np.stack([position_rotation_factors(n, n_scales).T for n in range(length + 1)])


def closing_rotation(spec: StoreSpec, n, dtype=jnp.float32):
    """R(n)^T, the right factor of an n-token context, formed in float64 and rounded once to `dtype`. n is a Python
    int, or a traced integer in 0 .. spec.context_length (then the rotation is gathered from closing_rotations)."""
    if isinstance(n, (int, np.integer)):
        return jnp.asarray(position_rotation_factors(int(n), spec.position_scales).T, dtype)
    return jnp.asarray(closing_rotations(spec.position_scales, spec.context_length), dtype)[n]


def window_context(spec: StoreSpec, table, window, length=None):
    """The context matrix of one window [L] of token ids: (F_t1 ... F_tL) R(length)^T, the factors gathered step by
    step inside a scan (a batch of windows never materialises [B, L, 4, 4]). A shorter context is left-padded with
    the padding token (F = I) and passes its own `length` (may be traced)."""
    eye = jnp.eye(4, dtype=table.dtype)
    product, _ = lax.scan(lambda acc, token: (cl.mm(acc, table[token]), None), eye, window)
    return cl.mm(product, closing_rotation(spec, window.shape[-1] if length is None else length, table.dtype))


def window_contexts(spec: StoreSpec, table, windows):
    """Context matrices of independent windows [B, L] -> [B, 4, 4] (vmapped over the leading batch axis);
    table = context_table(spec, embeddings) (Memory.table)."""
    return jax.vmap(functools.partial(window_context, spec, table))(windows)


def stream_contexts(spec: StoreSpec, table, tokens):
    """Context matrices of every window of length L of a token stream [N] -> [N - L + 1, 4, 4], window s covering
    tokens s .. s+L-1, without recomputing each window from scratch.

    The stream is cut into blocks of L; lax.associative_scan gives each block's prefix products P[b, r] = F_bL..F_bL+r
    and suffix products S[b, r] = F_bL+r..F_bL+L-1, and the window starting at bL + r is S[b, r] P[b+1, r-1] (P[., -1]
    = I): about five 4x4 products per window for any L, against L - 1 for a product from scratch.
    """
    n, length = tokens.shape[0], spec.context_length
    n_windows = n - length + 1
    n_blocks = (n_windows - 1) // length + 2
    padded = jnp.concatenate([tokens, jnp.full((n_blocks * length - n,), spec.pad_id, tokens.dtype)])
    blocks = table[padded].reshape(n_blocks, length, 4, 4)
    prefix = lax.associative_scan(cl.mm, blocks, axis=1)
    suffix = lax.associative_scan(lambda later, earlier: cl.mm(earlier, later), blocks, axis=1, reverse=True)
    eye = jnp.broadcast_to(jnp.eye(4, dtype=blocks.dtype), (n_blocks - 1, 1, 4, 4))
    following = jnp.concatenate([eye, prefix[1:, :-1]], axis=1)  # P[b+1, r-1], and I for r = 0
    windows = cl.mm(suffix[:-1], following).reshape(-1, 4, 4)[:n_windows]
    return cl.mm(windows, closing_rotation(spec, length, table.dtype))


# -- hashing (routing and the episodic cache) ---------------------------------------------------------------------------

_HASH_SEEDS = (0x243F6A88, 0x85A308D3)  # hex digits of pi
_HASH_MULTIPLIERS = (0x9E3779B1, 0xC2B2AE3D)


def fmix32(h):
    """murmur3's 32-bit finaliser: a bijection of uint32 with full avalanche."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _fold_hash(column, length: int, shape):
    """Two independent 32-bit hashes of a sequence, h <- fmix32(h * m + x_i + 1), given column(i) = x_i."""

    def body(i, hs):
        x = column(i).astype(jnp.uint32) + jnp.uint32(1)
        return tuple(fmix32(h * jnp.uint32(m) + x) for h, m in zip(hs, _HASH_MULTIPLIERS))

    init = tuple(jnp.full(shape, s, jnp.uint32) for s in _HASH_SEEDS)
    return lax.fori_loop(0, length, body, init)


# The episodic cache's window keys: two polynomial hashes modulo the Mersenne prime p = 2^31 - 1,
#   H_m(x_1 .. x_L) = sum_i (x_i + 1) m^(L - i)  mod p,     h = fmix32(H_m + seed)   (a bijection of H_m)
# with two multipliers m: together a 62-bit key of the exact window. A polynomial hash is a homomorphism of
# concatenation, H(AB) = H(A) m^|B| + H(B), so every window of a stream costs O(1) whatever L (stream_hashes), and
# equals the hash of the same window computed alone (window_hashes). Modulo a prime, unlike modulo 2^32, no pair of
# token sequences collides for every multiplier (Thue-Morse sequences do modulo 2^32 from L = 256 on).
_P = 0x7FFFFFFF
_ROLL_MULTIPLIERS = (0x5BD1E995 % _P, 0x27D4EB2F % _P)


def _reduce(x):
    """x mod p for a uint32 x (2^31 = 1 mod p)."""
    x = (x & jnp.uint32(_P)) + (x >> 31)
    return jnp.where(x >= _P, x - jnp.uint32(_P), x)


def _addmod(a, b):
    s = a + b  # a, b < p: no overflow
    return jnp.where(s >= _P, s - jnp.uint32(_P), s)


def _submod(a, b):
    return jnp.where(a >= b, a - b, a + (jnp.uint32(_P) - b))


def _mulmod(a, b):
    """a b mod p for a, b < p, in uint32 (16-bit halves; 2^32 = 2 and 2^31 = 1 mod p)."""
    ah, al, bh, bl = a >> 16, a & jnp.uint32(0xFFFF), b >> 16, b & jnp.uint32(0xFFFF)
    mid = ah * bl + al * bh  # < 2^32
    low = al * bl
    x = (ah * bh) * jnp.uint32(2) + (mid >> 15) + (low >> 31)
    y = ((mid & jnp.uint32(0x7FFF)) << 16) + (low & jnp.uint32(_P))
    return _addmod(_reduce(x), _reduce(y))


def _powers(m: int, n: int) -> np.ndarray:
    """m^0 .. m^n mod p (uint32), on the host."""
    out, x = [], 1
    for _ in range(n + 1):
        out.append(x)
        x = x * m % _P
    return np.asarray(out, np.uint32)


def _finish(polys):
    return tuple(fmix32(h + jnp.uint32(seed)) for h, seed in zip(polys, _HASH_SEEDS))


def window_hashes(windows):
    """(h1, h2) of each window [B, L] of token ids: together a 62-bit key of the exact token sequence (Horner)."""
    cols = windows.astype(jnp.uint32).T + jnp.uint32(1)

    def body(hs, col):
        return tuple(_addmod(_mulmod(h, jnp.uint32(m)), col) for h, m in zip(hs, _ROLL_MULTIPLIERS)), None

    init = tuple(jnp.zeros(windows.shape[:1], jnp.uint32) for _ in _ROLL_MULTIPLIERS)
    return _finish(lax.scan(body, init, cols)[0])


_DIRECT_HASH_LENGTH = 8


def stream_hashes(tokens, length: int):
    """(h1, h2) of every window of length L of a stream [N] -> two [N - L + 1] arrays (equal to window_hashes), at
    O(1) per window: cut into blocks of L, with P[b, r] the hash of the first r tokens of block b and S[b, r] =
    P[b, L] - P[b, r] m^(L-r) that of its tokens r .. L-1, the window starting at bL + r hashes to
    S[b, r] m^r + P[b+1, r]. Windows of up to 8 tokens are hashed directly (L products each, one fusion)."""
    n = tokens.shape[0]
    n_windows = n - length + 1
    if length <= _DIRECT_HASH_LENGTH:  # Horner over L shifted slices, one fusion: cheaper for short windows
        x = tokens.astype(jnp.uint32) + jnp.uint32(1)
        polys = []
        for m in _ROLL_MULTIPLIERS:
            h = jnp.zeros((n_windows,), jnp.uint32)
            for i in range(length):
                h = _addmod(_mulmod(h, jnp.uint32(m)), lax.slice_in_dim(x, i, i + n_windows))
            polys.append(h)
        return _finish(polys)
    n_blocks = (n_windows - 1) // length + 2
    padded = jnp.concatenate([tokens.astype(jnp.uint32), jnp.zeros((n_blocks * length - n,), jnp.uint32)])
    cols = padded.reshape(n_blocks, length).T + jnp.uint32(1)  # [L, n_blocks]
    polys = []
    for m in _ROLL_MULTIPLIERS:
        pw = jnp.asarray(_powers(m, length))

        def body(h, col, m=m):
            h = _addmod(_mulmod(h, jnp.uint32(m)), col)
            return h, h

        full, prefix = lax.scan(body, jnp.zeros((n_blocks,), jnp.uint32), cols)
        prefix = jnp.concatenate([jnp.zeros((1, n_blocks), jnp.uint32), prefix[:-1]]).T  # P[b, r], r = 0 .. L-1
        suffix = _submod(full[:, None], _mulmod(prefix, pw[length:0:-1]))  # S[b, r] (m^(L-r), r = 0 .. L-1)
        windows = _addmod(_mulmod(suffix[:-1], pw[:length]), prefix[1:])
        polys.append(windows.reshape(-1)[:n_windows])
    return _finish(polys)


# -- routing ------------------------------------------------------------------------------------------------------------

def route(spec: StoreSpec, contexts):
    """Slot index of each context [B, 4, 4] -> [B] int32 (see the module docstring)."""
    keys = cl.basin_key(contexts, spec.key_power, spec.key_resolution)
    if spec.routing == "digits":
        flat = jnp.zeros(keys.shape[:-1], jnp.int32)
        for level in range(spec.levels):
            digit = jnp.mod(4 * keys[..., 14 - 2 * level] + keys[..., 15 - 2 * level], 16)
            flat = flat + digit * (16**level)
        return flat
    h1, _ = _fold_hash(lambda i: lax.dynamic_index_in_dim(keys, i, axis=-1, keepdims=False), 16, keys.shape[:-1])
    return (h1 & jnp.uint32(spec.n_slots - 1)).astype(jnp.int32)


# -- writing ------------------------------------------------------------------------------------------------------------

def write(spec: StoreSpec, memory: Memory, contexts, targets, valid=None) -> Memory:
    """Adds lr * C_b E_{target_b} to the slot of each context (a scatter-add over the leading batch axis).
    `valid` [B] bool drops padding rows."""
    slot = route(spec, contexts)
    if valid is not None:
        slot = jnp.where(valid, slot, spec.n_slots)  # out of range: dropped by the scatter
    target_mats = padded_embeddings(memory.embeddings)[targets]
    bindings = spec.learning_rate * jax.vmap(cl.mm)(contexts, target_mats)
    slots = memory.slots.at[slot].add(bindings.astype(memory.slots.dtype), mode="drop")
    counts = memory.counts.at[slot].add(jnp.ones_like(slot), mode="drop")
    return memory.replace(slots=slots, counts=counts)


# -- the episodic cache -------------------------------------------------------------------------------------------------

def table_slots(capacity: int) -> int:
    """Slots of a cache table for `capacity` entries: a power of two at least 4 times the capacity (load <= 1/4, so
    that nearly every window is placed in the first round of _place and found at the first probe)."""
    return 0 if capacity <= 0 else 1 << (4 * capacity - 1).bit_length()


def _place(state, h1, h2, ids, probe, active, max_rounds):
    """Rounds of double-hashing probes for the entries `ids` (active ones): probe i of a key looks at slot
    (h1 + i (h2 | 1)) & mask (an odd step visits every slot of a power-of-two table).

    A round: each active entry looks at its slot; where it is empty, the entries probing it scatter-max their index
    (the latest write wins the slot); every entry whose slot now holds its own key (the winner, or an earlier round's
    winner with the same key) is done; the others move to their next probe. All copies of a key share home and rounds, so they
    are resolved together and the last written of them holds the slot. Stops after max_rounds, when no entry is
    left, or when the table is full."""
    claim, slot_of, filled = state
    m = claim.shape[0]
    mask = jnp.uint32(m - 1)
    keys = jnp.stack([h1, h2], axis=1)  # one gather of a row instead of two
    eh1, eh2 = h1[jnp.maximum(ids, 0)], h2[jnp.maximum(ids, 0)]
    step = eh2 | jnp.uint32(1)

    def body(carry):
        claim, slot_of, filled, probe, active, r = carry
        pos = ((eh1 + probe.astype(jnp.uint32) * step) & mask).astype(jnp.int32)
        free = active & (claim[pos] < 0)
        claim = claim.at[jnp.where(free, pos, m)].max(ids, mode="drop")
        holder = claim[pos]
        won = free & (holder == ids)
        held = keys[jnp.maximum(holder, 0)]
        same = active & (held[:, 0] == eh1) & (held[:, 1] == eh2)
        slot_of = slot_of.at[jnp.where(won, ids, slot_of.shape[0])].set(pos, mode="drop")
        active = active & ~same
        return claim, slot_of, filled + jnp.sum(won, dtype=jnp.int32), probe + active, active, r + 1

    def cond(carry):
        *_, filled, _, active, r = carry
        return (r < max_rounds) & jnp.any(active) & (filled < m)

    claim, slot_of, filled, probe, active, _ = lax.while_loop(cond, body, (claim, slot_of, filled, probe, active, 0))
    return (claim, slot_of, filled), probe, active


_UNTIL_DONE = 1 << 30


def _compact_ids(ids, probe, active, size: int):
    """The active entries of (ids, probe) moved to the front of buffers of `size` (the caller checks they fit);
    probe None: all 1."""
    where = jnp.where(active, jnp.cumsum(active, dtype=jnp.int32) - 1, size)
    new_ids = jnp.zeros((size,), jnp.int32).at[where].set(ids, mode="drop")
    fits = jnp.arange(size) < jnp.sum(active, dtype=jnp.int32)
    if probe is None:  # after the first round: every entry left is at probe 1
        return new_ids, fits.astype(jnp.int32), fits
    return new_ids, jnp.zeros((size,), jnp.int32).at[where].set(probe, mode="drop"), fits


def _place_in_stages(state, h1, h2, ids, probe, active, stages):
    """_place in stages [(buffer size, rounds), ...] (the last stage's rounds: until done): before each stage the
    entries left are compacted into its smaller buffer when they fit (otherwise the rounds go on in the current
    buffer until done). probe None: every active entry is at probe 1. Returns (state, entries left: a full table)."""
    if not stages:
        probe = active.astype(jnp.int32) if probe is None else probe
        state, _, active = _place(state, h1, h2, ids, probe, active, _UNTIL_DONE)
        return state, jnp.sum(active, dtype=jnp.int32)
    (size, rounds), rest = stages[0], stages[1:]

    def compacted(state, ids, active):
        ids, probe_, active = _compact_ids(ids, probe, active, size)
        state, probe_, active = _place(state, h1, h2, ids, probe_, active, rounds if rest else _UNTIL_DONE)
        return _place_in_stages(state, h1, h2, ids, probe_, active, rest) if rest else \
            (state, jnp.sum(active, dtype=jnp.int32))

    def in_place(state, ids, active):
        return _place_in_stages(state, h1, h2, ids, probe, active, ())

    return lax.cond(jnp.sum(active) <= size, compacted, in_place, state, ids, active)


def _build(h1, h2, target, valid, slots: int):
    """(cache table of `slots` slots holding the last written target of each key, number of distinct keys) from
    entries in write order: one round of _place over all entries (no probe yet: every slot is empty), then the few
    left over (about 1 - (1 - e^-a) / a of them at load a: 11.5% at 1/4) in a buffer of n/8, then n/64. More
    distinct keys than slots: those left over are dropped, and the count then counts each dropped entry (an upper
    bound)."""
    n = h1.shape[0]
    if slots == 0 or n == 0:
        return empty_table(slots), jnp.sum(valid, dtype=jnp.int32)
    ids = jnp.arange(n, dtype=jnp.int32)
    pos = (h1 & jnp.uint32(slots - 1)).astype(jnp.int32)
    claim = jnp.full((slots,), -1, jnp.int32).at[jnp.where(valid, pos, slots)].max(ids, mode="drop")
    holder = claim[pos]
    won = valid & (holder == ids)
    held = jnp.stack([h1, h2], axis=1)[jnp.maximum(holder, 0)]
    active = valid & ~((held[:, 0] == h1) & (held[:, 1] == h2))
    state = (claim, jnp.where(won, pos, slots), jnp.sum(won, dtype=jnp.int32))
    stages = [(size, rounds) for size, rounds in ((n // 8, 2), (n // 64, _UNTIL_DONE)) if size >= 256]
    (_, slot_of, filled), left = _place_in_stages(state, h1, h2, ids, None, active, stages)
    rows = jnp.stack([h1, h2, lax.bitcast_convert_type(target.astype(jnp.int32), jnp.uint32)], axis=1)
    empty = jnp.broadcast_to(jnp.asarray([0, 0, 0xFFFFFFFF], jnp.uint32), (slots, 3))  # target -1
    table = empty.at[slot_of].set(rows, mode="drop")  # one scatter of [n, 3] rows (three cost twice as much)
    cache = EpisodicCache(h1=table[:, 0], h2=table[:, 1], target=lax.bitcast_convert_type(table[:, 2], jnp.int32),
                          size=filled)
    return cache, filled + left


def _entries(cache: EpisodicCache):
    """The cache's slots as entries (h1, h2, target, valid), to be rebuilt with newer entries after them."""
    return cache.h1, cache.h2, cache.target, cache.target >= 0


def cache_insert(cache: EpisodicCache, h1, h2, target, valid=None):
    """(cache with the new entries, number of distinct keys): new entries overwrite older ones with the same key.
    The table keeps its number of slots (table_slots of the capacity given to empty_cache)."""
    valid = jnp.ones(h1.shape, bool) if valid is None else valid
    parts = [_entries(cache), (h1, h2, target.astype(jnp.int32), valid)]
    return _build(*[jnp.concatenate(p) for p in zip(*parts)], cache.h1.shape[0])


def cache_lookup(cache: EpisodicCache, q1, q2):
    """(hit [B] bool, target [B] int32) for query keys: the probe sequence of _place, slot (q1 + i (q2 | 1)) & mask,
    until the key or an empty slot (a while_loop; one probe for most queries at load <= 1/4)."""
    slots = cache.h1.shape[0]
    if slots == 0:
        return jnp.zeros(q1.shape, bool), jnp.zeros(q1.shape, jnp.int32)
    mask = jnp.uint32(slots - 1)
    step = q2 | jnp.uint32(1)

    def body(carry):
        probe, open_, hit, found = carry
        pos = ((q1 + jnp.uint32(probe) * step) & mask).astype(jnp.int32)
        t = cache.target[pos]
        match = open_ & (t >= 0) & (cache.h1[pos] == q1) & (cache.h2[pos] == q2)
        return probe + 1, open_ & (t >= 0) & ~match, hit | match, jnp.where(match, t, found)

    def cond(carry):
        return (carry[0] < slots) & jnp.any(carry[1])

    init = (0, jnp.ones(q1.shape, bool), jnp.zeros(q1.shape, bool), jnp.zeros(q1.shape, jnp.int32))
    _, _, hit, found = lax.while_loop(cond, body, init)
    return hit, found


# -- reading and decoding -----------------------------------------------------------------------------------------------

def unbind(spec: StoreSpec, memory: Memory, contexts):
    """(R, count): R = C^T M[slot(C)] for each context, and the number of pairs in that slot."""
    slot = route(spec, contexts)
    return jax.vmap(cl.mm)(cl.transpose(contexts), memory.slots[slot]), memory.counts[slot]


def decoder_scores(decoder: str, unbound, contexts, counts, embeddings):
    """Scores of every token [B, V] from the unbound R [B, 4, 4].

    cosine     cos_F(R, E_v) (an empty slot gives R = 0 and scores 0)
    vorticity  the original's vorticity_weighted_scores(R, E_v)
    coherence  the original's retrieve_parallel: coherence(Grace(R), E_v), or coherence(Grace(C), E_v) for an empty slot
    """
    if decoder == "cosine":
        return cl.cosine_scores(unbound, embeddings)
    if decoder == "vorticity":
        return cl.vorticity_weighted_scores(unbound, embeddings)
    if decoder == "coherence":
        state = jnp.where((counts > 0)[:, None, None], cl.grace(unbound), cl.grace(contexts))
        return cl.coherence_scores(state, embeddings)
    raise ValueError(f"unknown decoder {decoder!r}; choose one of {DECODERS}")


def scores(spec: StoreSpec, memory: Memory, contexts, decoder: str):
    """Scores of every token [B, V] (the reference: decode_topk gives the same top-k without forming [B, V])."""
    unbound, counts = unbind(spec, memory, contexts)
    return decoder_scores(decoder, unbound, contexts, counts, memory.embeddings)


DECODE_BLOCK = 32  # vocabulary entries per block of decode_topk (its block maxima pick the candidate blocks)
DECODE_CHUNK = 1024  # vocabulary entries scored per scan step of decode_topk (a [B, chunk] tile that stays in cache)


def _cosine_topk(unbound, embeddings, k: int, chunk: int, block: int):
    """(values [B, k], indices [B, k]) of cl.cosine_scores(unbound, embeddings) without writing [B, V].

    The cosine is <r, e_v> / (|r| |e_v| + eps). When every |e_v| is the same n (SO(4): n = 2; checked to 1e-6
    relative, else the reference path runs), it is <r, e_v / n> / (|r| + eps / n), a positive per-query factor
    times <r, e_v>: the top-k of the cosine are those of <r, e_v>. A scan over the vocabulary in chunks of `chunk`
    takes one [B, 16] x [16, chunk] product per step and keeps only the maximum of each block of `block` entries;
    the k + 1 blocks with the largest maxima hold the top k (the extra block covers rounding differences between the
    chunked product and the exact scores), and their entries are scored again exactly as cosine_scores scores them.
    Ties: the lowest vocabulary index first, as lax.top_k and jnp.argmax break them (the candidate blocks are taken
    in vocabulary order). The last block is padded with copies of the last embedding (never above the real one, and
    dropped when rescored); the last chunk overlaps the one before instead of holding blocks of padding."""
    v = embeddings.shape[0]
    ef = embeddings.reshape(v, 16)
    rf = unbound.reshape(-1, 16)
    n_blocks = -(-v // block)
    per_chunk = max(1, min(chunk // block, n_blocks))
    n_chunks = -(-n_blocks // per_chunk)
    blocks = jnp.concatenate([ef, jnp.broadcast_to(ef[-1:], (n_blocks * block - v, 16))]).reshape(n_blocks, block, 16)
    first = np.minimum(np.arange(n_chunks) * per_chunk, n_blocks - per_chunk)  # static: the last chunk overlaps
    tiles = blocks[first[:, None] + np.arange(per_chunk)].reshape(n_chunks, per_chunk * block, 16)

    def step(_, tile):
        s = lax.dot_general(rf, tile, (((1,), (1,)), ((), ())), preferred_element_type=rf.dtype)
        return None, s.reshape(rf.shape[0], per_chunk, block).max(-1)

    _, maxima = lax.scan(step, None, tiles)  # [n_chunks, B, per_chunk]
    where = np.zeros(n_blocks, np.int64)  # each block's column in the flattened maxima (the overlap read once)
    for c in range(n_chunks):
        where[first[c] : first[c] + per_chunk] = c * per_chunk + np.arange(per_chunk)
    maxima = jnp.moveaxis(maxima, 0, 1).reshape(rf.shape[0], n_chunks * per_chunk)[:, where]  # [B, n_blocks]
    n_pick = min(k + 1, n_blocks)
    picked = jnp.sort(lax.top_k(maxima, n_pick)[1], axis=-1)  # vocabulary order, for the tie rule
    cand = (picked[:, :, None] * block + jnp.arange(block)).reshape(rf.shape[0], -1)  # [B, n_pick * block]
    ce = blocks[picked].reshape(rf.shape[0], -1, 16)  # [B, C, 16]
    dots = jnp.sum(rf[:, None, :] * ce, axis=-1)
    norms = jnp.sqrt(jnp.sum(rf**2, axis=-1, keepdims=True)) * jnp.sqrt(jnp.sum(ce**2, axis=-1))
    exact = jnp.where(cand < v, dots / (norms + cl.EPS), -jnp.inf)
    values, pos = lax.top_k(exact, k)
    return values, jnp.take_along_axis(cand, pos, axis=-1).astype(jnp.int32)


@flax.struct.dataclass
class DecodeIndex:
    """What decode_topk's certified top-1 needs of an embedding table (decode_index): a hash table from the rounded
    direction of each embedding to its token, and the cosine above which a token is certainly the nearest."""

    table: EpisodicCache  # keys: _direction_key of each embedding; target: its token id
    certain: jax.Array  # [] cos(theta_min / 2 - 1e-3), theta_min the least angle between two embeddings (> 1: never)


_KEY_STEPS = 4.0  # direction keys round each coordinate of x / |x| * 2 (an SO(4) matrix's scale) to quarters


def _direction_key(x):
    """Two uint32 hashes of the rounded direction of each [..., 16] row: nearby directions mostly share a key."""
    norm = jnp.sqrt(jnp.sum(x**2, axis=-1, keepdims=True))
    q = jnp.round(x / jnp.maximum(norm, 1e-30) * (2.0 * _KEY_STEPS)).astype(jnp.int32)
    return _fold_hash(lambda i: lax.dynamic_index_in_dim(q, i, axis=-1, keepdims=False), 16, q.shape[:-1])


@jax.jit
def decode_index(embeddings) -> DecodeIndex:
    """The DecodeIndex of an embedding table [V, 4, 4] (V^2 / 2 dot products once: ~0.1 s at V = 10,000 on CPU).
    Embeddings of unequal norms, or two of the same direction, give an index that certifies nothing."""
    v = embeddings.shape[0]
    ef = embeddings.reshape(v, 16)
    unit = ef / jnp.sqrt(jnp.sum(ef**2, axis=-1, keepdims=True))
    rows = 256
    padded = jnp.concatenate([unit, jnp.zeros((-v % rows, 16), unit.dtype)]).reshape(-1, rows, 16)

    def step(best, chunk_i):
        chunk, i = chunk_i
        c = chunk @ unit.T
        same = (i * rows + jnp.arange(rows))[:, None] == jnp.arange(v)[None, :]
        return jnp.maximum(best, jnp.max(jnp.where(same, -1.0, c))), None

    gamma, _ = lax.scan(step, jnp.float32(-1.0), (padded, jnp.arange(padded.shape[0])))
    half = 0.5 * jnp.arccos(jnp.clip(gamma, -1.0, 1.0)) - 1e-3
    norms = jnp.sqrt(jnp.sum(ef**2, axis=-1))
    uniform = jnp.max(norms) - jnp.min(norms) <= 1e-6 * jnp.max(norms)
    certain = jnp.where(uniform & (half > 0), jnp.cos(jnp.maximum(half, 0.0)), 2.0)
    table, _ = cache_insert(empty_cache(v), *_direction_key(ef), jnp.arange(v, dtype=jnp.int32))
    return DecodeIndex(table=table, certain=certain)


def _certify(rf, embeddings, index: DecodeIndex):
    """(certain [B] bool, cosine [B], token [B]) of each query's direction-key candidate."""
    hit, cand = cache_lookup(index.table, *_direction_key(rf))
    ce = embeddings.reshape(-1, 16)[cand]
    value = jnp.sum(rf * ce, -1) / (jnp.sqrt(jnp.sum(rf**2, -1)) * jnp.sqrt(jnp.sum(ce**2, -1)) + cl.EPS)
    return hit & (value >= index.certain), value, cand


def certified(spec: StoreSpec, memory: Memory, contexts, index: DecodeIndex):
    """[B] bool: the contexts whose top-1 cosine token decode_topk(..., index=index) finds without a scan."""
    return _certify(unbind(spec, memory, contexts)[0].reshape(-1, 16), memory.embeddings, index)[0]


def _certified_top1(unbound, embeddings, index: DecodeIndex, chunk: int, block: int, spare: int):
    """Top-1 (values [B, 1], tokens [B, 1]) of the cosine scores: a query whose direction key finds a token t with
    cos(r, e_t) >= index.certain is within theta_min / 2 of e_t, so every other token is farther (the angle is a
    metric): t is the strict argmax, no scan needed. The other queries (crowded or empty slots, keys at a rounding
    edge) are moved into a buffer of `spare` rows and scanned (_cosine_topk); more than `spare`: all are scanned."""
    rf = unbound.reshape(-1, 16)
    b = rf.shape[0]
    sure, value, cand = _certify(rf, embeddings, index)
    n_left = jnp.sum(~sure, dtype=jnp.int32)

    def some():
        where = jnp.where(~sure, jnp.cumsum(~sure, dtype=jnp.int32) - 1, spare)
        rows = jnp.zeros((spare,), jnp.int32).at[where].set(jnp.arange(b, dtype=jnp.int32), mode="drop")
        v, t = _cosine_topk(rf[rows], embeddings, 1, chunk, block)
        live = jnp.arange(spare) < n_left
        back = jnp.where(live, rows, b)
        return (jnp.where(sure, value, 0.0).at[back].set(v[:, 0], mode="drop"),
                jnp.where(sure, cand, 0).at[back].set(t[:, 0], mode="drop"))

    def every():
        v, t = _cosine_topk(rf, embeddings, 1, chunk, block)
        return jnp.where(sure, value, v[:, 0]), jnp.where(sure, cand, t[:, 0])

    value, token = lax.cond(n_left <= spare, some, every)
    return value[:, None], token[:, None].astype(jnp.int32)


def decode_topk(spec: StoreSpec, memory: Memory, contexts, k: int = 1, decoder: str = "cosine",
                chunk: int = DECODE_CHUNK, block: int = DECODE_BLOCK, index: DecodeIndex | None = None):
    """(values [B, k], tokens [B, k]): the k best-scoring tokens of each context, best first, equal to
    lax.top_k(scores(spec, memory, contexts, decoder), k) (values to float32 rounding; ties: the lowest token id
    first, so k = 1 is jnp.argmax of scores). The fast path is the cosine decoder with embeddings of one norm (SO(4):
    all 2), where the [B, V] score matrix is never formed (_cosine_topk); with k = 1 and `index` =
    decode_index(memory.embeddings), queries whose top token is certain skip the scan (_certified_top1). Other
    decoders, embeddings of unequal norms, and k close to V (no block left over) take the reference path."""
    if not 1 <= k <= spec.vocab_size:
        raise ValueError(f"k must be in 1..{spec.vocab_size}, got {k}")
    reference = lambda: tuple(lax.top_k(scores(spec, memory, contexts, decoder), k))  # noqa: E731
    n_blocks = -(-spec.vocab_size // block)
    if decoder != "cosine" or k + 1 > n_blocks:
        values, tokens = reference()
        return values, tokens.astype(jnp.int32)
    unbound, _ = unbind(spec, memory, contexts)
    norms = jnp.sqrt(jnp.sum(memory.embeddings.reshape(-1, 16) ** 2, axis=-1))
    uniform = jnp.max(norms) - jnp.min(norms) <= 1e-6 * jnp.max(norms)
    if index is not None and k == 1:
        spare = max(1, unbound.shape[0] // 4)
        fast = lambda: _certified_top1(unbound, memory.embeddings, index, chunk, block, spare)  # noqa: E731
    else:
        fast = lambda: _cosine_topk(unbound, memory.embeddings, k, chunk, block)  # noqa: E731
    values, tokens = lax.cond(uniform, fast, reference)
    return values, tokens.astype(jnp.int32)


# -- learning a token stream (chunked; the same chunk function serves evaluation) ---------------------------------------

@functools.partial(jax.jit, static_argnums=0)
def _segment_contexts(spec: StoreSpec, table, segment):
    """Contexts of the first len(segment) - L windows of a segment (one compiled program for learning and reading,
    so a seen window gets bit-identical C, hence the same slot, when it is read back)."""
    return stream_contexts(spec, table, segment)[: segment.shape[0] - spec.context_length]


@functools.partial(jax.jit, static_argnums=(0, 2))
def _stream_cache(length: int, tokens, slots: int, old: EpisodicCache):
    """The cache `old` rebuilt with every (window, next token) pair of a stream [N] added after its entries: the
    rolling hashes of all windows and one _build, in one program."""
    h1, h2 = stream_hashes(tokens[:-1], length)
    new = (h1, h2, tokens[length:], jnp.ones(h1.shape, bool))
    return _build(*[jnp.concatenate(p) for p in zip(_entries(old), new)], slots)


def stream_cache(spec: StoreSpec, cache: EpisodicCache, tokens: np.ndarray) -> EpisodicCache:
    """The cache with every (window, next token) pair of a stream added (learn_stream's cache step): a new table of
    table_slots(size + pairs) slots, the old entries first, so a window seen again takes its newer target."""
    tokens = np.asarray(tokens, np.int32)
    slots = table_slots(int(cache.size) + len(tokens) - spec.context_length)
    return _stream_cache(spec.context_length, jnp.asarray(tokens), slots, cache)[0]


_write = jax.jit(write, static_argnums=0, donate_argnums=1)


def stream_chunk(spec: StoreSpec, n_tokens: int) -> int:
    """Windows per chunk for a stream of n_tokens: spec.chunk, or fewer for a short stream (still a multiple of L).
    learn_stream and contexts_at both use it, so a stream is always cut the same way."""
    length = spec.context_length
    return min(spec.chunk, max(length, -(-max(n_tokens - length, 1) // length) * length))


def segment(tokens: np.ndarray, start: int, chunk: int, spec: StoreSpec) -> np.ndarray:
    """tokens[start : start + chunk + L], padded with the padding token to that length."""
    out = np.full(chunk + spec.context_length, spec.pad_id, np.int32)
    piece = tokens[start : start + chunk + spec.context_length]
    out[: len(piece)] = piece
    return out


def learn_stream(spec: StoreSpec, memory: Memory, tokens: np.ndarray, use_cache: bool = True, progress: bool = False,
                 shard: bool = True):
    """Writes every (window, next token) pair of a stream: windows s = 0 .. N-L-1 with target tokens[s+L], in chunks
    of stream_chunk(spec, N) windows. With use_cache the episodic cache is rebuilt to hold every window written (the old entries
    and the new; _stream_cache, after the writes). With `shard` and several local devices, each chunk's rows are split over them (the memory is
    replicated; the scatter-adds are summed across devices), when the chunk divides evenly. Returns (memory, number of
    pairs)."""
    tokens = np.asarray(tokens, np.int32)
    n_pairs = len(tokens) - spec.context_length
    if n_pairs <= 0:
        raise ValueError(f"a stream of {len(tokens)} tokens has no window of {spec.context_length} with a next token")
    chunk = stream_chunk(spec, len(tokens))
    starts = range(0, n_pairs, chunk)
    split = BatchSplit(shard and chunk % len(jax.local_devices()) == 0)
    memory = split.replicate(memory)
    for start in tqdm(starts, desc="writing", unit="chunk", disable=not progress, leave=False):
        check_interrupted()
        seg = jnp.asarray(segment(tokens, start, chunk, spec))
        valid = jnp.arange(start, start + chunk) < n_pairs
        contexts = _segment_contexts(spec, memory.table, split.replicate(seg))
        memory = _write(spec, memory, *split.put(contexts, seg[spec.context_length :], valid))
        if split.n > 1:  # the cross-device sum is a collective: one at a time (fake CPU devices abort otherwise)
            memory = jax.block_until_ready(memory)
    memory = split.gather(memory)
    if use_cache:
        memory = memory.replace(cache=stream_cache(spec, memory.cache, tokens))
    return memory, n_pairs


def contexts_at(spec: StoreSpec, table, tokens: np.ndarray, positions: np.ndarray):
    """Context matrices of the windows starting at `positions` of a stream, computed chunk by chunk exactly as
    learn_stream computes them (same chunking, same compiled program): [len(positions), 4, 4]."""
    tokens = np.asarray(tokens, np.int32)
    positions = np.asarray(positions, np.int64)
    chunk = stream_chunk(spec, len(tokens))
    out = np.zeros((len(positions), 4, 4), table.dtype)
    for c in np.unique(positions // chunk):
        rows = np.nonzero(positions // chunk == c)[0]
        ctx = _segment_contexts(spec, table, jnp.asarray(segment(tokens, int(c) * chunk, chunk, spec)))
        out[rows] = np.asarray(ctx[positions[rows] - c * chunk])
    return jnp.asarray(out)


# -- generation ---------------------------------------------------------------------------------------------------------

@functools.partial(jax.jit, static_argnames=("spec", "n_new", "decoder", "use_cache"))
def _generate(spec: StoreSpec, memory: Memory, window, n_real, key, temperature, tau, *, n_new: int, decoder: str,
              use_cache: bool):
    table = memory.table

    def step(carry, step_key):
        window, n_real = carry
        context = window_context(spec, table, window, n_real)[None]
        s = scores(spec, memory, context, decoder)[0]
        sampled = jax.random.categorical(step_key, s / (tau * jnp.maximum(temperature, 1e-6)))
        token = jnp.where(temperature > 0, sampled, jnp.argmax(s)).astype(jnp.int32)
        if use_cache:
            hit, cached = cache_lookup(memory.cache, *window_hashes(window[None]))
            token = jnp.where(hit[0], cached[0], token)
        return (jnp.concatenate([window[1:], token[None]]), jnp.minimum(n_real + 1, spec.context_length)), token

    _, tokens = lax.scan(step, (window, n_real), jax.random.split(key, n_new))
    return tokens


def generate(spec: StoreSpec, memory: Memory, prompt: np.ndarray, n_new: int, key, decoder: str = "cosine",
             temperature: float = 1.0, tau: float = 1.0, use_cache: bool = True) -> np.ndarray:
    """n_new tokens after `prompt`: each step decodes the context of the last L tokens (a shorter prompt is
    left-padded with identities), returns the cached target on an exact cache hit (use_cache), and otherwise samples
    softmax(score / (tau * temperature)) over the vocabulary (temperature 0: the top score)."""
    prompt = np.asarray(prompt, np.int32)[-spec.context_length :]
    window = np.full(spec.context_length, spec.pad_id, np.int32)
    if len(prompt):
        window[-len(prompt) :] = prompt
    out = _generate(spec, memory, jnp.asarray(window), jnp.int32(len(prompt)), key, jnp.float32(temperature),
                    jnp.float32(tau), n_new=n_new, decoder=decoder, use_cache=use_cache)
    return np.asarray(out)


def slot_load(memory: Memory) -> dict:
    """Occupancy statistics of the slot memory."""
    counts = np.asarray(memory.counts)
    used = counts[counts > 0]
    return {"pairs": int(counts.sum()), "slots_used": int(used.size), "max_load": int(used.max()) if used.size else 0,
            "mean_load_used": float(used.mean()) if used.size else math.nan}
