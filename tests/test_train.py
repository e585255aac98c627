"""Training: loss goes down, exact resume, gradient accumulation, the NaN guard, and resume checks."""

import json
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wavejax.errors import CheckpointError, RunDirError, TrainingDiverged
from wavejax.models.gpt import build_model, init_params
from wavejax.nn.optimizers import decay_mask
from wavejax.runlog import read_metrics
from wavejax.train.checkpoint import Checkpointer
from wavejax.train.loop import Trainer
from wavejax.train.optim import make_optimizer, schedule
from wavejax.train.state import TrainState, create_train_state
from wavejax.train.step import make_train_step

from conftest import DIVERGE_OVERRIDES, TRAIN_OVERRIDES, apply_overrides, configs

baseline = configs("baseline")

STEPS = 24


def _config(**overrides):
    return apply_overrides(baseline.get_config("tiny"), {**TRAIN_OVERRIDES, "train.steps": STEPS, **overrides})


def _train_records(workdir, keys=("loss", "grad_norm", "lr")):
    return [(r["step"], *(r[k] for k in keys)) for r in read_metrics(str(workdir)) if r["split"] == "train"]


def _val_records(workdir):
    return [(r["step"], r["loss"]) for r in read_metrics(str(workdir)) if r["split"] == "val"]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """An uninterrupted 24-step run (dropout 0.1, grad_accum 2), shared by the tests below."""
    workdir = tmp_path_factory.mktemp("train") / "full"
    trainer = Trainer(_config(), str(workdir))
    try:
        summary = trainer.run()
    finally:
        trainer.close()
    return workdir, summary, jax.device_get(trainer.state.params)


@pytest.mark.slow  # (the shared 24-step run; ~5 s once its step is compiled)
def test_loss_decreases(full_run):
    workdir, summary, _ = full_run
    losses = [r[1] for r in _train_records(workdir)]
    assert len(losses) == STEPS
    assert abs(losses[0] - math.log(65)) < 0.15, losses[0]  # an untrained model is near uniform
    assert np.mean(losses[-4:]) < losses[0] - 0.5, losses
    vals = [v for _, v in _val_records(workdir)]
    assert len(vals) == STEPS // 4 and vals[-1] < vals[0] - 0.3
    assert summary["step"] == STEPS and summary["val_loss"] == pytest.approx(vals[-1])
    assert summary["best_val_loss"] == pytest.approx(min(vals))


@pytest.mark.slow
def test_resume_reproduces_an_uninterrupted_run(full_run, tmp_path):
    full_dir, full_summary, full_params = full_run
    workdir = str(tmp_path / "resumed")
    first = Trainer(_config(), workdir)
    try:
        first.run(stop_at=14)  # killed two steps after the step-12 checkpoint
    finally:
        first.close()
    assert max(r[0] for r in _train_records(workdir)) == 14

    second = Trainer(_config(), workdir)
    try:
        assert second.start_step == 12
        assert second.sampler.position == 12
        summary = second.run()
    finally:
        second.close()
    resumed, expected = _train_records(workdir), _train_records(full_dir)
    assert [r[0] for r in resumed] == list(range(1, STEPS + 1))  # the lost steps 13-14 were dropped, not duplicated
    assert resumed == expected  # identical losses, gradient norms and learning rates, step for step
    assert _val_records(workdir) == _val_records(full_dir)
    assert summary["best_val_loss"] == full_summary["best_val_loss"]
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(second.state.params), full_params)


@pytest.mark.slow
def test_grad_accumulation_matches_one_big_batch(tiny_config):
    c = tiny_config
    c.model.update(dict(dropout=0.0, block_size=16, n_layer=1, d_model=32))  # small: this test compiles two steps
    c.train.warmup_steps = 0  # a nonzero first learning rate, so the update is visible
    model = build_model(c.model, 65)
    tx, lr = make_optimizer(c.train)
    assert float(lr(0)) == pytest.approx(c.train.lr)
    # Weights drawn in numpy (GPT init scale, LayerNorm scales at 1): no compile of an init function.
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(lambda: create_train_state(model, tx, 0, 16))
    params = jax.tree_util.tree_map_with_path(
        lambda path, s: np.ones(s.shape, np.float32) if path[-1].key == "scale" else rng.normal(0, 0.02, s.shape).astype(np.float32),
        shapes.params)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=jax.random.PRNGKey(0))
    x = rng.integers(0, 65, (1, 8, 16)).astype(np.int32)
    y = rng.integers(0, 65, (1, 8, 16)).astype(np.int32)
    step = make_train_step(model, tx, lr)
    one, m1 = jax.jit(step)(state, x, y)
    two, m2 = jax.jit(step)(state, x.reshape(2, 4, 16), y.reshape(2, 4, 16))
    assert float(m1["loss"]) == pytest.approx(float(m2["loss"]), abs=1e-6)
    assert float(m1["grad_norm"]) == pytest.approx(float(m2["grad_norm"]), rel=1e-5)  # a mean, not a sum
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), one.params, state.params)
    assert max(jax.tree.leaves(moved)) > 1e-4
    diff = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), one.params, two.params)
    assert max(jax.tree.leaves(diff)) < 1e-5, diff
    assert int(one.step) == int(two.step) == 1


def test_schedule_warms_up_then_decays(tiny_config):
    t = tiny_config.train
    t.update(dict(lr=1e-3, min_lr=1e-4, warmup_steps=10, decay_steps=100))
    lr = schedule(t)
    assert float(lr(0)) == 0.0
    assert float(lr(5)) == pytest.approx(5e-4)
    assert float(lr(10)) == pytest.approx(1e-3)
    assert 1e-4 < float(lr(55)) < 1e-3
    assert float(lr(100)) == pytest.approx(1e-4) and float(lr(500)) == pytest.approx(1e-4)


@pytest.mark.slow
def test_nan_guard_stops_and_keeps_a_finite_checkpoint(tmp_path):
    config = _config(**DIVERGE_OVERRIDES)
    workdir = str(tmp_path / "diverged")
    trainer = Trainer(config, workdir)
    try:
        with pytest.raises(TrainingDiverged) as info:
            trainer.run()
    finally:
        trainer.close()
    message = str(info.value)
    match = re.match(r"step (\d+): ", message)
    assert match, message
    bad = int(match.group(1))
    assert 1 < bad < config.train.steps
    assert f"the last good checkpoint (step {bad - 1}) is kept" in message
    assert TrainingDiverged.exit_code == 3

    model = build_model(config.model, 65)
    tx, _ = make_optimizer(config.train)
    like = jax.eval_shape(lambda: create_train_state(model, tx, config.seed, config.model.block_size))
    ckpt = Checkpointer(workdir)
    try:
        assert ckpt.latest_step() == bad - 1
        state, meta, step = ckpt.restore(like)
        assert step == bad - 1
    finally:
        ckpt.close()
    assert int(state.step) == bad - 1 and meta["sampler"]["position"] == bad - 1
    leaves = jax.tree.leaves(state.params)
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in leaves)
    assert type(state.opt_state) is type(like.opt_state)  # optax NamedTuples survive the restore
    # the run really moved: lr 1e6 blew the weights up before the NaN
    assert max(float(jnp.abs(p).max()) for p in leaves) > 1e3


@pytest.mark.slow
def test_resume_with_another_model_config_is_refused(full_run):
    workdir, _, _ = full_run
    before = (workdir / "config.json").read_text()
    with pytest.raises(RunDirError, match=r"different model config \(model.n_layer\)"):
        Trainer(_config(**{"model.n_layer": 3}), str(workdir))
    with pytest.raises(RunDirError, match="seed 0, not 1"):
        Trainer(_config(**{"seed": 1}), str(workdir))
    assert (workdir / "config.json").read_text() == before


@pytest.mark.slow
def test_checkpoint_of_another_shape_is_a_checkpoint_error(full_run):
    workdir, _, _ = full_run
    config = _config(**{"model.d_model": 32})
    model = build_model(config.model, 65)
    tx, _ = make_optimizer(config.train)
    like = jax.eval_shape(lambda: create_train_state(model, tx, config.seed, config.model.block_size))
    ckpt = Checkpointer(str(workdir))
    try:
        with pytest.raises(CheckpointError, match="does not fit this model"):
            ckpt.restore(like)
    finally:
        ckpt.close()


@pytest.mark.slow
def test_run_directory_of_a_trainer(full_run):
    workdir, _, params = full_run
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["train"]["steps"] == STEPS and saved["model"]["dropout"] == 0.1
    ckpt = Checkpointer(str(workdir))
    try:
        assert ckpt.latest_step("last") == STEPS
        assert ckpt.latest_step("best") is not None
    finally:
        ckpt.close()
    assert sorted(p.name for p in (workdir / "checkpoints" / "last").iterdir() if p.name.isdigit()) == ["20", "24"]  # keep 2


def test_weight_decay_hits_matrices_and_embeddings_only(train_config):
    model = build_model(train_config.model, 65)
    shapes = jax.eval_shape(lambda: init_params(model, jax.random.PRNGKey(0), 64))
    mask = decay_mask(shapes)
    assert mask["embed"]["wte"]["embedding"] and mask["embed"]["wpe"]["embedding"]
    block = mask["seg0"]["block"]
    assert block["attn"]["proj"]["qkv"]["kernel"] and block["mixer"]["up"]["kernel"]
    # LayerNorm scales stay undecayed, also when nn.scan stacks them to [layers, d]
    assert shapes["seg0"]["block"]["ln1"]["scale"].ndim == 2
    assert not block["ln1"]["scale"] and not block["ln2"]["scale"] and not mask["ln_f"]["scale"]


def test_family_reporter_runs_once_at_the_end_with_the_trained_params(tmp_path, monkeypatch):
    from wavejax.analysis import reports

    calls = []

    def reporter(ctx):
        calls.append((ctx.step, ctx.workdir, jax.device_get(ctx.params), len(ctx.data.val)))
        return {"param_norm": float(sum(np.sum(np.square(a)) for a in jax.tree.leaves(ctx.params)))}

    monkeypatch.setitem(reports.REPORTERS, "gpt", reporter)
    trainer = Trainer(_config(**{"train.steps": 8}), str(tmp_path))
    try:
        trainer.run()
    finally:
        trainer.close()
    assert len(calls) == 1 and calls[0][0] == 8 and calls[0][1] == str(tmp_path) and calls[0][3] > 0
    final = jax.device_get(trainer.state.params)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(calls[0][2]), jax.tree.leaves(final)))
    report = [r for r in read_metrics(str(tmp_path)) if r["split"] == "report"]
    assert len(report) == 1 and report[0]["step"] == 8 and report[0]["param_norm"] > 0
