"""Tower aggregation and tower dreaming of the holographic memory (spec: docs/specs/holographic.md sections 4.1-4.2).

The tower is the slot memory read as a base-16 hierarchy: slots [..., 16^L, 4, 4] with binding counts [..., 16^L]
(store.Memory.slots / .counts); a slot ("satellite") a is active when n_a = counts[a] > 0. c(M) = clifford.decompose(M)
are the 16 Clifford coefficients, c_0 the scalar and c_15 the pseudoscalar (the witness).

    weights       w_i = phi^(i mod 4) / sum_j phi^(j mod 4),  i = 0..15       (later members of a group of 4 weigh more)
    master        master_j = sum_i w_i c(M_{16j+i})                            (one level up; master_levels: all levels)
    grand master  G = sum_a n_a c(M_a) / (sum_a n_a + eps), active a           (e_0, the scalar 1, when none is active)
    stability     S = mean_a (c_0^2 + c_15^2) / (sum_k c_k^2 + eps), active a  (0 when none is active)
    non-REM       c_0 <- (1 - rho) c_0 + rho G_0,  c_15 <- (1 - rho) c_15 + rho G_15       (active a; rho = phi^-2)
    REM           kappa(c) = (c_0^2 + c_15^2) / max(sum_k c_k^2, eps);  c' = c + z s phi^-2 (1 - kappa)^2,
                  z ~ N(0, I_16);  keep c' where kappa(c') >= kappa(c)                     (active a; s = phi^-3)
    dream         up to max_cycles (2) of non-REM(phi^-2) then REM(phi^-3), stopping after a cycle with S > phi^-1

Faithful to the original (multi_level_tower.py and HolographicMemory.dream) except for its randomness: the REM
draws are keyed (jax.random.normal from the caller's key, cycle i of dream uses fold_in(key, i)) where the original
drew unseeded xp.random.randn for the active satellites; the law of each satellite's z is the same N(0, I_16).
Nothing else in this part of the original is degenerate, so there is no faithful/sound switch.

eps = clifford.EPS = phi^-20. The eps conventions are the original's, which differ between the functions: the tower
stability (get_stability) adds eps to the energy, REM's kappa (rem_recombination) floors it with max(., eps), as
clifford.coherence does, and the grand master adds eps to the total count.

Updates are written as M + sum_k dc_k B_k (the change of the coefficients mapped back to a matrix), which equals the
original's reconstruct(c + dc) in exact arithmetic and leaves the untouched coefficients as they were (REM's
kappa(c') is taken from c + dc, where the original re-decomposed the rebuilt matrix: the same up to rounding); inactive
slots and rejected REM proposals are returned bit for bit. Every function takes leading batch axes before the slot
axis and is jit-able; dream is jitted itself, its cycle bound and rates traced (a lax.while_loop).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from wavejax.memory import clifford as cl

PHI = cl.PHI
PHI_INV = cl.PHI_INV
EPS = cl.EPS
NREM_RATE = PHI**-2  # HolographicMemory.dream's consolidation rate (integrated_sleep passes the same)
REM_SCALE = PHI**-3  # the jitter scale dream passes to REM; REM multiplies it by a further phi^-2
REM_DAMPING = PHI**-2
WAKE_STABILITY = PHI_INV
MAX_CYCLES = 2  # MemoryConfig.dream_iterations


def _active(counts):
    return counts > 0


# -- aggregation (spec 4.1) --------------------------------------------------------------------------------------------

def aggregation_weights(dtype=jnp.float32):
    """w_i = phi^(i mod 4) / sum_{j<16} phi^(j mod 4) for i = 0..15: [16], sums to 1, the pattern
    (1, phi, phi^2, phi^3) / (4 (1 + phi + phi^2 + phi^3)) repeated four times."""
    raw = jnp.asarray([PHI ** (i % 4) for i in range(16)], dtype=dtype)
    return raw / jnp.sum(raw)


def masters(slots):
    """One level up: master_j = sum_{i<16} w_i c(M_{16j+i}). slots [..., N, 4, 4] (N a multiple of 16) ->
    [..., N / 16, 16] coefficient vectors."""
    n = slots.shape[-3]
    if n % 16:
        raise ValueError(f"the slot axis must be a multiple of 16, got {n}")
    c = cl.decompose(slots)
    return _aggregate(c)


def _aggregate(c):
    """sum_i w_i c_{16j+i} over groups of 16 rows: [..., N, 16] -> [..., N / 16, 16]."""
    grouped = c.reshape(c.shape[:-2] + (c.shape[-2] // 16, 16, 16))
    return jnp.einsum("i,...jik->...jk", aggregation_weights(c.dtype), grouped)


def master_levels(slots):
    """Every level of the tower above the satellites: (level 1, ..., top), level l+1 = the w-weighted sum of the 16
    level-l vectors in each group of 16 (the original's _recursive_aggregate). slots [..., 16^L, 4, 4] -> a tuple of L
    arrays [..., 16^(L-l), 16]; the last is the recursive top [..., 1, 16] (which dreaming does not use)."""
    n = slots.shape[-3]
    top = 16
    while top < n:
        top *= 16
    if top != n:
        raise ValueError(f"the slot axis must be a power of 16 (>= 16), got {n}")
    out = [masters(slots)]
    while out[-1].shape[-2] > 1:
        out.append(_aggregate(out[-1]))
    return tuple(out)


def grand_master(slots, counts):
    """The grand master that dreaming uses (not the recursive top): the binding-count-weighted mean of the coefficient
    vectors of the active satellites, G = sum_a n_a c(M_a) / (sum_a n_a + eps) over a with n_a > 0; e_0 (scalar 1,
    all else 0) when no satellite is active. slots [..., N, 4, 4], counts [..., N] -> [..., 16]."""
    c = cl.decompose(slots)
    n = jnp.where(_active(counts), counts, 0).astype(c.dtype)
    total = jnp.sum(n, axis=-1)
    g = jnp.einsum("...a,...ak->...k", n, c) / (total + EPS)[..., None]
    e0 = jnp.zeros((16,), c.dtype).at[0].set(1.0)
    return jnp.where((total > 0)[..., None], g, e0)


def _witness_energy(c):
    return c[..., 0] ** 2 + c[..., 15] ** 2


def satellite_coherence(c):
    """REM's per-satellite coherence kappa = (c_0^2 + c_15^2) / max(sum_k c_k^2, eps) of coefficient vectors
    [..., 16] -> [...]."""
    return _witness_energy(c) / jnp.maximum(jnp.sum(c**2, axis=-1), EPS)


def tower_stability(slots, counts):
    """S = mean over active satellites of (c_0^2 + c_15^2) / (sum_k c_k^2 + eps) (the original's get_stability: eps
    added, not max); 0 when no satellite is active. slots [..., N, 4, 4], counts [..., N] -> [...]."""
    c = cl.decompose(slots)
    per = _witness_energy(c) / (jnp.sum(c**2, axis=-1) + EPS)
    active = _active(counts)
    n_active = jnp.sum(active, axis=-1)
    return jnp.sum(jnp.where(active, per, 0.0), axis=-1) / jnp.maximum(n_active, 1).astype(per.dtype)


# -- dreaming (spec 4.2) -----------------------------------------------------------------------------------------------

def _witness_matrices(d0, d15, like):
    """d0 I + d15 gamma5 for [...] coefficient changes -> [..., 4, 4]."""
    eye = jnp.asarray(cl.IDENTITY, like.dtype)
    g5 = jnp.asarray(cl.GAMMA5, like.dtype)
    return d0[..., None, None] * eye + d15[..., None, None] * g5


def non_rem(slots, counts, rho=NREM_RATE):
    """Non-REM: the grand master's witness broadcast to every active satellite,
    c_0 <- (1 - rho) c_0 + rho G_0 and c_15 <- (1 - rho) c_15 + rho G_15 (G = grand_master(slots, counts)); the other
    14 coefficients and every inactive slot are unchanged. Written as M + rho (G_0 - c_0) I + rho (G_15 - c_15) gamma5.
    slots [..., N, 4, 4], counts [..., N] -> slots."""
    c = cl.decompose(slots)
    g = grand_master(slots, counts)
    d0 = rho * (g[..., None, 0] - c[..., 0])
    d15 = rho * (g[..., None, 15] - c[..., 15])
    new = slots + _witness_matrices(d0, d15, slots)
    return jnp.where(_active(counts)[..., None, None], new, slots)


def rem(slots, counts, key, scale=REM_SCALE):
    """REM: selective jitter kept only where it does not lower a satellite's coherence. Per active satellite, with
    kappa = satellite_coherence(c): dc = z * scale * phi^-2 * clip(1 - kappa, 0, 1)^2, z ~ N(0, I_16) drawn with
    jax.random.normal(key, [..., N, 16]); the satellite becomes M + sum_k dc_k B_k if kappa(c + dc) >= kappa(c), else
    stays M. `scale` is the original's jitter_scale (dream passes phi^-3), so the noise std is scale * phi^-2 = phi^-5
    there. Returns (slots, accepted [..., N] bool: active and kept)."""
    c = cl.decompose(slots)
    kappa = satellite_coherence(c)
    mask = jnp.clip(1.0 - kappa, 0.0, 1.0) ** 2
    z = jax.random.normal(key, c.shape, c.dtype)
    dc = z * (scale * REM_DAMPING) * mask[..., None]
    accepted = _active(counts) & (satellite_coherence(c + dc) >= kappa)
    return jnp.where(accepted[..., None, None], slots + cl.reconstruct(dc), slots), accepted


@jax.jit
def dream(slots, counts, key, *, max_cycles=MAX_CYCLES, rho=NREM_RATE, rem_scale=REM_SCALE, wake=WAKE_STABILITY):
    """HolographicMemory.dream on the tower: for cycle i = 0 .. max_cycles-1, slots <- rem(non_rem(slots, counts, rho),
    counts, fold_in(key, i), rem_scale), stopping after the first cycle whose tower_stability > wake (phi^-1); at least
    one cycle runs. With leading batch axes each tower stops on its own (a stopped tower is left as it is). Jitted; the
keyword arguments are traced (one compile per shape and dtype).

    Returns (slots, metrics) with metrics (each [...], one value per tower):
      stability_before, stability_after  tower_stability before the first and after the last cycle
      cycles                              cycles run (int32)
      rem_accepted                        REM proposals kept, summed over the cycles (int32)
      rem_accept_fraction                 rem_accepted / (active satellites * cycles), 0 with none active
      discoveries                         cycles whose REM kept a proposal or raised the stability (the original's
                                          rem_recombination return value; int32)
    """
    batch = slots.shape[:-3]
    active = _active(counts)
    before = tower_stability(slots, counts)

    def cond(state):
        i, _, done, *_ = state
        return (i < max_cycles) & jnp.any(~done)

    def body(state):
        i, current, done, cycles, accepted, discoveries = state
        consolidated = non_rem(current, counts, rho)
        mid = tower_stability(consolidated, counts)
        dreamt, kept = rem(consolidated, counts, jax.random.fold_in(key, i), rem_scale)
        after = tower_stability(dreamt, counts)
        live = ~done
        n_kept = jnp.sum(kept, axis=-1, dtype=jnp.int32)
        current = jnp.where(live[..., None, None, None], dreamt, current)
        discovered = (after > mid) | (n_kept > 0)
        return (i + 1, current, done | (live & (after > wake)), cycles + live.astype(jnp.int32),
                accepted + jnp.where(live, n_kept, 0), discoveries + (live & discovered).astype(jnp.int32))

    zeros = jnp.zeros(batch, jnp.int32)
    init = (jnp.asarray(0, jnp.int32), slots, jnp.zeros(batch, bool), zeros, zeros, zeros)
    _, slots_out, _, cycles, accepted, discoveries = lax.while_loop(cond, body, init)
    proposals = jnp.sum(active, axis=-1, dtype=jnp.int32) * cycles
    metrics = {
        "stability_before": before,
        "stability_after": tower_stability(slots_out, counts),
        "cycles": cycles,
        "rem_accepted": accepted,
        "rem_accept_fraction": accepted / jnp.maximum(proposals, 1).astype(before.dtype),
        "discoveries": discoveries,
    }
    return slots_out, metrics


def dream_memory(memory, key, **kwargs):
    """dream on a store.Memory: (memory.replace(slots=dream(memory.slots, memory.counts, key, **kwargs)[0]), metrics);
    only active slots change."""
    slots, metrics = dream(memory.slots, memory.counts, key, **kwargs)
    return memory.replace(slots=slots), metrics
