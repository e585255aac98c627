"""Wave-Native GPT training parts: optimizers (wavejax/models/wave_optim.py), objectives (wavejax/models/wave_losses.py),
diagnostics (wavejax/models/wave_diagnostics.py) and tiny CLI runs.

1. wave_native and resonant against hand-written numpy steps (stacked scanned layers, decay mask, lr schedule), the
   SVD projection's identity on square matrices, resonant at strength 0 == optax.adamw, the annealing ratio;
2. the optimizer states round-trip through the run's orbax checkpointer;
3. the QFE penalty, phase spread, energy drift and harmonic mismatch against numpy; the coherence objective gets
   every layer output;
4. the diagnostics' numbers on constructed inputs;
5. `python -m wavejax.main --config=configs/wave.py:tiny` with every optimizer and objective (four runs at once),
   writing the diagnostics plots.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.core.meta import unbox

from wavejax.errors import ConfigError
from wavejax.models import wave_diagnostics as D
from wavejax.models import wave_losses as losses
from wavejax.models import wave_optim as woptim
from wavejax.models.gpt import build_model
from wavejax.nn.optimizers import decay_mask
from wavejax.train import optim

from conftest import REPO, configs

wave_configs = configs("wave")

EPS = 1e-8


def normal(seed: int, shape, scale: float = 1.0):
    return np.asarray(scale * np.random.default_rng(seed).standard_normal(shape), np.float32)


def param_tree(seed: int = 0) -> dict:
    """Leaves that hit every rule: a table and a square kernel (matrices), a stacked scanned kernel [L,3,4] (matrix
    per layer), a stacked LayerNorm scale [L,3] (1-D per layer), a bias, and a (1,1,W) wave parameter (3-D)."""
    return {
        "embed": {"simple_table": {"embedding": normal(seed, (6, 3))}, "pos_freq": normal(seed + 1, (1, 1, 4), 0.1)},
        "sq": {"kernel": normal(seed + 2, (3, 3)), "bias": normal(seed + 3, (3,), 0.1)},
        "seg0": {"block": {"attn": {"kernel": normal(seed + 4, (2, 3, 4))},
                           "ln1": {"scale": 1 + normal(seed + 5, (2, 3), 0.1)}}},
    }


def flat(tree) -> dict:
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        out["/".join(str(k.key) for k in path)] = np.asarray(leaf, np.float64)
    return out


STACKED = {"seg0/block/attn/kernel", "seg0/block/ln1/scale"}
DECAYED = {"embed/simple_table/embedding", "sq/kernel", "seg0/block/attn/kernel"}  # the "matrices" mask


def per_layer(name, x, fn):
    """fn applied to each layer slice of a stacked parameter, or to x itself."""
    return np.stack([fn(s) for s in x]) if name in STACKED else fn(x)


def layer_ndim(name, x) -> int:
    return x.ndim - (1 if name in STACKED else 0)


def lr_at(count: int) -> float:
    return 0.01 + 0.002 * count  # the schedule both sides use: lr(count) with count = updates done before


SCHEDULE = optax.linear_schedule(0.01, 0.01 + 0.002 * 100, 100)


# == 1. optimizers ====================================================================================================

def numpy_wave_native(params, grad_seq, damping, c, wd):
    p, v = flat(params), {k: np.zeros_like(x) for k, x in flat(params).items()}
    for count, grads in enumerate(grad_seq):
        g_all = flat(grads)
        for name in p:
            g = g_all[name] + (wd * p[name] if name in DECAYED else 0.0)
            if layer_ndim(name, p[name]) == 2 and c > 0:
                def proj(pair):
                    u, _, vt = np.linalg.svd(pair[0], full_matrices=False)
                    return u @ u.T @ pair[1] @ vt.T @ vt
                projected = (np.stack([proj(s) for s in zip(p[name], g)]) if name in STACKED else proj((p[name], g)))
                g = c * projected + (1 - c) * g
            v[name] = (1 - damping) * v[name] - lr_at(count) * g
            p[name] = p[name] + v[name]
    return p


def numpy_resonant(params, grad_seq, b1, b2, eps, wd, strength, warmup):
    p = flat(params)
    m = {k: np.zeros_like(x) for k, x in p.items()}
    s = {k: np.zeros_like(x) for k, x in p.items()}
    for count, grads in enumerate(grad_seq):
        k = count + 1
        alpha = min(1.0, k / warmup) * strength
        lr = lr_at(count)
        for name, g in flat(grads).items():
            m[name] = b1 * m[name] + (1 - b1) * g
            s[name] = b2 * s[name] + (1 - b2) * g * g
            u = (m[name] / (1 - b1**k)) / (np.sqrt(s[name] / (1 - b2**k)) + eps)
            pd = p[name] * (1 - lr * wd) if name in DECAYED else p[name]
            if layer_ndim(name, pd) >= 2:
                def gate(pair):
                    w2, u2 = pair[0].reshape(pair[0].shape[0], -1), pair[1].reshape(pair[1].shape[0], -1)
                    fw, fu = np.fft.fft2(w2), np.fft.fft2(u2)
                    r = np.sqrt(np.abs(fw) / (np.abs(fw).max() + eps) * np.abs(fu) / (np.abs(fu).max() + eps) + eps)
                    return np.real(np.fft.ifft2(fu * (alpha * r + 1 - alpha))).reshape(pair[1].shape)
                u = np.stack([gate(x) for x in zip(pd, u)]) if name in STACKED else gate((pd, u))
            p[name] = pd - lr * u
    return p


def run_optax(tx, params, grad_seq):
    state = tx.init(params)
    step = jax.jit(tx.update)
    for grads in grad_seq:
        updates, state = step(grads, state, params)
        params = optax.apply_updates(params, updates)
    return flat(params), state


def grad_sequence(n: int = 3):
    return [jax.tree.map(lambda x, i=i: normal(100 + i + x.size, x.shape, 0.5), param_tree()) for i in range(n)]


def matrices_mask(params):
    return decay_mask(params, "matrices")


def test_wave_native_matches_numpy():
    params, grads = param_tree(), grad_sequence()
    tx = woptim.wave_native(SCHEDULE, damping=0.1, coherence_weight=0.3, weight_decay=0.05, mask=matrices_mask)
    got, state = run_optax(tx, params, grads)
    want = numpy_wave_native(params, grads, damping=0.1, c=0.3, wd=0.05)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert isinstance(state, woptim.WaveNativeState) and int(state.count) == 3
    # not vacuous: the projection changed the rectangular and stacked matrices (c = 0 gives another answer)
    plain = numpy_wave_native(params, grads, damping=0.1, c=0.0, wd=0.05)
    assert np.abs(plain["seg0/block/attn/kernel"] - want["seg0/block/attn/kernel"]).max() > 1e-4
    assert np.abs(plain["embed/simple_table/embedding"] - want["embed/simple_table/embedding"]).max() > 1e-4


def test_coherent_projection_is_identity_on_square_matrices():
    rng = np.random.default_rng(7)
    p, g = rng.standard_normal((16, 16)).astype(np.float32), rng.standard_normal((16, 16)).astype(np.float32)
    np.testing.assert_allclose(woptim.coherent_projection(jnp.asarray(p), jnp.asarray(g)), g, atol=1e-4)
    # whatever the rank (so wave_native skips square matrices exactly): a rank-1 square p
    rank1 = np.outer(p[:, 0], p[0]).astype(np.float32)
    np.testing.assert_allclose(woptim.coherent_projection(jnp.asarray(rank1), jnp.asarray(g)), g, atol=1e-4)
    # on a 64 x 16 matrix it keeps the 16-dim column space: a random g loses 1 - 16/64 of its energy
    p, g = rng.standard_normal((64, 16)).astype(np.float32), rng.standard_normal((64, 16)).astype(np.float32)
    pg = np.asarray(woptim.coherent_projection(jnp.asarray(p), jnp.asarray(g)))
    assert np.linalg.norm(g - pg) / np.linalg.norm(g) == pytest.approx(math.sqrt(0.75), abs=0.05)


def test_resonant_matches_numpy():
    params, grads = param_tree(1), grad_sequence()
    tx = woptim.resonant(SCHEDULE, b1=0.9, b2=0.999, eps=EPS, weight_decay=0.05, strength=0.3, warmup=2,
                        mask=matrices_mask)
    got, state = run_optax(tx, params, grads)
    want = numpy_resonant(params, grads, 0.9, 0.999, EPS, 0.05, 0.3, 2)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert isinstance(state, woptim.ResonantState)
    # at strength 0 it is AdamW (optax's, same mask)
    adam = optax.adamw(SCHEDULE, b1=0.9, b2=0.999, eps=EPS, weight_decay=0.05, mask=matrices_mask)
    zero = woptim.resonant(SCHEDULE, b1=0.9, b2=0.999, eps=EPS, weight_decay=0.05, strength=0.0, mask=matrices_mask)
    a, _ = run_optax(adam, params, grads)
    z, _ = run_optax(zero, params, grads)
    for name in a:
        np.testing.assert_allclose(z[name], a[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert any(np.abs(z[n] - got[n]).max() > 1e-5 for n in a)  # and the gate does change the step


def test_anneal_standard_ratio():
    params = {"embed": {"standard_ratio": np.float32(1.0), "phase": normal(3, (4, 2))}}
    grads = {"embed": {"standard_ratio": np.float32(0.0), "phase": normal(4, (4, 2))}}
    tx = optax.chain(woptim.wave_native(0.1, weight_decay=0.1), woptim.anneal_standard_ratio(40))
    got, _ = run_optax(tx, params, [grads] * 3)
    assert got["embed/standard_ratio"] == pytest.approx(1 - 3 / 40, abs=1e-6)  # r_k = 1 - k / anneal_steps
    assert np.abs(got["embed/phase"] - params["embed"]["phase"]).max() > 1e-3  # other leaves keep their updates
    got, _ = run_optax(woptim.anneal_standard_ratio(2), params, [grads] * 5)
    assert got["embed/standard_ratio"] == 0.0  # clamped at 0
    frozen, _ = run_optax(optax.chain(woptim.wave_native(0.1, weight_decay=0.5), woptim.anneal_standard_ratio(0)),
                          params, [grads] * 3)
    assert frozen["embed/standard_ratio"] == 1.0  # 0 = fixed: weight decay does not move it either


def test_registered_optimizers_and_settings_checks():
    t = wave_configs.get_config("tiny").train
    params = param_tree()
    for name in ("wave_native", "resonant", "wave_adamw"):
        t.optimizer = name
        tx, _ = optim.make_optimizer(t)
        updates, _ = jax.jit(tx.update)(grad_sequence(1)[0], tx.init(params), params)
        assert all(np.all(np.isfinite(np.asarray(u))) for u in jax.tree.leaves(updates))
    t.wave_optim.damping = 0.0
    with pytest.raises(ConfigError, match="train.wave_optim.damping must be in"):
        optim.make_optimizer(t)
    t.wave_optim.damping = 0.1
    t.wave_optim.typo = 1
    with pytest.raises(ConfigError, match="unknown train.wave_optim key"):
        optim.make_optimizer(t)


def test_optimizer_states_survive_the_run_checkpointer(tmp_path):
    from wavejax.train.checkpoint import Checkpointer
    from wavejax.train.state import TrainState

    params = param_tree()
    for tx in (woptim.wave_native_optimizer(wave_configs.get_config("tiny").train, SCHEDULE),
               woptim.resonant_optimizer(wave_configs.get_config("tiny").train, SCHEDULE)):
        state = TrainState(jnp.int32(1), params, tx.init(params), jax.random.PRNGKey(0))
        updates, opt_state = tx.update(grad_sequence(1)[0], state.opt_state, params)
        state = state.replace(opt_state=opt_state)
        ckpt = Checkpointer(str(tmp_path / type(opt_state[0]).__name__))
        ckpt.save(1, state, {"x": 1})
        ckpt.wait()
        restored, meta, _ = ckpt.restore(jax.tree.map(jnp.zeros_like, state))
        ckpt.close()
        assert type(restored.opt_state[0]) is type(opt_state[0]) and meta == {"x": 1}
        chex.assert_trees_all_equal(restored.opt_state, opt_state)


# == 3. objectives ====================================================================================================

def numpy_qfe(logits, targets, threshold):
    """The original's formula with angles (float64)."""
    z = logits - logits.max(-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    y = np.eye(logits.shape[-1])[targets]
    fo, fy = np.fft.rfft(p, axis=1), np.fft.rfft(y, axis=1)
    ao, ay = np.abs(fo), np.abs(fy)
    mask = (ao > threshold) & (ay > threshold)
    pen = 1 - np.cos(np.angle(fo) - np.angle(fy))
    return np.sum(ao * ay * pen * mask) / (mask.sum() + 1e-8)


def test_qfe_penalty_matches_numpy_and_has_finite_gradients():
    logits = normal(200, (2, 16, 7), 2.0)
    targets = np.random.default_rng(201).integers(0, 7, (2, 16))
    got = float(losses.spectral_phase_penalty(jnp.asarray(logits), jnp.asarray(targets), 0.01))
    assert got == pytest.approx(numpy_qfe(logits.astype(np.float64), targets, 0.01), rel=1e-4)
    assert got > 0
    # uniform predictions: every non-DC bin of F_o is exactly 0 (masked), and the gradient stays finite
    g = jax.jit(jax.grad(lambda lg: losses.spectral_phase_penalty(lg, jnp.asarray(targets))))(jnp.zeros((2, 16, 7)))
    assert np.all(np.isfinite(np.asarray(g)))
    # with a projection the penalty is computed on 4 random directions (a different, still finite number)
    projected = float(losses.spectral_phase_penalty(jnp.asarray(logits), jnp.asarray(targets), 0.01, project_dim=4))
    assert np.isfinite(projected) and projected != pytest.approx(got)


def test_phase_spread_energy_and_harmonics_match_numpy():
    h = normal(210, (2, 19, 6))
    spec = np.fft.rfft(h[:, :16].astype(np.float64), axis=-1).reshape(2, 2, 8, -1)
    raw = np.var(np.angle(spec), axis=2, ddof=1).mean()
    circ = (1 - np.abs(np.mean(spec / np.abs(spec), axis=2))).mean()
    assert float(losses.phase_spread(jnp.asarray(h), 8, circular=False)) == pytest.approx(raw, rel=1e-4)
    assert float(losses.phase_spread(jnp.asarray(h), 8, circular=True)) == pytest.approx(circ, rel=1e-4)
    hs = [normal(211 + i, (2, 5, 6)) for i in range(3)]
    norms = [np.linalg.norm(x, axis=-1) for x in hs]
    want = np.mean([np.abs(norms[1] - norms[0]).mean(), np.abs(norms[2] - norms[1]).mean()])
    assert float(losses.energy_drift([jnp.asarray(x) for x in hs])) == pytest.approx(want, rel=1e-5)
    ideal = np.broadcast_to(1.0 / np.arange(1, 5), (3, 2, 4))
    assert float(losses.harmonic_mismatch(jnp.asarray(ideal))) == pytest.approx(0.0, abs=1e-7)
    flat_amps = np.ones((3, 2, 4))
    q = (1 / np.arange(1, 5)) / (1 / np.arange(1, 5)).sum()
    assert float(losses.harmonic_mismatch(jnp.asarray(flat_amps))) == pytest.approx(np.abs(0.25 - q).mean(), rel=1e-5)


def test_coherence_objective_reads_every_layer_output():
    from wavejax.models.gpt import layer_outputs_in_order
    from wavejax.train.step import make_loss_fn

    c = wave_configs.get_config("tiny")  # 2 layers under nn.scan, dropout 0
    c.model.block_size, c.train.loss = 16, "wave_coherence"
    model = build_model(c.model, 65)
    x = np.random.default_rng(220).integers(0, 65, (2, 16)).astype(np.int32)
    params = unbox(jax.jit(lambda k: model.init(k, jnp.asarray(x), True))(jax.random.PRNGKey(0))["params"])
    total, (ce, aux, diag) = jax.jit(make_loss_fn(model, c.train))(params, x, x, jax.random.PRNGKey(1))
    _, v = jax.jit(lambda p: model.apply({"params": p}, x, True, mutable=["layer_outputs"]))(params)
    hs = [np.asarray(h, np.float64) for h in layer_outputs_in_order(v["layer_outputs"], model.config)]
    assert len(hs) == 3  # embedding output, h_0, h_1
    norms = [np.linalg.norm(h, axis=-1) for h in hs]
    energy = np.mean([np.abs(b - a).mean() for a, b in zip(norms[:-1], norms[1:])])
    phase = np.mean([float(losses.phase_spread(jnp.asarray(h), 8)) for h in hs[1:]])
    assert float(diag["objective/energy"]) == pytest.approx(energy, rel=1e-4)
    assert float(diag["objective/phase"]) == pytest.approx(phase, rel=1e-4)
    s = losses.wave_loss_settings(c.train)
    harmonic = float(diag["objective/harmonic"])
    want = s["phase_weight"] * phase + s["energy_weight"] * energy + s["harmonic_weight"] * harmonic
    assert float(aux) == pytest.approx(want, rel=1e-4) and float(aux) > 0
    assert float(total) == pytest.approx(float(ce) + float(aux), rel=1e-6)
    # the [B] embedding's learned amplitudes start far from 1/n, so the harmonic term is non-zero
    assert float(diag["objective/harmonic"]) > 0.05


# == 4. diagnostics ===================================================================================================

def test_spectrum_analysis_finds_constructed_harmonics():
    x = np.arange(64)
    rows = np.stack([np.sin(2 * np.pi * 4 * x / 64 + i) + 0.8 * np.sin(2 * np.pi * 8 * x / 64 + 2 * i)
                     + 0.6 * np.sin(2 * np.pi * 12 * x / 64) for i in range(10)])
    a = D.spectrum_analysis(rows)
    assert a["top_peaks"][:3] == [4, 8, 12] or set([4, 8, 12]) <= set(a["top_peaks"])
    assert (4, 8) in a["harmonic_pairs"] and (4, 12) in a["harmonic_pairs"] and (8, 12) in a["harmonic_pairs"]


def test_fringe_analysis_on_periodic_and_flat_rows():
    t = 64
    q, k = np.meshgrid(np.arange(t), np.arange(t), indexing="ij")
    periodic = np.where(k <= q, 1 + np.cos(2 * np.pi * k / 8), 0.0)[None, None]
    f = D.fringe_analysis(periodic)
    assert f["fringes"] and f["peaks"][:2] == [8, 16]
    causal_uniform = np.tril(np.ones((t, t)))[None, None] / np.arange(1, t + 1)[:, None]
    assert not D.fringe_analysis(causal_uniform)["fringes"]


def test_trajectory_numbers():
    hs = [np.full((1, 2, 3), v, np.float64) for v in (0.0, 1.0, 3.0)]
    # |h1 - h0| = sqrt(6), |h2 - h1| = 2 sqrt(6): mean log = log(sqrt 6) + log(2)/2
    assert D.lognorm_exponent(hs) == pytest.approx(math.log(math.sqrt(6)) + math.log(2) / 2)
    clean = [np.zeros((1, 2, 3))] * 3
    perturbed = [np.full((1, 2, 3), 1e-3), np.full((1, 2, 3), 2e-3), np.full((1, 2, 3), 4e-3)]
    np.testing.assert_allclose(D.perturbation_growth(clean, perturbed), [0.0, math.log(2), math.log(4)], atol=1e-9)


# == 5. CLI runs ======================================================================================================

CLI_RUNS = {  # every wave optimizer and every objective once (adamw runs inside wave_adamw), each on other parts
    "resonant_qfe": ["--config=configs/wave.py:tiny"],
    "native_coherence": ["--config=configs/wave.py:tiny+physics+interference", "--config.train.lr=0.01",
                         "--config.train.wave_optim.anneal_steps=4"],
    "wave_adamw_ce": ["--config=configs/wave.py:tiny+physics+pure_sigmoid+linear",
                      "--config.train.optimizer=wave_adamw", "--config.train.loss=ce",
                      "--config.train.wave_optim.anneal_steps=4"],
}
CLI_COMMON = ["--config.train.steps=8", "--config.train.warmup_steps=0", "--config.train.eval_every=4",
              "--config.train.eval_batches=2", "--config.train.log_every=1", "--config.train.checkpoint_every=8",
              "--config.train.sample_tokens=0", "--config.train.progress=false", "--config.model.block_size=32"]


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("wave_cli")
    procs = {}
    for name, args in CLI_RUNS.items():
        procs[name] = subprocess.Popen([sys.executable, "-m", "wavejax.main", *args, *CLI_COMMON,
                                        f"--workdir={root / name}"], cwd=REPO,
                                       env=dict(os.environ, OPENBLAS_NUM_THREADS="1"),  # wave_native's SVDs
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        out[name] = (proc.returncode, stdout, stderr, root / name)
    return out


def _records(workdir):
    with open(workdir / "metrics.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CLI_RUNS))
def test_tiny_cli_run_trains_and_writes_diagnostics(cli_runs, name):
    rc, stdout, stderr, workdir = cli_runs[name]
    assert rc == 0, stdout + stderr
    assert "done: step 8" in stdout
    train = [r for r in _records(workdir) if r["split"] == "train"]
    assert len(train) == 8 and all(math.isfinite(r["loss"]) for r in train)
    assert train[-1]["loss"] < train[0]["loss"]  # it learns
    if name.endswith("_ce"):
        assert all(r["aux_loss"] == 0 for r in train)
    else:
        assert all(r["aux_loss"] > 0 for r in train)  # the objective's extra term is on
    report = [r for r in _records(workdir) if r["split"] == "report"]
    assert len(report) == 1 and "trajectory/perturbation_exponent" in report[0]
    for plot in D.PLOTS:
        assert (workdir / plot).stat().st_size > 1000, plot


@pytest.mark.slow
def test_physics_runs_anneal_the_ratio_and_log_wave_numbers(cli_runs):
    for name in ("native_coherence", "wave_adamw_ce"):
        train = [r for r in _records(cli_runs[name][3]) if r["split"] == "train"]
        ratios = [r["embed/standard_ratio"] for r in train]
        # logged at the step's forward: r = 1 - (step - 1) / 4, then 0
        np.testing.assert_allclose(ratios, [1.0, 0.75, 0.5, 0.25, 0.0, 0.0, 0.0, 0.0], atol=1e-6)
    coherence = [r for r in _records(cli_runs["native_coherence"][3]) if r["split"] == "train"]
    assert all(r["objective/phase"] > 0 and r["objective/energy"] > 0 for r in coherence)
    assert all(r["objective/harmonic"] == 0.0 for r in coherence)  # fixed 1/n amplitudes
    gate = [r for r in _records(cli_runs["resonant_qfe"][3]) if r["split"] == "train"]
    assert all(0 < r["embed/wave_gate"] < 1 for r in gate)
    assert all("seg0/block/attn/temperature" in r for r in gate)


@pytest.mark.slow
def test_benchmark_score_of_a_finished_run(cli_runs):
    """experiments/reproductions/wave_benchmark.py's published score is the CE of one train batch; its held-out
    number is the run's own final validation loss (same fixed validation batches)."""
    from experiments.reproductions import wave_benchmark

    workdir = cli_runs["resonant_qfe"][3]
    s = wave_benchmark.score(str(workdir), 3)
    final_val = [r for r in _records(workdir) if r["split"] == "val"][-1]
    assert final_val["step"] == 8 and s["val_mean"] == pytest.approx(final_val["loss"], abs=1e-5)
    assert s["one_batch"] != pytest.approx(s["train_mean"], abs=1e-6) and s["train_std"] > 0
    assert s["train_tokens"] == 1_003_854  # the 90% train split of tinyshakespeare, char-level
