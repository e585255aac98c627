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
              (the original's dict; episodic.py, re-exported here)
    decode    scores() is the reference; decode.py gives its top-k without forming [B, V]
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
from wavejax.memory.episodic import (
    EpisodicCache,
    _fold_hash,
    _stream_cache,
    empty_cache,
    table_slots,
)
from wavejax.memory.episodic import cache_insert as cache_insert  # re-exported: the cache's API stays store.*
from wavejax.memory.episodic import cache_lookup as cache_lookup
from wavejax.memory.episodic import empty_table as empty_table
from wavejax.memory.episodic import stream_hashes as stream_hashes
from wavejax.memory.episodic import window_hashes as window_hashes
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
class Memory:
    embeddings: jax.Array  # [V, 4, 4] token embeddings E_t in SO(4)
    table: jax.Array  # [V+1, 4, 4] the context factors F_t = E_t R(1), and I for the padding token (context_table)
    slots: jax.Array  # [16^levels, 4, 4] sum of lr * C E_target over the pairs routed to each slot
    counts: jax.Array  # [16^levels] int32 pairs written to each slot
    cache: EpisodicCache


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


# -- learning a token stream (chunked; the same chunk function serves evaluation) ---------------------------------------

@functools.partial(jax.jit, static_argnums=0)
def _segment_contexts(spec: StoreSpec, table, segment):
    """Contexts of the first len(segment) - L windows of a segment (one compiled program for learning and reading,
    so a seen window gets bit-identical C, hence the same slot, when it is read back)."""
    return stream_contexts(spec, table, segment)[: segment.shape[0] - spec.context_length]


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
    replicated; the scatter-adds are summed across devices), when the chunk divides evenly. The memory passed in is
    donated to the writes (its buffers are reused): use the one returned. Returns (memory, number of pairs)."""
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


def slot_load(memory: Memory) -> dict:
    """Occupancy statistics of the slot memory."""
    counts = np.asarray(memory.counts)
    used = counts[counts > 0]
    return {"pairs": int(counts.sum()), "slots_used": int(used.size), "max_load": int(used.max()) if used.size else 0,
            "mean_load_used": float(used.mean()) if used.size else math.nan}
