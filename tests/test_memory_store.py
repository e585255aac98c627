"""The holographic store (wavejax/memory/store.py, eval.py, task.py, configs/holographic.py): sliding-window contexts =
independent windows = the explicit position-conjugated product, the JAX store = the numpy reference slot by slot,
unbinding, routing, the episodic cache on device, generation; evaluation (ranks, temperature fit, Witten-Bell n-grams,
query sets); config checks and the CLI end to end."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from memory_support import (
    PHI,
    cache_insert,
    cache_lookup,
    haar_table,
    holographic,
    scores,
    stream_contexts,
    unbind,
    window_contexts,
    write,
)

from wavejax.config import validate
from wavejax.errors import ConfigError
from wavejax.memory import clifford as cl
from wavejax.memory import decode, so4, store
from wavejax.memory import eval as mem_eval
from wavejax.memory.numpy_store import NumpyStore, window_hashes

from conftest import assert_one_error_line, run_module

# -- 3. the store --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [1, 5, 8])
def test_sliding_window_contexts_equal_independent_windows_and_the_conjugated_product(length):
    v = 23
    table = haar_table(v, seed=4)
    spec = store.StoreSpec(vocab_size=v, context_length=length, levels=2)
    tokens = np.random.default_rng(length).integers(0, v, 77).astype(np.int32)
    windows = np.stack([tokens[s : s + length] for s in range(len(tokens) - length + 1)])
    reference = NumpyStore(spec, table, dtype=np.float64).contexts(windows)  # prod_i R(i) E R(i)^T, from scratch
    factors = jnp.asarray(store.context_table(spec, table))
    stream = np.asarray(stream_contexts(spec, factors, jnp.asarray(tokens)))
    independent = np.asarray(window_contexts(spec, factors, jnp.asarray(windows)))
    np.testing.assert_allclose(stream, reference, atol=1e-5)
    np.testing.assert_allclose(independent, reference, atol=1e-5)


@pytest.mark.parametrize("length", [1, 6, 9, 64])  # up to 8: hashed directly; longer: by blocks
def test_hashes_agree_between_stream_windows_and_numpy(length):
    """The rolling stream hashes equal the windows' own (Horner) and the definition's in Python integers, and tell
    the windows apart, on tokens up to the largest vocabulary (so every 16-bit half of the mulmod is exercised)."""
    rng = np.random.default_rng(15 + length)
    tokens = rng.integers(0, 40, 200).astype(np.int32)
    tokens[::7] = rng.integers(0, 2**31 - 2, len(tokens[::7]))
    n = len(tokens) - length + 1
    windows = np.stack([tokens[s : s + length] for s in range(n)])
    stream = [np.asarray(h) for h in store.stream_hashes(jnp.asarray(tokens), length)]
    independent = [np.asarray(h) for h in store.window_hashes(jnp.asarray(windows))]
    for a, b, c in zip(stream, independent, window_hashes(windows)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert len(set(zip(*[h.tolist() for h in stream]))) == len({w.tobytes() for w in windows})


@pytest.mark.parametrize("routing", store.ROUTINGS)
def test_jax_store_equals_the_numpy_reference(routing):
    """Float64, so that both association orders give the same quantised keys: same slots, same counts."""
    v, length = 31, 6
    spec = store.StoreSpec(vocab_size=v, context_length=length, levels=2, routing=routing, stream_chunk=48)
    tokens = np.random.default_rng(16).integers(0, v, 300).astype(np.int32)
    table = haar_table(v, seed=5).astype(np.float64)
    with jax.enable_x64(True):
        memory, pairs = store.learn_stream(spec, store.init_memory(spec, jnp.asarray(table)), tokens)
        slots, counts = np.asarray(memory.slots), np.asarray(memory.counts)
    ref = NumpyStore(spec, table, dtype=np.float64)
    windows = np.stack([tokens[s : s + length] for s in range(pairs)])
    ref.write(windows, tokens[length : length + pairs])
    assert pairs == 300 - length and counts.sum() == pairs
    np.testing.assert_array_equal(counts, ref.counts)
    np.testing.assert_allclose(slots, ref.slots, atol=1e-12)


def test_closing_rotation_is_formed_in_float64():
    """R(L)^T is computed in float64 on the host and rounded once, as the original builds R(p) (numpy angles). With
    the angle alpha L = 1229 rad formed in float32 (half an ulp: 6e-5 rad at L = 512), R(512) is off by > 1e-5."""
    spec = store.StoreSpec(vocab_size=1, context_length=512)
    want = so4.position_rotation_factors(512, 2).T
    got = np.asarray(store.closing_rotation(spec, 512))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=6e-8)  # float32 rounding only
    traced = jax.jit(lambda n: store.closing_rotation(spec, n))  # generation passes a traced length
    for n in (0, 7, 512):
        np.testing.assert_array_equal(np.asarray(traced(jnp.int32(n))), np.asarray(store.closing_rotation(spec, n)))
    assert np.abs(np.asarray(so4.position_rotation(512.0, 2)).T - want).max() > 1e-5  # the float32 angle


@functools.lru_cache(maxsize=None)
def _faithful_512():
    """200 windows of 512 tokens of one stream, the original's table (V = 1,000), the faithful store's spec, and the
    windows' contexts prod_i R(i) E R(i)^T in float64 by the numpy reference."""
    v, length, n = 1000, 512, 200
    spec = store.StoreSpec(vocab_size=v, context_length=length, levels=6, routing="digits")
    table = so4.original_embeddings(v)
    tokens = np.random.default_rng(31).integers(0, v, n + length).astype(np.int32)
    windows = np.stack([tokens[s : s + length] for s in range(n)])
    return spec, table, tokens, windows, NumpyStore(spec, table, dtype=np.float64).contexts(windows)


def test_faithful_contexts_of_512_tokens_match_float64_slot_for_slot():
    """Both context paths in float32 against the original's product in float64: equal to float32 rounding
    (2e-6 here; 8e-5 with the float32 closing rotation), so no context changes slot under either routing."""
    spec, table, tokens, windows, reference = _faithful_512()
    factors = jnp.asarray(store.context_table(spec, table))
    independent = np.asarray(window_contexts(spec, factors, jnp.asarray(windows)))
    stream = np.asarray(stream_contexts(spec, factors, jnp.asarray(tokens[:-1])))
    assert stream.shape == independent.shape == (200, 4, 4)
    for contexts in (independent, stream):
        assert np.abs(contexts - reference).max() < 1e-5
        for routing in store.ROUTINGS:
            s = dataclasses.replace(spec, routing=routing)
            np.testing.assert_array_equal(np.asarray(store.route(s, jnp.asarray(contexts))),
                                          NumpyStore(s, table, dtype=np.float64).route(reference))


def test_faithful_confidences_match_the_original_in_float64():
    """The faithful read (Grace(C^T M) + coherence) of the float32 store against the original's retrieve_parallel
    in float64 (NumpyStore.retrieve_parallel, token by token, / max(x, eps)): the same token for all 200 windows of
    512 tokens and the same confidence (the top coherence) to 1e-5. With x + eps they differ by up to 3e-3."""
    spec, table, tokens, windows, _ = _faithful_512()
    spec = dataclasses.replace(spec, levels=4)  # 65,536 slots rather than 16.8M (1 GB of float32)
    targets = tokens[spec.context_length :]
    ref = NumpyStore(spec, table, dtype=np.float64)
    ref.write(windows, targets)
    token, confidence = ref.retrieve_parallel(windows)
    memory = store.init_memory(spec, jnp.asarray(table))
    contexts = window_contexts(spec, memory.table, jnp.asarray(windows))
    memory = write(spec, memory, contexts, jnp.asarray(targets))
    np.testing.assert_array_equal(np.asarray(memory.counts), ref.counts)
    got = np.asarray(scores(spec, memory, contexts, "coherence"))
    np.testing.assert_array_equal(got.argmax(1), token)
    assert np.abs(got.max(1) - confidence).max() < 1e-5


def test_float32_store_matches_the_reference_and_reads_back():
    v, length = 29, 8
    spec = store.StoreSpec(vocab_size=v, context_length=length, levels=4)
    tokens = np.random.default_rng(17).integers(0, v, 400).astype(np.int32)
    table = haar_table(v, seed=6)
    memory, pairs = store.learn_stream(spec, store.init_memory(spec, jnp.asarray(table)), tokens)
    ref = NumpyStore(spec, table)
    windows = np.stack([tokens[s : s + length] for s in range(pairs)])
    ref.write(windows, tokens[length:])
    assert np.mean(np.asarray(memory.counts) == ref.counts) > 0.999
    contexts = store.contexts_at(spec, memory.table, tokens, np.arange(pairs))
    jax_scores = np.asarray(scores(spec, memory, contexts, "cosine"))
    np.testing.assert_array_equal(jax_scores.argmax(1), ref.read(windows).argmax(1))
    assert np.mean(jax_scores.argmax(1) == tokens[length:]) > 0.9  # 392 pairs in 65,536 slots: few collisions


def test_a_single_stored_pair_unbinds_exactly():
    v = 40
    spec = store.StoreSpec(vocab_size=v, context_length=8, levels=2)
    table = jnp.asarray(haar_table(v, seed=7))
    window = jnp.asarray(np.random.default_rng(18).integers(0, v, (1, 8)).astype(np.int32))
    memory = store.init_memory(spec, table)
    context = window_contexts(spec, memory.table, window)
    memory = write(spec, memory, context, jnp.asarray([13]))
    unbound, count = unbind(spec, memory, context)
    np.testing.assert_allclose(np.asarray(unbound[0]), np.asarray(table[13]) / PHI, atol=1e-6)  # C^T (phi^-1 C T) = phi^-1 T
    assert int(count[0]) == 1
    for decoder in store.DECODERS:
        assert int(np.argmax(np.asarray(scores(spec, memory, context, decoder))[0])) == 13
    cosine = 4 / PHI / (4 / PHI + cl.EPS)  # <R, E> = ||R|| ||E|| = 4 phi^-1, and the original's eps below
    assert float(np.asarray(scores(spec, memory, context, "cosine"))[0, 13]) == pytest.approx(cosine, abs=1e-6)


def test_routing_digits_hand_case():
    res, levels = PHI**-12, 2
    c = np.zeros(16)
    c[14], c[15] = -3.5 * res / PHI**-9, 5.5 * res / PHI**-3  # keys -3, 5: digit 0 = (4 * -3 + 5) mod 16 = 9
    c[12], c[13] = 1.5 * res / PHI**-9, -1.5 * res / PHI**-9  # keys 1, -1: digit 1 = 3
    spec = store.StoreSpec(vocab_size=4, context_length=1, levels=levels, routing="digits")
    assert int(store.route(spec, cl.reconstruct(jnp.asarray(c, jnp.float32))[None])[0]) == 9 + 3 * 16


def test_hash_routing_spreads_contexts_the_digits_do_not():
    """Spec 3.3: the digits use a few coarse coefficients; 4,096 random contexts into 4,096 slots."""
    contexts = jnp.asarray(haar_table(4096, seed=8))
    used = {}
    for routing in store.ROUTINGS:
        slots = np.asarray(store.route(store.StoreSpec(vocab_size=1, context_length=1, levels=3, routing=routing), contexts))
        used[routing] = len(np.unique(slots))
    assert used["hash"] > 0.6 * 4096  # uniform: 4096 (1 - 1/e) = 2589 expected
    assert used["digits"] < 0.5 * used["hash"]


def test_episodic_cache_exact_hits_and_misses_on_device():
    v, length = 12, 5
    spec = store.StoreSpec(vocab_size=v, context_length=length, levels=2, stream_chunk=40)
    rng = np.random.default_rng(19)
    tokens = rng.integers(0, v, 200).astype(np.int32)
    tokens[100:106] = tokens[0:6]  # window 0 appears again at 100, with a different target
    tokens[105] = (tokens[5] + 1) % v
    memory, pairs = store.learn_stream(spec, store.init_memory(spec, jnp.asarray(haar_table(v))), tokens)
    windows = np.stack([tokens[s : s + length] for s in range(pairs)])
    last_target = {}
    for w, t in zip(windows, tokens[length:]):
        last_target[w.tobytes()] = t  # the original's dict: the last write wins
    assert int(memory.cache.size) == len(last_target)

    lookup = jax.jit(lambda cache, w: store.cache_lookup(cache, *store.window_hashes(w)))
    hit, target = lookup(memory.cache, jnp.asarray(windows))
    assert isinstance(hit, jax.Array) and isinstance(target, jax.Array)
    assert np.asarray(hit).all()
    np.testing.assert_array_equal(np.asarray(target), [last_target[w.tobytes()] for w in windows])
    assert int(target[0]) == tokens[105]

    unseen = rng.integers(0, v, (300, length)).astype(np.int32)
    unseen = unseen[[u.tobytes() not in last_target for u in unseen]]
    changed = windows.copy()
    changed[:, 2] = (changed[:, 2] + 1) % v
    changed = changed[[c.tobytes() not in last_target for c in changed]]
    for queries in (unseen, changed):
        assert len(queries) > 50 and not np.asarray(lookup(memory.cache, jnp.asarray(queries))[0]).any()


def test_cache_insert_overwrites_and_reports_overflow():
    cache = store.empty_cache(4)
    h = lambda *x: jnp.asarray(x, jnp.uint32)  # noqa: E731
    cache, n = cache_insert(cache, h(5, 1, 5), h(0, 0, 0), jnp.asarray([10, 11, 12]))
    assert int(n) == 2 and int(cache.size) == 2
    cache, n = cache_insert(cache, h(1, 9), h(0, 0), jnp.asarray([21, 22]))
    hit, target = cache_lookup(cache, h(5, 1, 9, 7), h(0, 0, 0, 0))
    np.testing.assert_array_equal(np.asarray(hit), [True, True, True, False])
    np.testing.assert_array_equal(np.asarray(target)[:3], [12, 21, 22])
    _, n = cache_insert(cache, h(2, 3, 4), h(0, 0, 0), jnp.asarray([1, 2, 3]))
    assert int(n) == 6  # more distinct keys than the capacity of 4


def test_generation_continues_seen_text_from_the_cache():
    v, length = 30, 6
    spec = store.StoreSpec(vocab_size=v, context_length=length, levels=3)
    tokens = np.random.default_rng(20).integers(0, v, 120).astype(np.int32)
    memory, _ = store.learn_stream(spec, store.init_memory(spec, jnp.asarray(haar_table(v, 9))), tokens)
    out = decode.generate(spec, memory, tokens[:length], 20, jax.random.PRNGKey(0), temperature=1.0)
    np.testing.assert_array_equal(out, tokens[length : length + 20])  # every window is seen: the cache answers
    greedy = decode.generate(spec, memory, tokens[:3], 10, jax.random.PRNGKey(0), temperature=0.0, use_cache=False)
    assert greedy.shape == (10,) and greedy.dtype == np.int32 and (greedy < v).all()


@pytest.mark.parametrize("decoder", ["cosine", "coherence"])
def test_greedy_generation_is_the_argmax_of_the_scores(decoder):
    """Temperature 0 decodes through decode_topk (the fast path for the cosine decoder at V = 200 > 2 blocks): each
    token is the argmax of store.scores of the window before it, as a plain loop computes it."""
    v, length = 200, 4
    spec = store.StoreSpec(vocab_size=v, context_length=length, levels=2)
    tokens = np.random.default_rng(22).integers(0, v, 400).astype(np.int32)
    memory, _ = store.learn_stream(spec, store.init_memory(spec, jnp.asarray(haar_table(v, 3))), tokens)
    got = decode.generate(spec, memory, tokens[:length], 12, jax.random.PRNGKey(0), decoder=decoder,
                          temperature=0.0, use_cache=False)
    window, want = list(tokens[:length]), []
    for _ in range(12):
        context = store.window_context(spec, memory.table, jnp.asarray(window[-length:], jnp.int32))[None]
        want.append(int(jnp.argmax(store.scores(spec, memory, context, decoder)[0])))
        window.append(want[-1])
    np.testing.assert_array_equal(got, want)
    assert len(set(want)) > 1  # not one token repeated: the windows change


# -- 4. evaluation -------------------------------------------------------------------------------------------------------

def test_ranks_are_pessimistic_and_temperature_fits():
    scores = np.array([[0.0, 0.0, 0.0], [0.1, 0.9, 0.5], [0.2, 0.2, 0.1]])
    np.testing.assert_array_equal(mem_eval.ranks(scores, np.array([0, 1, 1])), [2, 0, 1])
    rng = np.random.default_rng(21)
    s = rng.uniform(-1, 1, (4000, 20))
    p = np.exp(s / 0.2)
    p /= p.sum(1, keepdims=True)
    targets = np.array([rng.choice(20, p=row) for row in p])
    assert mem_eval.fit_temperature(s, targets) == pytest.approx(0.2, rel=0.25)
    assert mem_eval.softmax_nll(np.zeros((2, 8)), np.array([0, 3]), 0.5) == pytest.approx([math.log(8)] * 2)


def _witten_bell_reference(tokens, vocab: int, order: int, history) -> np.ndarray:
    """Dictionary counts, one query at a time."""
    from collections import Counter

    uni = (np.bincount(tokens, minlength=vocab) + 1) / (len(tokens) + vocab)
    p = uni.copy()
    for k in range(1, order):
        h = tuple(history[-k:])
        follow = Counter(tokens[i + k] for i in range(len(tokens) - k) if tuple(tokens[i : i + k]) == h)
        total, types = sum(follow.values()), len(follow)
        if total:
            p = np.array([(follow[w] + types * p[w]) / (total + types) for w in range(vocab)])
    return p


def test_ngram_matches_a_dictionary_witten_bell_and_normalises():
    tokens = np.random.default_rng(22).integers(0, 5, 400)
    tokens[50:60] = 1
    model = mem_eval.NGramModel(tokens, 5, 4)
    histories = np.stack([tokens[i : i + 3] for i in (0, 45, 52, 300)] + [np.array([4, 4, 4])])
    p = model.probs(histories)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-12)
    for row, hist in zip(p, histories):
        np.testing.assert_allclose(row, _witten_bell_reference(tokens, 5, 4, hist), atol=1e-12)
    np.testing.assert_allclose(mem_eval.NGramModel(tokens, 5, 1).probs(histories[:1])[0], mem_eval.unigram_probs(tokens, 5))


def test_query_sets_seen_heldout_changed():
    train = np.random.default_rng(23).integers(0, 9, 500).astype(np.int32)
    heldout = np.random.default_rng(24).integers(0, 9, 200).astype(np.int32)
    sets = mem_eval.query_sets(train, heldout, count=60, calibration=20, history=10, change_window=4, vocab_size=9, seed=0)
    calib, seen = sets["seen"]
    assert len(calib) == 20 and len(seen) == 60 and not set(calib.positions) & set(seen.positions)
    np.testing.assert_array_equal(seen.windows(4), np.stack([train[t - 4 : t] for t in seen.positions]))
    np.testing.assert_array_equal(seen.targets, train[seen.positions])
    _, changed = sets["changed"]
    assert changed.positions is None and len(changed) == 60
    h_calib, h_test = sets["heldout"]
    assert h_calib.stream is not h_test.stream and len(h_calib.stream) + len(h_test.stream) == 200
    for q in (calib, seen, h_calib, h_test):
        np.testing.assert_array_equal(q.history[:, -4:], q.windows(4))


def test_changed_queries_differ_in_exactly_one_window_token():
    train = np.arange(300, dtype=np.int32) % 7
    q = mem_eval.make_queries("changed", train, 50, 12, 5, 7, np.random.default_rng(25))
    original = (q.targets[:, None] - 12 + np.arange(12)) % 7  # token at stream position p is p % 7
    diff = q.history != original
    np.testing.assert_array_equal(diff.sum(1), 1)
    assert diff[:, :-5].sum() == 0  # the change is inside the memory's window


def test_evaluate_memory_rows():
    v, length = 20, 4
    train = np.random.default_rng(26).integers(0, v, 3000).astype(np.int32)
    heldout = np.random.default_rng(27).integers(0, v, 600).astype(np.int32)
    spec = store.StoreSpec(vocab_size=v, context_length=length, levels=5)
    memory, _ = store.learn_stream(spec, store.init_memory(spec, jnp.asarray(haar_table(v))), train)
    sets = mem_eval.query_sets(train, heldout, 200, 100, length, length, v, seed=1)
    rows = mem_eval.evaluate_memory(spec, memory, sets, ("cosine",))
    by = {r["condition"]: r for r in rows}
    assert by["seen"]["exact"] > 0.8  # 2,996 pairs in 16^5 slots; contexts of 4 random tokens rarely repeat
    assert by["heldout"]["exact"] < 0.2 and by["changed"]["exact"] < 0.2
    cache = mem_eval.cache_row(spec, memory, sets["seen"][1], "cosine")
    assert cache["cache_hits"] == 1.0 and cache["exact"] > by["seen"]["exact"]
    table = mem_eval.results_table(rows + [cache])
    assert "| memory (cosine) |" in table and table.count("\n") == 3


# -- 5. config and CLI ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key,value,fragment", [
    ("memory.levels", 8, "memory.levels must be in 1..7"),
    ("memory.routing", "prime", "memory.routing must be one of"),
    ("memory.decoder", "argmax", "memory.decoder must be one of"),
    ("memory.embedding", "glove", "memory.embedding must be one of"),
    ("memory.context_length", 0, "memory.context_length"),
    ("memory.key_resolution", 0.0, "memory.key_resolution must be > 0"),
    ("eval.decoders", ("cosine", "dot"), "eval.decoders"),
    ("data.tokenizer", "word", "data.tokenizer"),
])
def test_config_errors(key, value, fragment):
    config = holographic.get_config()
    node, leaf = key.split(".")
    config[node][leaf] = value
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        validate(config)


def test_presets_validate():
    for arg in (None, "tiny", "faithful", "short", "tiny+faithful"):
        validate(holographic.get_config(arg))
    f = holographic.get_config("tiny+faithful")
    assert (f.memory.embedding, f.memory.routing, f.memory.decoder, f.memory.context_length) == ("original", "digits", "coherence", 8)


@pytest.mark.slow
def test_cli_learns_saves_evaluates_samples_and_reuses(tmp_path):
    workdir = tmp_path / "mem"
    proc = run_module("wavejax.main", "--config=configs/holographic.py:tiny", f"--workdir={workdir}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "learned 17,992 pairs" in proc.stdout and "done: 17,992 pairs" in proc.stdout
    for name in ("config.json", "tokenizer.json", "memory_meta.json", "eval.json", "eval.md", "samples.txt", "memory"):
        assert (workdir / name).exists(), name
    rows = json.loads((workdir / "eval.json").read_text())["rows"]
    methods = {r["method"] for r in rows}
    assert {"memory (cosine)", "memory (vorticity)", "memory (coherence)", "unigram", "3-gram (Witten-Bell)",
            "memory (cosine) + episodic cache"} <= methods
    table = (workdir / "eval.md").read_text()
    assert table.startswith("| method | seen exact | seen top-5 | seen NLL | heldout exact")
    assert "=== training text" in (workdir / "samples.txt").read_text()

    again = run_module("wavejax.main", "--config=configs/holographic.py:tiny", f"--workdir={workdir}")
    assert again.returncode == 0, again.stderr
    assert "restored the memory saved in" in again.stdout and "learning" not in again.stdout
    assert json.loads((workdir / "eval.json").read_text())["rows"] == rows  # same memory, same queries

    refused = run_module("wavejax.main", "--config=configs/holographic.py:tiny", f"--workdir={workdir}",
                         "--config.memory.levels=4")
    assert "memory.levels" in assert_one_error_line(refused, 2)

    bad = tmp_path / "bad"
    proc = run_module("wavejax.main", "--config=configs/holographic.py:tiny", f"--workdir={bad}", "--config.memory.routing=prime")
    assert "memory.routing" in assert_one_error_line(proc, 2)
    assert not os.path.exists(bad)
