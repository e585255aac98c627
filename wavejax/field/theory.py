"""Mean-field theory of the all-to-all Kuramoto model, beside the simulator of wavejax/ops/oscillators.py.

The model is the simulator's (all-to-all, N → ∞), with the optional Sakaguchi–Kuramoto phase lag α:

    dθ_i/dt = ω_i + (K/N) Σ_j sin(θ_j - θ_i - α),      z = r e^{iψ} = (1/N) Σ_j e^{iθ_j},

ω_i drawn from a density g. Densities take the simulator's settings, `natural_frequencies(key, n, distribution,
mean, width)`: the same names mean the same distributions with the same parameters.

    name                 g(ω)                                                            width is
    normal (gaussian)    N(mean, width²)                                                the std
    lorentzian           (γ/π) / ((ω - mean)² + γ²), γ = width                           the half-width
    uniform              1 / (2 width) on [mean - width, mean + width]                   the half-extent
    constant             δ(ω - mean) (identical oscillators)                             unused
    bimodal              ½ N(mean - s/2, width²) + ½ N(mean + s/2, width²), s = separation  each peak's std
    bimodal_lorentzian   ½ L(mean - s/2, width) + ½ L(mean + s/2, width)                each peak's half-width

Every name is also a distribution of the simulator (wavejax.ops.oscillators.natural_frequencies, same parameters).
Every density here is symmetric about its mean, so the mean only rotates the frame:
r, K_c do not depend on it, and the collective frequency is mean (α = 0).

Contents: the self-consistent stationary r(K) for any of these densities (Kuramoto 1975, 1984; Strogatz 2000),
K_c = 2/(π g(0)) and the near-threshold scaling, the Ott–Antonsen (2008) reduction for Lorentzian g with and
without phase lag (Sakaguchi & Kuramoto 1986), and the onset of the bimodal Lorentzian (Martens et al. 2009).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import integrate, optimize, special

DENSITIES = ("normal", "gaussian", "lorentzian", "uniform", "constant", "bimodal", "bimodal_lorentzian")
_SQRT_2PI = math.sqrt(2 * math.pi)


# -- frequency densities ----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Density:
    """A frequency density g(ω) (see the module's table); callable: g(ω), vectorised over numpy arrays."""

    name: str
    mean: float = 0.0
    width: float = 1.0
    separation: float = 0.0

    def __call__(self, omega):
        return self.centred(np.asarray(omega, np.float64) - self.mean)

    def centred(self, x):
        """g(mean + x)."""
        x = np.asarray(x, np.float64)
        w, a = self.width, 0.5 * self.separation
        if self.name == "normal":
            return np.exp(-0.5 * (x / w) ** 2) / (w * _SQRT_2PI)
        if self.name == "lorentzian":
            return (w / math.pi) / (x * x + w * w)
        if self.name == "uniform":
            return np.where(np.abs(x) <= w, 0.5 / w, 0.0)
        if self.name == "constant":
            return np.where(x == 0, np.inf, 0.0)
        if self.name == "bimodal":
            return 0.5 * (np.exp(-0.5 * ((x - a) / w) ** 2) + np.exp(-0.5 * ((x + a) / w) ** 2)) / (w * _SQRT_2PI)
        return 0.5 * (w / math.pi) * (1 / ((x - a) ** 2 + w * w) + 1 / ((x + a) ** 2 + w * w))  # bimodal_lorentzian

    @property
    def g0(self) -> float:
        """g(mean), the density at the centre of symmetry."""
        return float(self.centred(0.0))

    @property
    def g2(self) -> float:
        """g''(mean), by a five-point central difference (h = width / 100: error ~1e-8 relative)."""
        if self.name in ("uniform", "constant"):
            return 0.0
        h = self.width / 100
        c = self.centred(np.array([-2, -1, 0, 1, 2]) * h)
        return float((-c[0] + 16 * c[1] - 30 * c[2] + 16 * c[3] - c[4]) / (12 * h * h))

    @property
    def support(self) -> float:
        """The half-extent of the support about the mean (inf unless uniform or constant)."""
        return {"uniform": self.width, "constant": 0.0}.get(self.name, math.inf)

    @property
    def unimodal(self) -> bool:
        """g decreases in |ω - mean| (a two-peak density does when its peaks are close: s/2 <= width for Gaussians,
        s/2 <= width/√3 for Lorentzians, where g''(mean) changes sign)."""
        if self.name == "bimodal":
            return self.separation / 2 <= self.width
        if self.name == "bimodal_lorentzian":
            return self.separation / 2 <= self.width / math.sqrt(3)
        return True

    def quantiles(self, n: int) -> np.ndarray:
        """n deterministic frequencies ω_i = F⁻¹((i + 0.5)/n), i = 0..n-1 (F the distribution function): a sample
        without sampling noise, for finite-N checks of the N → ∞ theory. Lorentzian: mean + γ tan(π (i + 0.5)/n
        - π/2). Two-peak densities: the two peaks' quantiles of n/2 each (n even)."""
        u = (np.arange(n) + 0.5) / n
        w, a = self.width, 0.5 * self.separation
        if self.name == "normal":
            z = w * special.ndtri(u)
        elif self.name == "lorentzian":
            z = w * np.tan(math.pi * u - math.pi / 2)
        elif self.name == "uniform":
            z = w * (2 * u - 1)
        elif self.name == "constant":
            z = np.zeros(n)
        else:
            if n % 2:
                raise ValueError(f"quantiles of a two-peak density need an even n, got {n}")
            half = dataclasses.replace(self, name="normal" if self.name == "bimodal" else "lorentzian", mean=0.0,
                                       separation=0.0).quantiles(n // 2)
            z = np.sort(np.concatenate([half - a, half + a]))
        return self.mean + z


def density(name: str, mean: float = 0.0, width: float = 1.0, separation: float = 0.0) -> Density:
    """The density `name` (DENSITIES; see the module's table) with the simulator's parameters mean and width, and
    the separation s of a two-peak density's peaks (at mean ± s/2)."""
    if name not in DENSITIES:
        raise ValueError(f"unknown frequency density {name!r}; choose one of {DENSITIES}")
    if name != "constant" and not width > 0:
        raise ValueError(f"the {name} density needs width > 0, got {width}")
    if separation and name not in ("bimodal", "bimodal_lorentzian"):
        raise ValueError(f"separation applies to the two-peak densities only, not {name!r}")
    return Density("normal" if name == "gaussian" else name, float(mean), float(width), float(separation))


# -- the self-consistent stationary state (Kuramoto 1975, 1984; Strogatz 2000) ----------------------------------

def critical_coupling(g_at_0: float) -> float:
    """K_c = 2 / (π g(0)) (Kuramoto 1975): where the partially locked stationary branch leaves r = 0, from the
    self-consistency equation at r → 0. For a symmetric density that decreases away from its centre this is the
    onset of synchrony: incoherence is (linearly) unstable above it. For a two-peak density with a dip at the
    centre (g''(0) > 0) it is only where the centre-locked branch meets r = 0, subcritically; incoherence can lose
    stability earlier to standing waves (bimodal_lorentzian_onset) and the transition as K rises need not be there."""
    return 0.0 if math.isinf(g_at_0) else 2.0 / (math.pi * g_at_0)


def kc(name: str, width: float = 1.0, mean: float = 0.0, separation: float = 0.0) -> float:
    """K_c = 2/(π g(mean)) for density(name, mean, width, separation) (critical_coupling's caveats apply):
    normal σ√(8/π) = 2σ√(2π)/π, lorentzian 2γ, uniform 4w/π, constant 0."""
    return critical_coupling(density(name, mean, width, separation).g0)


def locked_integral(K: float, r: float, g: Density) -> float:
    """K ∫_{-π/2}^{π/2} cos²θ g(mean + K r sinθ) dθ: the locked oscillators' share of the order parameter, per unit
    r. The self-consistent r solves locked_integral(K, r) = 1 (r > 0). Integrated with scipy's adaptive quad over
    the part of [-π/2, π/2] where g is non-zero, to ~1e-13."""
    kr = K * r
    top = math.pi / 2 if kr <= g.support else math.asin(g.support / kr)
    points = None
    if g.separation and kr > g.separation / 2:  # the peaks of a two-peak density, sinθ = ±s/(2 K r)
        points = [math.asin(g.separation / (2 * kr))]
    val, _ = integrate.quad(lambda t: math.cos(t) ** 2 * float(g.centred(kr * math.sin(t))), 0.0, top,
                            epsabs=1e-14, epsrel=1e-13, limit=400, points=points)
    return 2 * K * val


def _self_consistent_scalar(K: float, g: Density) -> float:
    if g.name == "constant":
        return 1.0 if K > 0 else 0.0
    if K <= 0:
        return 0.0
    h = lambda r: locked_integral(K, r, g) - 1.0  # noqa: E731
    r_lo = 1e-12
    if g.unimodal:  # h decreases in r: one root, when h(0+) = K/K_c - 1 > 0
        if K * math.pi * g.g0 / 2 <= 1.0:
            return 0.0
        lo, hi = r_lo, 1.0
    else:  # scan a log grid for the largest + to - crossing
        grid = np.geomspace(r_lo, 1.0, 120)
        vals = np.array([h(r) for r in grid])
        down = np.flatnonzero((vals[:-1] > 0) & (vals[1:] <= 0))
        if not len(down):
            return 1.0 if vals[-1] > 0 else 0.0
        lo, hi = grid[down[-1]], grid[down[-1] + 1]
    if h(hi) >= 0:  # only at r = 1 exactly (roundoff at huge K)
        return hi
    return optimize.brentq(h, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=200)


def self_consistent_r(K, g: Density):
    """The stationary order parameter r(K) of the N → ∞ all-to-all model (α = 0): the largest root r in (0, 1] of

        r = K r ∫_{-π/2}^{π/2} cos²θ g(mean + K r sinθ) dθ          (Kuramoto 1975; Strogatz 2000, eq. 4.6)

    (locked oscillators |ω - mean| <= K r sit at sinθ = (ω - mean)/(K r); drifting ones add nothing for a
    symmetric g), or 0 when there is none. Unimodal g: one root above K_c, found by brentq on [1e-12, 1]; two-peak
    g: the largest + to - crossing on a log grid, refined by brentq (the centre-locked branch only: standing-wave
    states are outside this equation). Known cases: lorentzian sqrt(1 - 2γ/K); uniform jumps at K_c = 4w/π to
    r = π/4; constant 1 for K > 0. K: a number or an array (returns the same shape)."""
    ks = np.asarray(K, np.float64)
    out = np.array([_self_consistent_scalar(float(k), g) for k in ks.ravel()]).reshape(ks.shape)
    return float(out) if out.ndim == 0 else out


def threshold_r(K, g: Density):
    """The leading order of r just above K_c for a unimodal g with g''(mean) < 0 (Kuramoto 1984; Strogatz 2000,
    eq. 4.8): r ≈ sqrt(16 (K - K_c) / (π K_c⁴ (-g''(0)))), 0 below K_c (and NaN when g''(0) >= 0)."""
    k_c, g2 = critical_coupling(g.g0), g.g2
    if g2 >= 0:
        return np.full(np.shape(K), np.nan) if np.ndim(K) else math.nan
    out = np.sqrt(16 * np.maximum(np.asarray(K, np.float64) - k_c, 0.0) / (math.pi * k_c**4 * -g2))
    return float(out) if out.ndim == 0 else out


# -- Ott–Antonsen reduction for Lorentzian g (Ott & Antonsen 2008; Sakaguchi & Kuramoto 1986) --------------------

def oa_rhs(z, K, gamma, omega0=0.0, alpha=0.0):
    """dz/dt on the Ott–Antonsen manifold for Lorentzian g (centre ω0, half-width γ), phase lag α:

        dz/dt = (i ω0 - γ) z + (K/2) (e^{-iα} z - e^{iα} z̄ z²)

    (each frequency class obeys dz_ω/dt = iω z_ω + (K/2)(e^{-iα} z - e^{iα} z̄ z_ω²) with ⟨e^{2iθ}⟩_ω = z_ω²; the
    integral over the Lorentzian closes at its pole ω0 + iγ, z = z_{ω0+iγ}). In polar form z = r e^{iψ}:
    dr/dt = -γ r + (K/2) r cos α (1 - r²), dψ/dt = ω0 - (K/2) sin α (1 + r²). Vectorised over numpy arrays."""
    z = np.asarray(z, np.complex128)
    return (1j * omega0 - gamma) * z + 0.5 * K * (np.exp(-1j * alpha) * z - np.exp(1j * alpha) * np.conj(z) * z * z)


def oa_trajectory(r0, K, gamma, dt: float, steps: int, *, omega0=0.0, alpha=0.0, psi0=0.0) -> np.ndarray:
    """z(t) at t = 0, dt, .., steps·dt from z(0) = r0 e^{iψ0}: classic RK4 on oa_rhs in complex128 (numpy; the
    arguments broadcast, so a sweep over K is one call). Returns [steps + 1, *broadcast shape]; r = |z|, ψ = arg z."""
    z = np.asarray(r0, np.float64) * np.exp(1j * np.asarray(psi0, np.float64))
    z = np.broadcast_to(z, np.broadcast_shapes(z.shape, np.shape(K), np.shape(gamma), np.shape(omega0),
                                               np.shape(alpha))).astype(np.complex128)
    f = lambda y: oa_rhs(y, K, gamma, omega0, alpha)  # noqa: E731
    out = np.empty((steps + 1, *z.shape), np.complex128)
    out[0] = z
    for t in range(steps):
        k1 = f(z)
        k2 = f(z + 0.5 * dt * k1)
        k3 = f(z + 0.5 * dt * k2)
        k4 = f(z + dt * k3)
        z = z + dt * (k1 + 2 * k2 + 2 * k3 + k4) / 6
        out[t + 1] = z
    return out


def oa_critical_coupling(gamma, alpha=0.0):
    """K_c = 2γ / cos α for Lorentzian g with phase lag α (|α| < π/2; inf otherwise: no locked state)."""
    c = np.cos(np.asarray(alpha, np.float64))
    out = np.where(c > 0, 2 * np.asarray(gamma, np.float64) / np.where(c > 0, c, 1.0), np.inf)
    return float(out) if out.ndim == 0 else out


def oa_steady_r(K, gamma, alpha=0.0):
    """The stable steady r of the OA equation: sqrt(1 - 2γ / (K cos α)) above K_c = 2γ/cos α, 0 below (α = 0: the
    self-consistent r of the Lorentzian, sqrt(1 - 2γ/K), Kuramoto 1975)."""
    kcos = np.asarray(K, np.float64) * np.cos(np.asarray(alpha, np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(kcos > 2 * np.asarray(gamma, np.float64), np.sqrt(1 - 2 * np.asarray(gamma) / kcos), 0.0)
    return float(out) if out.ndim == 0 else out


def locked_frequency(K, gamma=0.0, alpha=0.0, omega0=0.0):
    """The collective (locked) frequency Ω = dψ/dt of the steady partially locked state, Lorentzian g (centre ω0,
    half-width γ), phase lag α. From the OA equation's phase part at r² = 1 - 2γ/(K cos α):

        Ω = ω0 - (K/2) sin α (1 + r²) = ω0 - K sin α + γ tan α

    (Sakaguchi & Kuramoto 1986 for the lag; identical oscillators, γ = 0, r = 1: Ω = ω0 - K sin α). NaN below
    K_c = 2γ/cos α, where there is no locked state."""
    r = oa_steady_r(K, gamma, alpha)
    locked = np.asarray(K, np.float64) * np.cos(alpha) > 2 * np.asarray(gamma, np.float64)
    out = np.where(locked, omega0 - 0.5 * np.asarray(K, np.float64) * np.sin(alpha) * (1 + r**2), np.nan)
    return float(out) if out.ndim == 0 else out


def bimodal_lorentzian_onset(separation: float, width: float) -> tuple[float, str]:
    """Where incoherence (r = 0) loses stability for the bimodal_lorentzian density (peaks at ±ω0 = ±s/2,
    half-width Δ), α = 0 (Martens et al. 2009). The OA equations of the two poles linearised at z = 0,
    dz_±/dt = (±iω0 - Δ) z_± + (K/4)(z_+ + z_-), have eigenvalues λ = -Δ + K/4 ± sqrt(K²/16 - ω0²), so:
    ω0 <= Δ: a real eigenvalue crosses 0 at K = 2(Δ² + ω0²)/Δ = 2/(π g(0)) ('stationary', partial locking);
    ω0 > Δ: a complex pair crosses at K = 4Δ, before 2/(π g(0)) ('hopf', standing waves). Returns (K, kind)."""
    w0, d = separation / 2, width
    if w0 <= d:
        return 2 * (d * d + w0 * w0) / d, "stationary"
    return 4 * d, "hopf"
