"""Kuramoto simulations on any network, one API for throughput and for accuracy.

    from wavejax.field import simulate as S
    net = S.network(A, normalize="in_weight")          # A[i, j]: weight of the edge j -> i (dense or scipy sparse)
    traj = S.simulate(net, theta0, omega, 1.5, dt=0.05, steps=2000, record_every=20)   # RK4 in lax.scan
    traj = S.simulate(net, theta0, omega, 1.5, dt=0.05, steps=2000, record_every=20, method="dopri5", rtol=1e-8)
    traj.times, traj.theta, traj.r                       # records at record_every * dt, 2·record_every * dt, ...
    times, ys = S.integrate(lambda t, y: my_rhs(t, y), y0, dt=0.01, steps=1000, method="tsit5")  # your own equation

The model (wavejax/ops/oscillators.py): dθ_i/dt = ω_i + K(t) n_i Σ_j A_ij sin(θ_j - θ_i - α) (+ σ dW_i), with a
phase lag α (`phase_lag`), K a number or a `CouplingSchedule`, n_i the normalisation (`normalize`: "in_degree"
1/#in-edges, "in_weight" 1/Σ_j A_ij, "n" 1/N; a node with no in-edges keeps n_i = 0 and turns at ω_i), and
optionally inertia: m d²θ/dt² + γ dθ/dt = [the same right side] (`inertia` = m, `damping` = γ).

Which integrator when:
  euler, rk4          fixed steps in `lax.scan` (the field experiments' path; trials vmap; lattices can use the fused
                      Pallas kernel): throughput. RK4's error is O(dt⁴) per unit time: pick dt by halving it until the
                      observable you need stops moving. Noise (noise_std > 0) is added after each step
                      (Euler–Maruyama splitting).
  dopri5, tsit5, dopri8   diffrax, adaptive steps with error control (rtol, atol): accuracy, e.g. phases near a
                      bifurcation, chaotic runs compared with a reference, or a first look at a new model. dopri8 for
                      tight tolerances (rtol ≤ 1e-9, float64).
  euler_maruyama, heun    diffrax SDE solvers on a Brownian path (VirtualBrownianTree, so the same key gives the same
                      path at any dt): noise with a path-wise convergent integrator; heun is the Stratonovich/additive
                      noise choice of higher accuracy.
float64 end to end: enable x64 (`jax.config.update("jax_enable_x64", True)` before any array is made, or
`field.kuramoto.dtype = "float64"` in a config) and pass float64 arrays; in float32 the phases of a chaotic run drift
from the float64 trajectory (docs/RESULTS.md, "Precision") while R(t) stays close.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from wavejax.errors import ConfigError
from wavejax.field.metrics import order_parameter  # |mean_j e^(i θ_j)|, also the API's (S.order_parameter)
from wavejax.ops import oscillators as D

NORMALIZATIONS = ("in_degree", "in_weight", "n")
FIXED, ADAPTIVE, SDE = ("euler", "rk4"), ("dopri5", "tsit5", "dopri8"), ("euler_maruyama", "heun")
METHODS = FIXED + ADAPTIVE + SDE


@functools.partial(jax.tree_util.register_dataclass, data_fields=["times", "theta", "r", "velocity", "num_steps"],
                   meta_fields=[])
@dataclasses.dataclass(frozen=True)
class Trajectory:
    """What simulate returns (a pytree: it passes through jit and vmap)."""

    times: jax.Array  # [R]
    theta: jax.Array  # [R, ..., N] (not wrapped)
    r: jax.Array  # [R, ...] the order parameter |mean_j e^(i θ_j)|
    velocity: jax.Array | None = None  # [R, ..., N] with inertia
    num_steps: jax.Array | None = None  # accepted solver steps (adaptive and SDE methods)


def network(adjacency=None, *, n: int | None = None, normalize: str = "in_degree", dtype=np.float32):
    """The coupling the integrators read. adjacency: None (all-to-all on n nodes, normalised by 1/N), a
    wavejax.field.graphs.Graph (undirected, unweighted), or a dense array / scipy sparse matrix with A[i, j] the
    weight of the edge j -> i (directed and weighted; explicit zeros are no edge)."""
    from wavejax.field import graphs as G

    if normalize not in NORMALIZATIONS:
        raise ConfigError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}.")
    if adjacency is None:
        if not n or n < 1:
            raise ConfigError("network(None) is all-to-all and needs n >= 1 nodes.")
        return D.MeanFieldCoupling(int(n))
    if isinstance(adjacency, G.Graph):
        if normalize == "n":
            return G.weighted_coupling(G.sparse_adjacency(adjacency.n, adjacency.edges), "n", dtype)
        return G.graph_coupling(adjacency, dtype)  # unweighted: in-degree = in-weight
    return G.weighted_coupling(adjacency, normalize, dtype)


def _check(method: str, steps: int, record_every: int, dt: float, noise_std: float, key, inertia):
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}.")
    if steps < 1 or record_every < 1 or not dt > 0:
        raise ConfigError(f"need steps >= 1, record_every >= 1 and dt > 0, got {steps}, {record_every}, {dt}.")
    if method in SDE and not noise_std > 0:
        raise ConfigError(f"method {method!r} integrates noise: set noise_std > 0, or use rk4 / dopri5.")
    if method in ADAPTIVE and noise_std:
        raise ConfigError(f"method {method!r} is deterministic; with noise_std > 0 use euler_maruyama or heun.")
    if noise_std and key is None:
        raise ConfigError("noise_std > 0 needs a PRNG key (key=jax.random.PRNGKey(...)).")
    if inertia is not None and not inertia > 0:
        raise ConfigError(f"inertia (the mass m) must be > 0, got {inertia}.")


def simulate(coupling, theta0, omega, coupling_k, *, dt: float, steps: int, record_every: int = 1,
             method: str = "rk4", phase_lag=0.0, inertia: float | None = None, damping: float = 1.0, velocity0=None,
             noise_std: float = 0.0, key=None, rtol: float = 1e-6, atol: float = 1e-8,
             max_steps: int = 1_000_000) -> Trajectory:
    """Integrates from theta0 over steps · dt and records every record_every · dt (and at the end). theta0 / omega:
    [..., N] (leading axes are independent runs); coupling_k: a number, an array broadcasting to [...,] + (1,), or a
    CouplingSchedule. `dt` is the fixed step of euler / rk4 / the SDE solvers and the first trial step of the
    adaptive ones. See the module docstring for which method to use when."""
    _check(method, steps, record_every, dt, noise_std, key, inertia)
    static = dict(dt=float(dt), steps=int(steps), record_every=int(record_every), method=method,
                  phase_lag=phase_lag if isinstance(phase_lag, (int, float)) else None, inertia=inertia,
                  damping=float(damping), noise_std=float(noise_std))
    lag = None if static["phase_lag"] is not None else phase_lag  # a traced lag (an array) is an argument
    if method in FIXED:
        return _fixed(coupling, theta0, omega, coupling_k, velocity0, key, lag, **static)
    return _diffrax(coupling, theta0, omega, coupling_k, velocity0, key, lag, rtol=float(rtol), atol=float(atol),
                    max_steps=int(max_steps), **static)


def _times(steps, record_every, dt, dtype):
    n_rec = -(-steps // record_every)
    return jnp.minimum(jnp.arange(1, n_rec + 1) * record_every, steps).astype(dtype) * dt


@functools.partial(jax.jit, static_argnames=("dt", "steps", "record_every", "method", "phase_lag", "inertia",
                                             "damping", "noise_std"))
def _fixed(coupling, theta0, omega, coupling_k, velocity0, key, lag, *, dt, steps, record_every, method, phase_lag,
           inertia, damping, noise_std):
    phase_lag = lag if lag is not None else phase_lag
    step = D.kuramoto_stepper(omega, coupling_k, coupling, dt=dt, integrator=method, noise_std=noise_std,
                              noise_key=key, phase_lag=phase_lag, inertia=inertia, damping=damping)
    state0 = theta0 if inertia is None else (theta0, jnp.zeros_like(theta0) if velocity0 is None else velocity0)
    _, _, records = D.scan_blocks(step, state0, None, lambda a, st, t, n: (a, st), steps=steps, block=record_every)
    thetas, velocity = (records, None) if inertia is None else records
    return Trajectory(_times(steps, record_every, dt, theta0.dtype), thetas, order_parameter(thetas), velocity)


@functools.partial(jax.jit, static_argnames=("dt", "steps", "record_every", "method", "phase_lag", "inertia",
                                             "damping", "noise_std", "rtol", "atol", "max_steps"))
def _diffrax(coupling, theta0, omega, coupling_k, velocity0, key, lag, *, dt, steps, record_every, method, phase_lag,
             inertia, damping, noise_std, rtol, atol, max_steps):
    phase_lag = lag if lag is not None else phase_lag
    times = _times(steps, record_every, dt, theta0.dtype)
    second = inertia is not None
    if second:  # one stacked array [2, ..., N] = (θ, v): diffrax's noise term wants a single array
        v0 = jnp.zeros_like(theta0) if velocity0 is None else velocity0
        y0 = jnp.stack([theta0, v0])

        def field(t, y):
            dth, dv = D.kuramoto2_rhs((y[0], y[1]), omega, coupling_k, coupling, inertia=inertia, damping=damping,
                                      phase_lag=phase_lag, time=t)
            return jnp.stack([dth, dv])
    else:
        y0 = theta0

        def field(t, y):
            return D.kuramoto_rhs(y, omega, coupling_k, coupling, phase_lag=phase_lag, time=t)

    scale = None
    if noise_std:
        scale = jnp.zeros_like(y0).at[1].set(noise_std / inertia) if second else jnp.full_like(y0, noise_std)
    ys, num_steps = _solve(field, y0, times, dt, method, scale, key, rtol, atol, max_steps)
    theta, velocity = (ys[:, 0], ys[:, 1]) if second else (ys, None)
    return Trajectory(times, theta, order_parameter(theta), velocity, num_steps)


def _solve(field, y0, times, dt, method, noise_scale, key, rtol, atol, max_steps):
    """diffrax: dy = field(t, y) dt (+ diag(noise_scale) dW) from 0, saved at `times`; (ys, accepted steps)."""
    import diffrax
    import lineax

    terms = diffrax.ODETerm(lambda t, y, args: field(t, y))
    if method in SDE:
        bm = diffrax.VirtualBrownianTree(0.0, times[-1], tol=dt / 2, shape=y0.shape, key=key)
        diffusion = diffrax.ControlTerm(lambda t, y, a: lineax.DiagonalLinearOperator(noise_scale), bm)
        terms = diffrax.MultiTerm(terms, diffusion)
        solver = {"euler_maruyama": diffrax.Euler(), "heun": diffrax.Heun()}[method]
        controller = diffrax.ConstantStepSize()
    else:
        solver = {"dopri5": diffrax.Dopri5(), "tsit5": diffrax.Tsit5(), "dopri8": diffrax.Dopri8()}[method]
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
    sol = diffrax.diffeqsolve(terms, solver, 0.0, times[-1], dt, y0, saveat=diffrax.SaveAt(ts=times),
                              stepsize_controller=controller, max_steps=max_steps)
    return sol.ys, sol.stats.get("num_accepted_steps")


def integrate(field, y0, *, dt: float, steps: int, record_every: int = 1, method: str = "rk4",
              noise_std: float = 0.0, key=None, rtol: float = 1e-6, atol: float = 1e-8, max_steps: int = 1_000_000):
    """Any user-written equation dy/dt = field(t, y) (+ σ dW on every component), y an array, with the integrators of
    `simulate`: euler / rk4 in lax.scan, dopri5 / tsit5 / dopri8 adaptive, euler_maruyama / heun for noise. Returns
    (times [R], ys [R, *y0.shape]) recorded every record_every · dt, like simulate."""
    _check(method, steps, record_every, dt, noise_std, key, None)
    times = _times(steps, record_every, dt, y0.dtype)
    if method in FIXED:
        def step(y, t):
            y = D.fixed_step(lambda v, tm: field(tm, v), y, dt, (t - 1) * dt, method)
            if noise_std:
                y = y + (np.sqrt(dt) * noise_std) * D.step_noise(key, t, y.shape, y.dtype)
            return y

        _, _, ys = D.scan_blocks(step, y0, None, lambda a, y, t, n: (a, y), steps=steps, block=record_every)
        return times, ys
    scale = jnp.full_like(y0, noise_std) if noise_std else None
    return times, _solve(field, y0, times, dt, method, scale, key, rtol, atol, max_steps)[0]


def sweep(coupling, theta0, omega, ks, *, dt: float, steps: int, phase_lag=0.0, inertia: float | None = None,
          damping: float = 1.0, integrator: str = "rk4", average_from: float = 0.5):
    """An adiabatic coupling sweep: at each K of `ks` in turn, integrate `steps` steps starting from the state the
    previous K left (θ and, with inertia, v), and average R over the last (1 - average_from) of those steps. Sweeping
    K up and then down shows hysteresis where the model has it (second-order Kuramoto). Returns R [len(ks), ...]."""
    if integrator not in FIXED:
        raise ConfigError(f"sweep integrates with {FIXED}, got {integrator!r}.")
    first = max(0, min(steps - 1, int(steps * average_from)))

    def observe(acc, theta, t, n):
        keep = t > first
        return acc + jnp.where(keep, order_parameter(theta), 0.0), None

    def one(state, k):
        theta, v = state
        zero = jnp.zeros(theta.shape[:-1], theta.dtype)
        final, total, _ = D.kuramoto_run(theta, omega, k, coupling, dt=dt, steps=steps, record_every=1,
                                         integrator=integrator, observe=observe, acc=zero, phase_lag=phase_lag,
                                         inertia=inertia, damping=damping, velocity0=v)
        new = final if inertia is not None else (final, v)
        return new, total / (steps - first)

    v0 = jnp.zeros_like(theta0)
    _, r = jax.lax.scan(one, (theta0, v0), jnp.asarray(ks, theta0.dtype))
    return r
