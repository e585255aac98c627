"""Plain numpy implementations, step by step as the original code runs: the baseline of experiments/benchmarks/bench_field.py
and the reference the tests hold the jitted experiment to.

`original_trial` is exp_gpu_massive.py's trial loop body transcribed to numpy float32: a Python loop over timesteps,
the trajectory stored in full, projected back to space (A Ψᵀ, [T, N]) and correlated lag by lag on the flattened
field, as torch.corrcoef does. `kuramoto_numpy` is a straightforward vectorised-over-nodes Euler/RK4 loop over steps
on a neighbour table. Randomness can be passed in (to compare with the jitted code on the same draws) or drawn here
with numpy's generator (to time the baseline as it would run on its own).
"""

from __future__ import annotations

import math

import numpy as np

F32 = np.float32


def initial_pattern(ic_type: int, positions: np.ndarray, direction=None, noise=None, rng=None) -> np.ndarray:
    """The original's four patterns in float32, z-scored with the unbiased std. direction (2,) and noise (N,) are the
    random draws of the plane and noise types (drawn from rng when not given)."""
    pos = np.asarray(positions, F32)
    n = len(pos)
    if ic_type == 0:
        dist = np.linalg.norm(pos - pos.mean(axis=0), axis=1)
        x = np.exp(-(dist**2) / dist.std(ddof=1) ** 2)
    elif ic_type == 1:
        d = np.asarray(rng.standard_normal(2) if direction is None else direction, F32)
        d = d / np.linalg.norm(d)
        proj = pos @ d
        x = np.sin(F32(2 * np.pi) * proj / (proj.max() - proj.min()))
    elif ic_type == 2:
        rel = pos - pos.mean(axis=0)
        x = np.sin(np.arctan2(rel[:, 1], rel[:, 0]) + np.linalg.norm(rel, axis=1) * F32(0.5))
    else:
        x = np.asarray(rng.standard_normal(n) if noise is None else noise, F32)
    x = x.astype(F32)
    return (x - x.mean()) / x.std(ddof=1)


def pearson_float32(x: np.ndarray, y: np.ndarray) -> float:
    """torch.corrcoef([x, y])[0, 1] in float32: centre, dot, normalise, clip."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        xm, ym = x - x.mean(dtype=F32), y - y.mean(dtype=F32)
        r = np.dot(xm, ym) / np.sqrt(np.dot(xm, xm) * np.dot(ym, ym))
    return float(np.clip(r, -1.0, 1.0))


def original_trial(eigenvalues, eigenvectors, positions, ic_type: int, timesteps: int, *, initial=None, noise=None,
                   rng=None, mean_distance=None, rate=0.05, cubic=0.01, noise_std=0.02, max_lag=20) -> dict:
    """One trial of the original experiment. initial: the pattern (N,) (else drawn via `initial_pattern` with rng);
    noise: ξ [T-1, K] (else rng.standard_normal per step, as torch.randn per step). Returns rotation_angle (degrees),
    correlations, has_wave, wave_speed, finite."""
    lam = np.asarray(eigenvalues, F32)
    psi = np.asarray(eigenvectors, F32)
    k = len(lam)
    x = initial_pattern(ic_type, positions, rng=rng) if initial is None else np.asarray(initial, F32)
    traj = np.zeros((timesteps, k), F32)
    traj[0] = psi.T @ x
    decay = np.exp(-lam * F32(rate))
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(1, timesteps):  # the original's Python loop over steps
            xi = rng.standard_normal(k).astype(F32) if noise is None else noise[t - 1]
            traj[t] = traj[t - 1] * decay
            traj[t] -= F32(cubic) * traj[t - 1] ** 3
            traj[t] += xi * F32(noise_std)
        angles = np.arctan2(traj[:, 1], traj[:, 0])
        diffs = angles[1:] - angles[:-1]
        diffs = np.where(diffs > np.pi, diffs - 2 * np.pi, diffs)
        diffs = np.where(diffs < -np.pi, diffs + 2 * np.pi, diffs)
        rotation = float(np.rad2deg(np.abs(diffs).sum(dtype=F32)))
        field = traj @ psi.T  # [T, N], the spatial activity
    if mean_distance is None:
        p = np.asarray(positions, F32)
        mean_distance = float(np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1)).mean())
    corrs = []
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowed trajectory gives NaN, as in the original
        for lag in range(1, min(max_lag, timesteps // 10)):
            corrs.append(pearson_float32(field[:-lag].ravel(), field[lag:].ravel()))
    has_wave = len(corrs) > 5 and bool(np.mean(corrs[:5]) > 0.3)
    speed = 0.0
    if has_wave:
        half_idx = next((i for i, c in enumerate(corrs) if c < 0.5), len(corrs))
        speed = float(mean_distance / (half_idx + 1))
    return {"rotation_angle": rotation, "correlations": np.asarray(corrs), "has_wave": has_wave, "wave_speed": speed,
            "finite": bool(np.isfinite(traj).all())}


def kuramoto_numpy(theta0, omega, coupling_k, neighbours, weights, inv_degree, *, dt: float, steps: int,
                   integrator: str = "euler", record_every: int = 0):
    """Kuramoto on a neighbour table, a loop over steps vectorised over nodes (and a leading batch axis, if any):
    dθ_i/dt = ω_i + K/k_i Σ_d w_id sin(θ_nbr(i,d) - θ_i). Returns (θ_final, R every record_every steps)."""
    theta = np.array(theta0, dtype=np.result_type(theta0, F32))
    k = np.asarray(coupling_k, theta.dtype)
    if k.ndim:
        k = k[..., None]

    def rhs(th):
        diff = th[..., neighbours] - th[..., :, None]
        return omega + k * inv_degree * (weights * np.sin(diff)).sum(-1)

    records = []
    for t in range(1, steps + 1):
        if integrator == "euler":
            theta = theta + dt * rhs(theta)
        else:
            k1 = rhs(theta)
            k2 = rhs(theta + 0.5 * dt * k1)
            k3 = rhs(theta + 0.5 * dt * k2)
            k4 = rhs(theta + dt * k3)
            theta = theta + dt * ((k1 + 2 * k2 + 2 * k3 + k4) / 6)
        if record_every and t % record_every == 0:
            records.append(np.hypot(np.cos(theta).mean(-1), np.sin(theta).mean(-1)))
    return theta, np.asarray(records)


def mean_distance_bruteforce(positions) -> float:
    p = np.asarray(positions, np.float64)
    return float(np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1)).mean())


def lorentzian_quantiles(n: int, width: float) -> np.ndarray:
    """n deterministic frequencies with a Lorentzian (Cauchy) profile: width * tan(π (i / (n + 1) - 1/2))."""
    return width * np.tan(math.pi * (np.arange(1, n + 1) / (n + 1) - 0.5))
