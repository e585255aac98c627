"""wavejax/memory/sleep.py: the schedule's triggers, learning in segments without sleep equals learn_stream, sleeps at
the stated checks, determinism under a key, and the integrated sleep's phases."""

import jax
import numpy as np
import pytest

from wavejax.memory import consolidation, so4, store, tower
from wavejax.memory import sleep as sl

SPEC = store.StoreSpec(vocab_size=13, context_length=4, levels=2)


@pytest.fixture(scope="module")
def tokens():
    base = np.random.default_rng(0).integers(0, 13, 120)
    return np.concatenate([base] * 12).astype(np.int32)  # repeated text: identical contexts recur


@pytest.fixture(scope="module")
def table():
    return so4.embedding_table("haar", 13, 0)


def small_config(**kw):
    base = dict(every=400, min_pairs=200, warmup=200, valve=800, episodes=60, buffer=256, prototypes=64, schemas=128)
    base.update(kw)
    return sl.SleepConfig(**base)


@pytest.mark.parametrize("since, total, stability, error, expected", [
    (99, 10**6, 0.0, None, False),        # too few pairs since the last sleep: nothing counts
    (100, 10**6, 0.37, None, True),       # stability < phi^-2 after the warm-up
    (100, 40, 0.37, None, False),         # ... but not before it
    (100, 10**6, 0.39, None, False),      # stable, no error rate, below the valve
    (100, 10**6, 0.39, 0.62, True),       # error rate > phi^-1
    (100, 10**6, 0.39, 0.61, False),
    (500, 10**6, 0.9, None, True),        # the safety valve
])
def test_should_dream_triggers(since, total, stability, error, expected):
    config = sl.SleepConfig(min_pairs=100, warmup=50, valve=500)
    assert sl.should_dream(since, total, stability, config, error) is expected


def test_one_segment_without_sleep_is_learn_stream(tokens, table):
    config = small_config(every=10**6, min_pairs=10**6)  # learn_stream donates its memory: a fresh one each
    got, state, pairs, history = sl.learn_with_sleep(SPEC, store.init_memory(SPEC, table), tokens, config,
                                                     jax.random.key(0))
    want, n = store.learn_stream(SPEC, store.init_memory(SPEC, table), tokens)
    assert pairs == n and history == [] and int(state.sleeps) == 0
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(state.episodes.valid.sum()) == 60  # one check collected its episodes


def test_sleeps_at_the_checks_and_is_a_function_of_its_key(tokens, table):
    config = small_config()
    run = lambda key: sl.learn_with_sleep(SPEC, store.init_memory(SPEC, table), tokens, config, key)  # noqa: E731
    mem_a, state_a, pairs, history = run(jax.random.key(1))
    checks = -(-pairs // config.every)
    assert len(history) == checks  # every segment (the last has 236 pairs) has >= min_pairs and an unstable tower
    assert [h["pairs"] for h in history] == [min((i + 1) * config.every, pairs) for i in range(checks)]
    assert int(state_a.sleeps) == checks and int(state_a.episodes.valid.sum()) == 0  # the buffer empties
    assert history[-1]["prototypes"] > 0  # repeated text: identical contexts cluster into prototypes
    assert all(0.0 <= h["consolidation_ratio"] <= 1.0 and np.isfinite(h["target_entropy"]) for h in history)
    mem_b, state_b, _, history_b = run(jax.random.key(1))
    assert history_b == history
    for a, b in zip(jax.tree.leaves((mem_a, state_a)), jax.tree.leaves((mem_b, state_b))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    mem_c, _, _, _ = run(jax.random.key(2))
    assert not np.array_equal(np.asarray(mem_a.slots), np.asarray(mem_c.slots))  # the REM jitter is keyed
    np.testing.assert_array_equal(np.asarray(mem_a.counts), np.asarray(mem_c.counts))  # sleep moves no pair


def test_integrated_sleep_runs_the_five_phases_in_order(tokens, table):
    """The integrated sleep equals its phases run by hand with the same keys: consolidate, tower NREM, recombine,
    tower REM, prune."""
    from wavejax.memory import recombination

    config = small_config()
    memory, _ = store.learn_stream(SPEC, store.init_memory(SPEC, table), tokens)
    state = sl.collect_episodes(SPEC, memory, sl.init_state(config), tokens, 0, 800, jax.random.key(3), config)
    key = jax.random.key(4)
    got_memory, got_state, metrics = sl.integrated_sleep(memory, state, key, config)

    k_sys, k_rem, k_tower = jax.random.split(key, 3)
    protos, episodes, _ = consolidation.consolidate(state.episodes, state.prototypes, k_sys, schemas=state.schemas,
                                                    cluster="similar", faithful=False)
    slots = tower.non_rem(memory.slots, memory.counts)
    schemas, m_rem = recombination.recombine(protos, state.schemas, k_rem, survival="sound")
    slots, _ = tower.rem(slots, memory.counts, k_tower)
    protos, _ = consolidation.prune(protos)
    np.testing.assert_allclose(np.asarray(got_memory.slots), np.asarray(slots), rtol=1e-6, atol=1e-7)
    for a, b in zip(jax.tree.leaves((protos, schemas, episodes)),
                    jax.tree.leaves((got_state.prototypes, got_state.schemas, got_state.episodes))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    assert int(got_state.sleeps) == 1 and int(got_state.since) == 0
    assert metrics["prototypes"] == float(protos.valid.sum())
    assert metrics["schemas_dropped"] == float(m_rem["dropped"])


def test_a_full_schema_table_is_counted_in_the_sleep_log(tokens, table):
    """Faithful recombination keeps every pair of 20 random prototypes; a two-row schema table cannot hold their
    forms, and the sleep's metrics say how many it dropped."""
    config = small_config(faithful=True, schemas=2)
    memory, _ = store.learn_stream(SPEC, store.init_memory(SPEC, table), tokens)
    state = sl.init_state(config)
    mats = np.random.default_rng(0).normal(size=(20, 4, 4)).astype(np.float32)
    mats /= np.linalg.norm(mats, axis=(1, 2), keepdims=True)
    protos = state.prototypes
    protos = protos.replace(matrix=protos.matrix.at[:20].set(mats), valid=protos.valid.at[:20].set(True),
                            support=protos.support.at[:20].set(3), target_ids=protos.target_ids.at[:20, 0].set(1),
                            target_probs=protos.target_probs.at[:20, 0].set(1.0))
    _, got, metrics = sl.integrated_sleep(memory, state.replace(prototypes=protos), jax.random.key(0), config)
    assert metrics["survived"] > 2 and int(got.schemas.valid.sum()) == 2
    assert metrics["schemas_dropped"] > 0


def test_faithful_switches():
    assert (sl.SleepConfig().cluster_mode, sl.SleepConfig().survival_mode) == ("similar", "sound")
    assert (sl.SleepConfig(faithful=True).cluster_mode, sl.SleepConfig(faithful=True).survival_mode) == ("exact", "faithful")
    assert sl.SleepConfig(faithful=True, cluster="key").cluster_mode == "key"


@pytest.mark.slow
def test_cli_run_with_sleep_logs_saves_and_restores_the_sleep_state(tmp_path):
    """configs/holographic.py:tiny with sleep: each sleep is a "sleep" record in metrics.jsonl, memory_meta.json
    counts them, and the saved prototypes, schemas and slots equal those of learning again with the same config."""
    import json

    from wavejax.memory import task

    from conftest import configs, run_module

    workdir = tmp_path / "mem"
    sets = ["--config.memory.sleep_every=4000", "--config.memory.sleep_min_pairs=4000", "--config.memory.sleep_warmup=0",
            "--config.memory.sleep_episodes=400", "--config.memory.sleep_buffer=1024",
            "--config.memory.sleep_prototypes=128", "--config.memory.sleep_schemas=256", "--config.eval.sample_tokens=0"]
    proc = run_module("wavejax.main", "--config=configs/holographic.py:tiny", f"--workdir={workdir}", *sets)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [4000, 8000, 12000, 16000] and {r["split"] for r in records} == {"sleep"}
    meta = json.loads((workdir / "memory_meta.json").read_text())
    assert meta["sleeps"] == 4 and meta["prototypes"] == records[-1]["prototypes"] and meta["format"] == task.MEMORY_FORMAT
    assert "sleep 4 at 16,000 pairs" in proc.stdout

    config = configs("holographic").get_config("tiny")
    for item in sets:
        key, value = item[len("--config."):].split("=")
        section, name = key.split(".")
        config[section][name] = type(config[section][name])(value)
    data = task.load_tokens(config)
    spec = task.store_spec(config, data.tokenizer.vocab_size)
    memory, _, state = task.restore_memory(str(workdir), spec, config)
    _, memory2, _, _, state2 = task.learn_with_state(config, data, progress=False)
    assert int(state.sleeps) == 4 and int(state.prototypes.valid.sum()) > 0
    for a, b in zip(jax.tree.leaves((memory.slots, memory.counts, state)), jax.tree.leaves((memory2.slots, memory2.counts, state2))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
