"""Fused lattice Kuramoto: several Euler or RK4 steps of a side x side lattice per kernel launch, batched over trials.

No faithful/sound split here: the kernel reproduces the field simulator's sound Kuramoto model (wavejax.ops.oscillators)
step for step; `lattice_kuramoto_steps_reference` (a `lax.scan` of `dynamics.kuramoto_step`) is what it must match.

Per node i with its four lattice neighbours j (periodic wrap, or missing neighbours contributing 0 on an open lattice),
k_i the degree, one step is (the simulator's equations, see wavejax.ops.oscillators):

    dθ_i/dt = ω_i + (K / k_i) Σ_j sin(θ_j - θ_i) = ω_i + (K / k_i)(cos θ_i Σ_j sin θ_j - sin θ_i Σ_j cos θ_j)
    Euler:  θ ← θ + dt f(θ);   RK4: θ ← θ + dt (k1 + (2 (k2 - k1) + 2 (k3 - k1) + (k4 - k1)) / 6)
    noise:  θ ← θ + √dt σ ξ_t  (ξ_t pre-drawn by the caller with dynamics.step_noise, so both paths add the same draws)

Tiling. The grid is (trial, tile row, tile column). A program gathers a P x Q window (powers of two) of θ, ω and 1/k
around its TH x TW output tile (TH = P - 2h, TW = Q - 2h), with a halo of h = steps x stages rows and columns
(stages: 1 for Euler, 4 for RK4) taken with periodic wrap, so that `steps` fused steps need no data from other
programs: each right-hand-side evaluation makes the outermost still-valid ring of the window stale, and after
`steps` steps exactly the halo is stale. The phases stay in registers between steps; only the neighbour shifts go
through a per-program scratch window in global memory (Triton cannot shift a register tile), meant to stay in L1/L2. Tiles past the lattice edge (side not a multiple of TH) are masked on store. Trials are
independent programs, so multi-device runs need only a shard_map over the leading trial axis (a sharded jit cannot
partition the kernel's custom call; in interpret mode it can).

Written for the GPU (Triton lowering: power-of-two windows, `pl.program_id`, gathered ref loads, masked stores, a
barrier around the scratch exchange); on CPU it runs with `interpret=True` (chosen automatically), where it is a
correctness check only. The tests lower it for "cuda" on a CPU, so every operation has a Triton lowering rule. The
simulator's default is `impl="xla"`; what the kernel has measured is in docs/RESULTS.md.
Gradient: `lattice_kuramoto_steps` is a `jax.custom_vjp` whose backward pass is the VJP of the jnp reference
(recomputed from the launch's inputs, an XLA scan, not a Pallas adjoint kernel): the simulator never differentiates
its trajectories, but a fit of ω or K through the kernel gets the reference's exact gradients (θ, ω, K, noise).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from pallas_kernels import default_interpret
from wavejax.ops import oscillators as D

STAGES = {"euler": 1, "rk4": 4}  # right-hand-side evaluations per step: each widens the stale ring by one
DEFAULT_STEPS_PER_LAUNCH = {"euler": 8, "rk4": 2}  # halo 8 either way
DEFAULT_WINDOW = 64  # P = Q = 64: a 48 x 48 output tile with a halo of 8


def halo_width(steps: int, integrator: str) -> int:
    if integrator not in STAGES:
        raise ValueError(f"unknown integrator {integrator!r}; choose one of {tuple(STAGES)}")
    return steps * STAGES[integrator]


def default_window(side: int, halo: int) -> int:
    """The smallest power of two holding min(side, DEFAULT_WINDOW - 2 halo) + 2 halo: one window for small
    lattices, DEFAULT_WINDOW (when the halo leaves room) for large ones."""
    tile = max(1, min(side, DEFAULT_WINDOW - 2 * halo))
    return 1 << (tile + 2 * halo - 1).bit_length()


def steps_per_launch(record_every: int, integrator: str, cap: int | None = None) -> int:
    """The largest divisor of record_every that is at most cap (default DEFAULT_STEPS_PER_LAUNCH[integrator]):
    records then fall on launch boundaries, at the same steps as the unfused run."""
    cap = cap or DEFAULT_STEPS_PER_LAUNCH[integrator]
    return max(d for d in range(1, min(cap, record_every) + 1) if record_every % d == 0)


# -- the reference ------------------------------------------------------------------------------------------------

def lattice_kuramoto_steps_reference(theta, omega, coupling_k, inv_degree, *, dt: float, steps: int,
                                     integrator: str = "euler", periodic: bool = True, noise=None,
                                     noise_scale: float = 0.0, n_valid=None):
    """Plain jnp: `steps` steps of dynamics.kuramoto_step with the roll stencil (dynamics.LatticeCoupling), in a
    `lax.scan`. Shapes and arguments as lattice_kuramoto_steps."""
    batch, side, _ = theta.shape
    coupling = D.LatticeCoupling(jnp.asarray(inv_degree).reshape(side * side), side, periodic)
    k = jnp.asarray(coupling_k, theta.dtype)[:, None]
    n_valid = jnp.broadcast_to(jnp.asarray(steps if n_valid is None else n_valid), (batch,))[:, None]  # per trial

    def body(th, xs):
        l, xi = xs
        new = D.kuramoto_step(th, omega.reshape(batch, -1), k, coupling, dt, integrator, t=l)
        if noise is not None:
            new = new + noise_scale * xi.reshape(batch, -1)
        return jnp.where(l < n_valid, new, th), None

    xs = (jnp.arange(steps, dtype=jnp.int32), None if noise is None else jnp.swapaxes(noise, 0, 1))
    theta, _ = jax.lax.scan(body, theta.reshape(batch, -1), xs)
    return theta.reshape(batch, side, side)


# -- the kernel ---------------------------------------------------------------------------------------------------

class _WindowCoupling:
    """dynamics' coupling interface (inv_degree, pair_sums) on one program's window: the four-neighbour sums read
    shifted copies of s and c back from the program's scratch slot. The window's border rows/columns use a clamped
    (wrong) neighbour; they lie in the halo, whose results are never stored."""

    def __init__(self, inv_degree, valid, s_ref, c_ref, slot, barrier: bool):
        self.inv_degree, self.valid = inv_degree, valid
        self.s_ref, self.c_ref, self.slot, self.barrier = s_ref, c_ref, slot, barrier
        p, q = inv_degree.shape
        self.rows, self.cols = jnp.arange(p)[:, None], jnp.arange(q)[None, :]
        self.up, self.down = jnp.maximum(self.rows - 1, 0), jnp.minimum(self.rows + 1, p - 1)
        self.left, self.right = jnp.maximum(self.cols - 1, 0), jnp.minimum(self.cols + 1, q - 1)

    def _sync(self):
        if self.barrier:  # interpret mode runs one program at a time and has no barrier primitive
            plgpu.debug_barrier()

    def _sums(self, ref):
        """f_(i-1,j) + f_(i+1,j) + f_(i,j-1) + f_(i,j+1) read from the slot, in the order of LatticeCoupling.sums'
        rolls (so the float32 results equal the reference's)."""
        return (((ref[self.slot, self.up, self.cols] + ref[self.slot, self.down, self.cols])
                 + ref[self.slot, self.rows, self.left]) + ref[self.slot, self.rows, self.right])

    def pair_sums(self, s, c):
        if self.valid is not None:  # open lattice: nodes outside it are missing neighbours (zero padding)
            s, c = jnp.where(self.valid, s, 0.0), jnp.where(self.valid, c, 0.0)
        self.s_ref[self.slot] = s
        self.c_ref[self.slot] = c
        self._sync()  # every thread's stores are visible before any shifted read
        sums = self._sums(self.s_ref), self._sums(self.c_ref)
        self._sync()  # every shifted read is done before the next evaluation overwrites the slot
        return sums


def _lattice_kernel(theta_ref, omega_ref, k_ref, inv_ref, n_valid_ref, *refs, side, tile, halo, steps, integrator,
                    periodic, dt, noise_scale, has_noise, barrier):
    noise_ref = refs[0] if has_noise else None
    out_ref, s_ref, c_ref = refs[-3:]
    b, ti, tj = pl.program_id(0), pl.program_id(1), pl.program_id(2)
    th, tw = tile
    p, q = th + 2 * halo, tw + 2 * halo
    g_rows = ti * th - halo + jnp.arange(p)  # global row of each window row (may lie outside the lattice)
    g_cols = tj * tw - halo + jnp.arange(q)
    if periodic:
        rows, cols, valid = (g_rows % side)[:, None], (g_cols % side)[None, :], None
    else:
        rows = jnp.clip(g_rows, 0, side - 1)[:, None]
        cols = jnp.clip(g_cols, 0, side - 1)[None, :]
        valid = ((g_rows >= 0) & (g_rows < side))[:, None] & ((g_cols >= 0) & (g_cols < side))[None, :]
    theta = theta_ref[b, rows, cols]
    omega = omega_ref[b, rows, cols]
    slot = (b * pl.num_programs(1) + ti) * pl.num_programs(2) + tj
    coupling = _WindowCoupling(inv_ref[rows, cols], valid, s_ref, c_ref, slot, barrier)
    coupling_k = k_ref[b]
    n_valid = n_valid_ref[b]

    def step(l, th_):
        new = D.kuramoto_step(th_, omega, coupling_k, coupling, dt, integrator)
        if has_noise:
            new = new + noise_scale * noise_ref[b, l, rows, cols]
        return jnp.where(l < n_valid, new, th_)

    theta = jax.lax.fori_loop(0, steps, step, theta)
    # The output is padded by the halo on each side, so every window lane has its own address (no duplicate
    # indices in the masked store); only the TH x TW interior is written.
    local_r, local_c = jnp.arange(p)[:, None], jnp.arange(q)[None, :]
    interior = ((local_r >= halo) & (local_r < halo + th)) & ((local_c >= halo) & (local_c < halo + tw))
    plgpu.store(out_ref.at[b, ti * th + local_r, tj * tw + local_c], theta, mask=interior)


def lattice_kuramoto_steps(theta, omega, coupling_k, inv_degree, *, dt: float, steps: int, integrator: str = "euler",
                           periodic: bool = True, noise=None, noise_scale: float = 0.0, n_valid=None,
                           window: int | tuple[int, int] | None = None, num_warps: int = 8,
                           interpret: bool | None = None):
    """`steps` fused Kuramoto steps on a batch of side x side lattices in one pallas_call.

    theta, omega [B, side, side] float32; coupling_k [B] (K per trial); inv_degree [side, side] (1/k_i, shared);
    noise [B, steps, side, side] or None, added as noise_scale * noise[:, l] after step l; n_valid (int32, a scalar or
    [B]; default steps): steps l >= n_valid leave θ unchanged (the ragged last launch of a run). window: the P x Q
    window (powers of two; default default_window), which must exceed twice the halo h = steps x stages.
    Returns θ [B, side, side]. interpret defaults to True on CPU.
    """
    if theta.ndim != 3 or theta.shape[1] != theta.shape[2]:
        raise ValueError(f"theta must be [trials, side, side], got shape {theta.shape}")
    if theta.dtype != jnp.float32:
        raise ValueError(f"the lattice Kuramoto kernel computes in float32, got {theta.dtype}")
    batch, side, _ = theta.shape
    if omega.shape != theta.shape or jnp.shape(coupling_k) != (batch,) or jnp.shape(inv_degree) != (side, side):
        raise ValueError(f"need omega {theta.shape}, coupling_k ({batch},) and inv_degree ({side}, {side}); got "
                         f"{omega.shape}, {jnp.shape(coupling_k)}, {jnp.shape(inv_degree)}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if noise is not None and noise.shape != (batch, steps, side, side):
        raise ValueError(f"noise must be {(batch, steps, side, side)}, got {noise.shape}")
    halo = halo_width(steps, integrator)
    p, q = (window, window) if isinstance(window, int) else (window or (default_window(side, halo),) * 2)
    if any(w & (w - 1) for w in (p, q)) or min(p, q) <= 2 * halo:
        raise ValueError(f"window {p} x {q} must be powers of two larger than twice the halo {halo} "
                         f"({steps} steps x {STAGES[integrator]} stages)")
    n_valid = jnp.broadcast_to(jnp.asarray(steps if n_valid is None else n_valid, jnp.int32), (batch,))
    launch = functools.partial(_launch, side=side, window=(p, q), halo=halo, steps=steps, integrator=integrator,
                               periodic=periodic, dt=float(dt), noise_scale=float(noise_scale), num_warps=num_warps,
                               interpret=default_interpret() if interpret is None else interpret)
    reference = functools.partial(lattice_kuramoto_steps_reference, dt=dt, steps=steps, integrator=integrator,
                                  periodic=periodic, noise_scale=noise_scale)

    @jax.custom_vjp
    def fused(theta, omega, coupling_k, inv_degree, n_valid, noise):
        return launch(theta, omega, coupling_k, inv_degree, n_valid, noise)

    def fused_fwd(*args):
        return fused(*args), args

    def fused_bwd(residuals, cotangent):  # the reference's VJP, recomputed (see the module docstring)
        theta, omega, coupling_k, inv_degree, n_valid, noise = residuals
        _, vjp = jax.vjp(lambda th, om, k, xi: reference(th, om, k, inv_degree, noise=xi, n_valid=n_valid),
                         theta, omega, coupling_k, noise)
        d_theta, d_omega, d_k, d_noise = vjp(cotangent)
        return d_theta, d_omega, d_k, None, None, d_noise  # no gradient for the lattice's degrees or n_valid

    fused.defvjp(fused_fwd, fused_bwd)
    f32 = jnp.float32
    return fused(theta, jnp.asarray(omega, f32), jnp.asarray(coupling_k, f32), jnp.asarray(inv_degree, f32), n_valid,
                 None if noise is None else jnp.asarray(noise, f32))


def _launch(theta, omega, coupling_k, inv_degree, n_valid, noise, *, side, window, halo, steps, integrator, periodic,
            dt, noise_scale, num_warps, interpret):
    """The pallas_call behind lattice_kuramoto_steps (arguments checked there)."""
    batch = theta.shape[0]
    p, q = window
    tile = (p - 2 * halo, q - 2 * halo)
    grid = (batch, -(-side // tile[0]), -(-side // tile[1]))
    kernel = functools.partial(_lattice_kernel, side=side, tile=tile, halo=halo, steps=steps, integrator=integrator,
                               periodic=periodic, dt=dt, noise_scale=noise_scale, has_noise=noise is not None,
                               barrier=not interpret)
    f32 = jnp.float32
    out_shape = [jax.ShapeDtypeStruct((batch, grid[1] * tile[0] + 2 * halo, grid[2] * tile[1] + 2 * halo), f32),
                 jax.ShapeDtypeStruct((math.prod(grid), p, q), f32),  # scratch: s of each program's window
                 jax.ShapeDtypeStruct((math.prod(grid), p, q), f32)]  # scratch: c
    args = [theta, omega, coupling_k, inv_degree, n_valid]
    if noise is not None:
        args.append(noise)
    out, _, _ = pl.pallas_call(kernel, out_shape=out_shape, grid=grid, interpret=interpret,
                               compiler_params=None if interpret else plgpu.CompilerParams(num_warps=num_warps,
                                                                                          num_stages=1),
                               name="lattice_kuramoto")(*args)
    return out[:, halo:halo + side, halo:halo + side]


# -- the simulator's fused run -------------------------------------------------------------------------------------

def batched_launch(**static):
    """lattice_kuramoto_steps(theta, omega, coupling_k, inv_degree, n_valid[, noise], **static) with a vmap rule that
    folds vmapped axes into the kernel's own trial axis: the simulator vmaps over trials, and the launch stays one
    (trial x tile x tile) grid instead of pallas_call's generic batching (an extra grid axis; in interpret mode 80x
    slower for RK4). n_valid is per trial [B]. A vmapped inv_degree (a batch of different lattices) keeps the
    generic rule."""

    def plain(theta, omega, coupling_k, inv_degree, n_valid, *noise):
        return lattice_kuramoto_steps(theta, omega, coupling_k, inv_degree, n_valid=n_valid,
                                      noise=noise[0] if noise else None, **static)

    launch = jax.custom_batching.custom_vmap(plain)

    @launch.def_vmap
    def _fold(axis_size, in_batched, theta, omega, coupling_k, inv_degree, n_valid, *noise):
        args = (theta, omega, coupling_k, inv_degree, n_valid, *noise)
        if in_batched[3]:
            in_axes = tuple(0 if b else None for b in in_batched)
            return jax.vmap(plain, in_axes=in_axes)(*args), True
        lead = [a if b else jnp.broadcast_to(a, (axis_size,) + a.shape) for a, b in zip(args, in_batched)]
        folded = [a.reshape((-1,) + a.shape[2:]) for a in lead]
        folded[3] = inv_degree
        out = launch(*folded)
        return out.reshape((axis_size, -1) + out.shape[1:]), True

    return launch


def fused_kuramoto_run(theta0, omega, coupling_k, coupling, *, dt: float, steps: int, record_every: int,
                       integrator: str = "euler", noise_std: float = 0.0, noise_key=None, observe=None, acc=None,
                       launch_cap: int | None = None, window=None, interpret: bool | None = None):
    """dynamics.kuramoto_run on a lattice (coupling: dynamics.LatticeCoupling) with L = steps_per_launch(record_every)
    steps per kernel launch; same arguments and returns (records at the same steps, observe called with step
    indices). θ [..., N] with any leading batch axes (vmap adds its own). The noise ξ_t is drawn per step exactly as
    the unfused run draws it."""
    if not isinstance(coupling, D.LatticeCoupling):
        raise ValueError(f"the fused Kuramoto kernel needs a square lattice coupling, got {type(coupling).__name__}")
    if noise_std and noise_key is None:
        raise ValueError("fused_kuramoto_run needs a noise_key when noise_std > 0")
    side = coupling.side
    per_launch = steps_per_launch(record_every, integrator, launch_cap)
    batch_shape = theta0.shape[:-1]
    flat = (-1, side, side)
    omega_b = jnp.broadcast_to(omega, theta0.shape).reshape(flat)
    k_b = jnp.broadcast_to(jnp.asarray(coupling_k, theta0.dtype), batch_shape).reshape(-1)
    inv = jnp.broadcast_to(coupling.inv_degree, (side * side,)).reshape(side, side)
    observe = observe or (lambda a, th, t, n: (a, th))
    launch = batched_launch(dt=dt, steps=per_launch, integrator=integrator, periodic=coupling.periodic,
                            noise_scale=math.sqrt(dt) * noise_std, window=window, interpret=interpret)

    def launch_from(theta, u):  # u = 1, 2, ...: the launch index (scan_blocks' step)
        t_first = (u - 1) * per_launch + 1
        noise = ()
        if noise_std:
            draws = jax.vmap(lambda l: D.step_noise(noise_key, t_first + l, theta.shape, theta.dtype))(
                jnp.arange(per_launch, dtype=jnp.int32))  # [L, ..., N]
            noise = (jnp.moveaxis(draws, 0, -2).reshape((-1, per_launch, side, side)),)
        n_valid = jnp.broadcast_to(steps - t_first + 1, k_b.shape)
        return launch(theta.reshape(flat), omega_b, k_b, inv, n_valid, *noise).reshape(theta.shape)

    def observe_steps(a, theta, u_first, n_valid):
        t_first = (u_first - 1) * per_launch + 1
        return observe(a, theta, t_first, jnp.minimum(record_every, steps - t_first + 1))

    return D.scan_blocks(launch_from, theta0, acc, observe_steps, steps=-(-steps // per_launch),
                         block=record_every // per_launch)
