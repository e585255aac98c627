"""The fused lattice Kuramoto kernel (pallas_kernels/kuramoto_lattice.py) in interpret mode on CPU: against its jnp
reference (a scan of dynamics.kuramoto_step), a hand-written numpy step, its own symmetries, and the simulator's
unfused path (field.kuramoto.impl = xla | pallas)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from pallas_kernels import kuramoto_lattice as KL
from pallas_kernels import lower_for_gpu
from wavejax.errors import ConfigError
from wavejax.field import schema as E
from wavejax.ops import oscillators as D

from conftest import configs

DT = 0.05
NOISE_SCALE = 0.1
RUNS = {"xla": D.kuramoto_run, "pallas": KL.fused_kuramoto_run}  # the two paths field.kuramoto.impl chooses between


def _inv_degree(side: int, periodic: bool) -> np.ndarray:
    deg = np.full((side, side), 4.0)
    if not periodic:
        deg[0] -= 1
        deg[-1] -= 1
        deg[:, 0] -= 1
        deg[:, -1] -= 1
    return (1.0 / deg).astype(np.float32)


def _inputs(side: int, batch: int = 3, steps: int = 1, seed: int = 0, noise: bool = False):
    rng = np.random.default_rng(seed)
    theta = rng.uniform(-math.pi, math.pi, (batch, side, side)).astype(np.float32)
    omega = rng.normal(0.0, 0.5, (batch, side, side)).astype(np.float32)
    k = np.linspace(0.3, 2.5, batch).astype(np.float32)
    xi = rng.normal(size=(batch, steps, side, side)).astype(np.float32) if noise else None
    return theta, omega, k, xi


def _kernel(side, steps, integrator, periodic, window, with_noise=False):
    """A jitted kernel call for one static setting (interpret mode: CPU)."""

    def run(theta, omega, k, inv, xi, n_valid):
        return KL.lattice_kuramoto_steps(theta, omega, k, inv, dt=DT, steps=steps, integrator=integrator,
                                         periodic=periodic, noise=xi if with_noise else None,
                                         noise_scale=NOISE_SCALE, n_valid=n_valid, window=window)

    return jax.jit(run)


def _reference(theta, omega, k, inv, xi, steps, integrator, periodic, n_valid=None):
    return np.asarray(KL.lattice_kuramoto_steps_reference(theta, omega, k, inv, dt=DT, steps=steps,
                                                          integrator=integrator, periodic=periodic, noise=xi,
                                                          noise_scale=NOISE_SCALE, n_valid=n_valid))


def _rel_err(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(1.0, float(np.max(np.abs(b)))))


# side, window, steps per launch, integrator, periodic, noise. Tiles are window - 2 * halo (halo = steps x stages):
# side 13 with tile 10 and side 11 with tile 8 leave ragged tiles; side 5 < tile (halo wraps more than once);
# side 20 with tile 12 gives a 2 x 2 grid whose halos cross tile and lattice edges.
CASES = [
    (13, 16, 3, "euler", True, False),
    (20, 16, 2, "euler", True, True),
    (11, 16, 1, "rk4", True, False),
    (5, 16, 1, "rk4", True, True),
    (9, 16, 2, "euler", False, False),
    (10, 32, 1, "rk4", False, True),
]


@pytest.mark.parametrize("side,window,steps,integrator,periodic,noise", CASES)
def test_kernel_matches_the_jnp_reference(side, window, steps, integrator, periodic, noise):
    theta, omega, k, xi = _inputs(side, steps=steps, noise=noise)
    inv = _inv_degree(side, periodic)
    out = _kernel(side, steps, integrator, periodic, window, noise)(theta, omega, k, inv, xi, steps)
    ref = _reference(theta, omega, k, inv, xi, steps, integrator, periodic)
    assert out.shape == theta.shape
    assert _rel_err(out, ref) < 1e-6, _rel_err(out, ref)
    assert np.max(np.abs(ref - theta)) > 0.05  # the steps moved the phases: the comparison is not vacuous


def _numpy_euler_step(theta, omega, k, periodic):
    """One Euler step written out per node with explicit neighbour indices (float64)."""
    b_, side, _ = theta.shape
    out = np.empty_like(theta, dtype=np.float64)
    for b in range(b_):
        for i in range(side):
            for j in range(side):
                nbrs = [(i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)]
                if periodic:
                    nbrs = [(a % side, c % side) for a, c in nbrs]
                else:
                    nbrs = [(a, c) for a, c in nbrs if 0 <= a < side and 0 <= c < side]
                pull = sum(math.sin(theta[b, a, c] - theta[b, i, j]) for a, c in nbrs)
                out[b, i, j] = theta[b, i, j] + DT * (omega[b, i, j] + k[b] / len(nbrs) * pull)
    return out


@pytest.mark.parametrize("periodic", [True, False])
def test_one_step_matches_the_pairwise_formula_by_hand(periodic):
    side = 6  # window 16, halo 1: one 14 x 14 tile, so every wrap is the window's own
    theta, omega, k, _ = _inputs(side, batch=2, seed=1)
    out = _kernel(side, 1, "euler", periodic, 16)(theta, omega, k, _inv_degree(side, periodic), None, 1)
    np.testing.assert_allclose(np.asarray(out), _numpy_euler_step(theta, omega, k, periodic), rtol=0, atol=2e-6)


def test_periodic_lattice_is_translation_equivariant_across_tiles():
    """Rolling the input rolls the output: the halo wraps correctly whichever tile a node falls in."""
    side, steps = 20, 2
    theta, omega, k, _ = _inputs(side, batch=2, seed=2)
    run = _kernel(side, steps, "euler", True, 16)
    inv = _inv_degree(side, True)
    base = np.asarray(run(theta, omega, k, inv, None, steps))
    shift = (7, -5)
    rolled = run(np.roll(theta, shift, (1, 2)), np.roll(omega, shift, (1, 2)), k, inv, None, steps)
    np.testing.assert_allclose(np.asarray(rolled), np.roll(base, shift, (1, 2)), rtol=0, atol=1e-6)


def test_steps_past_n_valid_hold_the_state():
    side = 9
    theta, omega, k, xi = _inputs(side, batch=2, steps=3, noise=True)
    inv = _inv_degree(side, True)
    partial = _kernel(side, 3, "euler", True, 16, True)(theta, omega, k, inv, xi, 2)
    ref = _reference(theta, omega, k, inv, xi[:, :2], 2, "euler", True)
    assert _rel_err(partial, ref) < 1e-6
    assert _rel_err(partial, _reference(theta, omega, k, inv, xi, 3, "euler", True)) > 1e-3


@pytest.mark.parametrize("integrator", ["euler", "rk4"])
def test_gradients_are_the_references_and_the_reference_passes_check_grads(integrator):
    """The custom_vjp's backward is the reference's VJP (θ, ω, K, noise; per-trial n_valid); the reference's own
    gradient is checked against finite differences in float64."""
    side, steps = 7, 2
    theta, omega, k, xi = _inputs(side, batch=2, steps=steps, seed=3, noise=True)
    inv, n_valid = _inv_degree(side, True), np.array([2, 1], np.int32)
    weights = np.random.default_rng(4).normal(size=theta.shape).astype(np.float32)
    kw = dict(dt=DT, steps=steps, integrator=integrator, noise_scale=NOISE_SCALE, n_valid=n_valid)

    def grads(fn):
        loss = lambda th, om, kk, nz: jnp.sum(weights * fn(th, om, kk, inv, noise=nz, **kw))  # noqa: E731
        return jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(theta, omega, k, xi)

    for got, want in zip(grads(functools.partial(KL.lattice_kuramoto_steps, window=32)),
                         grads(KL.lattice_kuramoto_steps_reference)):
        assert float(jnp.max(jnp.abs(want))) > 0
        assert _rel_err(got, want) < 1e-6
    with jax.enable_x64(True):
        ref = jax.jit(lambda th, om, kk: KL.lattice_kuramoto_steps_reference(th, om, kk, inv.astype(np.float64),
                                                                              noise=None, **kw))
        check_grads(ref, tuple(a.astype(np.float64) for a in (theta, omega, k)), order=1,
                                  modes=("rev",))


def test_vmapped_single_trials_equal_the_batched_launch():
    """vmap over trials: pallas_call's generic batching rule (an extra grid axis) and batched_launch's rule (vmapped
    axes folded into the kernel's trial axis, as the simulator runs it; nested vmaps too) give the batched result;
    a vmapped inv_degree (different lattices) falls back to the generic rule."""
    side = 11
    theta, omega, k, _ = _inputs(side, batch=4, seed=3)
    inv = _inv_degree(side, True)
    n_valid = np.full(4, 3, np.int32)
    run = _kernel(side, 3, "euler", True, 16)  # halo 3: 2 x 2 tiles of 10, the second ragged
    batched = np.asarray(run(theta, omega, k, inv, None, 3))
    generic = jax.jit(jax.vmap(lambda t, o, c: run(t[None], o[None], c[None], inv, None, 3)[0]))(theta, omega, k)
    np.testing.assert_array_equal(np.asarray(generic), batched)

    launch = KL.batched_launch(dt=DT, steps=3, integrator="euler", periodic=True, noise_scale=0.0, window=16)
    single = lambda t, o, c, i, n: launch(t[None], o[None], c[None], i, n[None])[0]  # noqa: E731
    folded = jax.jit(jax.vmap(jax.vmap(single, in_axes=(0, 0, 0, None, 0)), in_axes=(0, 0, 0, None, 0)))(
        *(a.reshape((2, 2) + a.shape[1:]) for a in (theta, omega, k)), inv, n_valid.reshape(2, 2))
    np.testing.assert_array_equal(np.asarray(folded).reshape(batched.shape), batched)
    per_lattice = jax.jit(jax.vmap(single))(theta, omega, k, np.broadcast_to(inv, (4, side, side)), n_valid)
    np.testing.assert_array_equal(np.asarray(per_lattice), batched)


@pytest.mark.parametrize("integrator", ["euler", "rk4"])
def test_a_few_hundred_fused_steps_match_the_unfused_simulator(integrator):
    """300 steps of oscillators.kuramoto_run against the fused kernel's run, across the synchronisation transition (K = 0.5 .. 3).
    The kernel evaluates the same float32 operations in the same order, so the trajectories agree to rounding (the
    issue asks for 1e-4; a halo one row short already gives ~1e-5 after 3 steps, so the bound is 1e-5). Records every
    40 steps (L = 8 Euler / 2 RK4 steps per launch) and a ragged end."""
    side, steps, record_every = 12, 300, 40
    theta, omega, k, _ = _inputs(side, batch=3, seed=4)
    coupling = D.LatticeCoupling(jnp.asarray(_inv_degree(side, True).reshape(-1)), side, True)

    def run(impl):
        f = jax.jit(jax.vmap(lambda t, o, c: RUNS[impl](t, o, c, coupling, dt=DT, steps=steps,
                                                            record_every=record_every, integrator=integrator)))
        final, _, records = f(theta.reshape(3, -1), omega.reshape(3, -1), k)
        return np.asarray(final), np.asarray(records)

    (xla_final, xla_rec), (pl_final, pl_rec) = run("xla"), run("pallas")
    assert pl_rec.shape == xla_rec.shape == (3, math.ceil(steps / record_every), side * side)
    assert _rel_err(pl_final, xla_final) < 1e-5
    assert _rel_err(pl_rec, xla_rec) < 1e-5


def test_noisy_run_with_ragged_launches_matches_the_unfused_run():
    """record_every 10 -> 5 Euler steps per launch; 23 steps: the last record block and its last launch are
    partial. The noise ξ_t is drawn per step from the same keys on both paths."""
    side, steps = 7, 23
    theta, omega, k, _ = _inputs(side, batch=2, seed=5)
    coupling = D.LatticeCoupling(jnp.asarray(_inv_degree(side, False).reshape(-1)), side, False)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)  # raw keys, as the simulator's

    def observe(acc, th, t_first, n_valid):
        return acc, (th, t_first, n_valid)

    def run(impl):
        f = jax.jit(jax.vmap(lambda t, o, c, key: RUNS[impl](t, o, c, coupling, dt=DT, steps=steps,
                                                                 record_every=10, noise_std=0.3, noise_key=key,
                                                                 observe=observe)))
        out = f(theta.reshape(2, -1), omega.reshape(2, -1), k, keys)
        return jax.tree.map(np.asarray, out)

    (xf, _, (xth, xt, xn)), (pf, _, (pth, pt, pn)) = run("xla"), run("pallas")
    np.testing.assert_array_equal(pt, xt)  # observe sees step indices, not launch indices
    np.testing.assert_array_equal(pn, xn)
    np.testing.assert_array_equal(xt[0], [1, 11, 21])
    assert _rel_err(pf, xf) < 1e-5 and _rel_err(pth, xth) < 1e-5


def _triton_modules(monkeypatch):
    """Collects the Triton modules that pallas_call lowers for "cuda" (no GPU needed to lower)."""
    from jax._src.pallas.triton import pallas_call_registration as registration

    lower, modules = registration.lowering.lower_jaxpr_to_triton_module, []

    def spy(*args, **kwargs):
        result = lower(*args, **kwargs)
        modules.append((result.module.operation.get_asm(), tuple(result.grid)))
        return result

    monkeypatch.setattr(registration.lowering, "lower_jaxpr_to_triton_module", spy)
    return modules


@pytest.mark.parametrize("integrator,periodic,noise", [("euler", True, True), ("rk4", False, False)])
def test_kernel_lowers_to_triton_for_the_gpu(monkeypatch, integrator, periodic, noise):
    """Without interpret mode the kernel must lower through Pallas' Triton backend: every operation in it (gathered
    loads, masked stores, barriers, the step loop, the polynomial sincos) needs a Triton rule."""
    modules = _triton_modules(monkeypatch)
    side, steps = 100, KL.DEFAULT_STEPS_PER_LAUNCH[integrator]
    theta, omega, k, xi = _inputs(side, batch=2, steps=steps, noise=noise)

    def run(th, om, kk, inv, nz):
        return KL.lattice_kuramoto_steps(th, om, kk, inv, dt=DT, steps=steps, integrator=integrator,
                                         periodic=periodic, noise=nz, noise_scale=NOISE_SCALE, interpret=False)

    text = lower_for_gpu(run, theta, omega, k, _inv_degree(side, periodic), xi).as_text()
    assert "triton" in text.lower() and len(modules) == 1
    ttir = modules[0][0]
    assert ttir.count("gpu.barrier") == 2 * KL.STAGES[integrator]  # two per right-hand side in the step loop
    assert "scf.for" in ttir and "tt.store" in ttir


def test_vmapped_simulator_path_lowers_to_triton(monkeypatch):
    """The simulator's call (vmap over trials of the fused run, field.kuramoto.impl="pallas") lowers too, as one launch per step
    block whose grid is (trial, tile row, tile column): vmap folds into the kernel's trial axis."""
    modules = _triton_modules(monkeypatch)
    monkeypatch.setattr(KL, "default_interpret", lambda: False)
    side, batch = 20, 3
    coupling = D.LatticeCoupling(jnp.asarray(_inv_degree(side, True).reshape(-1)), side, True)
    theta, omega, k, _ = _inputs(side, batch=batch)
    keys = jax.random.split(jax.random.PRNGKey(0), batch)
    run = jax.vmap(lambda t, o, c, key: KL.fused_kuramoto_run(t, o, c, coupling, dt=DT, steps=50, record_every=10,
                                                              noise_std=0.1, noise_key=key)[0])
    lower_for_gpu(run, theta.reshape(batch, -1), omega.reshape(batch, -1), k, keys)
    # side 20, 5 Euler steps per launch (record_every 10): halo 5, one 22 x 22 tile in a 32 x 32 window
    assert [grid for _, grid in modules] == [(batch, 1, 1)]


def test_bad_arguments_raise_one_sentence():
    theta, omega, k, _ = _inputs(8, batch=1)
    inv = _inv_degree(8, True)
    with pytest.raises(ValueError, match="twice the halo"):
        KL.lattice_kuramoto_steps(theta, omega, k, inv, dt=DT, steps=2, integrator="rk4", window=16)
    with pytest.raises(ValueError, match="float32"):
        KL.lattice_kuramoto_steps(theta.astype(np.float16), omega, k, inv, dt=DT, steps=1, window=16)
    with pytest.raises(ValueError, match="square lattice"):
        KL.fused_kuramoto_run(theta.reshape(-1), omega.reshape(-1), 1.0, D.MeanFieldCoupling(64), dt=DT, steps=4,
                              record_every=2)


def test_launch_sizes_and_windows():
    assert [KL.steps_per_launch(r, "euler") for r in (1, 7, 10, 40, 50)] == [1, 7, 5, 8, 5]
    assert KL.steps_per_launch(50, "rk4") == 2 and KL.halo_width(2, "rk4") == 8
    assert KL.default_window(1000, 8) == 64 and KL.default_window(10, 8) == 32 and KL.default_window(3, 1) == 8


def test_config_switch_and_its_errors():
    field = configs("field")
    c = field.get_config("tiny+pallas")
    assert c.field.kuramoto.impl == "pallas" and tuple(c.field.kuramoto.graphs) == ("lattice",)
    E.validate_task(c)
    assert field.get_config(None).field.kuramoto.impl == "xla"
    c.field.kuramoto.impl = "cuda"
    with pytest.raises(ConfigError, match="field.kuramoto.impl must be one of"):
        E.validate_task(c)
    c = field.get_config("tiny+pallas")
    c.field.kuramoto.graphs = ("lattice", "mean_field")
    with pytest.raises(ConfigError, match="runs lattices only"):
        E.validate_task(c)


def test_benchmark_rows_and_table(capsys):
    """The kuramoto rows of experiments.benchmarks.bench_kernels on one tiny lattice: both paths agree, the table
    prints."""
    import argparse

    from experiments.benchmarks import bench_kernels
    from experiments.benchmarks.kernels import kuramoto as bench

    bench_kernels.main(["--kernels", "kuramoto", "--per_kernel", "--kuramoto_sides", "9", "--kuramoto_batches", "2",
                        "--kuramoto_steps", "8", "--kuramoto_integrators", "euler", "--reps", "1"])
    out = capsys.readouterr().out
    assert "2 x 9² euler, L=8, window 32" in out and "interpret mode" in out
    [row] = bench.rows(argparse.Namespace(kuramoto_sides=(9,), kuramoto_batches=(1,), kuramoto_steps=8,
                                          kuramoto_integrators="euler", repeats=1))
    assert row["max_abs_diff"] < 1e-6 and row["osc_steps_per_s"] > 0 and row["kernel"] == bench.KERNEL
