"""Field metrics: the original experiment's, exactly, and sound measures of synchrony and traveling waves.

Faithful: rotation angle (path length of atan2(a_1, a_0)), lag-correlation "wave" detection and its wave speed, the
CV of rotation, and the five-part "consciousness functional" C(t), each as the original computes it. Sound: the
Kuramoto order parameter R, plane-wave fits of the phase field tested against shuffled surrogates with a wave speed
from the phase field, and the phase correlation length.

Why the lag correlations can be computed in mode space: the spatial field is X = A Ψᵀ with orthonormal columns ψ_k,
so for rows x_t = Ψ a_t, Σ_i x_t,i x_s,i = a_t · a_s and Σ_i x_t,i = a_t · (Ψᵀ 1). Every sum the Pearson
correlation of X[:-lag].flatten() and X[lag:].flatten() needs is therefore a sum over K modes instead of N nodes,
and the correlations do not depend on Ψ at all: any orthonormal basis, spatial or not, gives the same numbers.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

WAVE_MAX_LAG = 20  # the original: lags 1 .. min(20, T // 10) - 1
WAVE_MIN_LAGS = 5  # has_wave needs more than 5 lags ...
WAVE_THRESHOLD = 0.3  # ... and mean(corr[:5]) > 0.3
WAVE_HALF = 0.5  # speed: mean distance / (index of the first lag with corr < 0.5, + 1)
C_WEIGHTS = (0.2, 0.2, 0.2, 0.2, 0.2)
EPS = 1e-12  # the original's guard in every normalisation


# == faithful: rotation ============================================================================================

def wrap_angle_diff(d):
    """The original's wrap of angle differences: > π loses 2π, then < -π gains 2π."""
    d = jnp.where(d > math.pi, d - 2 * math.pi, d)
    return jnp.where(d < -math.pi, d + 2 * math.pi, d)


def rotation_angle(trajectory, plane=(0, 1)):
    """Σ_t |wrap(Δ atan2(a_t[p1], a_t[p0]))| over a [T, K] trajectory, in degrees (a path length, not a net turn)."""
    angles = jnp.arctan2(trajectory[:, plane[1]], trajectory[:, plane[0]])
    return jnp.rad2deg(jnp.abs(wrap_angle_diff(angles[1:] - angles[:-1])).sum())


def rotation_init(a0, plane=(0, 1)):
    """Streaming rotation: (previous angle, radians so far)."""
    return jnp.arctan2(a0[plane[1]], a0[plane[0]]), jnp.zeros((), a0.dtype)


def rotation_update(acc, block, plane=(0, 1)):
    """Adds a block of states [b, K]."""
    prev, total = acc
    angles = jnp.arctan2(block[:, plane[1]], block[:, plane[0]])
    diffs = wrap_angle_diff(angles - jnp.concatenate([prev[None], angles[:-1]]))
    return angles[-1], total + jnp.abs(diffs).sum()


def rotation_degrees(acc):
    return jnp.rad2deg(acc[1])


# == faithful: lag-correlation "wave" detection ===================================================================

def n_wave_lags(timesteps: int, max_lag: int = WAVE_MAX_LAG) -> int:
    """How many lags the original correlates: lags 1 .. min(max_lag, T // 10) - 1."""
    return max(min(max_lag, timesteps // 10) - 1, 0)


def pearson(x, y):
    """Pearson correlation of two flat arrays as torch.corrcoef computes it (centre, dot, normalise, clip)."""
    xm, ym = x - x.mean(), y - y.mean()
    r = (xm * ym).sum() / jnp.sqrt((xm * xm).sum() * (ym * ym).sum())
    return jnp.clip(r, -1.0, 1.0)


def lag_correlations_spatial(field, n_lags: int):
    """Reference: corr(X[:-lag].flatten(), X[lag:].flatten()) for lag = 1..n_lags on the spatial field X [T, N]."""
    t = field.shape[0]
    return jnp.stack([pearson(field[: t - lag].ravel(), field[lag:].ravel()) for lag in range(1, n_lags + 1)])


def _pearson_from_sums(sx, sy, sxx, syy, sxy, count):
    cov = sxy - sx * sy / count
    r = cov / jnp.sqrt((sxx - sx * sx / count) * (syy - sy * sy / count))
    return jnp.clip(r, -1.0, 1.0)


def lag_correlations_modes(trajectory, node_sums, n_nodes: int, n_lags: int):
    """The same correlations from the mode trajectory A [T, K] alone (exact identity, see the module docstring);
    node_sums = Ψᵀ 1 [K]. O(T K) per lag instead of O(T N)."""
    t = trajectory.shape[0]
    m = trajectory @ node_sums  # Σ_i X[t, i]
    q = (trajectory * trajectory).sum(axis=1)  # Σ_i X[t, i]²
    out = []
    for lag in range(1, n_lags + 1):
        sxy = (trajectory[: t - lag] * trajectory[lag:]).sum()
        out.append(_pearson_from_sums(m[: t - lag].sum(), m[lag:].sum(), q[: t - lag].sum(), q[lag:].sum(), sxy,
                                      (t - lag) * n_nodes))
    return jnp.stack(out)


def lag_sums_init(a0, node_sums, n_lags: int):
    """Streaming lag sums (memory O(n_lags K), any T): running totals of m_t = a_t · Ψᵀ1 and q_t = |a_t|², the
    first and the last n_lags of each, the last n_lags states (zeros before step 0) and Σ_t a_t · a_{t+l} per lag."""
    dtype = a0.dtype
    z = jnp.zeros((n_lags,), dtype)
    m0, q0 = a0 @ node_sums, (a0 * a0).sum()
    first = jnp.zeros((n_lags,), dtype).at[0].set(1) if n_lags else z
    last = first[::-1]
    return {"m_total": m0, "q_total": q0, "m_head": m0 * first, "q_head": q0 * first, "m_tail": m0 * last,
            "q_tail": q0 * last, "history": last[:, None] * a0[None, :], "sxy": z, "count": jnp.ones((), jnp.int32)}


def lagged_dot_sums(ext, n_lags: int):
    """s[l-1] = Σ_j ext[L + j] · ext[L + j - l] for l = 1..L (L = n_lags) over the b rows after the first L of
    ext [L + b, K], summed along diagonals of Gram blocks (two dense matmuls' worth of work per L rows instead of L
    separate reductions): L-row sub-blocks against their 2L-row windows when L divides b, else the whole block
    against [history; block]."""
    lags, b = n_lags, ext.shape[0] - n_lags
    if b % lags:
        y, w = ext[lags:][None], ext[None]  # one [b, L + b] Gram matrix
    else:
        y = ext[lags:].reshape(b // lags, lags, -1)
        w = jnp.concatenate([ext[:-lags].reshape(b // lags, lags, -1), y], axis=1)  # previous L rows + own L rows
    g = jnp.einsum("jsk,jek->jse", y, w)  # (s, e) <-> lag L + s - e
    rows, cols = g.shape[1:]
    # the diagonal e - s = L - l: padding each row by one turns diagonals into columns
    skew = jnp.pad(g.reshape(g.shape[0], -1), ((0, 0), (0, rows))).reshape(g.shape[0], rows, cols + 1)
    return skew[:, :, :lags].sum(axis=(0, 1))[::-1]


def lag_sums_update(acc, block, node_sums, n_valid=None):
    """Adds a block of consecutive states [b, K], of which the first n_valid are real (default all; the rest are
    ignored). A non-finite state makes the sums non-finite, as it makes the original's correlations NaN; the zero
    history before step 0 adds exactly 0 otherwise."""
    n_lags = acc["sxy"].shape[0]
    b = block.shape[0]
    n_valid = b if n_valid is None else n_valid
    valid = jnp.arange(b) < n_valid
    if n_lags == 0:
        return dict(acc, count=acc["count"] + n_valid)
    block = jnp.where(valid[:, None], block, 0)
    m, q = block @ node_sums, (block * block).sum(axis=1)
    t_idx = acc["count"] + jnp.arange(b)  # global step index of each row
    ext = jnp.concatenate([acc["history"], block])  # [n_lags + b, K]
    in_head = valid & (t_idx < n_lags)
    head_slot = jnp.clip(t_idx, 0, n_lags - 1)
    tail = lambda x: jax.lax.dynamic_slice_in_dim(x, n_valid, n_lags)  # noqa: E731  the last n_lags real rows
    return {
        "m_total": acc["m_total"] + m.sum(), "q_total": acc["q_total"] + q.sum(),
        "m_head": acc["m_head"].at[head_slot].add(jnp.where(in_head, m, 0)),
        "q_head": acc["q_head"].at[head_slot].add(jnp.where(in_head, q, 0)),
        "m_tail": tail(jnp.concatenate([acc["m_tail"], m])), "q_tail": tail(jnp.concatenate([acc["q_tail"], q])),
        "history": tail(ext), "sxy": acc["sxy"] + lagged_dot_sums(ext, n_lags), "count": acc["count"] + n_valid,
    }


def lag_correlations_from_sums(acc, n_nodes: int):
    """The n_lags correlations from the streaming sums (T = acc['count'] states seen): for lag l, rows 0..T-1-l
    (the totals less the last l) against rows l..T-1 (the totals less the first l)."""
    n_lags = acc["sxy"].shape[0]
    lag = jnp.arange(1, n_lags + 1)
    firsts = lambda x: jnp.cumsum(x)  # noqa: E731  Σ of the first l
    lasts = lambda x: jnp.cumsum(x[::-1])  # noqa: E731  Σ of the last l
    count = ((acc["count"] - lag) * n_nodes).astype(acc["sxy"].dtype)
    return _pearson_from_sums(acc["m_total"] - lasts(acc["m_tail"]), acc["m_total"] - firsts(acc["m_head"]),
                              acc["q_total"] - lasts(acc["q_tail"]), acc["q_total"] - firsts(acc["q_head"]),
                              acc["sxy"], count)


def wave_decision(correlations):
    """(has_wave, half_idx): has_wave = more than 5 lags and mean(corr[:5]) > 0.3 (a NaN fails); half_idx = index of
    the first correlation < 0.5, or the number of lags when none is (NaN is never < 0.5)."""
    n = correlations.shape[-1]
    if n <= WAVE_MIN_LAGS:
        has_wave = jnp.zeros(correlations.shape[:-1], bool)
    else:
        has_wave = correlations[..., :WAVE_MIN_LAGS].mean(axis=-1) > WAVE_THRESHOLD
    below = correlations < WAVE_HALF
    half_idx = jnp.where(below.any(axis=-1), jnp.argmax(below, axis=-1), n)
    return has_wave, half_idx


def wave_speed(mean_distance, has_wave, half_idx):
    """The original's speed: mean pairwise node distance / (half_idx + 1) when a wave was detected, else 0."""
    return jnp.where(has_wave, mean_distance / (half_idx + 1.0), 0.0)


def coefficient_of_variation(values) -> float:
    """std / mean over the finite values (pandas' NaN-skipping sample std, ddof=1), as the original's summary."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if len(v) < 2 or v.mean() == 0:
        return float("nan")
    return float(v.std(ddof=1) / v.mean())


# == faithful: the "consciousness functional" ======================================================================

def _normalise(p):
    return p / (p.sum(axis=-1, keepdims=True) + EPS)


def mode_entropy(power):
    """H_mode = -Σ p log(p + ε) over p > ε, / (log K + ε) (normalised Shannon entropy)."""
    p = _normalise(power)
    h = -jnp.where(p > EPS, p * jnp.log(p + EPS), 0.0).sum(axis=-1)
    return h / (math.log(power.shape[-1]) + EPS)


def participation_ratio(power):
    """PR = 1 / (Σ p² + ε) / K."""
    p = _normalise(power)
    return 1.0 / ((p * p).sum(axis=-1) + EPS) / power.shape[-1]


def phase_coherence(phases, power=None):
    """R = |Σ p_k e^{iφ_k}| with p the normalised power (uniform when None)."""
    p = _normalise(jnp.ones_like(phases) if power is None else power)
    return jnp.hypot((p * jnp.cos(phases)).sum(axis=-1), (p * jnp.sin(phases)).sum(axis=-1))


def entropy_production(power, power_prev, dt: float = 1.0):
    """Ṡ = KL(p_t ‖ p_{t-1}) / (dt + ε) with both clipped to [ε, 1] (raw, before the (tanh + 1) / 2 map)."""
    p = jnp.clip(_normalise(power), EPS, 1.0)
    q = jnp.clip(_normalise(power_prev), EPS, 1.0)
    return (p * jnp.log(p / q)).sum(axis=-1) / (dt + EPS)


def criticality_index(eigenvalues, power):
    """κ = Σ p_k λ_k / (λ_last + ε), λ_last the last (largest kept) eigenvalue."""
    return (_normalise(power) * eigenvalues).sum(axis=-1) / (eigenvalues[-1] + EPS)


def consciousness_components(power, power_prev, eigenvalues, phases, dt: float = 1.0):
    """The original compute_all_metrics: H_mode, PR, R, Ṡ mapped to (tanh(Ṡ) + 1) / 2, κ."""
    return {
        "H_mode": mode_entropy(power),
        "PR": participation_ratio(power),
        "R": phase_coherence(phases, power),
        "S_dot": (jnp.tanh(entropy_production(power, power_prev, dt)) + 1) / 2,
        "kappa": criticality_index(eigenvalues, power),
    }


def consciousness_functional(components, weights=C_WEIGHTS):
    """C(t) = clip(Σ w_i · component_i, 0, 1), weights normalised to sum 1."""
    w = np.asarray(weights, np.float64)
    w = w / w.sum()
    names = ("H_mode", "PR", "R", "S_dot", "kappa")
    return jnp.clip(sum(float(wi) * components[n] for wi, n in zip(w, names)), 0.0, 1.0)


def mode_projection(z, eigenvectors):
    """(power |c_k|², phase arg c_k) of a real or complex field z [..., N] in the eigenmode basis, c = Ψᵀ z."""
    c = z @ eigenvectors
    return (jnp.abs(c) ** 2).astype(eigenvectors.dtype), jnp.angle(c).astype(eigenvectors.dtype)


# == sound: synchrony and traveling waves ==========================================================================

def order_parameter(theta, axis=-1, mask=None):
    """Kuramoto's R = |mean_i e^{iθ_i}| (over the nodes where mask > 0, when given)."""
    if mask is None:
        return jnp.hypot(jnp.cos(theta).mean(axis=axis), jnp.sin(theta).mean(axis=axis))
    n = mask.sum()
    return jnp.hypot((mask * jnp.cos(theta)).sum(axis=axis) / n, (mask * jnp.sin(theta)).sum(axis=axis) / n)


def plane_wave_spectrum(theta_grid):
    """ρ(k)² = |mean_r e^{i(θ_r - k·r)}|² for every lattice wavevector k = 2π(p, q) / n, as the [n, n] map
    |FFT2(e^{iθ})|² / N². ρ(k)² is the fraction of the phase field's circular variance a plane wave of wavevector k
    explains; k = 0 gives R², global synchrony. theta_grid [..., n, n] (rows, columns)."""
    z = jnp.exp(1j * theta_grid.astype(jnp.float32))
    n = theta_grid.shape[-1] * theta_grid.shape[-2]
    return jnp.abs(jnp.fft.fft2(z)) ** 2 / n**2


def best_plane_wave(theta_grid):
    """(ρ², row frequency index, column frequency index) of the best plane wave with k ≠ 0."""
    spec = plane_wave_spectrum(theta_grid)
    flat = spec.reshape(spec.shape[:-2] + (-1,)).at[..., 0].set(-1.0)
    idx = jnp.argmax(flat, axis=-1)
    return jnp.take_along_axis(flat, idx[..., None], -1)[..., 0], idx // spec.shape[-1], idx % spec.shape[-1]


def wavevector(row_index, col_index, side_rows: int, side_cols: int):
    """(k_y, k_x) in radians per lattice spacing for FFT indices (negative frequencies above n/2)."""
    fy = jnp.where(row_index > side_rows // 2, row_index - side_rows, row_index)
    fx = jnp.where(col_index > side_cols // 2, col_index - side_cols, col_index)
    return 2 * math.pi * fy / side_rows, 2 * math.pi * fx / side_cols


def plane_wave_test(theta_grid, key, n_surrogates: int = 99):
    """Plane-wave detection against shuffled surrogates: the best ρ² (k ≠ 0) of the field against the best ρ² of
    n_surrogates random permutations of the same phases over the nodes (which keep R and the phase distribution and
    destroy spatial order). Returns dict(score, p_value = (1 + #surrogates >= score) / (1 + n_surrogates), ky, kx)."""
    rows, cols = theta_grid.shape[-2:]
    score, iy, ix = best_plane_wave(theta_grid)
    flat = theta_grid.reshape(-1)
    perms = jax.vmap(lambda k: jax.random.permutation(k, flat))(jax.random.split(key, n_surrogates))
    surr, _, _ = best_plane_wave(perms.reshape(n_surrogates, rows, cols))
    p_value = (1.0 + (surr >= score).sum()) / (1.0 + n_surrogates)
    ky, kx = wavevector(iy, ix, rows, cols)
    return {"score": score, "p_value": p_value, "ky": ky, "kx": kx, "surrogate_max": surr.max()}


def phase_wave_speed(dtheta_dt, ky, kx):
    """Phase speed |dθ/dt| / |∇θ| of a plane wave: the circular mean angular frequency over the field (its
    magnitude) over |k|, in lattice spacings per unit time."""
    return jnp.abs(jnp.mean(dtheta_dt)) / jnp.hypot(ky, kx)


def correlation_function(theta_grid):
    """Connected phase correlation G(Δ) = Re mean_r e^{i(θ_r - θ_{r+Δ})} - R² for every periodic offset Δ, [n, n]
    (via FFT: the autocorrelation of z = e^{iθ})."""
    z = jnp.exp(1j * theta_grid.astype(jnp.float32))
    n = theta_grid.shape[-1] * theta_grid.shape[-2]
    f = jnp.fft.fft2(z)
    auto = jnp.real(jnp.fft.ifft2(jnp.abs(f) ** 2)) / n
    return auto - (jnp.abs(z.mean(axis=(-2, -1))) ** 2)[..., None, None]


def periodic_distances(rows: int, cols: int) -> np.ndarray:
    """[rows, cols] Euclidean length of each periodic offset (the shorter way round)."""
    dy = np.minimum(np.arange(rows), rows - np.arange(rows))
    dx = np.minimum(np.arange(cols), cols - np.arange(cols))
    return np.hypot(dy[:, None], dx[None, :])


def correlation_length(theta_grid):
    """ξ: the distance at which the radially averaged connected correlation G(d) / G(0) first falls below 1/e,
    linearly interpolated between integer distance shells; the largest shell (n/2) when it never does (saturated).
    0 when G(0) = 1 - R² vanishes (a fully synchronised field has no fluctuations to correlate)."""
    rows, cols = theta_grid.shape[-2:]
    dist = periodic_distances(rows, cols)
    shells = np.rint(dist).astype(np.int32)
    n_shells = int(min(rows, cols) // 2) + 1
    g = correlation_function(theta_grid)
    onehot = (shells.ravel()[:, None] == np.arange(n_shells)[None, :]).astype(np.float32)  # [N, shells]
    counts = onehot.sum(axis=0)
    radial = (g.reshape(g.shape[:-2] + (-1,)) @ onehot) / counts  # [..., shells]
    g0 = radial[..., 0]
    ratio = radial / jnp.where(g0 > 1e-6, g0, 1.0)[..., None]
    below = ratio < math.exp(-1)
    first = jnp.argmax(below, axis=-1)
    prev = jnp.maximum(first - 1, 0)
    r_prev = jnp.take_along_axis(ratio, prev[..., None], -1)[..., 0]
    r_first = jnp.take_along_axis(ratio, first[..., None], -1)[..., 0]
    frac = (r_prev - math.exp(-1)) / jnp.where(r_prev > r_first, r_prev - r_first, 1.0)
    xi = jnp.where(below.any(axis=-1), prev + jnp.clip(frac, 0.0, 1.0), n_shells - 1.0)
    return jnp.where(g0 > 1e-6, xi, 0.0)
