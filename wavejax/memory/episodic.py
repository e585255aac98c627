"""The holographic store's episodic cache (the original's dict of exact token windows -> the last target written), on
device: window keys by rolling hashes, an open-addressing hash table built by scatter-max rounds, lookups by probing.
Also the hash of the routing keys (fmix32, _fold_hash), which store.route uses. The store's API re-exports the
cache's functions (store.cache_insert, store.cache_lookup, ...)."""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


@flax.struct.dataclass
class EpisodicCache:
    """Exact-match cache: an open-addressing hash table (a power of two of slots, linear probing from slot h1 & mask;
    an empty slot has target -1), keyed by the two window hashes (stream_hashes / window_hashes)."""

    h1: jax.Array  # [slots] uint32
    h2: jax.Array  # [slots] uint32
    target: jax.Array  # [slots] int32: the last target written for that window, -1 for an empty slot
    size: jax.Array  # [] int32: distinct windows held


def empty_table(slots: int) -> EpisodicCache:
    return EpisodicCache(h1=jnp.zeros((slots,), jnp.uint32), h2=jnp.zeros((slots,), jnp.uint32),
                         target=jnp.full((slots,), -1, jnp.int32), size=jnp.zeros((), jnp.int32))


def empty_cache(capacity: int) -> EpisodicCache:
    """An empty cache for `capacity` distinct windows (a table of table_slots(capacity) slots)."""
    return empty_table(table_slots(capacity))


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
    claim, filled = state
    m = claim.shape[0]
    mask = jnp.uint32(m - 1)
    keys = jnp.stack([h1, h2], axis=1)  # one gather of a row instead of two
    eh1, eh2 = h1[jnp.maximum(ids, 0)], h2[jnp.maximum(ids, 0)]
    step = eh2 | jnp.uint32(1)

    def body(carry):
        claim, filled, probe, active, r = carry
        pos = ((eh1 + probe.astype(jnp.uint32) * step) & mask).astype(jnp.int32)
        free = active & (claim[pos] < 0)
        claim = claim.at[jnp.where(free, pos, m)].max(ids, mode="drop")
        holder = claim[pos]
        won = free & (holder == ids)
        held = keys[jnp.maximum(holder, 0)]
        same = active & (held[:, 0] == eh1) & (held[:, 1] == eh2)
        active = active & ~same
        return claim, filled + jnp.sum(won, dtype=jnp.int32), probe + active, active, r + 1

    def cond(carry):
        *_, filled, _, active, r = carry
        return (r < max_rounds) & jnp.any(active) & (filled < m)

    claim, filled, probe, active, _ = lax.while_loop(cond, body, (claim, filled, probe, active, 0))
    return (claim, filled), probe, active


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
    state = (claim, jnp.sum(won, dtype=jnp.int32))
    stages = [(size, rounds) for size, rounds in ((n // 8, 2), (n // 64, _UNTIL_DONE)) if size >= 256]
    (claim, filled), left = _place_in_stages(state, h1, h2, ids, None, active, stages)
    # claim[slot] is the entry whose key holds the slot (the last written of its copies: scatter-max of ids) or -1:
    # the table is three gathers (a scatter of the entries into a materialised empty table costs twice as much)
    held = claim >= 0
    at = jnp.maximum(claim, 0)
    cache = EpisodicCache(h1=jnp.where(held, h1[at], jnp.uint32(0)), h2=jnp.where(held, h2[at], jnp.uint32(0)),
                          target=jnp.where(held, target.astype(jnp.int32)[at], -1), size=filled)
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


@functools.partial(jax.jit, static_argnums=(0, 2))
def _stream_cache(length: int, tokens, slots: int, old: EpisodicCache):
    """The cache `old` rebuilt with every (window, next token) pair of a stream [N] added after its entries: the
    rolling hashes of all windows and one _build, in one program."""
    h1, h2 = stream_hashes(tokens[:-1], length)
    new = (h1, h2, tokens[length:], jnp.ones(h1.shape, bool))
    return _build(*[jnp.concatenate(p) for p in zip(_entries(old), new)], slots)
