"""wavejax/field/theory.py against exact results and independent computations: the self-consistent r(K) against the
Lorentzian's closed form, the Gaussian's K_c and near-threshold scaling, the uniform density's jump and its
parametric curve; the densities against the simulator's draws; the Ott–Antonsen trajectory against the logistic
solution for r²; the Sakaguchi–Kuramoto steady r and locked frequency against scipy's integration of the complex OA
equation; the bimodal Lorentzian's onset against the linearised two-pole OA equations; and the N → ∞ theory against
all-to-all simulations at N = 10,000 (the simulator of wavejax/ops/oscillators.py)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from wavejax.field import metrics as M
from wavejax.field import theory as T
from wavejax.ops import oscillators as D

# == densities ===================================================================================================

def test_densities_are_normalised_and_match_the_simulators_draws():
    """Each density integrates to 1; the names the simulator knows draw the same distribution with the same
    (mean, width) (two-sample KS against the theory's quantiles); the Lorentzian quantiles are γ tan(π(i+½)/N - π/2)."""
    for name in ("normal", "lorentzian", "uniform", "bimodal", "bimodal_lorentzian"):
        g = T.density(name, 0.3, 0.7, separation=2.0 if name.startswith("bimodal") else 0.0)
        pts = [0.3 - 1.3, 0.3 - 0.7, 0.3, 0.3 + 0.7, 0.3 + 1.3]
        total = integrate.quad(g, -np.inf, np.inf, epsabs=1e-12, limit=400)[0] if name != "uniform" else \
            integrate.quad(g, -2, 2, points=pts)[0]
        assert total == pytest.approx(1.0, abs=1e-7), name
    for name in ("normal", "gaussian", "lorentzian", "uniform", "bimodal", "bimodal_lorentzian"):
        sep = 2.0 if name.startswith("bimodal") else 0.0
        draws = np.asarray(D.natural_frequencies(jax.random.PRNGKey(1), 4000, name, 0.3, 0.7, separation=sep),
                           np.float64)
        assert stats.ks_2samp(draws, T.density(name, 0.3, 0.7, sep).quantiles(4000)).pvalue > 0.01, name
    n, gamma = 1000, 0.4
    assert np.allclose(T.density("lorentzian", 0, gamma).quantiles(n),
                       gamma * np.tan(math.pi * (np.arange(n) + 0.5) / n - math.pi / 2))
    assert set(D.OMEGA_DISTRIBUTIONS) == set(T.DENSITIES)
    with pytest.raises(ValueError, match="unknown frequency density"):
        T.density("gamma")


def test_critical_couplings():
    """K_c = 2/(π g(0)): normal 2σ√(2π)/π, Lorentzian 2γ, uniform 4w/π, identical oscillators 0; g''(0) of the
    Gaussian -1/(σ³√(2π)); which two-peak densities are unimodal."""
    assert T.kc("normal", 0.5) == pytest.approx(2 * 0.5 * math.sqrt(2 * math.pi) / math.pi, rel=1e-14)
    assert T.kc("gaussian", 0.5, mean=3.0) == T.kc("normal", 0.5)
    assert T.kc("lorentzian", 0.3) == pytest.approx(0.6, rel=1e-14)
    assert T.kc("uniform", 1.5) == pytest.approx(6 / math.pi, rel=1e-14)
    assert T.kc("constant") == 0.0 and T.self_consistent_r(0.1, T.density("constant")) == 1.0
    assert T.density("normal", 0, 0.5).g2 == pytest.approx(-1 / (0.5**3 * math.sqrt(2 * math.pi)), rel=1e-7)
    assert T.density("lorentzian", 0, 0.5).g2 == pytest.approx(-2 / (math.pi * 0.5**3), rel=1e-7)
    assert T.density("bimodal", 0, 0.5, separation=0.99).unimodal
    assert not T.density("bimodal", 0, 0.5, separation=1.01).unimodal
    assert T.density("bimodal", 0, 0.5, separation=1.01).g2 > 0 > T.density("bimodal", 0, 0.5, separation=0.99).g2


# == the self-consistent r(K) ====================================================================================

def test_lorentzian_self_consistency_is_the_closed_form():
    gamma = 0.5
    ks = np.array([0.2, 0.9, 0.999, 1.001, 1.2, 1.5, 2.0, 4.0, 10.0, 50.0])
    r = T.self_consistent_r(ks, T.density("lorentzian", 0.7, gamma))
    exact = np.sqrt(np.maximum(1 - 2 * gamma / ks, 0))
    np.testing.assert_allclose(r, exact, atol=1e-8, rtol=0)
    np.testing.assert_allclose(T.oa_steady_r(ks, gamma), exact, atol=1e-15)


def test_gaussian_threshold_and_small_r_scaling():
    """r = 0 just below K_c = 2σ√(2π)/π, > 0 just above, and r → sqrt(16 (K - K_c) / (π K_c⁴ (-g''(0)))) with the
    relative error shrinking like K - K_c."""
    sigma = 0.5
    g = T.density("normal", 0.0, sigma)
    k_c = 2 * sigma * math.sqrt(2 * math.pi) / math.pi
    assert T.self_consistent_r(k_c * (1 - 1e-6), g) == 0.0
    assert T.self_consistent_r(k_c * (1 + 1e-6), g) > 0.0
    small = 16 / (math.pi * k_c**4 / (sigma**3 * math.sqrt(2 * math.pi)))
    errs = []
    for eps in (1e-2, 1e-3, 1e-4):
        k = k_c * (1 + eps)
        r = T.self_consistent_r(k, g)
        assert T.threshold_r(k, g) == pytest.approx(math.sqrt(small * (k - k_c)), rel=1e-6)
        errs.append(abs(r / T.threshold_r(k, g) - 1))
    assert errs[2] < 2e-4 and errs[0] / errs[2] > 50  # O(K - K_c) corrections
    assert np.all(np.diff(T.self_consistent_r(np.linspace(1.01, 4, 12) * k_c, g)) > 0)


def test_uniform_jumps_to_pi_over_4_and_follows_its_parametric_curve():
    """Uniform on [-w, w]: r jumps at K_c = 4w/π from 0 to π/4; above it every oscillator is locked and, with
    sin θ0 = w/(K r), K = 2w / (θ0 + sin θ0 cos θ0), r = w / (K sin θ0) exactly."""
    w = 1.5
    g = T.density("uniform", -0.2, w)
    k_c = 4 * w / math.pi
    below, above = T.self_consistent_r([k_c * (1 - 1e-9), k_c * (1 + 1e-9)], g)
    assert below == 0.0 and above == pytest.approx(math.pi / 4, abs=1e-5)
    theta0 = np.array([0.2, 0.6, 1.0, 1.4, 1.55])
    k = 2 * w / (theta0 + np.sin(theta0) * np.cos(theta0))
    np.testing.assert_allclose(T.self_consistent_r(k, g), w / (k * np.sin(theta0)), atol=1e-9)


def test_two_peak_densities():
    """A two-peak density with its peaks merged is the single one; the bimodal branch found is a root of the
    self-consistency equation and exists below 2/(π g(0)) (the subcritical, first-order case); the bimodal
    Lorentzian's onset is where the linearised two-pole OA equations first get an eigenvalue with Re λ > 0."""
    ks = np.array([1.2, 2.0])
    np.testing.assert_allclose(T.self_consistent_r(ks, T.density("bimodal", 0, 0.5, separation=0.0)),
                               T.self_consistent_r(ks, T.density("normal", 0, 0.5)), atol=1e-12)
    g = T.density("bimodal", 0, 0.5, separation=2.0)
    k = 0.6 * T.kc("bimodal", 0.5, separation=2.0)
    r = T.self_consistent_r(k, g)
    assert r > 0.5 and T.locked_integral(k, r, g) == pytest.approx(1, abs=1e-10)

    def growth(k, w0, d):
        a = np.array([[1j * w0 - d + k / 4, k / 4], [k / 4, -1j * w0 - d + k / 4]])
        return np.linalg.eigvals(a).real.max()

    for sep, d, kind in ((1.0, 0.8, "stationary"), (3.0, 0.5, "hopf")):
        k_on, got = T.bimodal_lorentzian_onset(sep, d)
        assert got == kind and growth(k_on * (1 - 1e-6), sep / 2, d) < 0 < growth(k_on * (1 + 1e-6), sep / 2, d)
        if kind == "stationary":
            assert k_on == pytest.approx(T.kc("bimodal_lorentzian", d, separation=sep), rel=1e-12)
        else:
            assert k_on < T.kc("bimodal_lorentzian", d, separation=sep)


# == Ott–Antonsen ================================================================================================

def test_oa_trajectory_is_the_logistic_solution_for_r_squared():
    """α = 0: d(r²)/dt = 2 r² (a - b r²), a = K/2 - γ, b = K/2, solved by r² = (a/b) / (1 + (a/(b r0²) - 1) e^{-2at});
    RK4 (dt = 0.01) follows it to 1e-9 above and below K_c, converging to oa_steady_r, and ψ advances at ω0."""
    gamma, dt, steps = 0.5, 0.01, 4000
    ks = np.array([0.6, 1.5, 2.0, 4.0])
    z = T.oa_trajectory(0.3, ks, gamma, dt, steps, omega0=0.7, psi0=0.1)
    t = np.arange(steps + 1)[:, None] * dt
    a, b = ks / 2 - gamma, ks / 2
    exact = (a / b) / (1 + (a / (b * 0.09) - 1) * np.exp(-2 * a * t))
    np.testing.assert_allclose(np.abs(z) ** 2, exact, atol=1e-9)
    np.testing.assert_allclose(np.abs(z[-1]), T.oa_steady_r(ks, gamma), atol=1e-4)  # K = 0.6: r ~ 0.3 e^{-0.2 t}
    np.testing.assert_allclose(np.angle(z[-1] * np.exp(-1j * (0.1 + 0.7 * t[-1]))), 0, atol=1e-9)


def _oa_complex(k, gamma, omega0, alpha, r0, t_end):
    """The complex OA equation, written out here, integrated by scipy's DOP853 (rtol 1e-11)."""

    def rhs(_, y):
        z = y[0] + 1j * y[1]
        dz = (1j * omega0 - gamma) * z + 0.5 * k * (np.exp(-1j * alpha) * z - np.exp(1j * alpha) * np.conj(z) * z**2)
        return [dz.real, dz.imag]

    t = np.linspace(0, t_end, 2001)
    sol = integrate.solve_ivp(rhs, (0, t_end), [r0, 0.0], method="DOP853", t_eval=t, rtol=1e-11, atol=1e-13)
    return t, sol.y[0] + 1j * sol.y[1]


@pytest.mark.parametrize("k,gamma,omega0,alpha", [(2.0, 0.5, 0.3, 0.6), (3.0, 0.4, -1.0, -1.0), (1.5, 0.0, 0.2, 0.9),
                                                  (2.5, 0.5, 0.0, 0.0)])
def test_sakaguchi_steady_state_against_the_complex_oa_equation(k, gamma, omega0, alpha):
    """Steady r = sqrt(1 - 2γ/(K cos α)) and Ω = ω0 - K sin α + γ tan α (ω0 - K sin α for identical oscillators)
    against the late-time |z| and unwrapped arg-z slope of the integrated complex equation; oa_trajectory agrees."""
    t, z = _oa_complex(k, gamma, omega0, alpha, 0.2, 80.0)
    late = t > 60
    slope = np.polyfit(t[late], np.unwrap(np.angle(z[late])), 1)[0]
    assert np.abs(z[late]) == pytest.approx(T.oa_steady_r(k, gamma, alpha), abs=1e-9)
    assert slope == pytest.approx(T.locked_frequency(k, gamma, alpha, omega0), abs=1e-8)
    assert T.locked_frequency(k, gamma, alpha, omega0) == pytest.approx(
        omega0 - k * math.sin(alpha) + gamma * math.tan(alpha), abs=1e-13)
    ours = T.oa_trajectory(0.2, k, gamma, 0.01, 2000, omega0=omega0, alpha=alpha)
    np.testing.assert_allclose(ours[::4], z[:501], atol=1e-8)  # t = 0, 0.04, .., 20


def test_below_the_lagged_threshold_there_is_no_locked_state():
    gamma, alpha = 0.5, 0.8
    k_c = T.oa_critical_coupling(gamma, alpha)
    assert k_c == pytest.approx(2 * gamma / math.cos(alpha))
    assert T.oa_steady_r(0.99 * k_c, gamma, alpha) == 0.0 and math.isnan(T.locked_frequency(0.99 * k_c, gamma, alpha))
    t, z = _oa_complex(0.5 * k_c, gamma, 0.0, alpha, 0.5, 80.0)
    assert abs(z[-1]) < 1e-6 and T.oa_steady_r(1.01 * k_c, gamma, alpha) > 0
    assert T.oa_critical_coupling(gamma, 2.0) == math.inf and math.isnan(T.locked_frequency(5.0, gamma, 2.0))


# == theory against simulation ===================================================================================

@pytest.fixture(scope="module")
def mean_field_r():
    """R(K) time-averaged over the second half of an all-to-all RK4 run (float32, dt = 0.05, 1200 steps, T = 60) of
    the simulator, N = 10,000, with deterministic quantile frequencies (no sampling noise in ω)."""
    n = 10_000

    @jax.jit
    def run(theta0, omega, k):
        _, _, r = D.kuramoto_run(theta0, omega, k, D.MeanFieldCoupling(n), dt=0.05, steps=1200, record_every=10,
                                 integrator="rk4", observe=lambda a, x, t, m: (a, M.order_parameter(x)))
        return r[r.shape[0] // 2:].mean()

    def r_of(g, k, start="sync"):
        omega = jnp.asarray(g.quantiles(n), jnp.float32)
        theta0 = (jnp.zeros(n, jnp.float32) if start == "sync"
                  else jnp.asarray(np.random.default_rng(0).uniform(-np.pi, np.pi, n), jnp.float32))
        return float(run(theta0, omega, jnp.float32(k)))

    return r_of


def test_lorentzian_theory_matches_an_all_to_all_simulation(mean_field_r):
    """|R_sim - R_theory| < 0.003 (measured <= 3.4e-4) at K = 1.5, 2, 4 K_c (start in phase); R = O(1/√N) at
    K = K_c/2 (uniform start; measured 0.008)."""
    gamma = 0.5
    g = T.density("lorentzian", 0.0, gamma)
    for factor in (1.5, 2.0, 4.0):
        k = factor * T.kc("lorentzian", gamma)
        assert mean_field_r(g, k) == pytest.approx(T.self_consistent_r(k, g), abs=0.003), factor
    assert mean_field_r(g, 0.5 * T.kc("lorentzian", gamma), start="uniform") < 3 / math.sqrt(10_000)


def test_gaussian_theory_matches_an_all_to_all_simulation(mean_field_r):
    """The Gaussian has no closed form: the quadrature r(K) against the simulator at K = 1.5, 2.5 K_c."""
    g = T.density("normal", 0.2, 0.5)
    for factor in (1.5, 2.5):
        k = factor * T.kc("normal", 0.5)
        assert mean_field_r(g, k) == pytest.approx(T.self_consistent_r(k, g), abs=0.003), factor


def test_sakaguchi_theory_matches_a_lagged_simulation():
    """Lorentzian ω (quantiles, N = 10,000, centre ω0 = 0.3, γ = 0.5), phase lag α = 0.6, K = 2 K_c(α), simulated
    by wavejax.field.simulate (all-to-all, RK4, float64): R and the collective frequency Ω (slope of the unwrapped
    arg z over the second half) against oa_steady_r and locked_frequency."""
    from wavejax.field import simulate as S

    n, gamma, omega0, alpha, dt, steps = 10_000, 0.5, 0.3, 0.6, 0.05, 1200
    k = 2 * T.oa_critical_coupling(gamma, alpha)
    omega = T.density("lorentzian", omega0, gamma).quantiles(n)
    with jax.enable_x64(True):
        traj = S.simulate(S.network(None, n=n), jnp.zeros(n), jnp.asarray(omega), k, dt=dt, steps=steps,
                          phase_lag=alpha)
        t, z = np.asarray(traj.times), np.asarray(jnp.exp(1j * traj.theta).mean(-1))
    late = t > t[-1] / 2
    assert np.abs(z[late]).mean() == pytest.approx(T.oa_steady_r(k, gamma, alpha), abs=0.003)
    slope = np.polyfit(t[late], np.unwrap(np.angle(z[late])), 1)[0]
    assert slope == pytest.approx(T.locked_frequency(k, gamma, alpha, omega0), abs=0.003)
