"""The simulator's features, each against an exact result or an independent reference (wavejax/field/simulate.py,
wavejax/ops/oscillators.py): weighted and directed graphs against the dense pairwise form in float64, isolated nodes,
the phase lag's locked frequency, second-order hysteresis, time-varying coupling, adaptive integration against
scipy's DOP853, SDE noise statistics, the frequency distributions and the float64 path."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.integrate import solve_ivp

from wavejax.errors import ConfigError
from wavejax.field import graphs as G
from wavejax.field import simulate as S
from wavejax.field import theory as T
from wavejax.ops import oscillators as D


def random_digraph(n, p, seed, isolated=()):
    """A directed, weighted adjacency A[i, j] (edge j -> i), no self-loops; rows in `isolated` have no in-edges."""
    rng = np.random.default_rng(seed)
    a = (rng.random((n, n)) < p) * rng.uniform(0.2, 2.0, (n, n))
    np.fill_diagonal(a, 0.0)
    a[list(isolated), :] = 0.0
    return a


@pytest.mark.parametrize("normalize", S.NORMALIZATIONS)
@pytest.mark.parametrize("phase_lag", [0.0, 0.7])
def test_weighted_directed_rhs_equals_the_dense_float64_reference(normalize, phase_lag):
    a = random_digraph(60, 0.12, 0, isolated=(5,))
    assert not np.allclose(a, a.T)  # directed
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        theta, omega = jnp.asarray(rng.uniform(-4, 4, (3, 60))), jnp.asarray(rng.normal(size=60))
        for adjacency in (a, sp.csr_matrix(a)):
            net = S.network(adjacency, normalize=normalize, dtype=np.float64)
            got = D.kuramoto_rhs(theta, omega, 1.3, net, phase_lag=phase_lag)
            ref = D.kuramoto_rhs_reference(theta, omega, 1.3, jnp.asarray(a), phase_lag, normalize)
            np.testing.assert_allclose(got, ref, atol=1e-13)
        np.testing.assert_array_equal(got[:, 5], jnp.broadcast_to(omega[5], (3,)))  # no in-edges: runs at ω, no NaN


def test_unweighted_graph_network_equals_the_undirected_table():
    graph = G.watts_strogatz(80, 4, 0.2, seed=0)
    dense = G.adjacency_dense(graph, np.float64)
    rng = np.random.default_rng(2)
    with jax.enable_x64(True):
        theta, omega = jnp.asarray(rng.uniform(-3, 3, 80)), jnp.asarray(rng.normal(size=80))
        for normalize in S.NORMALIZATIONS:
            got = D.kuramoto_rhs(theta, omega, 0.9, S.network(graph, normalize=normalize, dtype=np.float64))
            np.testing.assert_allclose(got, D.kuramoto_rhs_reference(theta, omega, 0.9, jnp.asarray(dense), 0.0,
                                                                      normalize), atol=1e-13)


def test_phase_lag_shifts_the_locked_frequency_as_theory_says():
    """Identical oscillators, all-to-all, phase lag α: the synchronised state turns at ω0 - K sin α."""
    n, omega0, k, alpha, dt = 64, 0.3, 1.5, 0.6, 0.02
    theta0 = jnp.asarray(np.random.default_rng(3).normal(0, 0.3, n), jnp.float32)
    traj = S.simulate(S.network(None, n=n), theta0, jnp.full(n, omega0), k, dt=dt, steps=3000, record_every=100,
                      phase_lag=alpha)
    speed = float((traj.theta[-1].mean() - traj.theta[-6].mean()) / (traj.times[-1] - traj.times[-6]))
    assert float(traj.r[-1]) > 0.9999
    assert speed == pytest.approx(T.locked_frequency(k, 0.0, alpha, omega0), abs=1e-4)
    assert speed == pytest.approx(omega0 - k * math.sin(alpha), abs=1e-4)


def test_inertia_gives_hysteresis_between_forward_and_backward_sweeps():
    """Second-order Kuramoto (m = 2, γ = 1), Lorentzian frequencies: sweeping K up from incoherence locks later
    than sweeping it down from synchrony unlocks (Tanaka, Lichtenberg & Oishi 1997); first order has no such loop."""
    n = 400
    omega = jnp.asarray(T.density("lorentzian", 0.0, 0.5).quantiles(n), jnp.float32)
    theta0 = jnp.asarray(np.random.default_rng(4).uniform(-np.pi, np.pi, n), jnp.float32)
    ks = np.linspace(0.4, 4.0, 10)
    net = S.network(None, n=n)
    loops = {}
    for inertia in (2.0, None):
        up = S.sweep(net, theta0, omega, ks, dt=0.05, steps=500, inertia=inertia)
        down = S.sweep(net, jnp.zeros(n), omega, ks[::-1], dt=0.05, steps=500, inertia=inertia)[::-1]
        loops[inertia] = np.asarray(down - up)
    assert loops[2.0].max() > 0.4, loops  # the backward branch stays synchronised where the forward one is not
    assert np.abs(loops[None]).max() < 0.1, loops


def test_a_constant_schedule_is_the_number_and_a_ramp_matches_an_adaptive_reference():
    a = random_digraph(40, 0.2, 5)
    net = S.network(a)
    rng = np.random.default_rng(6)
    theta0, omega = jnp.asarray(rng.uniform(-3, 3, 40), jnp.float32), jnp.asarray(rng.normal(size=40), jnp.float32)
    flat = D.CouplingSchedule(jnp.array([0.0, 10.0]), jnp.array([1.2, 1.2]))
    same = [S.simulate(net, theta0, omega, k, dt=0.05, steps=100, record_every=10).theta for k in (1.2, flat)]
    np.testing.assert_array_equal(same[0], same[1])
    ramp = D.CouplingSchedule(jnp.array([0.0, 5.0]), jnp.array([0.0, 3.0]))
    fixed = S.simulate(net, theta0, omega, ramp, dt=0.01, steps=500, record_every=50)
    adaptive = S.simulate(net, theta0, omega, ramp, dt=0.01, steps=500, record_every=50, method="dopri8", rtol=1e-7,
                          atol=1e-7)
    np.testing.assert_allclose(fixed.theta, adaptive.theta, atol=2e-4)
    const = S.simulate(net, theta0, omega, 0.0, dt=0.01, steps=500, record_every=50)
    assert float(jnp.abs(fixed.theta - const.theta).max()) > 0.1  # the ramp did act


def _dense_rhs(a, omega, k, normalize="in_degree"):
    deg = (a != 0).sum(1) if normalize == "in_degree" else a.sum(1)
    inv = np.where(deg > 0, 1.0 / np.maximum(deg, 1e-300), 0.0)

    def f(t, th):
        return omega + k * inv * (a * np.sin(th[None, :] - th[:, None])).sum(1)

    return f


@pytest.mark.parametrize("method,rtol", [("dopri5", 1e-8), ("tsit5", 1e-8), ("dopri8", 1e-11)])
def test_adaptive_integration_meets_its_tolerance_against_dop853(method, rtol):
    """An N = 200 Erdős–Rényi graph in float64 against scipy's DOP853 at rtol = atol = 1e-12, over 10 time units:
    the global error stays within 10 rtol of the phases' scale (the tolerance is per step and relative)."""
    rng = np.random.default_rng(7)
    upper = np.triu(rng.random((200, 200)) < 0.05, 1)
    a = (upper | upper.T).astype(np.float64)
    theta0, omega = rng.uniform(-np.pi, np.pi, 200), rng.normal(0, 1, 200)
    ref = solve_ivp(_dense_rhs(a, omega, 2.0), (0, 10.0), theta0, method="DOP853", rtol=1e-12, atol=1e-12,
                    t_eval=np.linspace(1, 10, 10)).y.T
    with jax.enable_x64(True):
        traj = S.simulate(S.network(a, dtype=np.float64), jnp.asarray(theta0), jnp.asarray(omega), 2.0, dt=0.01,
                          steps=1000, record_every=100, method=method, rtol=rtol, atol=rtol)
        assert traj.theta.dtype == jnp.float64 and traj.num_steps and traj.num_steps < 1000
        err = float(np.abs(np.asarray(traj.theta) - ref).max())
        rk4 = S.simulate(S.network(a, dtype=np.float64), jnp.asarray(theta0), jnp.asarray(omega), 2.0, dt=0.01,
                         steps=1000, record_every=100, method="rk4")
        rk4_err = float(np.abs(np.asarray(rk4.theta) - ref).max())
    scale = float(np.abs(ref).max())
    assert err < 10 * rtol * scale, (err, scale)
    assert rk4_err < 1e-6, rk4_err


@pytest.mark.parametrize("method", ["rk4", "euler_maruyama", "heun"])
def test_sde_noise_has_the_diffusion_it_is_given(method):
    """K = 0, ω = 0: θ_T - θ_0 ~ N(0, σ² T) per node, independent across nodes."""
    n, sigma, dt, steps = 4000, 0.5, 0.01, 400
    traj = S.simulate(S.network(None, n=n), jnp.zeros(n), jnp.zeros(n), 0.0, dt=dt, steps=steps, record_every=steps,
                      method=method, noise_std=sigma, key=jax.random.PRNGKey(8))
    var = float(jnp.var(traj.theta[-1]))
    assert var == pytest.approx(sigma**2 * dt * steps, rel=0.1)


def test_frequency_distributions_match_their_densities():
    key = jax.random.PRNGKey(9)
    for name, sep in (("bimodal", 3.0), ("gaussian", 0.0), ("bimodal_lorentzian", 4.0)):
        omega = np.sort(np.asarray(D.natural_frequencies(key, 20000, name, 0.5, 0.4, jnp.float32, sep)))
        q = T.density(name, 0.5, 0.4, sep).quantiles(20000)  # the density's CDF, tabulated at (i + 1/2) / n
        ks_distance = np.abs(np.searchsorted(q, omega) / len(q) - (np.arange(len(omega)) + 0.5) / len(omega)).max()
        assert ks_distance < 0.02, (name, ks_distance)  # Kolmogorov–Smirnov; 1.36 / sqrt(n) = 0.0096 at 5%
    bimodal = np.asarray(D.natural_frequencies(key, 20000, "bimodal", 0.0, 0.1, jnp.float32, 2.0))
    assert abs((bimodal > 0).mean() - 0.5) < 0.02 and np.abs(np.abs(bimodal) - 1.0).max() < 0.6


def test_float64_end_to_end_and_float32_drift():
    """The same chaotic lattice run in float64 and float32: float64 keeps its dtype through the API; float32's
    phases drift from it while R(t) stays close (docs/RESULTS.md, Precision)."""
    graph = G.square_lattice(16)
    rng = np.random.default_rng(10)
    theta0, omega = rng.uniform(-np.pi, np.pi, 256), rng.normal(0, 1, 256)
    with jax.enable_x64(True):
        t64 = S.simulate(S.network(graph, dtype=np.float64), jnp.asarray(theta0), jnp.asarray(omega), 1.5, dt=0.05,
                         steps=400, record_every=40)
    t32 = S.simulate(S.network(graph), jnp.asarray(theta0, jnp.float32), jnp.asarray(omega, jnp.float32), 1.5,
                     dt=0.05, steps=400, record_every=40)
    assert t64.theta.dtype == np.float64 and t32.theta.dtype == np.float32
    assert float(np.abs(np.asarray(t64.r) - np.asarray(t32.r)).max()) < 1e-3
    assert 0 < float(np.abs(np.asarray(t64.theta) - np.asarray(t32.theta)).max()) < 1.0


def test_bad_settings_are_config_errors():
    net = S.network(None, n=4)
    z = jnp.zeros(4)
    for kwargs in ({"method": "rk5"}, {"method": "heun"}, {"method": "dopri5", "noise_std": 0.1},
                   {"noise_std": 0.1}, {"inertia": 0.0}, {"steps": 0}):
        with pytest.raises(ConfigError):
            S.simulate(net, z, z, 1.0, **{"dt": 0.1, "steps": 5, **kwargs})
    with pytest.raises(ConfigError):
        S.network(np.eye(3), normalize="by_magic")


@pytest.mark.parametrize("method", ["euler", "rk4", "tsit5", "dopri8"])
def test_a_user_written_equation_runs_through_every_integrator(method):
    """A damped, driven oscillator written by hand, y = (x, v), x'' = -x - 0.2 x' + cos(t), against its closed form
    (the transient from x(0) = v(0) = 0 plus the steady response)."""
    def field(t, y):
        return jnp.stack([y[1], -y[0] - 0.2 * y[1] + jnp.cos(t)])

    def exact(t):
        from scipy.integrate import solve_ivp

        return solve_ivp(lambda s, y: [y[1], -y[0] - 0.2 * y[1] + np.cos(s)], (0, 10), [0.0, 0.0], method="DOP853",
                         rtol=1e-12, atol=1e-12, t_eval=t).y.T

    with jax.enable_x64(True):
        dt = 1e-4 if method == "euler" else 0.01
        times, ys = S.integrate(field, jnp.zeros(2), dt=dt, steps=int(round(10 / dt)), record_every=int(round(1 / dt)),
                                method=method, rtol=1e-10, atol=1e-10)
        err = float(np.abs(np.asarray(ys) - exact(np.asarray(times))).max())
    assert err < {"euler": 2e-3, "rk4": 1e-8, "tsit5": 1e-7, "dopri8": 1e-7}[method], err  # rtol = atol = 1e-10
    noisy_t, noisy = S.integrate(lambda t, y: -y, jnp.zeros(3000), dt=0.01, steps=100, record_every=100,
                                 method="heun", noise_std=1.0, key=jax.random.PRNGKey(11))
    assert float(jnp.var(noisy[-1])) == pytest.approx((1 - math.exp(-2.0)) / 2, rel=0.1)  # Ornstein–Uhlenbeck
