"""Semantic retrieval over the sleeping half's prototypes (spec: docs/specs/holographic.md section 4.5; the formulas are
in wavejax/memory/consolidation.py's docstring): pattern completion by Grace steps, prototype scores by Frobenius
cosine with promoted-schema boosts, and a target distribution from the best prototypes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from wavejax.memory import clifford as cl
from wavejax.memory.clifford import EPS, PHI_INV
from wavejax.memory.consolidation import COMPLETION_TOL, PHI_INV2, _combine_targets, _norm
from wavejax.memory.prototypes import Prototypes, Schemas


def pattern_complete(query, steps: int = 3, tol: float = COMPLETION_TOL):
    """Up to `steps` Grace applications, stopping (per query) once ||Grace(Q) - Q||_F < tol; rescaled to ||Q||_F."""
    n0 = _norm(query)
    cur = query
    done = jnp.zeros(query.shape[:-2], bool)
    for _ in range(steps):
        new = cl.grace(cur)
        change = _norm(new - cur)
        cur = jnp.where(done[..., None, None], cur, new)
        done = done | (change < tol)
    nf = _norm(cur)
    return jnp.where((nf > 1e-8)[..., None, None], cur * (n0 / jnp.where(nf > 1e-8, nf, 1.0))[..., None, None], cur)


def retrieve(prototypes: Prototypes, query, *, schemas: Schemas | None = None, completion_steps: int = 0):
    """Scores of every prototype for a query [..., 4, 4]: cos_F(Q, P_p), raised to phi^-1 cos(Q, S) +
    (1 - phi^-1) cos(Q, P_p) by any promoted schema S with cos(Q, S) > phi^-2 that lists p as a source;
    -inf for invalid rows. Returns (scores [..., P], best [...] (-1 when there is no valid prototype))."""
    if not 0 <= completion_steps <= 3:
        raise ValueError(f"completion_steps must be in 0..3, got {completion_steps}")
    q = pattern_complete(query, completion_steps) if completion_steps else query
    sims = cl.cosine_scores(q, prototypes.matrix)
    scores = sims
    if schemas is not None:
        p = prototypes.capacity
        ssims = cl.cosine_scores(q, schemas.matrix)  # [..., S]
        active = (schemas.valid & schemas.promoted) & (ssims > PHI_INV2)
        boost = jnp.where(active, PHI_INV * ssims, -jnp.inf)  # [..., S]
        # the best boost each prototype gets, scattered onto each schema's (at most 2) sources: O(batch * S), where a
        # [batch, S, P] membership mask would be 69 GB at the faithful run's sizes; -1 sources drop out
        src = jnp.where(schemas.sources >= 0, schemas.sources, p)  # [S, 2]
        flat = boost.reshape((-1, boost.shape[-1]))
        best_schema = jnp.full((flat.shape[0], p), -jnp.inf, flat.dtype)
        for j in range(src.shape[1]):
            best_schema = best_schema.at[:, src[:, j]].max(flat, mode="drop")
        best_schema = best_schema.reshape(boost.shape[:-1] + (p,))
        scores = jnp.maximum(sims, best_schema + (1.0 - PHI_INV) * sims)
    scores = jnp.where(prototypes.valid, scores, -jnp.inf)
    best = jnp.where(jnp.any(prototypes.valid), jnp.argmax(scores, axis=-1), -1).astype(jnp.int32)
    return scores, best


def predict_targets(prototypes: Prototypes, query, k: int = 1, *, schemas: Schemas | None = None,
                    completion_steps: int = 0, vocab_size: int | None = None):
    """A distribution over target ids from the k best prototypes (retrieve's scores), weighted by max(score, 0)
    (equal weights when none is positive); invalid prototypes never count. Returns (ids [..., K], probs [..., K])
    with K the table's target width (-1 unused), or a dense [..., vocab_size] distribution (all zero when there is
    no valid prototype)."""
    scores, _ = retrieve(prototypes, query, schemas=schemas, completion_steps=completion_steps)
    width = prototypes.target_ids.shape[1]

    def one(s):
        top, idx = lax.top_k(s, k)
        ok = jnp.isfinite(top)
        w = jnp.where(ok, jnp.maximum(top, 0.0), 0.0)
        w = jnp.where(jnp.sum(w) > 0, w, ok.astype(jnp.float32))
        ids = jnp.where(ok[:, None], prototypes.target_ids[idx], -1).reshape(-1)
        probs = (w[:, None] * prototypes.target_probs[idx]).reshape(-1)
        if vocab_size is not None:
            dense = jnp.zeros((vocab_size,), jnp.float32).at[jnp.where(ids >= 0, ids, vocab_size)].add(
                probs, mode="drop")
            return dense / jnp.maximum(jnp.sum(dense), EPS)
        pad = max(0, width - ids.shape[0])
        ids = jnp.concatenate([ids, jnp.full((pad,), -1, jnp.int32)])
        probs = jnp.concatenate([probs, jnp.zeros((pad,), jnp.float32)])
        return _combine_targets(ids, probs, width)

    flat = scores.reshape((-1, scores.shape[-1]))
    out = jax.vmap(one)(flat)
    lead = scores.shape[:-1]
    return jax.tree_util.tree_map(lambda a: a.reshape(lead + a.shape[1:]), out)
