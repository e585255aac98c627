"""Oscillator dynamics (the field's, and the lattice kernel's reference) in `lax.scan` over time (per trial; the experiments `vmap` over a leading trial axis).

Faithful: the original GPU experiment's mode-space model, exactly (its four initial patterns, decay exp(-rate λ),
cubic term, per-step Gaussian noise); it is a damped noisy map, not an oscillator. Sound: Kuramoto phase oscillators
on a graph or all-to-all, Euler or RK4, the model a coupling-strength sweep needs.

Mode model, per step t = 1..T-1 (a_0 = Ψᵀ x, x the z-scored initial pattern):

    a_t = a_{t-1} ⊙ exp(-rate·λ) - c·a_{t-1}³ + σ·ξ_t,     ξ_t ~ N(0, I), drawn from fold_in(noise_key, t)

Kuramoto, per node i (A_ij the weight of the edge j -> i, n_i the node's normalisation: 1/k_i by in-degree by
default, 1/Σ_j A_ij by in-weight, 1/N; all-to-all: 1/N; an isolated node has n_i = 0 and runs at ω_i):

    dθ_i/dt = ω_i + K n_i Σ_j A_ij sin(θ_j - θ_i - α)  (+ σ dW_i)
            = ω_i + K n_i (cos α (cos θ_i S_i - sin θ_i C_i) - sin α (cos θ_i C_i + sin θ_i S_i)),
    S_i = Σ_j A_ij sin θ_j,  C_i = Σ_j A_ij cos θ_j

with a phase lag α (Sakaguchi–Kuramoto; 0 by default) and K a number or a schedule K(t) (`CouplingSchedule`).
With inertia (second order, power-grid style) the state is (θ, v): dθ/dt = v, m dv/dt = -γ v + [the right side
above] (`kuramoto2_step`).

The second form needs one sin and one cos per node instead of one sin per edge; the neighbour sums are a gather
from a padded neighbour table (any graph; hubs' extra neighbours in a second, small table), rolls of the grid
(square lattices) or a total (all-to-all). Noise enters as Euler–Maruyama, θ += √dt σ ξ after the deterministic
Euler or RK4 step.

Long runs go through `scan_blocks`: the state advances in blocks of steps and only a per-block record (or one
block of states, for statistics that need every step) is kept, so memory does not grow with the number of steps.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.extend.random
import jax.numpy as jnp
import numpy as np

IC_TYPES = ("gaussian", "plane", "spiral", "noise")  # trial % 4 in the original, in this order
INTEGRATORS = ("euler", "rk4")
OMEGA_DISTRIBUTIONS = ("normal", "gaussian", "lorentzian", "uniform", "bimodal", "bimodal_lorentzian", "constant")


# -- the block driver -------------------------------------------------------------------------------------------

def scan_blocks(step, state, acc, observe, *, steps: int, block: int, keep_states: bool = False, t0: int = 0):
    """Advances state_t = step(state_{t-1}, t) for t = t0+1 .. t0+steps with `lax.scan`, in ceil(steps / block)
    blocks of `block` steps. After each block, (acc, record) = observe(acc, x, t_first, n_valid): x is the block's
    states [block, ...] when keep_states, else its last state; t_first the block's first step index; n_valid the
    number of real steps in it (block, except in a last, partial block, where the state is held after step
    t0+steps, so the extra rows repeat the final state and x is the final state).

    Every block has the same shape, so the block body is traced and compiled once. Returns (state, acc, records)
    with the records stacked over blocks.
    """
    if steps < 1 or block < 1:
        raise ValueError(f"need steps >= 1 and block >= 1, got steps={steps}, block={block}")
    n_blocks = -(-steps // block)
    t_end = t0 + steps
    ragged = steps % block != 0

    def inner(s, t):
        new = step(s, t)
        if ragged:  # hold the state after the last real step
            new = jax.tree.map(lambda a, b: jnp.where(t <= t_end, a, b), new, s)
        return new, (new if keep_states else None)

    def run_block(carry, t_first):
        st, ac = carry
        st, states = jax.lax.scan(inner, st, t_first + jnp.arange(block, dtype=jnp.int32))
        n_valid = jnp.minimum(block, t_end - t_first + 1)
        ac, rec = observe(ac, states if keep_states else st, t_first, n_valid)
        return (st, ac), rec

    firsts = t0 + 1 + block * jnp.arange(n_blocks, dtype=jnp.int32)
    (state, acc), records = jax.lax.scan(run_block, (state, acc), firsts)
    return state, acc, records


# -- the original's mode model ----------------------------------------------------------------------------------

def initial_pattern(ic_type, key, positions, mask=None):
    """The original's spatial pattern of type ic_type (an index into IC_TYPES; traced is fine), z-scored with the
    unbiased std as torch does. positions [N, 2]; key draws the plane wave's direction and the noise pattern.
    mask [N] (optional) marks real nodes of a padded graph: every statistic is over them, padded nodes get 0.

    gaussian: exp(-d² / std(d)²), d = distance to the centroid; plane: sin(2π p / (max p - min p)),
    p = positions · u for a random unit u; spiral: sin(angle + 0.5 d) around the centroid; noise: i.i.d. N(0, 1).
    """
    positions = jnp.asarray(positions)
    if mask is None:
        mean = lambda v: v.mean(axis=0)  # noqa: E731
        std = lambda v: jnp.std(v, ddof=1)  # noqa: E731
        vmax, vmin = jnp.max, jnp.min
    else:
        m = jnp.asarray(mask, positions.dtype)
        n = m.sum()
        mean = lambda v: (v * (m if v.ndim == 1 else m[:, None])).sum(axis=0) / n  # noqa: E731
        std = lambda v: jnp.sqrt((m * (v - mean(v)) ** 2).sum() / (n - 1))  # noqa: E731
        vmax = lambda v: jnp.where(m > 0, v, -jnp.inf).max()  # noqa: E731
        vmin = lambda v: jnp.where(m > 0, v, jnp.inf).min()  # noqa: E731
    k_dir, k_noise = jax.random.split(key)
    rel = positions - mean(positions)
    dist = jnp.sqrt((rel**2).sum(axis=1))
    gaussian = jnp.exp(-(dist**2) / std(dist) ** 2)
    direction = jax.random.normal(k_dir, (2,), positions.dtype)
    direction = direction / jnp.sqrt((direction**2).sum())
    proj = positions @ direction
    plane = jnp.sin(2 * math.pi * proj / (vmax(proj) - vmin(proj)))
    spiral = jnp.sin(jnp.arctan2(rel[:, 1], rel[:, 0]) + dist * 0.5)
    noise = jax.random.normal(k_noise, (positions.shape[0],), positions.dtype)
    x = jnp.stack([gaussian, plane, spiral, noise])[ic_type]
    x = (x - mean(x)) / std(x)
    return x if mask is None else x * m


def mode_decay(eigenvalues, rate: float = 0.05):
    return jnp.exp(-jnp.asarray(eigenvalues) * rate)


def mode_step(a, xi, decay, cubic: float = 0.01, noise_std: float = 0.02):
    """One step of the original: a * decay - cubic * a³ + noise_std * ξ, in the original's order of operations."""
    return a * decay - cubic * (a * a * a) + xi * noise_std


def standard_normal(key, shape, dtype=jnp.float32):
    """N(0, 1) draws as jax.random.normal makes them (uniform on [-1, 1) without -1, then √2 erfinv), from the
    threefry2x32 hash of a counter with BOTH output words used: jax.random's default (partitionable) bits keep
    one 32-bit word per hash, so this halves the hashing that dominates the mode model's time on a CPU."""
    n = math.prod(shape)
    bits = jax.extend.random.threefry_2x32(key, jnp.arange(n, dtype=jnp.uint32))
    unit = jax.lax.bitcast_convert_type((bits >> 9) | jnp.uint32(0x3F800000), jnp.float32) - 1.0  # [0, 1)
    u = jnp.maximum(np.nextafter(np.float32(-1), np.float32(0)), unit * 2 - 1)
    return (np.float32(math.sqrt(2)) * jax.lax.erf_inv(u)).reshape(shape).astype(dtype)


def step_noise(noise_key, t, shape, dtype=jnp.float32):
    """ξ_t: the standard normal draw of step t (from fold_in(noise_key, t)), shared by every integrator and
    reference."""
    return standard_normal(jax.random.fold_in(noise_key, t), shape, dtype)


def mode_noise(noise_key, timesteps: int, n_modes: int, dtype=jnp.float32):
    """[timesteps - 1, n_modes]: ξ_1 .. ξ_{T-1} exactly as the scanned model draws them (for references and tests)."""
    return jax.vmap(lambda t: step_noise(noise_key, t, (n_modes,), dtype))(jnp.arange(1, timesteps, dtype=jnp.int32))


def mode_stepper(decay, noise_key, cubic: float = 0.01, noise_std: float = 0.02):
    """step(a, t) for `scan_blocks`: the original's update with ξ_t drawn in-scan."""

    def step(a, t):
        return mode_step(a, step_noise(noise_key, t, a.shape, a.dtype), decay, cubic, noise_std)

    return step


def mode_trajectory(a0, decay, noise_key, timesteps: int, cubic: float = 0.01, noise_std: float = 0.02):
    """The full trajectory [T, K] (row 0 = a0), as the original stores it. For tests and short runs; long runs use
    scan_blocks with streaming statistics instead."""
    step = mode_stepper(decay, noise_key, cubic, noise_std)

    def body(a, t):
        a = step(a, t)
        return a, a

    _, rest = jax.lax.scan(body, a0, jnp.arange(1, timesteps, dtype=jnp.int32))
    return jnp.concatenate([a0[None], rest])


# -- Kuramoto oscillators ---------------------------------------------------------------------------------------

@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["neighbours", "weights", "inv_degree", "hub_rows", "hub_neighbours", "hub_weights"],
                   meta_fields=[])
@dataclasses.dataclass(frozen=True)
class TableCoupling:
    """Any graph as a padded neighbour table in two tiers: neighbours/weights [N, W] hold every node's first W
    neighbours (weight 1, padding weight 0); the few nodes with more (hubs) list the rest in hub_neighbours /
    hub_weights [H, D - W] for the rows hub_rows [H]. With W near twice the mean degree a scale-free graph costs
    about N W + H (D - W) gathers instead of N D. inv_degree [N] = 1/k_i (0 for isolated nodes)."""

    neighbours: jax.Array
    weights: jax.Array
    inv_degree: jax.Array
    hub_rows: jax.Array
    hub_neighbours: jax.Array
    hub_weights: jax.Array

    def sums(self, f):
        """Σ_j A_ij f_j for f [..., N]: gathers of [..., N, W] and [..., H, D - W]."""
        total = (jnp.take(f, self.neighbours, axis=-1) * self.weights).sum(-1)
        if self.hub_rows.shape[0] and self.hub_neighbours.shape[1]:
            extra = (jnp.take(f, self.hub_neighbours, axis=-1) * self.hub_weights).sum(-1)
            total = total.at[..., self.hub_rows].add(extra)
        return total

    def pair_sums(self, s, c):
        """(Σ_j A_ij s_j, Σ_j A_ij c_j) by one gather of z = c + i s: gathers cost per index on a CPU, so one complex
        gather takes about a quarter of the time of two real ones."""
        z = self.sums(jax.lax.complex(c, s))
        return jnp.imag(z), jnp.real(z)


@functools.partial(jax.tree_util.register_dataclass, data_fields=["inv_degree"], meta_fields=["side", "periodic"])
@dataclasses.dataclass(frozen=True)
class LatticeCoupling:
    """A side x side square lattice: neighbour sums by shifting the [side, side] grid (no gather)."""

    inv_degree: jax.Array
    side: int
    periodic: bool

    def pair_sums(self, s, c):
        return self.sums(s), self.sums(c)

    def sums(self, f):
        g = f.reshape(f.shape[:-1] + (self.side, self.side))
        if self.periodic:
            total = sum(jnp.roll(g, s, axis=ax) for ax in (-2, -1) for s in (1, -1))
        else:
            pad = [(0, 0)] * (g.ndim - 2)
            p = jnp.pad(g, pad + [(1, 1), (1, 1)])
            total = p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]
        return total.reshape(f.shape)


@functools.partial(jax.tree_util.register_dataclass, data_fields=[], meta_fields=["n"])
@dataclasses.dataclass(frozen=True)
class MeanFieldCoupling:
    """All-to-all: Σ_j f_j (j = i included: its term sin(θ_i - θ_i) is 0), normalised by 1/N."""

    n: int

    @property
    def inv_degree(self):
        return 1.0 / self.n

    def sums(self, f):
        return f.sum(axis=-1, keepdims=True)

    def pair_sums(self, s, c):
        return self.sums(s), self.sums(c)


def table_width(degrees) -> int:
    """The first tier's width: twice the mean degree (at least 4), or the largest degree when that is smaller."""
    deg = np.asarray(degrees)
    return int(min(deg.max(initial=1), max(4, math.ceil(2 * deg.mean())))) or 1


_PIO4 = (0.78515625, 2.4187564849853515625e-4, 3.77489497744594108e-8)  # π/4 in three parts (Cody–Waite)
_SIN = (-1.6666654611e-1, 8.3321608736e-3, -1.9515295891e-4)  # Cephes sinf minimax on [-π/4, π/4]
_COS = (4.166664568298827e-2, -1.388731625493765e-3, 2.443315711809948e-5)  # Cephes cosf


def sincos(x):
    """(sin x, cos x). float32: Cephes-style, reduction by multiples of π/4 and minimax polynomials, only multiplies,
    adds and selects, which XLA fuses and vectorises (its own CPU sin/cos are about 10x slower than numpy's); max
    error 1e-7 for |x| < 1e3 (tested). Other dtypes (float64 for gradient checks): jnp.sin, jnp.cos."""
    if x.dtype != jnp.float32:
        return jnp.sin(x), jnp.cos(x)
    f32 = np.float32
    ax = jnp.abs(x)
    j = jnp.floor(ax * f32(4 / math.pi)).astype(jnp.int32)
    j = j + (j & 1)  # even multiple of π/4: the remainder lies in [-π/4, π/4]
    y = j.astype(x.dtype)
    r = ((ax - y * f32(_PIO4[0])) - y * f32(_PIO4[1])) - y * f32(_PIO4[2])
    z = r * r
    ps = r + r * z * (f32(_SIN[0]) + z * (f32(_SIN[1]) + z * f32(_SIN[2])))
    pc = 1 - 0.5 * z + z * z * (f32(_COS[0]) + z * (f32(_COS[1]) + z * f32(_COS[2])))
    quadrant = (j >> 1) & 3
    odd = (quadrant & 1) == 1
    s = jnp.where(odd, pc, ps)
    c = jnp.where(odd, ps, pc)
    s = jnp.where(((quadrant & 2) == 2) != (x < 0), -s, s)
    c = jnp.where((quadrant == 1) | (quadrant == 2), -c, c)
    return s, c


def _sincos_once(theta, t):
    """sincos(θ) computed once into buffers. Without the boundary XLA fuses sin and cos into the neighbour sums'
    shifted reads and evaluates them once per read (5x per node on a lattice). The predicate t >= 0 is always true
    but traced (and not batched under vmap), so the conditional stays and its outputs are materialised."""
    if t is None:
        return sincos(theta)
    return jax.lax.cond(t >= 0, sincos, lambda y: (y, y), theta)


@functools.partial(jax.tree_util.register_dataclass, data_fields=["times", "values"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class CouplingSchedule:
    """Time-varying coupling K(t): piecewise linear through (times[i], values[i]), constant outside them. Passed
    wherever a coupling strength K is; the integrators evaluate it at each stage's time."""

    times: jax.Array
    values: jax.Array

    def __call__(self, time):
        return jnp.interp(time, self.times, self.values)


def coupling_at(coupling_k, time):
    """K at `time`: a schedule is evaluated, a number or array is returned as it is."""
    return coupling_k(time) if isinstance(coupling_k, CouplingSchedule) else coupling_k


def _no_lag(phase_lag) -> bool:
    return isinstance(phase_lag, (int, float)) and phase_lag == 0


def coupling_drive(theta, coupling, t=None, phase_lag=0.0):
    """n_i Σ_j A_ij sin(θ_j - θ_i - α) for every node (see the module docstring)."""
    s, c = _sincos_once(theta, t)
    sum_s, sum_c = coupling.pair_sums(s, c)
    drive = c * sum_s - s * sum_c
    if not _no_lag(phase_lag):  # α = 0 keeps the plain expression (and its bits)
        drive = jnp.cos(phase_lag) * drive - jnp.sin(phase_lag) * (c * sum_c + s * sum_s)
    return coupling.inv_degree * drive


def kuramoto_rhs(theta, omega, coupling_k, coupling, t=None, phase_lag=0.0, time=None):
    """dθ/dt = ω + K n_i (cos θ_i S_i - sin θ_i C_i) at α = 0, S = Σ_j A_ij sin θ_j, C = Σ_j A_ij cos θ_j; with a
    phase lag α the Sakaguchi form of the module docstring. Pass the (scan) step index t to compute sin and cos once
    per evaluation (see _sincos_once), and `time` when coupling_k is a CouplingSchedule."""
    return omega + coupling_at(coupling_k, time) * coupling_drive(theta, coupling, t, phase_lag)


def kuramoto_rhs_reference(theta, omega, coupling_k, adjacency, phase_lag=0.0, normalize="in_degree"):
    """The textbook pairwise form with a dense adjacency [N, N] (A_ij: edge j -> i, weighted or not):
    ω_i + K n_i Σ_j A_ij sin(θ_j - θ_i - α), n_i = 1/k_i (in-degree: nonzero entries of row i), 1/Σ_j A_ij
    (in-weight) or 1/N; 0 for a node with no in-edges."""
    if normalize == "n":
        inv = jnp.full(adjacency.shape[:1], 1.0 / adjacency.shape[0], adjacency.dtype)
    else:
        deg = (adjacency != 0).sum(axis=1).astype(adjacency.dtype) if normalize == "in_degree" else adjacency.sum(1)
        inv = jnp.where(deg != 0, 1.0 / jnp.where(deg != 0, deg, 1.0), 0.0)
    diff = theta[..., None, :] - theta[..., :, None] - phase_lag
    return omega + coupling_k * inv * (adjacency * jnp.sin(diff)).sum(-1)


def rk4_step(f, y, dt, time):
    """One classic RK4 step of dy/dt = f(y, time) for a pytree y, written as y + dt (k1 + (2 (k2 - k1) + 2 (k3 - k1) +
    (k4 - k1)) / 6) so that a constant rate advances by exactly dt times it."""
    k1 = f(y, time)
    k2 = f(jax.tree.map(lambda a, b: a + (0.5 * dt) * b, y, k1), time + 0.5 * dt)
    k3 = f(jax.tree.map(lambda a, b: a + (0.5 * dt) * b, y, k2), time + 0.5 * dt)
    k4 = f(jax.tree.map(lambda a, b: a + dt * b, y, k3), time + dt)
    return jax.tree.map(lambda a, r1, r2, r3, r4: a + dt * (r1 + (2 * (r2 - r1) + 2 * (r3 - r1) + (r4 - r1)) / 6),
                        y, k1, k2, k3, k4)


def fixed_step(f, y, dt, time, integrator: str):
    """One step of dy/dt = f(y, time) for a pytree y from `time`: explicit Euler or classic RK4 (`rk4_step`)."""
    if integrator == "euler":
        return jax.tree.map(lambda a, b: a + dt * b, y, f(y, time))
    if integrator == "rk4":
        return rk4_step(f, y, dt, time)
    raise ValueError(f"unknown integrator {integrator!r}; choose one of {INTEGRATORS}")


def kuramoto_step(theta, omega, coupling_k, coupling, dt: float, integrator: str = "euler", t=None, phase_lag=0.0,
                  time=None):
    """One deterministic step from `time` (needed only for a CouplingSchedule; default 0): explicit Euler, or
    classic RK4 (`rk4_step`: a constant rate (K = 0) advances by exactly dt ω)."""
    time = 0.0 if time is None else time

    def f(th, tm):
        return kuramoto_rhs(th, omega, coupling_k, coupling, t=t, phase_lag=phase_lag, time=tm)

    return fixed_step(f, theta, dt, time, integrator)


def kuramoto2_rhs(state, omega, coupling_k, coupling, *, inertia: float, damping: float, t=None, phase_lag=0.0,
                  time=None):
    """Second-order Kuramoto (inertia m, damping γ): (dθ/dt, dv/dt) = (v, (ω - γ v + K n_i Σ_j A_ij sin(θ_j - θ_i -
    α)) / m) for state = (θ, v)."""
    theta, v = state
    drive = coupling_at(coupling_k, time) * coupling_drive(theta, coupling, t, phase_lag)
    return v, (omega - damping * v + drive) / inertia


def kuramoto2_step(state, omega, coupling_k, coupling, dt: float, integrator: str = "rk4", t=None, phase_lag=0.0,
                   time=None, *, inertia: float, damping: float):
    """One step of the second-order model for state = (θ, v): Euler or RK4, as kuramoto_step."""
    time = 0.0 if time is None else time

    def f(y, tm):
        return kuramoto2_rhs(y, omega, coupling_k, coupling, inertia=inertia, damping=damping, t=t,
                             phase_lag=phase_lag, time=tm)

    return fixed_step(f, state, dt, time, integrator)


def kuramoto_stepper(omega, coupling_k, coupling, *, dt: float, integrator: str = "euler", noise_std: float = 0.0,
                     noise_key=None, phase_lag=0.0, inertia: float | None = None, damping: float = 1.0):
    """step(state, t) for `scan_blocks` (step t goes from time (t - 1) dt to t dt); with noise_std > 0 adds √dt σ ξ_t
    (ξ_t from fold_in(noise_key, t)) to θ, or, with inertia, √dt σ ξ_t / m to the velocity."""

    def step(state, t):
        time = (t - 1) * dt
        if inertia is None:
            state = kuramoto_step(state, omega, coupling_k, coupling, dt, integrator, t, phase_lag, time)
        else:
            state = kuramoto2_step(state, omega, coupling_k, coupling, dt, integrator, t, phase_lag, time,
                                   inertia=inertia, damping=damping)
        if noise_std:
            if inertia is None:
                state = state + (math.sqrt(dt) * noise_std) * step_noise(noise_key, t, state.shape, state.dtype)
            else:
                theta, v = state
                v = v + (math.sqrt(dt) * noise_std / inertia) * step_noise(noise_key, t, v.shape, v.dtype)
                state = (theta, v)
        return state

    return step


def kuramoto_run(theta0, omega, coupling_k, coupling, *, dt: float, steps: int, record_every: int,
                 integrator: str = "euler", noise_std: float = 0.0, noise_key=None, observe=None, acc=None,
                 phase_lag=0.0, inertia: float | None = None, damping: float = 1.0, velocity0=None):
    """Integrates `steps` steps from theta0 and records every `record_every` steps (and at the end).

    observe(acc, theta, t_first, n_valid) -> (acc, record) is called on the state after each block; the default
    records θ. With inertia the state is (θ, v) (v starts at velocity0, default 0) and observe sees θ.
    Returns (theta_final, acc, records [ceil(steps / record_every), ...]) (with inertia: ((θ, v), acc, records)).
    θ is not wrapped (phase = θ mod 2π). pallas_kernels.kuramoto_lattice.fused_kuramoto_run is the same function on
    lattices (first order, no lag, constant K), several steps per launch.
    """
    if noise_std and noise_key is None:
        raise ValueError("kuramoto_run needs a noise_key when noise_std > 0")
    step = kuramoto_stepper(omega, coupling_k, coupling, dt=dt, integrator=integrator, noise_std=noise_std,
                            noise_key=noise_key, phase_lag=phase_lag, inertia=inertia, damping=damping)
    observe = observe or (lambda a, th, t, n: (a, th))
    if inertia is None:
        return scan_blocks(step, theta0, acc, observe, steps=steps, block=record_every)
    state0 = (theta0, jnp.zeros_like(theta0) if velocity0 is None else velocity0)
    return scan_blocks(step, state0, acc, lambda a, st, t, n: observe(a, st[0], t, n), steps=steps,
                       block=record_every)


def natural_frequencies(key, n: int, distribution: str = "normal", mean: float = 0.0, width: float = 1.0,
                        dtype=jnp.float32, separation: float = 0.0):
    """ω [n] (the densities of wavejax.field.theory.density, same parameters): normal / gaussian (std = width),
    lorentzian (Cauchy, half-width = width), uniform on [mean - width, mean + width], bimodal (each node from one of
    two equal Gaussians of std width at mean ∓ separation/2, chosen at random), bimodal_lorentzian (the same with
    Lorentzians of half-width width), or constant (= mean). Frequencies given per node are passed as an array
    instead of drawing them."""
    k_side, k_draw = jax.random.split(key)
    if distribution in ("normal", "gaussian", "bimodal"):
        z = jax.random.normal(k_draw if distribution == "bimodal" else key, (n,), dtype)
    elif distribution in ("lorentzian", "bimodal_lorentzian"):
        z = jax.random.cauchy(k_draw if distribution == "bimodal_lorentzian" else key, (n,), dtype)
    elif distribution == "uniform":
        z = jax.random.uniform(key, (n,), dtype, -1.0, 1.0)
    elif distribution == "constant":
        z = jnp.zeros((n,), dtype)
    else:
        raise ValueError(f"unknown frequency distribution {distribution!r}; choose one of {OMEGA_DISTRIBUTIONS}")
    omega = mean + width * z
    if distribution.startswith("bimodal"):
        side = jnp.where(jax.random.bernoulli(k_side, 0.5, (n,)), 0.5, -0.5).astype(dtype)
        omega = omega + separation * side
    return omega
