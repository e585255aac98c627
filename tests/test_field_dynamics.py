"""wavejax/ops/oscillators.py: scanned dynamics against plain step-by-step loops (the mode model in float32, Kuramoto
in float64, Euler and RK4), the block driver, the original's initial patterns, the coupling forms against the
pairwise reference, K = 0 advancing each phase by ω t exactly, noise per step, mean-field theory, and float64
check_grads through a Kuramoto scan (with a small gradient fit of the coupling)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from wavejax.field import graphs as G
from wavejax.field import metrics as M
from wavejax.field import reference as R
from wavejax.ops import oscillators as D


def _rng(seed):
    return np.random.default_rng(seed)


# == the mode model ==============================================================================================

def test_mode_scan_equals_step_by_step_loops():
    """The scanned trajectory equals a Python loop over mode_step with the same per-step draws, and the numpy
    reference's loop (the original's order of operations) in float32."""
    k, steps = 16, 60
    key = jax.random.PRNGKey(3)
    lam = jnp.asarray(np.linspace(0, 3, k), jnp.float32)
    a0 = jnp.asarray(_rng(0).standard_normal(k) * 3, jnp.float32)
    traj = np.asarray(jax.jit(D.mode_trajectory, static_argnums=3)(a0, D.mode_decay(lam), key, steps))
    noise = np.asarray(D.mode_noise(key, steps, k))
    step = jax.jit(D.mode_step)
    a, loop = a0, [np.asarray(a0)]
    for t in range(1, steps):
        a = step(a, noise[t - 1], D.mode_decay(lam))
        loop.append(np.asarray(a))
    np.testing.assert_allclose(traj, np.stack(loop), rtol=1e-6, atol=1e-6)
    ref = np.zeros((steps, k), np.float32)
    ref[0] = np.asarray(a0)
    decay = np.exp(-np.asarray(lam) * np.float32(0.05))
    for t in range(1, steps):
        ref[t] = ref[t - 1] * decay - np.float32(0.01) * ref[t - 1] ** 3 + noise[t - 1] * np.float32(0.02)
    np.testing.assert_allclose(traj, ref, rtol=1e-5, atol=1e-6)


def test_scan_blocks_equals_a_plain_loop_including_a_partial_block():
    step = lambda s, t: s * 0.5 + t  # noqa: E731
    seen = []

    def observe(acc, x, t_first, n_valid):
        return acc + n_valid, (x, t_first, n_valid)

    state, acc, (recs, firsts, valid) = D.scan_blocks(step, jnp.float32(1.0), jnp.int32(0), observe, steps=10,
                                                      block=4, keep_states=True)
    s, states = 1.0, []
    for t in range(1, 11):
        s = s * 0.5 + t
        states.append(s)
    assert float(state) == pytest.approx(states[-1]) and int(acc) == 10
    np.testing.assert_array_equal(np.asarray(firsts), [1, 5, 9])
    np.testing.assert_array_equal(np.asarray(valid), [4, 4, 2])
    np.testing.assert_allclose(np.asarray(recs).ravel()[:10], states, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(recs)[2, 2:], states[-1], rtol=1e-6)  # held after the last step
    _, _, last = D.scan_blocks(step, jnp.float32(1.0), None, lambda a, x, t, n: (a, x), steps=10, block=4)
    np.testing.assert_allclose(np.asarray(last), [states[3], states[7], states[9]], rtol=1e-6)
    del seen


def _jax_draws(key, n):
    k_dir, k_noise = jax.random.split(key)
    return np.asarray(jax.random.normal(k_dir, (2,))), np.asarray(jax.random.normal(k_noise, (n,)))


_pattern = jax.jit(D.initial_pattern)


@pytest.mark.parametrize("ic_type", range(4))
def test_initial_patterns_match_the_numpy_transcription(ic_type):
    graph = G.square_lattice(7)
    key = jax.random.PRNGKey(11)
    x = np.asarray(_pattern(ic_type, key, graph.positions.astype(np.float32)))
    direction, noise = _jax_draws(key, graph.n)
    ref = R.initial_pattern(ic_type, graph.positions, direction=direction, noise=noise)
    np.testing.assert_allclose(x, ref, rtol=1e-4, atol=1e-5)
    assert abs(x.mean()) < 1e-5 and x.std(ddof=1) == pytest.approx(1.0, rel=1e-5)


def test_masked_pattern_on_padded_nodes_equals_unpadded():
    graph = G.square_lattice(6)
    pos = graph.positions.astype(np.float32)
    padded = np.concatenate([pos, np.full((5, 2), 99.0, np.float32)])
    mask = np.arange(41) < 36
    pattern = jax.jit(D.initial_pattern)
    for ic_type in (0, 1, 2):  # the noise pattern draws 41 numbers instead of 36, by design
        a = np.asarray(pattern(ic_type, jax.random.PRNGKey(0), pos))
        b = np.asarray(pattern(ic_type, jax.random.PRNGKey(0), padded, mask))
        np.testing.assert_allclose(b[:36], a, rtol=1e-4, atol=1e-5)
        assert (b[36:] == 0).all()


# == Kuramoto ====================================================================================================

def test_sincos_float32_matches_float64_sin_cos():
    x = np.concatenate([_rng(20).uniform(-1000, 1000, 20000), np.linspace(-7, 7, 4001),
                        np.arange(-16, 17) * np.pi / 4]).astype(np.float32)
    s, c = jax.jit(D.sincos)(jnp.asarray(x))
    x64 = x.astype(np.float64)
    assert np.abs(np.asarray(s) - np.sin(x64)).max() < 1.5e-7
    assert np.abs(np.asarray(c) - np.cos(x64)).max() < 1.5e-7
    with jax.enable_x64(True):  # other dtypes use jnp.sin / jnp.cos
        s64, c64 = D.sincos(jnp.asarray(x64))
        np.testing.assert_array_equal(np.asarray(s64), np.sin(x64))


def test_float32_rhs_with_polynomial_sincos_matches_float64_reference():
    graph = G.square_lattice(6)
    theta = _rng(21).uniform(-50, 50, (2, graph.n))
    omega = _rng(22).standard_normal(graph.n)
    rhs32 = jax.jit(lambda th, om: D.kuramoto_rhs(th, om, 1.3, G.graph_coupling(graph), t=jnp.int32(0)))(
        jnp.asarray(theta, jnp.float32), jnp.asarray(omega, jnp.float32))
    with jax.enable_x64(True):
        ref = D.kuramoto_rhs_reference(jnp.asarray(theta), jnp.asarray(omega), 1.3,
                                       jnp.asarray(G.adjacency_dense(graph, np.float64)))
    np.testing.assert_allclose(np.asarray(rhs32), np.asarray(ref), atol=2e-5)


def _couplings(graph):
    """(the full one-tier neighbour table, the dense adjacency) in float64."""
    table = G.graph_coupling(graph, np.float64, stencil=False, width=int(graph.degrees().max()))
    assert table.hub_rows.shape[0] == 0
    return table, G.adjacency_dense(graph, np.float64)


@pytest.mark.parametrize("graph", [G.square_lattice(5), G.square_lattice(4, periodic=False),
                                   G.barabasi_albert(30, 2, seed=0)], ids=["periodic", "open", "scale_free"])
def test_coupling_forms_equal_the_pairwise_reference(graph):
    with jax.enable_x64(True):
        theta = jnp.asarray(_rng(1).uniform(-np.pi, np.pi, (3, graph.n)))
        omega = jnp.asarray(_rng(2).standard_normal(graph.n))
        table, adj = _couplings(graph)
        rhs = jax.jit(D.kuramoto_rhs)
        ref = jax.jit(D.kuramoto_rhs_reference)(theta, omega, 0.7, jnp.asarray(adj))
        np.testing.assert_allclose(rhs(theta, omega, 0.7, table), ref, atol=1e-12)
        tiers = G.graph_coupling(graph, np.float64, stencil=False, width=2, pad_hubs=graph.n + 3, pad_hub_width=40)
        assert tiers.neighbours.shape == (graph.n, 2) and tiers.hub_neighbours.shape == (graph.n + 3, 40)
        np.testing.assert_allclose(rhs(theta, omega, 0.7, tiers), ref, atol=1e-12)
        if graph.is_lattice:
            stencil = G.graph_coupling(graph, np.float64)
            assert isinstance(stencil, D.LatticeCoupling)
            np.testing.assert_allclose(rhs(theta, omega, 0.7, stencil), ref, atol=1e-12)
        else:  # hubs: a narrow first tier and a second for the rows that do not fit
            auto = G.graph_coupling(graph)
            assert auto.neighbours.shape[1] == D.table_width(graph.degrees()) < graph.degrees().max()
            assert 0 < auto.hub_rows.shape[0] < graph.n


def test_mean_field_equals_the_complete_graph():
    n = 12
    with jax.enable_x64(True):
        theta = jnp.asarray(_rng(3).uniform(-np.pi, np.pi, n))
        omega = jnp.asarray(_rng(4).standard_normal(n))
        complete = jnp.ones((n, n)) - jnp.eye(n)
        # all-to-all is (K / N) Σ_j over all j (the j = i term is 0), the complete graph (K / (N - 1)) Σ_{j≠i}
        ref = D.kuramoto_rhs_reference(theta, omega, 0.9 * (n - 1) / n, complete)
        np.testing.assert_allclose(D.kuramoto_rhs(theta, omega, 0.9, D.MeanFieldCoupling(n)), ref, atol=1e-12)


@pytest.mark.parametrize("integrator", D.INTEGRATORS)
def test_kuramoto_scan_equals_the_numpy_step_loop_float64(integrator):
    graph = G.barabasi_albert(24, 2, seed=4)
    with jax.enable_x64(True):
        theta0 = _rng(5).uniform(-np.pi, np.pi, (2, graph.n))
        omega = _rng(6).standard_normal(graph.n) * 0.5
        table, _ = _couplings(graph)
        run = jax.jit(jax.vmap(lambda th, k: D.kuramoto_run(th, omega, k, table, dt=0.05, steps=37, record_every=10,
                                                            integrator=integrator,
                                                            observe=lambda a, x, t, n: (a, M.order_parameter(x)))))
        theta, _, r = run(jnp.asarray(theta0), jnp.asarray([0.5, 1.5]))
        nbr, w = G.neighbour_table(graph, np.float64)
        ref, ref_r = R.kuramoto_numpy(theta0, omega, np.array([0.5, 1.5]), nbr, w, 1 / graph.degrees(), dt=0.05,
                                      steps=37, integrator=integrator, record_every=10)
        np.testing.assert_allclose(np.asarray(theta), ref, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(np.asarray(r)[:, :3], ref_r.T, rtol=1e-10)  # records at steps 10, 20, 30
        assert r.shape == (2, 4)  # ... and at the end (step 37)


@pytest.mark.parametrize("integrator", D.INTEGRATORS)
def test_zero_coupling_advances_each_phase_by_omega_t_exactly(integrator):
    """With K = 0 and dyadic ω and dt, every step adds dt·ω exactly, so θ_T = θ_0 + T dt ω bit for bit."""
    graph = G.square_lattice(4)
    omega = np.asarray(_rng(7).integers(-16, 17, graph.n) / 8, np.float32)
    theta0 = np.asarray(_rng(8).integers(-24, 25, graph.n) / 8, np.float32)
    run = jax.jit(lambda th: D.kuramoto_run(th, omega, 0.0, G.graph_coupling(graph), dt=1 / 16, steps=64,
                                            record_every=16, integrator=integrator)[0])
    np.testing.assert_array_equal(np.asarray(run(theta0)), theta0 + 64 * (1 / 16) * omega)


def test_noise_is_per_step_and_independent_of_batching():
    graph = G.square_lattice(4)
    coupling = G.graph_coupling(graph)
    omega = np.zeros(16, np.float32)

    def one(theta0, key):
        return D.kuramoto_run(theta0, omega, 1.0, coupling, dt=0.1, steps=20, record_every=5, noise_std=0.3,
                              noise_key=key)[0]

    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(3))
    theta0 = np.asarray(_rng(9).uniform(-1, 1, (3, 16)), np.float32)
    batched = np.asarray(jax.jit(jax.vmap(one))(theta0, keys))
    single = np.asarray(jax.jit(one)(theta0[1], keys[1]))
    np.testing.assert_allclose(batched[1], single, rtol=1e-6, atol=1e-6)
    quiet = np.asarray(jax.jit(lambda th: D.kuramoto_run(th, omega, 1.0, coupling, dt=0.1, steps=20,
                                                         record_every=5)[0])(theta0[1]))
    assert np.abs(single - quiet).max() > 0.1  # the noise does act
    with pytest.raises(ValueError, match="noise_key"):
        D.kuramoto_run(theta0[0], omega, 1.0, coupling, dt=0.1, steps=2, record_every=1, noise_std=0.1)


def test_standard_normal_draws():
    """Both threefry output words become draws: the values are N(0, 1) (Kolmogorov–Smirnov), the two halves of one
    draw and consecutive steps are uncorrelated, and an odd count works."""
    from scipy import stats

    draws = np.asarray(D.mode_noise(jax.random.PRNGKey(5), 401, 64))  # 400 steps of 64 draws
    assert stats.kstest(draws.ravel(), "norm").pvalue > 0.01
    assert abs(np.corrcoef(draws[:, :32].ravel(), draws[:, 32:].ravel())[0, 1]) < 0.02
    assert abs(np.corrcoef(draws[:-1].ravel(), draws[1:].ravel())[0, 1]) < 0.02
    assert D.standard_normal(jax.random.PRNGKey(0), (3, 5)).shape == (3, 5)


def test_natural_frequency_distributions():
    key = jax.random.PRNGKey(0)
    n = 4000
    normal = np.asarray(D.natural_frequencies(key, n, "normal", 1.0, 0.5))
    assert normal.mean() == pytest.approx(1.0, abs=0.03) and normal.std() == pytest.approx(0.5, rel=0.05)
    uni = np.asarray(D.natural_frequencies(key, n, "uniform", 0.0, 2.0))
    assert uni.min() >= -2 and uni.max() <= 2 and uni.std() == pytest.approx(2 / math.sqrt(3), rel=0.05)
    lor = np.asarray(D.natural_frequencies(key, n, "lorentzian", 0.0, 0.3))
    assert np.median(np.abs(lor)) == pytest.approx(0.3, rel=0.1)  # the half-width is the median |ω|
    assert (np.asarray(D.natural_frequencies(key, 5, "constant", 0.7, 9.0)) == np.float32(0.7)).all()
    with pytest.raises(ValueError, match="unknown frequency distribution"):
        D.natural_frequencies(key, 5, "gamma")


def test_mean_field_lorentzian_locks_to_ott_antonsen():
    """All-to-all Kuramoto with Lorentzian ω of half-width γ: R → sqrt(1 - 2γ/K) above K_c = 2γ, ~0 below."""
    n, gamma = 2000, 0.5
    omega = jnp.asarray(R.lorentzian_quantiles(n, gamma), jnp.float32)
    theta0 = jnp.asarray(_rng(10).uniform(-np.pi, np.pi, n), jnp.float32)

    @jax.jit
    def r_late(k):
        _, _, r = D.kuramoto_run(theta0, omega, k, D.MeanFieldCoupling(n), dt=0.05, steps=1200, record_every=40,
                                 integrator="rk4", observe=lambda a, x, t, m: (a, M.order_parameter(x)))
        return r[-10:].mean()

    assert float(r_late(2.0)) == pytest.approx(math.sqrt(1 - 2 * gamma / 2.0), abs=0.03)
    assert float(r_late(0.5)) < 0.1


# == gradients ===================================================================================================

def _short_kuramoto(graph):
    coupling = G.graph_coupling(graph, np.float64, stencil=False)

    def final_readout(k, omega, theta0):
        theta, _, _ = D.kuramoto_run(theta0, omega, k, coupling, dt=0.1, steps=6, record_every=3, integrator="rk4")
        return jnp.sum(jnp.cos(theta) * jnp.linspace(0.5, 1.5, theta.shape[0]))

    return final_readout


def test_check_grads_through_a_short_kuramoto_scan_float64():
    graph = G.square_lattice(3)
    with jax.enable_x64(True):
        f = jax.jit(_short_kuramoto(graph))
        args = (jnp.float64(0.8), jnp.asarray(_rng(11).standard_normal(9) * 0.3),
                jnp.asarray(_rng(12).uniform(-np.pi, np.pi, 9)))
        check_grads(f, args, order=1, modes=("fwd", "rev"))


def test_coupling_is_recovered_by_gradient_descent():
    """Fit K to the final phases a K* = 1.2 run produced, from K = 0.4, by plain gradient descent on the squared
    distance of e^{iθ}: the scan is differentiable enough to fit couplings."""
    graph = G.square_lattice(4)
    coupling = G.graph_coupling(graph, np.float64)
    with jax.enable_x64(True):
        omega = jnp.asarray(_rng(13).standard_normal(16) * 0.2)
        theta0 = jnp.asarray(_rng(14).uniform(-1.5, 1.5, 16))

        def final(k):
            return D.kuramoto_run(theta0, omega, k, coupling, dt=0.1, steps=30, record_every=30)[0]

        target = final(1.2)
        def mismatch(k):
            return jnp.sum(jnp.abs(jnp.exp(1j * final(k)) - jnp.exp(1j * target)) ** 2)

        loss = jax.jit(jax.value_and_grad(mismatch))
        k = jnp.float64(0.4)
        for _ in range(60):
            value, grad = loss(k)
            k = k - 0.5 * grad / (1 + jnp.abs(grad))
        assert float(k) == pytest.approx(1.2, abs=0.02) and float(value) < 1e-4
