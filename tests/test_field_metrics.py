"""wavejax/field/metrics.py on hand-computed cases and against direct references: the rotation angle, lag
correlations in mode space = in space = streamed (and their NaN on overflow), the has_wave / speed rule, the CV,
the five components of C(t), the order parameter, plane waves against surrogates, the phase speed and the
correlation function / length."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wavejax.field import metrics as M


def _rng(seed):
    return np.random.default_rng(seed)


# jitted once per shape: eager op-by-op dispatch would compile every small op separately
spatial_corr = jax.jit(M.lag_correlations_spatial, static_argnums=1)
modes_corr = jax.jit(M.lag_correlations_modes, static_argnums=(2, 3))
sums_init = jax.jit(M.lag_sums_init, static_argnums=2)
sums_update = jax.jit(M.lag_sums_update)
sums_corr = jax.jit(M.lag_correlations_from_sums)
wave_test = jax.jit(M.plane_wave_test, static_argnums=2)


# == rotation ====================================================================================================

def test_rotation_angle_by_hand():
    # 0°, 90°, 180°, 270°, 0°: four quarter turns; then 0° -> 270° is a -90° step after wrapping
    angles = np.deg2rad([0, 90, 180, 270, 360, 270 + 360])
    traj = np.stack([np.cos(angles), np.sin(angles), np.zeros(6)], axis=1).astype(np.float32)
    assert float(M.rotation_angle(jnp.asarray(traj))) == pytest.approx(450.0, abs=1e-3)
    # streamed over blocks of 2 after the initial state
    acc = M.rotation_init(jnp.asarray(traj[0]))
    for start in (1, 3, 5):
        acc = M.rotation_update(acc, jnp.asarray(traj[start:start + 2]))
    assert float(M.rotation_degrees(acc)) == pytest.approx(450.0, abs=1e-3)
    np.testing.assert_allclose(np.asarray(M.wrap_angle_diff(jnp.asarray([3.5, -3.5, 1.0]))),
                               [3.5 - 2 * np.pi, 2 * np.pi - 3.5, 1.0], rtol=1e-6)


# == lag correlations ============================================================================================

def _orthonormal_basis(n, k, seed, first_constant=True):
    """[n, k] orthonormal columns, the first the constant vector (as a Laplacian's mode 0) when asked."""
    m = _rng(seed).standard_normal((n, k))
    if first_constant:
        m[:, 0] = 1.0
    q, _ = np.linalg.qr(m)
    return q * np.sign(q[0, 0]) if first_constant else q


def _trajectory(t, k, seed):
    a = np.cumsum(_rng(seed).standard_normal((t, k)), axis=0) * 0.1  # slowly varying: correlations near 1
    a[:, 0] += 0.3
    return a


def _stream(traj, node_sums, n_lags, n_nodes, block):
    acc = sums_init(jnp.asarray(traj[0]), jnp.asarray(node_sums), n_lags)
    rest = traj[1:]
    for start in range(0, len(rest), block):
        chunk = rest[start:start + block]
        n_valid = len(chunk)
        if n_valid < block:  # the driver's last block: held rows after the real ones
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], block - n_valid, axis=0)])
        acc = sums_update(acc, jnp.asarray(chunk), jnp.asarray(node_sums), jnp.int32(n_valid))
    return np.asarray(sums_corr(acc, n_nodes))


@pytest.mark.parametrize("block", [5, 7, 10])  # 5 = n_lags (Gram sub-blocks), 7 (one Gram block), 10 (sub-blocks)
def test_lag_correlations_mode_space_equal_spatial_and_streamed(block):
    t, k, n, n_lags = 63, 6, 20, 5
    with jax.enable_x64(True):
        traj = _trajectory(t, k, 0)
        psi = _orthonormal_basis(n, k, 1)
        spatial = np.asarray(spatial_corr(jnp.asarray(traj @ psi.T), n_lags))
        modes = np.asarray(modes_corr(jnp.asarray(traj), jnp.asarray(psi.sum(0)), n, n_lags))
        streamed = _stream(traj, psi.sum(0), n_lags, n, block)
    np.testing.assert_allclose(modes, spatial, rtol=1e-12)
    np.testing.assert_allclose(streamed, spatial, rtol=1e-12)
    # by hand for lag 1: numpy's Pearson of the flattened field
    field = traj @ psi.T
    assert spatial[0] == pytest.approx(np.corrcoef(field[:-1].ravel(), field[1:].ravel())[0, 1], rel=1e-12)


def test_lag_correlations_do_not_depend_on_the_spatial_basis():
    """Two unrelated orthonormal bases sharing the constant mode give identical correlations: the statistic sees the
    mode amplitudes only, not where anything is in space."""
    t, k, n = 80, 5, 30
    with jax.enable_x64(True):
        traj = jnp.asarray(_trajectory(t, k, 2))
        c1 = spatial_corr(traj @ jnp.asarray(_orthonormal_basis(n, k, 3)).T, 7)
        c2 = spatial_corr(traj @ jnp.asarray(_orthonormal_basis(n, k, 4)).T, 7)
    np.testing.assert_allclose(np.asarray(c1), np.asarray(c2), rtol=1e-12)


def test_overflowed_trajectory_gives_nan_and_no_wave_like_the_original():
    t, k, n = 60, 4, 10
    traj = _trajectory(t, k, 5).astype(np.float32)
    traj[30] = np.inf  # inf, then NaN as the map continues
    traj[31:] = np.nan
    psi = _orthonormal_basis(n, k, 6).astype(np.float32)
    with np.errstate(invalid="ignore"):
        field = traj @ psi.T
    spatial = np.asarray(spatial_corr(jnp.asarray(field), 5))
    streamed = _stream(traj, psi.sum(0), 5, n, 8)
    assert np.isnan(spatial).all() and np.isnan(streamed).all()
    has_wave, half = M.wave_decision(jnp.asarray(np.full(19, np.nan, np.float32)))
    assert not bool(has_wave) and int(half) == 19


def test_wave_decision_and_speed_by_hand():
    flat = jnp.full((19,), 0.9)
    has, half = M.wave_decision(flat)
    assert bool(has) and int(half) == 19
    assert float(M.wave_speed(16.0, has, half)) == pytest.approx(16.0 / 20)
    decaying = jnp.asarray([0.9, 0.8, 0.6, 0.45, 0.4, 0.2] + [0.1] * 13)
    has, half = M.wave_decision(decaying)
    assert bool(has) and int(half) == 3  # mean of the first five is 0.63 > 0.3; corr[3] = 0.45 < 0.5
    assert float(M.wave_speed(10.0, has, half)) == pytest.approx(10.0 / 4)
    assert not bool(M.wave_decision(jnp.full((19,), 0.3))[0])  # strictly greater than 0.3
    assert not bool(M.wave_decision(jnp.full((5,), 0.9))[0])  # needs more than 5 lags
    assert float(M.wave_speed(10.0, jnp.asarray(False), 3)) == 0.0
    assert M.n_wave_lags(1000) == 19 and M.n_wave_lags(120) == 11 and M.n_wave_lags(60) == 5


def test_coefficient_of_variation_skips_nan():
    assert M.coefficient_of_variation([1.0, 2.0, 3.0, float("nan")]) == pytest.approx(0.5)
    assert math.isnan(M.coefficient_of_variation([2.0]))


# == the consciousness functional ================================================================================

def test_consciousness_components_by_hand():
    lam = jnp.asarray([0.0, 1.0, 2.0, 4.0])
    uniform = jnp.ones(4)
    c = M.consciousness_components(uniform, uniform, lam, jnp.zeros(4))
    assert float(c["H_mode"]) == pytest.approx(1.0, abs=1e-6)
    assert float(c["PR"]) == pytest.approx(1.0, abs=1e-6)
    assert float(c["R"]) == pytest.approx(1.0, abs=1e-6)
    assert float(c["S_dot"]) == pytest.approx(0.5, abs=1e-6)  # KL = 0 -> (tanh 0 + 1) / 2
    assert float(c["kappa"]) == pytest.approx(7 / 4 / 4, abs=1e-6)
    assert float(M.consciousness_functional(c)) == pytest.approx(0.2 * (1 + 1 + 1 + 0.5 + 7 / 16), abs=1e-6)
    spread = M.consciousness_components(uniform, uniform, lam, jnp.asarray([0, 0.5, 1, 1.5]) * np.pi)
    assert float(spread["R"]) == pytest.approx(0.0, abs=1e-6)
    delta = jnp.asarray([0.0, 0.0, 5.0, 0.0])
    d = M.consciousness_components(delta, uniform, lam, jnp.zeros(4))
    assert float(d["H_mode"]) == pytest.approx(0.0, abs=1e-6)
    assert float(d["PR"]) == pytest.approx(0.25, abs=1e-6)
    assert float(d["kappa"]) == pytest.approx(0.5, abs=1e-6)
    kl = math.log(1 / 0.25)  # KL(δ_2 ‖ uniform) = log 4 (the zero entries are clipped to 1e-12)
    assert float(d["S_dot"]) == pytest.approx((math.tanh(kl) + 1) / 2, abs=1e-5)


def test_consciousness_functional_matches_the_original_formulas_on_random_input():
    """The original numpy metrics.py formulas, transcribed in float64, on a random power vector."""
    p, q = _rng(7).uniform(0, 1, 8), _rng(8).uniform(0, 1, 8)
    lam, ph = np.sort(_rng(9).uniform(0, 8, 8)), _rng(10).uniform(0, 2 * np.pi, 8)
    pn, qn = p / (p.sum() + 1e-12), q / (q.sum() + 1e-12)
    h = -np.sum(pn[pn > 1e-12] * np.log(pn[pn > 1e-12] + 1e-12)) / (np.log(8) + 1e-12)
    pr = 1.0 / (np.sum(pn**2) + 1e-12) / 8
    r = abs(np.sum(pn * np.exp(1j * ph)))
    pc, qc = np.clip(pn, 1e-12, 1), np.clip(qn, 1e-12, 1)
    s = (np.tanh(np.sum(pc * np.log(pc / qc)) / (1 + 1e-12)) + 1) / 2
    kappa = np.sum(pn * lam) / (lam[-1] + 1e-12)
    with jax.enable_x64(True):
        c = M.consciousness_components(jnp.asarray(p), jnp.asarray(q), jnp.asarray(lam), jnp.asarray(ph))
        total = float(M.consciousness_functional(c))
    for name, ref in (("H_mode", h), ("PR", pr), ("R", r), ("S_dot", s), ("kappa", kappa)):
        assert float(c[name]) == pytest.approx(ref, rel=1e-10), name
    assert total == pytest.approx(np.clip(0.2 * (h + pr + r + s + kappa), 0, 1), rel=1e-10)


# == sound measures ==============================================================================================

def test_order_parameter_of_known_phases():
    assert float(M.order_parameter(jnp.full((10,), 1.3))) == pytest.approx(1.0, abs=1e-6)
    assert float(M.order_parameter(jnp.arange(8) * (2 * np.pi / 8))) == pytest.approx(0.0, abs=1e-6)
    mask = jnp.asarray([1.0, 1.0, 0.0])
    assert float(M.order_parameter(jnp.asarray([0.2, 0.2, 2.0]), mask=mask)) == pytest.approx(1.0, abs=1e-6)


def test_plane_wave_spectrum_equals_the_direct_fit():
    n = 6
    theta = _rng(11).uniform(-np.pi, np.pi, (n, n))
    y, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    spec = np.asarray(M.plane_wave_spectrum(jnp.asarray(theta, jnp.float32)))
    for p in range(n):
        for q in range(n):
            rho = abs(np.mean(np.exp(1j * (theta - 2 * np.pi * (p * y + q * x) / n))))
            assert spec[p, q] == pytest.approx(rho**2, abs=1e-5)


def test_plane_wave_detected_with_its_wavevector_and_noise_is_not():
    n = 16
    y, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    ky, kx = 2 * np.pi * 2 / n, -2 * np.pi * 3 / n
    wave = jnp.asarray(ky * y + kx * x + 0.4, jnp.float32)
    test = wave_test(wave, jax.random.PRNGKey(0), 99)
    assert float(test["score"]) == pytest.approx(1.0, abs=1e-5)
    assert float(test["p_value"]) == pytest.approx(0.01)
    assert (float(test["ky"]), float(test["kx"])) == (pytest.approx(ky), pytest.approx(kx))
    noise = jnp.asarray(_rng(12).uniform(-np.pi, np.pi, (n, n)), jnp.float32)
    assert float(wave_test(noise, jax.random.PRNGKey(1), 99)["p_value"]) > 0.05
    synced = jnp.asarray(0.1 * _rng(13).standard_normal((n, n)), jnp.float32)  # R ≈ 1, no gradient
    assert float(wave_test(synced, jax.random.PRNGKey(2), 99)["p_value"]) > 0.05
    # a traveling wave θ = k·r - Ω t moves at Ω / |k|
    rate = jnp.full((n * n,), -0.3)
    assert float(M.phase_wave_speed(rate, test["ky"], test["kx"])) == pytest.approx(0.3 / math.hypot(ky, kx), rel=1e-5)


def test_correlation_function_equals_the_pair_average():
    n = 5
    theta = _rng(14).uniform(-np.pi, np.pi, (n, n))
    g = np.asarray(M.correlation_function(jnp.asarray(theta, jnp.float32)))
    z = np.exp(1j * theta)
    r2 = abs(z.mean()) ** 2
    for dy in range(n):
        for dx in range(n):
            pair = np.mean(np.real(z * np.conj(np.roll(np.roll(z, -dy, 0), -dx, 1))))
            assert g[dy, dx] == pytest.approx(pair - r2, abs=1e-5)


def test_correlation_length_grows_with_smoothness_and_vanishes_when_synchronised():
    n = 32
    rough = _rng(15).uniform(-np.pi, np.pi, (n, n))
    k = np.fft.fftfreq(n)
    kernel = np.exp(-(k[:, None] ** 2 + k[None, :] ** 2) / (2 * 0.03**2))  # low-pass noise: smooth phases
    smooth = 3 * np.real(np.fft.ifft2(np.fft.fft2(_rng(16).standard_normal((n, n))) * kernel))
    smooth = smooth / smooth.std() * 1.5
    xi_rough = float(M.correlation_length(jnp.asarray(rough, jnp.float32)))
    xi_smooth = float(M.correlation_length(jnp.asarray(smooth, jnp.float32)))
    assert xi_rough < 1.0 < xi_smooth
    assert float(M.correlation_length(jnp.zeros((n, n)))) == 0.0
    # the definition by hand: the 1/e crossing of the shell-averaged G(d) / G(0), linearly interpolated
    g = np.asarray(M.correlation_function(jnp.asarray(smooth, jnp.float32)))
    shells = np.rint(M.periodic_distances(n, n)).astype(int)
    radial = np.array([g[shells == s].mean() for s in range(n // 2 + 1)]) / g[0, 0]
    first = int(np.argmax(radial < np.exp(-1)))
    expect = first - 1 + (radial[first - 1] - np.exp(-1)) / (radial[first - 1] - radial[first])
    assert xi_smooth == pytest.approx(expect, rel=1e-4)


def test_mode_projection_of_a_phase_field():
    psi = jnp.asarray(_orthonormal_basis(9, 3, 17))
    z = jnp.exp(1j * jnp.asarray(_rng(18).uniform(-np.pi, np.pi, 9), jnp.float32))
    power, phase = M.mode_projection(z, psi.astype(jnp.float32))
    c = np.asarray(z) @ np.asarray(psi)
    np.testing.assert_allclose(np.asarray(power), np.abs(c) ** 2, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(phase), np.angle(c), atol=1e-5)
