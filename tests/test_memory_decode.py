"""The holographic store's fast paths against their references: the episodic cache's device hash table against a
dict (wavejax/memory/episodic.py), and decode_topk / the certified top-1 against lax.top_k of store.scores
(wavejax/memory/decode.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from memory_support import cache_insert, cache_lookup, haar_table, scores, window_contexts

from wavejax.memory import decode, store


def test_cache_table_matches_a_dict_at_scale():
    """40,000 writes of 12,000 keys (a tenth sharing one h1), enough for _build's compacted stages: every key holds
    its last write, every other key misses; a full table keeps what it can place and still answers misses."""
    rng = np.random.default_rng(23)
    keys = rng.integers(0, 2**32, (12000, 2), dtype=np.uint64).astype(np.uint32)
    keys[:1200, 0] = keys[0, 0]
    which = rng.integers(0, 9000, 40000)  # keys 9000.. are never written
    targets = rng.integers(0, 1000, len(which)).astype(np.int32)
    last = {}
    for (a, b), t in zip(keys[which], targets):
        last[(a, b)] = t
    cache, n = cache_insert(store.empty_cache(len(last)), *(jnp.asarray(keys[which, i]) for i in (0, 1)),
                            jnp.asarray(targets))
    assert int(n) == int(cache.size) == len(last) and cache.h1.shape == (store.table_slots(len(last)),)
    hit, target = cache_lookup(cache, jnp.asarray(keys[:, 0]), jnp.asarray(keys[:, 1]))
    written = np.array([(a, b) in last for a, b in keys])
    np.testing.assert_array_equal(np.asarray(hit), written)
    np.testing.assert_array_equal(np.asarray(target)[written], [last[(a, b)] for a, b in keys[written]])

    full, n = cache_insert(store.empty_table(8), jnp.arange(12, dtype=jnp.uint32), jnp.zeros(12, jnp.uint32),
                           jnp.arange(12))
    assert int(full.size) == 8 and int(n) == 12
    hit, target = cache_lookup(full, jnp.arange(16, dtype=jnp.uint32), jnp.zeros(16, jnp.uint32))
    assert int(np.sum(hit)) == 8 and not np.asarray(hit)[12:].any()
    np.testing.assert_array_equal(np.asarray(target)[np.asarray(hit)], np.arange(12)[np.asarray(hit)[:12]])


def _decode_case(v=700, length=5, pairs=3000, levels=3, seed=24):
    """A store with crowded slots (about 1 pair per slot), queries of seen and unseen windows and one of an empty
    slot (R = 0: every score 0, a tie of the whole vocabulary)."""
    spec = store.StoreSpec(vocab_size=v, context_length=length, levels=levels)
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, v, pairs + length).astype(np.int32)
    memory, _ = store.learn_stream(spec, store.init_memory(spec, jnp.asarray(haar_table(v, seed))), tokens,
                                   use_cache=False)
    windows = np.concatenate([tokens[np.arange(300)[:, None] + np.arange(length)],
                              rng.integers(0, v, (200, length)).astype(np.int32)])
    ctx = np.asarray(window_contexts(spec, memory.table, jnp.asarray(windows)))
    for _ in range(100):  # a context routed to an empty slot
        c = rng.standard_normal((1, 4, 4)).astype(np.float32)
        if int(np.asarray(memory.counts)[int(store.route(spec, jnp.asarray(c))[0])]) == 0:
            ctx = np.concatenate([ctx, c])
            break
    assert len(ctx) == 501
    return spec, memory, jnp.asarray(ctx)


@pytest.mark.parametrize("k", [1, 4])
def test_decode_topk_equals_top_k_of_the_scores(k):
    """The fast path (cosine, SO(4) embeddings of norm 2) against lax.top_k of the full scores: the same tokens (ties:
    the lowest id first, so the empty slot's all-zero scores give 0 .. k-1, and k = 1 is jnp.argmax) and the same
    values to float32 rounding; blocks and chunks that do not divide V, and chunks smaller than a block."""
    spec, memory, contexts = _decode_case()
    full = scores(spec, memory, contexts, "cosine")
    want_v, want_i = jax.lax.top_k(full, k)
    for chunk, block in ((decode.DECODE_CHUNK, decode.DECODE_BLOCK), (96, 32), (10, 64)):
        got_v, got_i = jax.jit(lambda m, c, chunk=chunk, block=block: decode.decode_topk(
            spec, m, c, k, chunk=chunk, block=block))(memory, contexts)
        np.testing.assert_array_equal(np.asarray(got_i), np.asarray(want_i))
        np.testing.assert_allclose(np.asarray(got_v), np.asarray(want_v), rtol=0, atol=3e-7)
    np.testing.assert_array_equal(np.asarray(want_i)[-1], np.arange(k))  # the empty slot
    if k == 1:
        np.testing.assert_array_equal(np.asarray(got_i)[:, 0], np.asarray(jnp.argmax(full, -1)))


@pytest.mark.parametrize("levels", [3, 5])
def test_certified_top1_equals_the_argmax_of_the_scores(levels):
    """decode_topk with a decode_index: the argmax of the full scores and its value, whether nearly every query is
    certain (levels 5: ~0.05 pairs per slot, seen windows; the rest go through the spare buffer) or many are not
    (levels 3: crowded slots and unseen windows, more than the buffer: every query scanned). A table with two embeddings of one direction
    certifies nothing and still decodes exactly."""
    spec, memory, contexts = _decode_case(levels=levels)
    if levels == 5:  # the seen windows and the empty slot: fewer uncertain queries than the spare buffer's B / 4
        contexts = jnp.concatenate([contexts[:300], contexts[-1:]])
    index = decode.decode_index(memory.embeddings)
    assert 0.99 < float(index.certain) < 1.0
    sure = np.asarray(decode.certified(spec, memory, contexts, index))
    assert (sure.mean() > 0.9) == (levels == 5) and sure.mean() < 0.75 + 0.25 * (levels == 5) and not sure[-1]
    full = scores(spec, memory, contexts, "cosine")
    got_v, got_i = jax.jit(lambda m, c, i: decode.decode_topk(spec, m, c, 1, index=i))(memory, contexts, index)
    np.testing.assert_array_equal(np.asarray(got_i)[:, 0], np.asarray(jnp.argmax(full, -1)))
    np.testing.assert_allclose(np.asarray(got_v)[:, 0], np.asarray(jnp.max(full, -1)), rtol=0, atol=3e-7)

    twin = memory.replace(embeddings=memory.embeddings.at[1].set(memory.embeddings[0]))
    twin_index = decode.decode_index(twin.embeddings)
    assert float(twin_index.certain) > 1.0 and not np.asarray(decode.certified(spec, twin, contexts, twin_index)).any()
    got = decode.decode_topk(spec, twin, contexts, 1, index=twin_index)[1][:, 0]
    np.testing.assert_array_equal(np.asarray(got), np.asarray(jnp.argmax(scores(spec, twin, contexts, "cosine"), -1)))


def test_decode_topk_takes_the_reference_path_where_it_must():
    """Other decoders, embeddings of unequal norms (the cosine's eps then weighs tokens differently) and k too close
    to V give exactly lax.top_k of the reference scores."""
    spec, memory, contexts = _decode_case(v=90, pairs=500, levels=2)
    for decoder in ("vorticity", "coherence"):
        want = jax.lax.top_k(scores(spec, memory, contexts, decoder), 3)
        got = decode.decode_topk(spec, memory, contexts, 3, decoder=decoder)
        np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))
        np.testing.assert_allclose(np.asarray(got[0]), np.asarray(want[0]), rtol=0, atol=1e-6)
    scaled = memory.replace(embeddings=memory.embeddings * jnp.linspace(0.5, 2.0, spec.vocab_size)[:, None, None])
    for m, k in ((scaled, 2), (memory, spec.vocab_size - 1)):
        want = jax.lax.top_k(scores(spec, m, contexts, "cosine"), k)
        got = decode.decode_topk(spec, m, contexts, k, block=32)
        np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))
        np.testing.assert_allclose(np.asarray(got[0]), np.asarray(want[0]), rtol=0, atol=3e-7)
    with pytest.raises(ValueError, match="k must be"):
        decode.decode_topk(spec, memory, contexts, 0)
