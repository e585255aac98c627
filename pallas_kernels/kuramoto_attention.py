"""The phase layer's T Kuramoto steps fused into one Pallas kernel, forward and backward (a custom_vjp).

No faithful/sound split of its own: the kernel integrates whatever the phase layer asks for, causal prefix coupling
(the sound default, both normalisations) or the original's non-causal all-to-all coupling (seed_faithful), and must
match `wavejax.ops.phase.kuramoto_dynamics` (the lax.scan reference; `kuramoto_coupling_reference` is the pairwise
form behind it). Per (b, h, o) and token i, with n_i = i + 1 ("count"), S ("length") and all means over S when not
causal, t = 0..T-1:

    C_i = (1/n_i) Σ_{j<=i} cos θ_j,   S_i = (1/n_i) Σ_{j<=i} sin θ_j,   f_i = sin θ_i · C_i - cos θ_i · S_i
    θ^{t+1}_i = wrap(θ^t_i + dt (ω + s K f_i) [+ σ ξ^t_i]),   wrap(a) = ((a + π) mod 2π) - π

Tiling. Channels o are independent given the prefix sums over the sequence, so one program owns one (b, h) and a
block of `block_o` channels with the whole (power-of-two padded) sequence on chip, and runs all T steps without
writing θ back: HBM traffic is one read of θ⁰ (and of the noise, if any) and one write of θ^T, against the XLA scan's
several full [B,H,S,O] passes per step. Prefix sums are `jnp.cumsum` along S, which Pallas lowers to Triton's
`tt.scan` (a work-efficient parallel scan in registers); a lower-triangular matmul on tensor cores would need an
[S, S] operand per program (1 MiB in f32 at S = 512: it does not fit on chip) or a blocked two-level scheme, for an
operation that is a small part of each step next to the sin/cos. Padded rows (S not a power of two) are masked out of
the non-causal means; causal prefix sums never see them (they come last).

Backward (custom_vjp): with g = ∂L/∂θ^{t+1} (wrap has derivative 1 almost everywhere, as jax.grad of the reference
gives), a = dt s K g,

    ∂L/∂θ^t_j = g_j + a_j (cos θ_j C_j + sin θ_j S_j) - sin θ_j Σ_{i>=j} a_i sin θ_i / n_i
                                                     - cos θ_j Σ_{i>=j} a_i cos θ_i / n_i
    ∂L/∂ω += dt Σ_i g_i,   ∂L/∂K += dt s Σ_i g_i f_i,   ∂L/∂ξ^t = σ g

The suffix sums (the adjoint of a prefix mean) are computed as total - inclusive prefix + own term, since Triton's
scan runs forward only. Where θ^t comes from (`backward`): "stored" (default) — the forward pass under a VJP also
writes θ^0..θ^{T-1} to HBM (T·B·H·S·O floats: what the XLA scan with remat stores, so no memory is saved, but the
backward is T adjoint steps); "recompute" — no trajectory, θ^t is recomputed on chip from θ⁰ for each t (T(T-1)/2 =
45 extra steps at T = 10; the T [S, block_o] tiles do not fit on chip at S = 512), so the kernel's working memory is
only its outputs. The kernel benchmark times both.
Noise: drawn outside by the reference's law (N(0,1) from fold_in(noise_key, t) for step t: `step_noise`, [T,B,H,S,O])
and passed in batch-first ([B,T,H,S,O]), so both impls add the same numbers; the backward returns its gradient too.

On CPU the kernel runs with interpret=True (selected automatically). The phase layer's default is model.phase.impl =
"xla"; block_o = 8 and num_warps = 4 are chosen for register pressure (~8 live [S, block_o] f32 tiles per program).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from pallas_kernels import default_interpret, is_power_of_two
from wavejax.ops.phase import (
    CAUSAL_NORMS,
    kuramoto_dynamics,  # noqa: F401  (the reference)
    step_noise_draw,
    wrap,
)
from wavejax.parallel.sharding import per_device_in_context_mesh

DEFAULT_BLOCK_O = 8
DEFAULT_NUM_WARPS = 4
BACKWARDS = ("stored", "recompute")  # where the backward gets θ^t: the forward's saved trajectory, or recomputed


def step_noise(noise_key, steps: int, shape, dtype=jnp.float32):
    """[T, *shape] standard normals, step t's by step_noise_draw: the draws kuramoto_dynamics adds."""
    return jax.vmap(lambda t: step_noise_draw(noise_key, t, shape, dtype))(jnp.arange(steps))


# -- the kernels ----------------------------------------------------------------------------------------------------

class _Tile:
    """One program's view: the valid-row mask and the normalisers n_i of the (prefix) means over the sequence."""

    def __init__(self, s_pad: int, seq_len: int, causal: bool, causal_norm: str, dtype):
        rows = jnp.arange(s_pad)[:, None]
        self.valid = rows < seq_len
        self.causal = causal
        # n_i: an [Sp, 1] column for "count", else the Python number S (a constant in the kernel)
        self.counts = (rows + 1).astype(dtype) if causal and causal_norm == "count" else float(seq_len)

    def means(self, c, s):
        """(C, S): prefix means when causal, else the means over the valid rows ([1, block_o], broadcast)."""
        if self.causal:
            return jnp.cumsum(c, axis=0) / self.counts, jnp.cumsum(s, axis=0) / self.counts
        c, s = jnp.where(self.valid, c, 0.0), jnp.where(self.valid, s, 0.0)
        return c.sum(axis=0, keepdims=True) / self.counts, s.sum(axis=0, keepdims=True) / self.counts

    def suffix_means(self, x):
        """Σ_{i>=j} x_i / n_i (causal) or Σ_i x_i / S (not causal), for x with zero padded rows."""
        x = x / self.counts
        if self.causal:
            return x.sum(axis=0, keepdims=True) - jnp.cumsum(x, axis=0) + x  # Triton's scan runs forward only
        return x.sum(axis=0, keepdims=True)


def _coupling(theta, tile: _Tile):
    """cos θ, sin θ, the means (C, S) and f = sin θ · C - cos θ · S."""
    c, s = jnp.cos(theta), jnp.sin(theta)
    mc, ms = tile.means(c, s)
    return c, s, mc, ms, s * mc - c * ms


def _euler_step(theta, t, omega, sk, noise_ref, tile, dt, noise_std):
    """θ^{t+1} from θ^t, in the reference's order of operations."""
    f = _coupling(theta, tile)[-1]
    theta = theta + dt * (omega + sk * f)
    if noise_ref is not None:
        theta = theta + noise_std * noise_ref[t].astype(theta.dtype)
    return wrap(theta)


def _load(theta_ref, omega_ref, kappa_ref, sign):
    acc = jnp.promote_types(theta_ref.dtype, jnp.float32)
    theta = theta_ref[...].astype(acc)
    omega = omega_ref[...].astype(acc)[None, :]
    kappa = kappa_ref[...].astype(acc)[None, :]
    return theta, omega, kappa, sign * kappa


def _forward_kernel(theta_ref, omega_ref, kappa_ref, *refs, steps, dt, sign, seq_len, causal, causal_norm,
                    noise_std, has_noise, stored, write_trajectory):
    del stored  # the backward's setting; write_trajectory says whether this call saves θ^t
    noise_ref = refs[0] if has_noise else None
    out_ref, trajectory_ref = (refs[-2], refs[-1]) if write_trajectory else (refs[-1], None)
    theta, omega, _, sk = _load(theta_ref, omega_ref, kappa_ref, sign)
    tile = _Tile(theta.shape[0], seq_len, causal, causal_norm, theta.dtype)
    step = functools.partial(_euler_step, omega=omega, sk=sk, noise_ref=noise_ref, tile=tile, dt=dt,
                             noise_std=noise_std)

    def body(t, th):
        if write_trajectory:
            trajectory_ref[t] = th.astype(trajectory_ref.dtype)  # θ^t, for the backward pass
        return step(th, t)

    theta = jax.lax.fori_loop(0, steps, body, theta)
    out_ref[...] = theta.astype(out_ref.dtype)


def _backward_kernel(theta_ref, omega_ref, kappa_ref, *refs, steps, dt, sign, seq_len, causal, causal_norm,
                     noise_std, has_noise, stored):
    refs = list(refs)
    noise_ref = refs.pop(0) if has_noise else None
    trajectory_ref = refs.pop(0) if stored else None
    g_ref, dtheta_ref, domega_ref, dkappa_ref = refs[:4]
    dnoise_ref = refs[4] if has_noise else None
    theta0, omega, kappa, sk = _load(theta_ref, omega_ref, kappa_ref, sign)
    tile = _Tile(theta0.shape[0], seq_len, causal, causal_norm, theta0.dtype)
    step = functools.partial(_euler_step, omega=omega, sk=sk, noise_ref=noise_ref, tile=tile, dt=dt,
                             noise_std=noise_std)

    def adjoint_step(r, carry):
        g, domega, dkappa = carry
        t = steps - 1 - r
        if stored:
            theta = trajectory_ref[t].astype(theta0.dtype)
        else:  # θ^t recomputed on chip from θ⁰
            theta = jax.lax.fori_loop(0, t, lambda u, th: step(th, u), theta0)
        g = jnp.where(tile.valid, g, 0.0)  # ∂L/∂θ^{t+1}; padded rows take no part
        if has_noise:
            dnoise_ref[t] = (noise_std * g).astype(dnoise_ref.dtype)
        c, s, mc, ms, f = _coupling(theta, tile)
        domega = domega + dt * g.sum(axis=0)
        dkappa = dkappa + (dt * sign) * (g * f).sum(axis=0)
        a = dt * sk * g
        g = g + a * (c * mc + s * ms) - s * tile.suffix_means(a * s) - c * tile.suffix_means(a * c)
        return g, domega, dkappa

    g = g_ref[...].astype(theta0.dtype)
    zeros = jnp.zeros(theta0.shape[1:], theta0.dtype)
    g, domega, dkappa = jax.lax.fori_loop(0, steps, adjoint_step, (g, zeros, zeros))
    dtheta_ref[...] = jnp.where(tile.valid, g, 0.0).astype(dtheta_ref.dtype)
    domega_ref[...] = domega.astype(domega_ref.dtype)
    dkappa_ref[...] = dkappa.astype(dkappa_ref.dtype)


# -- pallas_calls (padded shapes: theta [B,H,Sp,Op], omega and kappa [B,H,Op], noise and trajectory [B,T,H,Sp,Op]) --

def _call(kernel, args, in_specs, out_shape, out_specs, block_o, statics, interpret, num_warps, name):
    """pallas_call over the grid (B, H, Op / block_o); specs named "tile" ([Sp, block_o] of a [B,H,Sp,Op] array),
    "channels" ([block_o] of [B,H,Op]) or "steps" ([T, Sp, block_o] of [B,T,H,Sp,Op])."""
    b, h, s_pad, o_pad = args[0].shape
    spec = {"tile": pl.BlockSpec((None, None, s_pad, block_o), lambda b, h, j: (b, h, 0, j)),
            "channels": pl.BlockSpec((None, None, block_o), lambda b, h, j: (b, h, j)),
            "steps": pl.BlockSpec((None, statics["steps"], None, s_pad, block_o), lambda b, h, j: (b, 0, h, 0, j))}
    return pl.pallas_call(
        functools.partial(kernel, **statics),
        grid=(b, h, o_pad // block_o),
        in_specs=[spec[k] for k in in_specs],
        out_specs=[spec[k] for k in out_specs],
        out_shape=out_shape,
        compiler_params=None if interpret else plgpu.CompilerParams(num_warps=num_warps, num_stages=1),
        interpret=interpret,
        name=name,
    )(*args)


def _inputs(theta, omega, kappa, noise):
    """The kernels' leading arguments and their spec names (noise only when there is some)."""
    if noise is None:
        return (theta, omega, kappa), ["tile", "channels", "channels"]
    return (theta, omega, kappa, noise), ["tile", "channels", "channels", "steps"]


def _forward(theta, omega, kappa, noise, statics, block_o, interpret, num_warps, write_trajectory):
    """θ^T, and the trajectory θ^0..θ^{T-1} [B,T,H,Sp,Op] when write_trajectory (else None)."""
    args, specs = _inputs(theta, omega, kappa, noise)
    out_shape, out_specs = [jax.ShapeDtypeStruct(theta.shape, theta.dtype)], ["tile"]
    if write_trajectory:
        b, h, s_pad, o_pad = theta.shape
        acc = jnp.promote_types(theta.dtype, jnp.float32)
        out_shape.append(jax.ShapeDtypeStruct((b, statics["steps"], h, s_pad, o_pad), acc))
        out_specs.append("steps")
    outs = _call(_forward_kernel, args, specs, out_shape, out_specs, block_o,
                 dict(statics, write_trajectory=write_trajectory), interpret, num_warps, "kuramoto_attention_forward")
    return outs[0], (outs[1] if write_trajectory else None)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def _fused(theta, omega, kappa, noise, statics, block_o, interpret, num_warps):
    """θ^T for padded theta [B,H,Sp,Op], omega/kappa [B,H,Op] and noise [B,T,H,Sp,Op] (or None); statics a hashable
    tuple of the kernels' keyword settings."""
    return _forward(theta, omega, kappa, noise, dict(statics), block_o, interpret, num_warps, False)[0]


def _fused_fwd(theta, omega, kappa, noise, statics, block_o, interpret, num_warps):
    statics = dict(statics)
    out, trajectory = _forward(theta, omega, kappa, noise, statics, block_o, interpret, num_warps, statics["stored"])
    return out, (theta, omega, kappa, noise, trajectory)


def _fused_bwd(statics, block_o, interpret, num_warps, residuals, g):
    theta, omega, kappa, noise, trajectory = residuals
    statics = dict(statics)
    args, specs = _inputs(theta, omega, kappa, noise)
    if trajectory is not None:
        args, specs = args + (trajectory,), specs + ["steps"]
    acc = jnp.promote_types(theta.dtype, jnp.float32)
    out_shape = [jax.ShapeDtypeStruct(theta.shape, theta.dtype), jax.ShapeDtypeStruct(omega.shape, acc),
                 jax.ShapeDtypeStruct(kappa.shape, acc)]
    out_specs = ["tile", "channels", "channels"]
    if noise is not None:
        out_shape.append(jax.ShapeDtypeStruct(noise.shape, noise.dtype))
        out_specs.append("steps")
    grads = _call(_backward_kernel, args + (g,), specs + ["tile"], out_shape, out_specs, block_o, statics, interpret,
                  num_warps, "kuramoto_attention_backward")
    dtheta, domega, dkappa = grads[:3]
    dnoise = grads[3] if noise is not None else None
    return dtheta, domega.astype(omega.dtype), dkappa.astype(kappa.dtype), dnoise


_fused.defvjp(_fused_fwd, _fused_bwd)


# -- public entry points -----------------------------------------------------------------------------------------------

def fused_kuramoto_steps(theta0, omega, coupling_k, *, steps: int, dt: float, sign: float, causal: bool,
                         causal_norm: str = "count", noise=None, noise_std: float = 0.0, backward: str = "stored",
                         block_o: int | None = None, num_warps: int = DEFAULT_NUM_WARPS,
                         interpret: bool | None = None):
    """θ^T of `steps` Euler steps by the fused kernel: theta0 [B,H,S,O]; omega broadcastable to [B,H,1,O] ([H,1,O]
    or [B,H,1,O]); coupling_k [H] (or [B,H]); noise None or [B,T,H,S,O] standard normals (step t's added as
    noise_std · ξ^t).

    Equals kuramoto_dynamics with the same settings (and noise drawn by `step_noise`, batch axis first);
    differentiable in theta0, omega, coupling_k (and noise) through a custom_vjp. Computes in float32 (float64
    under x64) whatever the input dtype and returns theta0's dtype. backward: "stored" (the forward pass under a VJP
    also writes θ^0..θ^{T-1}, T·B·H·S·O floats, as the XLA scan stores its carries) or "recompute" (no trajectory:
    θ^t is recomputed on chip, T(T-1)/2 extra steps). block_o: channels per program, a power of two (default
    min(8, next power of two of O)); interpret=None picks interpret mode on CPU."""
    if theta0.ndim != 4:
        raise ValueError(f"theta0 must be [B,H,S,O], got shape {theta0.shape}.")
    b, h, s, o = theta0.shape
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}.")
    if causal_norm not in CAUSAL_NORMS:
        raise ValueError(f"causal_norm must be one of {CAUSAL_NORMS}, got {causal_norm!r}.")
    if jnp.shape(coupling_k) not in ((h,), (b, h)):
        raise ValueError(f"coupling_k must be [H] = ({h},) or [B,H], got shape {jnp.shape(coupling_k)}.")
    if noise is not None and noise.shape != (b, steps, h, s, o):
        raise ValueError(f"noise must be [B,T,H,S,O] = {(b, steps, h, s, o)}, got {noise.shape}.")
    if backward not in BACKWARDS:
        raise ValueError(f"backward must be one of {BACKWARDS}, got {backward!r}.")
    block_o = block_o or min(DEFAULT_BLOCK_O, pl.next_power_of_2(o))
    if not is_power_of_two(block_o):
        raise ValueError(f"block_o must be a power of two, got {block_o}.")
    interpret = default_interpret() if interpret is None else interpret
    s_pad, o_pad = pl.next_power_of_2(s), -(-o // block_o) * block_o
    pad_o = ((0, 0), (0, 0), (0, o_pad - o))
    acc = jnp.promote_types(theta0.dtype, jnp.float32)  # ω, K cast first: the broadcasts' sums of dω, dK run in it
    theta_p = jnp.pad(theta0, ((0, 0), (0, 0), (0, s_pad - s), (0, o_pad - o)))
    omega_p = jnp.pad(jnp.broadcast_to(jnp.asarray(omega, acc), (b, h, 1, o))[:, :, 0], pad_o)
    kappa_p = jnp.pad(jnp.broadcast_to(jnp.asarray(coupling_k, acc)[..., None], (b, h, o)), pad_o)
    noise_p = None if noise is None else jnp.pad(noise, ((0, 0),) * 3 + ((0, s_pad - s), (0, o_pad - o)))
    statics = (("steps", int(steps)), ("dt", float(dt)), ("sign", float(sign)), ("seq_len", s),
               ("causal", bool(causal)), ("causal_norm", causal_norm), ("noise_std", float(noise_std)),
               ("has_noise", noise is not None), ("stored", backward == "stored"))
    out = _fused(theta_p, omega_p, kappa_p, noise_p, statics, block_o, interpret, num_warps)
    return out[:, :, :s, :o]


def kuramoto_dynamics_pallas(theta0, omega, coupling_k, *, steps: int, dt: float, sign: float, causal: bool,
                             causal_norm: str = "count", noise_key=None, noise_std: float = 0.0, remat: bool = True):
    """kuramoto_dynamics' signature and result, by the fused kernel (the phase layer's impl="pallas"): the noise is
    drawn by the reference's law and the kernel runs through shard_map over the batch under a multi-device mesh (a
    sharded jit cannot split its custom call). remat is ignored: the backward reads the trajectory the forward saved
    (backward="stored"), which holds what the scan with remat holds, θ^t per step."""
    del remat
    b, h = theta0.shape[:2]
    # every argument batch-leading, so the batch split applies to all and dω, dK are summed outside the shard_map
    omega_b = jnp.broadcast_to(omega, (b, h, 1, theta0.shape[-1]))
    k_b = jnp.broadcast_to(coupling_k, (b, h))
    static = dict(steps=steps, dt=dt, sign=sign, causal=causal, causal_norm=causal_norm, noise_std=noise_std)
    if noise_key is None:
        return per_device_in_context_mesh(lambda th, om, k: fused_kuramoto_steps(th, om, k, **static),
                                          (theta0, omega_b, k_b))
    noise = jnp.moveaxis(step_noise(noise_key, steps, theta0.shape, theta0.dtype), 0, 1)  # [B,T,H,S,O]
    return per_device_in_context_mesh(lambda th, om, k, xi: fused_kuramoto_steps(th, om, k, noise=xi, **static),
                                      (theta0, omega_b, k_b, noise))
