"""Exact top-k decoding of the holographic store without the [B, V] score matrix (decode_topk), the certified
top-1 that skips the vocabulary scan for a query within half the table's least angle of a token (decode_index), and
generation (greedy through decode_topk, sampling over the full scores). store.scores stays the reference;
tests/test_memory_decode.py checks decoding against it."""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from wavejax.memory import clifford as cl
from wavejax.memory.episodic import EpisodicCache, _fold_hash, cache_insert, cache_lookup, empty_cache, window_hashes
from wavejax.memory.store import Memory, StoreSpec, scores, unbind, window_context

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


# -- generation ---------------------------------------------------------------------------------------------------------

@functools.partial(jax.jit, static_argnames=("spec", "n_new", "decoder", "use_cache"))
def _generate(spec: StoreSpec, memory: Memory, window, n_real, key, temperature, tau, *, n_new: int, decoder: str,
              use_cache: bool):
    table = memory.table

    def step(carry, step_key):
        window, n_real = carry
        context = window_context(spec, table, window, n_real)[None]

        def sample():
            s = scores(spec, memory, context, decoder)[0]
            return jax.random.categorical(step_key, s / (tau * temperature)).astype(jnp.int32)

        def greedy():  # argmax of the scores without forming them (decode_topk's fast path)
            return decode_topk(spec, memory, context, 1, decoder)[1][0, 0]

        token = lax.cond(temperature > 0, sample, greedy)
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
    softmax(score / (tau * temperature)) over the vocabulary (temperature 0: the top score, by decode_topk, which
    never forms the [V] scores)."""
    prompt = np.asarray(prompt, np.int32)[-spec.context_length :]
    window = np.full(spec.context_length, spec.pad_id, np.int32)
    if len(prompt):
        window[-len(prompt) :] = prompt
    out = _generate(spec, memory, jnp.asarray(window), jnp.int32(len(prompt)), key, jnp.float32(temperature),
                    jnp.float32(tau), n_new=n_new, decoder=decoder, use_cache=use_cache)
    return np.asarray(out)
