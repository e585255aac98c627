"""The distributed prior: superposed attractors, the prior field and the factorized associative prior (spec:
docs/specs/holographic.md section 4.6; the original's `cognitive/distributed_prior.py`).

    phi-kernel     k(d) = phi^-d
    witness dist   d_i = ||(sigma_q, p_q) - (sigma_i, p_i)||_2   over the valid prototypes P_i (raw witnesses)
    margin         conf = (d2 - d1) / (d2 + eps), the two smallest d over ALL valid prototypes (1 with one prototype,
                   0 with none)
    grace_flow     x <- (1 - r) Grace(x) + r A, `steps` times from the raw query (spec 1.3, the original's
                   `core/algebra.grace_flow`); the priors use 3 steps at r = phi^-2

Superposed-attractor prior (`superposed_prior`):
    (sigma_q, p_q) = witness(Grace^steps(query)) = (sigma, phi^-steps p)
    the K nearest valid prototypes by d_i (K = 8 by default; the original's config sets 4)
    alpha_i ∝ phi^-d_i sqrt(support_i + 1) grace_stability(P_i), normalised (uniform if the sum is < eps)
    A = Grace(sum alpha_i P_i);  equilibrium = grace_flow(query, A, 3, phi^-2)
    targets = sum_i alpha_i dist_i over the neighbours' top-k target lists
Prior field (`prior_field`): witness(Grace(query)) (one step), contributions c_i = support_i phi^-d_i over ALL valid
    prototypes, weights c_i / sum c, the same A, flow and targets; confidence = max c / (sum c + eps); with
    sum c < eps the query is returned with no targets and confidence 0.

Targets are sparse: (ids, probs) with duplicate ids merged, sorted by probability, unused entries id -1 / prob 0
(`dense_targets` scatters them into [V]).

Faithful and degenerate:
  - The query's witness is taken after Grace^steps, whose pseudoscalar is shrunk by phi^-steps, while the
    prototypes' witnesses are raw: the distance underweights the query's pseudoscalar. Kept as in the original.
  - "support" in the original's superposed prior is the sum of the prototype's target probabilities, i.e. 1 for a
    normalised distribution, so sqrt(support + 1) is the constant sqrt(2) (`support="faithful"`). Default
    (`support="count"`): the prototype's member count `Prototypes.support`, as the spec and the docstring intend.
    The prior field always uses the member count (the original passes the supports in).

Factorized associative prior (`FactorizedPrior`): w in R^4 (extended witness [sigma, p, enstrophy, stability]),
A in R^16 (row-major flattening of a 4x4), omega an importance weight:
    C <- (1 - phi^-1) C + phi^-1 omega w w^T,     B <- (1 - phi^-1) B + phi^-1 omega A w^T
    predict(w) = Grace(reshape(B (C + lambda I)^-1 w)),  lambda = phi^-12,  C_0 = lambda I, B_0 = 0
It is an EMA at rate phi^-1 = 0.618, not a sum: update t - j carries weight phi^-1 phi^-2j (0.618, 0.236, 0.090, ...),
so the last ~2 updates dominate and the "covariance" is nearly rank 2. The original feeds it (w(C), C), the context
and its own extended witness, so it regresses the context onto itself (spec 3.9) and never learns a target.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from wavejax.memory import clifford as cl
from wavejax.memory.prototypes import Prototypes

GRACE_STEPS = 3
FLOW_RATE = cl.PHI**-2
DEFAULT_K = 8
CONFIG_K = 4  # the original's config value
SUPPORTS = ("count", "faithful")
RIDGE = cl.PHI**-12
EMA_RATE = cl.PHI_INV


def phi_kernel(d):
    """phi^-d."""
    return cl.PHI ** (-jnp.asarray(d, jnp.float32))


def witness_distances(query_witness, matrices):
    """L2 distance from (sigma, p) [..., 2] to the witnesses of matrices [P, 4, 4]: -> [..., P]."""
    sigma, p = cl.witness(matrices)
    ws = jnp.stack([sigma, p], axis=-1)
    diff = query_witness[..., None, :] - ws
    return jnp.sqrt(jnp.sum(diff * diff, axis=-1))


def margin_confidence(distances, valid=None):
    """(d2 - d1) / (d2 + eps) over the two smallest valid distances; 1 with one valid entry, 0 with none."""
    if valid is None:
        valid = jnp.ones(distances.shape, bool)
    d = jnp.where(valid, distances, jnp.inf)
    neg, _ = jax.lax.top_k(-d, 2)
    d1, d2 = -neg[..., 0], -neg[..., 1]
    n = jnp.sum(valid, axis=-1)
    conf = (d2 - d1) / (jnp.where(jnp.isfinite(d2), d2, 1.0) + cl.EPS)
    return jnp.where(n >= 2, conf, jnp.where(n == 1, 1.0, 0.0))


def grace_flow(m, attractor, steps: int = GRACE_STEPS, rate: float = FLOW_RATE):
    """x <- (1 - rate) Grace(x) + rate attractor, `steps` times from x = m."""
    x = m
    for _ in range(steps):
        x = (1.0 - rate) * cl.grace(x) + rate * attractor
    return x


# -- targets --------------------------------------------------------------------------------------------------------

def merge_targets(ids, probs):
    """Sum the probabilities of equal ids in flat [M] lists; -> (ids [M], probs [M]) sorted by probability, with
    unused entries (id < 0 or prob 0) as id -1 / prob 0."""
    used = (ids >= 0) & (probs != 0)
    big = jnp.iinfo(jnp.int32).max
    key = jnp.where(used, ids, big)
    order = jnp.argsort(key, stable=True)
    s_key, s_probs = key[order], jnp.where(used, probs, 0.0)[order]
    start = jnp.concatenate([jnp.ones((1,), bool), s_key[1:] != s_key[:-1]])
    gid = jnp.cumsum(start) - 1
    m = ids.shape[0]
    summed = jax.ops.segment_sum(s_probs, gid, m)
    gkey = jnp.full((m,), big, jnp.int32).at[gid].set(s_key)
    live = gkey != big
    summed = jnp.where(live, summed, 0.0)
    gkey = jnp.where(live, gkey, -1)
    by_prob = jnp.argsort(jnp.where(live, -summed, jnp.inf), stable=True)
    return gkey[by_prob], summed[by_prob]


def dense_targets(ids, probs, vocab: int):
    """Scatter sparse (ids, probs) into a dense [vocab] distribution (ids -1 and >= vocab dropped)."""
    safe = jnp.where(ids >= 0, ids, vocab)
    return jnp.zeros((vocab,), probs.dtype).at[safe].add(probs, mode="drop")


def _mixed_targets(prototypes: Prototypes, rows, weights):
    ids = prototypes.target_ids[rows]  # [K, k]
    probs = prototypes.target_probs[rows] * weights[:, None]
    return merge_targets(ids.reshape(-1), probs.reshape(-1))


# -- the two prototype priors -------------------------------------------------------------------------------------

class PriorResult(flax.struct.PyTreeNode):
    equilibrium: jnp.ndarray  # [4, 4]: grace_flow(query, A)
    attractor: jnp.ndarray  # [4, 4]: A = Grace(sum w_i P_i)
    target_ids: jnp.ndarray  # [M] int32, -1 = unused, sorted by probability
    target_probs: jnp.ndarray  # [M] float32
    confidence: jnp.ndarray  # scalar
    rows: jnp.ndarray  # [K] int32: prototype rows the weights refer to (-1 = unused)
    weights: jnp.ndarray  # [K] float32: alpha_i (superposed) or c_i / sum c (field), 0 where unused
    distances: jnp.ndarray  # [K] float32: witness distances of those rows


def superposed_prior(query, prototypes: Prototypes, *, k: int = DEFAULT_K, grace_steps: int = GRACE_STEPS,
                     support: str = "count") -> PriorResult:
    """The superposed-attractor prior for one query [4, 4] (vmap for a batch). jit with
    static_argnames=("k", "grace_steps", "support"); k is clipped to the table's capacity."""
    if support not in SUPPORTS:
        raise ValueError(f"support must be one of {SUPPORTS}, got {support!r}")
    query = jnp.asarray(query, jnp.float32)
    sigma, p = cl.witness(cl.grace(query, grace_steps))
    dist = witness_distances(jnp.stack([sigma, p]), prototypes.matrix)
    valid = prototypes.valid
    k = min(k, prototypes.capacity)
    neg, rows = jax.lax.top_k(jnp.where(valid, -dist, -jnp.inf), k)
    used = valid[rows] & jnp.isfinite(neg)
    d = dist[rows]
    if support == "count":
        s = prototypes.support[rows].astype(jnp.float32)
    else:
        s = jnp.sum(jnp.where(prototypes.target_ids[rows] >= 0, prototypes.target_probs[rows], 0.0), axis=-1)
    raw = jnp.where(used, phi_kernel(d) * jnp.sqrt(s + 1.0) * cl.grace_stability(prototypes.matrix[rows]), 0.0)
    total = jnp.sum(raw)
    n_used = jnp.maximum(jnp.sum(used), 1)
    alpha = jnp.where(total < cl.EPS, used / n_used, raw / jnp.where(total < cl.EPS, 1.0, total))
    attractor = cl.grace(jnp.einsum("k,kij->ij", alpha, prototypes.matrix[rows]))
    equilibrium = grace_flow(query, attractor, grace_steps, FLOW_RATE)
    ids, probs = _mixed_targets(prototypes, rows, alpha)
    any_valid = jnp.any(valid)
    return PriorResult(
        equilibrium=jnp.where(any_valid, equilibrium, query), attractor=attractor, target_ids=ids,
        target_probs=probs, confidence=margin_confidence(dist, valid), rows=jnp.where(used, rows, -1),
        weights=alpha, distances=jnp.where(used, d, 0.0))


def prior_field(query, prototypes: Prototypes, *, grace_steps: int = GRACE_STEPS) -> PriorResult:
    """The prior field for one query [4, 4]: weights support_i phi^-d_i over every valid prototype; rows, weights
    and distances are [P] (the whole table)."""
    query = jnp.asarray(query, jnp.float32)
    sigma, p = cl.witness(cl.grace(query))
    dist = witness_distances(jnp.stack([sigma, p]), prototypes.matrix)
    valid = prototypes.valid
    contrib = jnp.where(valid, prototypes.support.astype(jnp.float32) * phi_kernel(dist), 0.0)
    potential = jnp.sum(contrib)
    live = potential >= cl.EPS
    weights = jnp.where(live, contrib / jnp.where(live, potential, 1.0), 0.0)
    attractor = cl.grace(jnp.einsum("k,kij->ij", weights, prototypes.matrix))
    equilibrium = jnp.where(live, grace_flow(query, attractor, grace_steps, FLOW_RATE), query)
    rows = jnp.arange(prototypes.capacity, dtype=jnp.int32)
    ids, probs = _mixed_targets(prototypes, rows, weights)
    return PriorResult(
        equilibrium=equilibrium, attractor=attractor, target_ids=ids, target_probs=probs,
        confidence=jnp.where(live, jnp.max(contrib) / (potential + cl.EPS), 0.0), rows=jnp.where(valid, rows, -1),
        weights=weights, distances=jnp.where(valid, dist, 0.0))


# -- the factorized associative prior -------------------------------------------------------------------------------

class FactorizedPrior(flax.struct.PyTreeNode):
    """C [d, d] and B [16, d]: an EMA (rate phi^-1) of w w^T and A w^T; see the module docstring."""

    cov: jnp.ndarray  # C [d, d]
    assoc: jnp.ndarray  # B [16, d]
    n_updates: jnp.ndarray  # int32 scalar
    ridge: float = flax.struct.field(pytree_node=False, default=RIDGE)

    @classmethod
    def init(cls, dim: int = 4, ridge: float = RIDGE) -> FactorizedPrior:
        return cls(cov=ridge * jnp.eye(dim, dtype=jnp.float32), assoc=jnp.zeros((16, dim), jnp.float32),
                   n_updates=jnp.zeros((), jnp.int32), ridge=ridge)

    def update(self, w, attractor, weight=1.0) -> FactorizedPrior:
        """C <- (1 - phi^-1) C + phi^-1 weight w w^T, B <- (1 - phi^-1) B + phi^-1 weight A w^T (A: [4, 4] or [16])."""
        w = jnp.asarray(w, jnp.float32).reshape(-1)
        a = jnp.asarray(attractor, jnp.float32).reshape(-1)
        lr = EMA_RATE * jnp.asarray(weight, jnp.float32)
        return self.replace(cov=(1.0 - EMA_RATE) * self.cov + lr * jnp.outer(w, w),
                            assoc=(1.0 - EMA_RATE) * self.assoc + lr * jnp.outer(a, w), n_updates=self.n_updates + 1)

    def predict(self, w):
        """Grace(reshape(B (C + ridge I)^-1 w, 4x4))."""
        w = jnp.asarray(w, jnp.float32).reshape(-1)
        solved = jnp.linalg.solve(self.cov + self.ridge * jnp.eye(self.cov.shape[0], dtype=self.cov.dtype), w)
        return cl.grace((self.assoc @ solved).reshape(4, 4))


def factorized_retrieve(query, prior: FactorizedPrior, grace_steps: int = GRACE_STEPS):
    """The original's `retrieve_with_factorized_prior`: grace_flow(query, predict(extended_witness(query)))."""
    query = jnp.asarray(query, jnp.float32)
    return grace_flow(query, prior.predict(cl.extended_witness(query)), grace_steps, FLOW_RATE)
