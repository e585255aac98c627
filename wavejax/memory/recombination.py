"""REM recombination: prototype pairs -> candidate forms -> survival under Grace -> schemas (spec:
docs/specs/holographic.md section 4.4; the original's `dreaming/recombination.py`, `REMRecombinator.dream_cycle`).

One sleep (`recombine`), with n = the number of valid prototypes:

    pairs      min(10 n, max_pairs = 1000) pairs (i, j) of valid prototypes, drawn uniformly with replacement
               (keyed; the original's draw is unseeded); a pair i = j becomes (i, i + 1 mod n) as in the original.
               A fixed draw of `max_pairs` rows with a validity mask; none when n < 2. Ids are row indices of the
               `Prototypes` table.
    combine    one of three rules, uniformly:  compose A B  |  "unbind" A B^T (the transpose stands in for the
               inverse)  |  perturb A + phi^-4 N(0, 1) (standard deviation phi^-4, as the original's code)
    iterate    10 times  x <- phi^-2 Grace(x) + 0.1 (1 - phi^-2) x   (x on the right is the previous iterate)
    canonical  x_10 / ||x_10||_F, rounded to 2 decimals, hashed into two uint32 (`Schemas.key`)
    schemas    sightings of a hash accumulate across sleeps in the `Schemas` table; a row with >= 3 sightings is
               promoted and keeps its source prototype ids (those of its first sighting)

Survival. Faithful (`survival="faithful"`): the original's test, cos(x_10 / |x_10|, x_9 / |x_9|) >= phi^-1. The
iteration is a fixed positive diagonal map D in coefficient space, d_k = phi^-2 s_k + 0.1 (1 - phi^-2), between
d_min = 0.152 (trivectors) and d_max = 0.444 (scalar), so cos(D x, x) >= 2 sqrt(d_min d_max) / (d_min + d_max) =
0.87 for every nonzero x (Kantorovich): it never fails except on a zero candidate (degenerate; a test shows it).

Default (`survival="sound"`): energy retention relative to Grace's fixed direction. A candidate survives if
    r = ||x_10||_F / (d_max^10 ||x_0||_F) >= phi^-1,
i.e. it keeps at least phi^-1 of the norm that a Grace-invariant form (a pure scalar, the slowest-decaying
direction) of the same norm keeps. r^2 = sum_k c_k^2 (d_k / d_max)^20 / sum_k c_k^2 is, to within (d_1/d_0)^20 =
3e-4, the energy fraction of the scalar part, so the test reads "at least phi^-2 of the candidate's energy lies in
what Grace leaves alone". A pure bivector (r = 5e-4), a random matrix (scalar fraction ~1/16) or a product of
SO(4) matrices (~0.02) fail; scale I + small noise passes.

Canonical forms (both modes, degenerate): after 10 iterations the non-scalar coefficients are shrunk by at least
(d_1/d_0)^10 = 0.019 relative to the scalar, so unless c_0 is negligible the rounded form is sign(c_0) I / 2 plus a
coarse residue of the vector and pseudoscalar parts: different pairs often share a hash, and a "recurring" schema
need not come from one recurring pair. Rounding is to integers of 100 x (half to even, as numpy's round), so -0.0
and 0.0 hash alike (the original hashes the float bytes, where they differ).

Capacity. The original's candidate dict is unbounded (its schema store holds max(10000, phi^2 n 100),
`schema_capacity`); ours is `schemas.capacity` rows. New hashes of one sleep, most sighted first (ties: first
drawn), take free rows, then evict unpromoted rows not sighted this sleep, fewest sightings first, and only if
the new hash was sighted strictly more often this sleep than the row it evicts. Promoted rows are never evicted.
What is not placed is counted in metrics["dropped"].

Sources: `Schemas.sources` holds one pair (the first sighting's); the original appends every distinct source id
of later sightings (a list), which the fixed-shape table does not keep.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from wavejax.memory import clifford as cl
from wavejax.memory.episodic import fmix32
from wavejax.memory.prototypes import Prototypes, Schemas

SURVIVALS = ("sound", "faithful")
OPS = ("compose", "unbind", "perturb")
MAX_PAIRS = 1000
PAIRS_PER_PROTOTYPE = 10
GRACE_STEPS = 10
GRACE_RATE = cl.PHI**-2
CARRY = 0.1 * (1.0 - GRACE_RATE)  # the original's `previous * (1 - rate) * 0.1`
NOISE_SCALE = cl.PHI**-4
SURVIVAL_THRESHOLD = cl.PHI_INV
PROMOTE_AT = 3
PRECISION = 2  # decimals of the rounded canonical form
D_MAX = GRACE_RATE * 1.0 + CARRY  # the iteration's largest eigenvalue (the scalar's)

_HASH_SEEDS = (0x3C6EF372, 0xA54FF53A)
_HASH_MULTIPLIERS = (0x9E3779B1, 0xC2B2AE3D)


def faithful_floor() -> float:
    """The faithful test's lowest possible score over nonzero inputs, 2 sqrt(d_min d_max) / (d_min + d_max) = 0.87."""
    d = cl.GRACE_SCALES * GRACE_RATE + CARRY
    lo, hi = float(np.min(d)), float(np.max(d))
    return 2.0 * (lo * hi) ** 0.5 / (lo + hi)


def pair_count(n_proto, max_pairs: int = MAX_PAIRS):
    """min(10 n, max_pairs), and 0 when n < 2 (the original needs two prototypes)."""
    n = jnp.asarray(n_proto, jnp.int32)
    return jnp.where(n >= 2, jnp.minimum(PAIRS_PER_PROTOTYPE * n, max_pairs), 0)


def schema_capacity(n_proto: int) -> int:
    """The original's schema capacity max(10000, phi^2 n 100), for sizing `empty_schemas`."""
    return max(10000, int(cl.PHI**2 * n_proto * 100))


# -- combination rules ------------------------------------------------------------------------------------------------

def compose(a, b):
    return cl.mm(a, b)


def unbind(a, b):
    """A B^T: the original's "unbind" (the transpose stands in for B^-1; exact only for orthogonal B)."""
    return cl.mm(a, cl.transpose(b))


def perturb(a, noise):
    """A + phi^-4 noise, noise ~ N(0, 1)."""
    return a + NOISE_SCALE * noise


def combine(a, b, op, noise):
    """Rule op (0 compose, 1 unbind, 2 perturb) per row: a, b, noise [..., 4, 4], op [...] int."""
    op = op[..., None, None]
    return jnp.where(op == 0, compose(a, b), jnp.where(op == 1, unbind(a, b), perturb(a, noise)))


# -- survival ---------------------------------------------------------------------------------------------------------

def _cosine(a, b):
    na = jnp.sqrt(cl.frobenius(a, a))
    nb = jnp.sqrt(cl.frobenius(b, b))
    return cl.frobenius(a, b) / (na * nb + 1e-10)


def survival_test(candidates, survival: str = "sound", steps: int = GRACE_STEPS):
    """(survived [N] bool, canonical [N, 4, 4], score [N]) for candidates [N, 4, 4].

    Both modes run x <- phi^-2 Grace(x) + 0.1 (1 - phi^-2) x `steps` times and return canonical = x_n / |x_n|.
    faithful: score = cos(x_n / |x_n|, x_{n-1} / |x_{n-1}|) (never below 0.87 for x != 0).
    sound:    score = |x_n| / (d_max^n |x_0|), the norm kept relative to a Grace-invariant form of equal norm."""
    if survival not in SURVIVALS:
        raise ValueError(f"survival must be one of {SURVIVALS}, got {survival!r}")
    x0 = jnp.asarray(candidates, jnp.float32)
    current = x0
    previous = x0
    for _ in range(steps):
        previous = current
        current = GRACE_RATE * cl.grace(current) + CARRY * previous
    norm = jnp.sqrt(cl.frobenius(current, current))
    canonical = current / jnp.maximum(norm, 1e-8)[..., None, None]
    if survival == "faithful":
        prev_norm = jnp.sqrt(cl.frobenius(previous, previous))
        score = _cosine(canonical, previous / jnp.maximum(prev_norm, 1e-8)[..., None, None])
    else:
        x0_norm = jnp.sqrt(cl.frobenius(x0, x0))
        score = norm / jnp.maximum(D_MAX**steps * x0_norm, cl.EPS * D_MAX**steps)
    return score >= SURVIVAL_THRESHOLD, canonical, score


# -- canonical hashing ----------------------------------------------------------------------------------------------

def canonical_key(canonical):
    """Two uint32 hashes of round(canonical, 2): [..., 4, 4] -> [..., 2]."""
    q = jnp.rint(canonical * 10.0**PRECISION).astype(jnp.int32).reshape(canonical.shape[:-2] + (16,))
    hs = [jnp.full(q.shape[:-1], s, jnp.uint32) for s in _HASH_SEEDS]
    for i in range(16):
        x = lax.bitcast_convert_type(q[..., i], jnp.uint32) + jnp.uint32(1)
        hs = [fmix32(h * jnp.uint32(m) + x) for h, m in zip(hs, _HASH_MULTIPLIERS)]
    return jnp.stack(hs, axis=-1)


# -- the schema table -----------------------------------------------------------------------------------------------

def record_sightings(schemas: Schemas, canonical, keys, sources, ok, promote_at: int = PROMOTE_AT):
    """Add the sightings of candidates (canonical [N, 4, 4], keys [N, 2] uint32, sources [N, 2], ok [N] bool) to the
    table. Returns (schemas, dropped): equal keys (within the batch and with the table) are one row; see the module
    docstring for how new keys find rows when the table is full."""
    s_cap, n = schemas.capacity, canonical.shape[0]
    total = s_cap + n
    live = jnp.concatenate([schemas.valid, ok])
    is_cand = jnp.concatenate([jnp.zeros((s_cap,), bool), jnp.ones((n,), bool)])
    h1 = jnp.concatenate([schemas.key[:, 0], keys[:, 0]])
    h2 = jnp.concatenate([schemas.key[:, 1], keys[:, 1]])
    idx = jnp.arange(total, dtype=jnp.int32)
    dead = (~live).astype(jnp.int32)
    # group equal live keys; within a group the table row (if any) comes first, then candidates in draw order
    s_dead, s_h1, s_h2, _, perm = lax.sort((dead, h1, h2, is_cand.astype(jnp.int32), idx), num_keys=5)
    differs = (s_h1[1:] != s_h1[:-1]) | (s_h2[1:] != s_h2[:-1]) | (s_dead[1:] != s_dead[:-1])
    start = jnp.concatenate([jnp.ones((1,), bool), differs]) | (s_dead == 1)
    gid = jnp.cumsum(start) - 1
    s_live = s_dead == 0
    s_cand = is_cand[perm] & s_live
    s_table = ~is_cand[perm] & s_live
    n_new = jax.ops.segment_sum(s_cand.astype(jnp.int32), gid, total)
    table_row = jax.ops.segment_max(jnp.where(s_table, perm, -1), gid, total)
    first = jax.ops.segment_min(jnp.where(s_cand, perm - s_cap, n), gid, total)

    # keys already in the table: add the sightings
    hit = (table_row >= 0) & (n_new > 0)
    rows = jnp.where(hit, table_row, s_cap)
    sightings = schemas.sightings.at[rows].add(n_new, mode="drop")
    matched = jnp.zeros((s_cap,), bool).at[rows].set(True, mode="drop")

    # new keys: most sighted first, into free rows, then over the least-sighted evictable rows
    m = min(n, s_cap)
    is_new = (table_row < 0) & (n_new > 0)
    order = jnp.lexsort((first, jnp.where(is_new, -n_new, 1)))[:m]
    evictable = schemas.valid & ~schemas.promoted & ~matched
    big = jnp.iinfo(jnp.int32).max
    slots = jnp.argsort(jnp.where(~schemas.valid, -1, jnp.where(evictable, sightings, big)), stable=True)[:m]
    count = n_new[order]
    accept = is_new[order] & (~schemas.valid[slots] | (evictable[slots] & (sightings[slots] < count)))
    rows = jnp.where(accept, slots, s_cap)
    src = jnp.clip(first[order], 0, n - 1)
    sightings = sightings.at[rows].set(count, mode="drop")
    valid = schemas.valid.at[rows].set(True, mode="drop")
    out = schemas.replace(
        matrix=schemas.matrix.at[rows].set(canonical[src].astype(schemas.matrix.dtype), mode="drop"),
        key=schemas.key.at[rows].set(keys[src], mode="drop"),
        sightings=sightings,
        sources=schemas.sources.at[rows].set(sources[src].astype(jnp.int32), mode="drop"),
        promoted=valid & (sightings >= promote_at),
        valid=valid,
    )
    return out, jnp.sum(is_new) - jnp.sum(accept)


# -- one sleep --------------------------------------------------------------------------------------------------------

def sample_pairs(prototypes: Prototypes, key, max_pairs: int = MAX_PAIRS):
    """(pairs [max_pairs, 2] int32 row ids, ops [max_pairs] int32, noise [max_pairs, 4, 4], mask [max_pairs] bool).

    One uniform draw u [max_pairs, 19] feeds everything (one threefry call compiles ~1 s faster on CPU than three):
    ranks floor(u n), rule floor(u 3), noise sqrt(2) erfinv(2u - 1) (jax.random.normal's transform)."""
    n = prototypes.count.astype(jnp.int32)
    n1 = jnp.maximum(n, 1)
    u = jax.random.uniform(key, (max_pairs, 19), jnp.float32)
    ranks = jnp.minimum(jnp.floor(u[:, :2] * n1).astype(jnp.int32), n1 - 1)
    second = jnp.where(ranks[:, 0] == ranks[:, 1], (ranks[:, 0] + 1) % n1, ranks[:, 1])
    ranks = jnp.stack([ranks[:, 0], second], axis=1)
    rows = jnp.nonzero(prototypes.valid, size=prototypes.capacity, fill_value=0)[0].astype(jnp.int32)
    pairs = rows[ranks]
    ops = jnp.minimum(jnp.floor(u[:, 2] * len(OPS)).astype(jnp.int32), len(OPS) - 1)
    lo = np.nextafter(np.float32(-1.0), np.float32(0.0))
    noise = (np.sqrt(2.0) * lax.erf_inv(jnp.maximum(2.0 * u[:, 3:] - 1.0, lo))).reshape(max_pairs, 4, 4)
    mask = jnp.arange(max_pairs) < pair_count(n, max_pairs)
    return pairs, ops, noise, mask


def recombine(prototypes: Prototypes, schemas: Schemas, key, *, survival: str = "sound",
              max_pairs: int = MAX_PAIRS, promote_at: int = PROMOTE_AT):
    """One REM sleep: (schemas, metrics). jit with static_argnames=("survival", "max_pairs", "promote_at").

    metrics: pairs (tried), survived, promoted_new (rows promoted in this sleep), promoted (rows promoted in all),
    dropped (new hashes that found no row), all int32 scalars."""
    pairs, ops, noise, mask = sample_pairs(prototypes, key, max_pairs)
    matrices = prototypes.matrix.astype(jnp.float32)
    candidates = combine(matrices[pairs[:, 0]], matrices[pairs[:, 1]], ops, noise)
    survived, canonical, _ = survival_test(candidates, survival)
    ok = survived & mask
    before = schemas.promoted
    out, dropped = record_sightings(schemas, canonical, canonical_key(canonical), pairs, ok, promote_at)
    metrics = {
        "pairs": jnp.sum(mask).astype(jnp.int32),
        "survived": jnp.sum(ok).astype(jnp.int32),
        "promoted_new": jnp.sum(out.promoted & ~before).astype(jnp.int32),
        "promoted": jnp.sum(out.promoted).astype(jnp.int32),
        "dropped": dropped.astype(jnp.int32),
    }
    return out, metrics
