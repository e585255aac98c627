"""The synthetic tasks (wavejax/data/synthetic.py): every answer position checked against the task's definition,
masks, determinism by (seed, step), process-sharded batches equal to the whole batch, the masked loss and accuracy,
config errors, and each task's tiny run through the command line."""

import json

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from wavejax.config import set_value, validate
from wavejax.data import synthetic as S
from wavejax.errors import ConfigError
from wavejax.nn.objectives import masked_accuracy, masked_cross_entropy

from conftest import assert_one_error_line, configs, run_module, run_with_8_devices

synthetic_configs = configs("synthetic")


def _task(name: str, **knobs):
    s = S.default_synthetic_config()
    s.task = name
    for k, v in knobs.items():
        s[k] = v
    return s


def test_mqar_answers_are_the_values_of_the_queried_keys():
    s = _task("mqar", vocab=64, pairs=8, queries=5)
    x, y = S.batch(s, 0, "train", 3, 16, 40)
    for row_x, row_y in zip(x, y):
        keys, values = row_x[0:16:2], row_x[1:16:2]
        assert len(set(keys)) == 8 and keys.min() >= 1 and keys.max() < 32 and values.min() >= 32
        scored = np.flatnonzero(row_y != S.IGNORE)
        assert len(scored) == 5 and scored.min() >= 16
        for p in scored:
            assert row_y[p] == values[list(keys).index(row_x[p])]
        rest = np.setdiff1d(np.arange(16, 40), scored)
        assert (row_x[rest] == 0).all()


def test_selective_copy_answers_are_the_data_tokens_in_order():
    s = _task("selective_copy", vocab=10, copy_tokens=4)
    x, y = S.batch(s, 1, "train", 0, 8, 20)
    for row_x, row_y in zip(x, y):
        assert (row_x[16:] == 1).all() and (row_y[:16] == S.IGNORE).all()
        data = row_x[:16][row_x[:16] != 0]
        assert len(data) == 4 and (data >= 2).all() and (row_y[16:] == data).all()


def test_induction_answers_follow_the_previous_occurrence_at_a_varying_distance():
    s = _task("induction", vocab=40)
    x, y = S.batch(s, 2, "train", 5, 16, 32)
    distances = set()
    for row_x, row_y in zip(x, y):
        scored = np.flatnonzero(row_y != S.IGNORE)
        assert 14 <= len(scored) <= 15 and scored.min() >= 16 and scored.max() <= 30
        for p in scored:
            earlier = np.flatnonzero(row_x[:p] == row_x[p])
            assert len(earlier) == 1 and earlier[0] < 15 and row_y[p] == row_x[earlier[0] + 1]
            distances.add(p - earlier[0])
    assert len(distances) > 4  # no fixed offset answers the task


def test_binding_answers_need_the_item_identity():
    s = _task("binding", num_items=4, attributes=3, attribute_values=6, queries=4)
    x, y = S.batch(s, 3, "train", 0, 6, 64)
    types0 = 1 + 4
    for row_x, row_y in zip(x, y):
        triples = row_x[: 3 * 12].reshape(12, 3)
        owner = {value: ident for ident, _, value in triples}  # every value belongs to one item
        attribute = {(ident, typ): value for ident, typ, value in triples}
        assert len(owner) == 12 and len(attribute) == 12
        for p in np.flatnonzero(row_y != S.IGNORE):
            given, asked = row_x[p - 1], row_x[p]
            assert types0 <= asked < types0 + 3
            assert row_y[p] == attribute[(owner[given], asked)] and row_y[p] != given
            assert (given, asked) not in {(v, t) for _, t, v in triples}  # no triple links the two values


@pytest.mark.parametrize("task", S.TASKS)
def test_batches_are_deterministic_and_process_rows_equal_the_whole_batch(task):
    s = synthetic_configs.get_config(task if task != "selective_copy" else "copy").data.synthetic
    whole = S.SyntheticSampler(s, 8, 128, seed=7)
    x, y = whole.batch_at(4)
    np.testing.assert_array_equal(x, S.SyntheticSampler(s, 8, 128, seed=7).batch_at(4)[0])
    assert not np.array_equal(x, whole.batch_at(5)[0])
    assert not np.array_equal(x, S.SyntheticSampler(s, 8, 128, seed=7, split="val").batch_at(4)[0])
    parts = [S.SyntheticSampler(s, 8, 128, seed=7, process_index=i, process_count=2).batch_at(4) for i in range(2)]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), x)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), y)
    sampler = S.SyntheticSampler(s, 8, 128, seed=7)
    next(sampler), next(sampler)
    resumed = S.SyntheticSampler(s, 8, 128, seed=7)
    resumed.restore(sampler.state())
    np.testing.assert_array_equal(next(resumed)[0], next(sampler)[0])


def test_masked_loss_and_accuracy_count_only_the_answers():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.standard_normal((2, 5, 7)), jnp.float32)
    y = jnp.asarray([[S.IGNORE, 3, S.IGNORE, 1, S.IGNORE], [0, S.IGNORE, S.IGNORE, S.IGNORE, 6]])
    scored = np.asarray(y) >= 0
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(y, 0))
    assert float(masked_cross_entropy(logits, y)) == pytest.approx(float(np.asarray(ce)[scored].mean()), rel=1e-6)
    hits = (np.argmax(np.asarray(logits), -1) == np.asarray(y))[scored]
    assert float(masked_accuracy(logits, y)) == pytest.approx(hits.mean())


@pytest.mark.parametrize("key,value,fragment", [
    ("data.synthetic.pairs", 80, r"mqar needs 2 \* pairs \+ queries = 240 positions"),
    ("data.synthetic.task", "sorting", "data.synthetic.task must be one of"),
    ("data.synthetic.vocab", 20, r"mqar needs at least pairs \+ 1 = 17 key ids"),
])
def test_impossible_tasks_are_one_sentence(key, value, fragment):
    config = synthetic_configs.get_config()
    set_value(config, key, value)
    with pytest.raises(ConfigError, match=fragment):
        validate(config)


def test_every_model_preset_validates():
    for model in ("dense", "local", "linear", "harmonic", "harmonic_faithful", "phase", "wave"):
        for task in ("mqar", "copy", "induction", "binding"):
            validate(synthetic_configs.get_config(f"{task}+{model}"))


@pytest.mark.slow
@pytest.mark.parametrize("task", ["mqar", "copy", "induction", "binding"])
def test_tiny_run_of_every_task_logs_accuracy(task, tmp_path):
    proc = run_module("wavejax.main", f"--config=configs/synthetic.py:{task}+tiny", f"--workdir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    val = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in val if r["split"] == "val"]
    assert val and all(0.0 <= r["accuracy"] <= 1.0 for r in val)
    assert json.loads((tmp_path / "run" / "tokenizer.json").read_text())["kind"] == "ids"


def test_cli_refuses_a_task_longer_than_the_context(tmp_path):
    proc = run_module("wavejax.main", "--config=configs/synthetic.py:tiny", "--config.model.block_size=16",
                      f"--workdir={tmp_path / 'run'}")
    assert "model.block_size is 16" in assert_one_error_line(proc, 2)


@pytest.mark.slow  # two 3-step runs in a subprocess with 8 CPU devices (~30 s)
def test_sharded_batches_train_as_one_device():
    """The global batch split over a 4x2 data x fsdp mesh gives one device's losses and accuracy."""
    result = run_with_8_devices("synthetic_mesh.py", timeout=300)
    single, mesh = result["single"], result["dp4_fsdp2"]
    assert len(single["losses"]) == 3
    np.testing.assert_allclose(mesh["losses"], single["losses"], atol=1e-5, rtol=0)
    assert abs(mesh["val_loss"] - single["val_loss"]) < 1e-5 and mesh["accuracy"] == single["accuracy"]


def test_mqar_training_mixture_draws_pairs_per_sequence_and_validation_keeps_all():
    s = _task("mqar", vocab=64, pairs=8, min_pairs=2)
    x, y = S.batch(s, 0, "train", 0, 64, 32)
    answered = (y != S.IGNORE).sum(axis=1)
    assert answered.min() >= 2 and answered.max() <= 8 and len(set(answered)) > 3
    for row_x, row_y, n in zip(x, y, answered):
        keys, values = row_x[0 : 2 * n : 2], row_x[1 : 2 * n : 2]
        for p in np.flatnonzero(row_y != S.IGNORE):
            assert p >= 2 * n and row_y[p] == values[list(keys).index(row_x[p])]
    assert ((S.batch(s, 0, "val", 0, 64, 32)[1] != S.IGNORE).sum(axis=1) == 8).all()


def test_holographic_store_answers_mqar_in_context_without_training():
    """The in-context baseline (wavejax/memory/incontext.py): per-sequence stores, vmapped, equal a row-by-row pass,
    and recall at 4 pairs is near perfect."""
    import jax.numpy as jnp

    from wavejax.memory import incontext, so4, store

    s = _task("mqar", vocab=64, pairs=4)
    x, y = S.batch(s, 0, "val", 0, 16, 32)
    assert incontext.mqar_accuracy(x, y, 4, 64, seed=0) >= 0.95
    spec = incontext.mqar_spec(64)
    empty = store.init_memory(spec, so4.embedding_table("haar", 64, 0))
    batched = np.asarray(incontext._predict(spec, empty, jnp.asarray(x[:2]), pairs=4, decoder="cosine"))
    for row, want in zip(x[:2], batched):
        keys, values = jnp.asarray(row[0:8:2]), jnp.asarray(row[1:8:2])
        memory = store.write(spec, empty, store.window_contexts(spec, empty.table, keys[:, None]), values)
        got = jnp.argmax(store.scores(spec, memory, store.window_contexts(spec, memory.table, jnp.asarray(row)[:, None]),
                                      "cosine"), axis=-1)
        np.testing.assert_array_equal(np.asarray(got), want)
