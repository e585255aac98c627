"""Systems consolidation (episodes -> semantic prototypes) of the holographic memory's sleeping half, and the formulas of
semantic retrieval, which wavejax/memory/semantic.py implements (spec: docs/specs/holographic.md sections 4.3 and 4.5; the original's dreaming/consolidation.py, priority.py,
memory_management.py, predictive_coding.py, pruning.py, interference.py, pattern_completion.py, semantic_memory.py and
DreamingSystem.sleep). Functional, fixed-capacity (`Episodes`, `Prototypes`, `Schemas` from prototypes.py), float32;
every function is jit-able with its keyword options static; the original's unseeded draws take a jax.random key.

    salience      |sigma| + phi^-1 |p|                          (sigma, p) = witness(C) = (tr C / 4, <C, gamma5> / 4)
    priority      salience + 0.001 U(0, 1)                      (keyed; `noise` sets the 0.001)
    collection    every 50 batches the caller adds max(1, B // 10) rows of a batch drawn uniformly without
                  replacement (`add_episodes`). The original's list is unbounded; here a full buffer keeps the newest
                  rows (keep="newest", valid rows are kept in insertion order) or the highest-priority ones
                  (keep="priority").
    forgetting    when the buffer holds > L = max(5000, trunc(phi^2 (n_proto + 100) 10)) episodes, keep the L with the
                  largest  stability (salience + phi^-8) + phi^-8 U. The original's stochastic phi-decay survival pass
                  is replaced by this top-L cut whenever it misses L exactly (almost always), so only the cut is kept.
    threshold     adaptive: phi^-3 while n_proto < 10, else clip(phi^-2 - phi^-3 (n_schema / (n_proto + 1) - phi),
                  phi^-3, 1 - phi^-3); it is driven only by the prototype and schema counts (no schemas, >= 10
                  prototypes gives 2 phi^-2 = 1 - phi^-3).
    predictive    with prototypes present, an episode is skipped when 1 - max_p cos_F(C, P_p) < phi^-3.
    selection     consolidate an episode if grace_stability(C) < phi^-2 OR its target occurs >= 3 times among the
                  episodes that reached this step (after forgetting and the predictive filter).
    clustering    cluster="exact": id = sum_k key_k prime_k over basin keys (n = 3, res = phi^-12, primes 2..53),
                  no mod; cluster="key": equality of all 16 key entries; cluster="similar" (default): greedy leader
                  clustering in priority order (highest first): an episode joins the most similar existing leader
                  with Frobenius cosine >= threshold (default 1 - phi^-3), else it becomes a leader; a sequential
                  scan over the buffer, O(E^2) work, fixed shapes. Clusters need >= min_support (3) members.
    prototype     matrix = (sum w_i C_i) / (sum w_i + eps), w_i = max(phi^-8, priority_i), Frobenius-normalised to 1;
                  target distribution p(t) proportional to sum over members with target t of count (1 + priority)
                  (count = 1), its top K kept and renormalised; radius = max_i (1 - cos_F(centroid, C_i)) (the
                  original's cosine: 0 when a norm is < eps, no eps added, so identical members give 0);
                  support = members; salience = salience(matrix). New prototypes fill free rows, largest support first;
                  clusters that find no free row are dropped (metrics "dropped").
    pruning       drop prototypes with salience < phi^-3 AND support < 2.
    merging       up to 5 times: the most similar pair of valid prototypes with similarity >= phi^-1 (the original
                  compares with >=) is merged: matrix = Grace(w_a A + w_b B), w = support share, then normalised;
                  targets w_a p_a + w_b p_b (top K); radius max; support sum.
    retrieval     (pattern completion: <= completion_steps Grace steps, stopping once ||Grace(Q) - Q|| < 1e-4, then
                  rescaled to ||Q||) scores_p = cos_F(Q, P_p); a promoted schema s with cos_F(Q, S_s) > phi^-2 gives
                  each source prototype p the candidate score phi^-1 cos(Q, S_s) + (1 - phi^-1) cos(Q, P_p), and the
                  higher of a prototype's scores counts (the original's de-duplication keeps the best).

Faithful: salience, priority, selection, the prototype formulas, forgetting, the adaptive threshold, predictive
coding, pruning and merging limits, schema boosts. `faithful=True` (cluster="exact" and the original's merge
similarity phi^-1 cos_F + (1 - phi^-1) cos(w), with w = (tr M / 4, det M)) reproduces the original's sleep.

Degenerate in the original, and the fix:
- cluster="exact" groups only contexts with equal prime-weighted key sums. Identical contexts repeated >= 3 times in
  one buffer form prototypes, and nothing else similar does. The sum is also a linear form, so distinct keys collide
  (e.g. +3 scalar bins and -2 e1 bins). For Haar-random SO(4) contexts, 1000 distinct contexts gave 18 spurious
  clusters of >= 3, and 5000 gave 576 (41% of the episodes). cluster="key" removes the collisions;
  cluster="similar" (default) clusters similar contexts.
- The adaptive similarity threshold sets a parameter that the basin-key clustering never reads. Here it is
  reported in the metrics, and threshold="adaptive" makes the similar clustering use it.
- Pruning never removes a consolidated prototype (support >= 3, merged >= 6). It only acts on hand-made or imported
  rows.
- The original's merge similarity uses det(M) as the "pseudoscalar" in its witness. faithful=True uses that;
  the default is the plain Frobenius cosine.
- The original's merged matrix is Grace(...) without normalisation. We normalise it (retrieval is cosine-based and
  scale-blind).
- Schema source ids in the original index a list that shifts after pruning and merging. Here they are slot ids,
  and merged-away or pruned slots are invalid, so they add nothing.
- The original keeps a prototype's whole target distribution; here only the top K targets are kept, renormalised.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from wavejax.memory import clifford as cl
from wavejax.memory.clifford import EPS, PHI, PHI_INV
from wavejax.memory.prototypes import Episodes, Prototypes, Schemas

PHI_INV2 = PHI**-2
PHI_INV3 = PHI**-3
PHI_INV8 = PHI**-8
PRIMES = np.array([2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53], dtype=np.int32)
CLUSTERS = ("similar", "exact", "key")
KEEPS = ("newest", "priority")
SIMILAR_THRESHOLD = 1.0 - PHI_INV3  # the top of the adaptive clip; random 16-d unit vectors rarely reach it
COMPLETION_TOL = 1e-4


def _flat(m):
    return m.reshape(m.shape[:-2] + (16,))


def _norm(m):
    return jnp.sqrt(jnp.sum(m * m, axis=(-1, -2)))


def _cosine(a, b):
    """The original's single-pair frobenius_cosine: <a, b> / (|a| |b|), and 0 when either norm is < eps."""
    na, nb = _norm(a), _norm(b)
    ok = (na >= EPS) & (nb >= EPS)
    return jnp.where(ok, cl.frobenius(a, b) / jnp.where(ok, na * nb, 1.0), 0.0)


def _normalise(m):
    n = _norm(m)[..., None, None]
    return jnp.where(n > EPS, m / jnp.where(n > EPS, n, 1.0), m)


# -- priority and selection -------------------------------------------------------------------------------------------

def salience(contexts):
    """|sigma| + phi^-1 |p|: [..., 4, 4] -> [...]."""
    sigma, p = cl.witness(contexts)
    return jnp.abs(sigma) + PHI_INV * jnp.abs(p)


def priority(contexts, key, noise: float = 0.001):
    """salience + noise * U(0, 1) (the original's tie-breaking jitter, keyed)."""
    u = jax.random.uniform(key, contexts.shape[:-2], jnp.float32)
    return salience(contexts) + noise * u


def target_counts(targets, active):
    """For every row, how many active rows share its target (0 for inactive rows); sort-based, O(E log E)."""
    sentinel = jnp.iinfo(jnp.int32).max
    s = jnp.sort(jnp.where(active, targets, sentinel))
    counts = jnp.searchsorted(s, targets, side="right") - jnp.searchsorted(s, targets, side="left")
    return jnp.where(active, counts, 0).astype(jnp.int32)


def selection_mask(contexts, targets, active):
    """Consolidate a row if grace_stability(C) < phi^-2 or its target occurs >= 3 times among the active rows."""
    transient = cl.grace_stability(contexts) < PHI_INV2
    return active & (transient | (target_counts(targets, active) >= 3))


# -- the episode buffer -----------------------------------------------------------------------------------------------

def _compact(context, target, keep, capacity: int) -> Episodes:
    """The kept rows, in their order, at the front of a buffer of `capacity` rows."""
    n = keep.shape[0]
    pos = jnp.arange(n)
    order = jnp.argsort(jnp.where(keep, pos, n + pos))[:capacity]
    valid = keep[order]
    return Episodes(context=jnp.where(valid[:, None, None], context[order], 0.0).astype(jnp.float32),
                    target=jnp.where(valid, target[order], 0).astype(jnp.int32), valid=valid)


def add_episodes(episodes: Episodes, contexts, targets, key, fraction: float = 0.1, *, keep: str = "newest",
                 noise: float = 0.001) -> Episodes:
    """Add max(1, trunc(B * fraction)) rows of a batch (contexts [B, 4, 4], targets [B]), drawn uniformly without
    replacement, after the buffer's rows. A full buffer keeps the newest rows (keep="newest"; the buffer's valid rows
    are in insertion order) or the highest-priority ones (keep="priority", priority = salience + noise U)."""
    if keep not in KEEPS:
        raise ValueError(f"keep must be one of {KEEPS}, got {keep!r}")
    b = contexts.shape[0]
    n = max(1, int(b * fraction + 1e-9)) if fraction < 1 else b
    k_pick, k_prio = jax.random.split(key)
    idx = jax.random.permutation(k_pick, b)[:n] if n < b else jnp.arange(b)
    ctx = jnp.concatenate([episodes.context, contexts[idx].astype(jnp.float32)])
    tgt = jnp.concatenate([episodes.target, targets[idx].astype(jnp.int32)])
    valid = jnp.concatenate([episodes.valid, jnp.ones((n,), bool)])
    cap = episodes.capacity
    if keep == "newest":
        from_end = jnp.cumsum(valid[::-1].astype(jnp.int32))[::-1]  # valid rows at or after each position
        kept = valid & (from_end <= cap)
    else:
        pr = jnp.where(valid, priority(ctx, k_prio, noise), -jnp.inf)
        rank = jnp.zeros(pr.shape, jnp.int32).at[jnp.argsort(-pr)].set(jnp.arange(pr.shape[0], dtype=jnp.int32))
        kept = valid & (rank < cap)
    return _compact(ctx, tgt, kept, cap)


def forget_limit(n_prototypes, floor: int = 5000):
    """max(floor, trunc(phi^2 (n_proto + 100) 10)): the buffer size above which the sleep forgets."""
    return jnp.maximum(floor, jnp.floor(PHI * PHI * (n_prototypes + 100) * 10.0).astype(jnp.int32))


def _forget_mask(episodes: Episodes, limit, key):
    stab = cl.grace_stability(episodes.context)
    u = jax.random.uniform(key, stab.shape, jnp.float32)
    pr = jnp.where(episodes.valid, stab * (salience(episodes.context) + PHI_INV8) + PHI_INV8 * u, -jnp.inf)
    rank = jnp.zeros(pr.shape, jnp.int32).at[jnp.argsort(-pr)].set(jnp.arange(pr.shape[0], dtype=jnp.int32))
    return episodes.valid & (rank < limit)


def forget(episodes: Episodes, n_prototypes, key, *, floor: int = 5000):
    """phi-decay forgetting: keep the forget_limit(n_prototypes) rows with the largest
    stability (salience + phi^-8) + phi^-8 U when there are more; returns (episodes, forgotten)."""
    keep = _forget_mask(episodes, forget_limit(n_prototypes, floor), key)
    return _compact(episodes.context, episodes.target, keep, episodes.capacity), \
        jnp.sum(episodes.valid) - jnp.sum(keep)


def adaptive_threshold(n_prototypes, n_schemas):
    """phi^-3 below 10 prototypes, else clip(phi^-2 - phi^-3 (n_schemas / (n_prototypes + 1) - phi), phi^-3,
    1 - phi^-3)."""
    ratio = n_schemas / (n_prototypes + 1.0)
    t = jnp.clip(PHI_INV2 - PHI_INV3 * (ratio - PHI), PHI_INV3, 1.0 - PHI_INV3)
    return jnp.where(n_prototypes < 10, PHI_INV3, t).astype(jnp.float32)


def predictive_filter(contexts, active, prototypes: Prototypes, threshold: float = PHI_INV3):
    """Active rows whose prediction error 1 - max_p cos_F(C, P_p) over valid prototypes is >= threshold (all active
    rows when there are no prototypes): the episodes the semantic memory does not already predict."""
    c, p = _flat(contexts), _flat(prototypes.matrix)
    norms = jnp.linalg.norm(c, axis=-1)[:, None] * jnp.linalg.norm(p, axis=-1)[None, :]
    sims = jnp.where(prototypes.valid[None, :], (c @ p.T) / (norms + 1e-10), -jnp.inf)
    significant = (1.0 - jnp.max(sims, axis=-1)) >= threshold
    return active & (significant | ~jnp.any(prototypes.valid))


# -- clustering -------------------------------------------------------------------------------------------------------

def _group_labels(columns, active):
    """Rows with equal integer columns share a label in [0, E); inactive rows get -1 (lexsort, fixed shapes)."""
    cols = jnp.concatenate([(~active).astype(jnp.int32)[:, None], columns.astype(jnp.int32)], axis=1)
    order = jnp.lexsort(tuple(cols[:, k] for k in reversed(range(cols.shape[1]))))
    s = cols[order]
    boundary = jnp.concatenate([jnp.ones((1,), bool), jnp.any(s[1:] != s[:-1], axis=1)])
    seg = (jnp.cumsum(boundary) - 1).astype(jnp.int32)
    labels = jnp.zeros(active.shape, jnp.int32).at[order].set(seg)
    return jnp.where(active, labels, -1)


def _leader_labels(contexts, active, prio, threshold):
    """Greedy leader clustering in descending priority: join the most similar leader with cos_F >= threshold, else
    lead. Labels are leader positions in the priority order ([0, E)); inactive rows get -1."""
    e = active.shape[0]
    order = jnp.argsort(-jnp.where(active, prio, -jnp.inf))
    x = _flat(contexts[order])
    x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), EPS)
    act = active[order]

    def body(i, carry):
        labels, leader = carry
        sims = x @ x[i]
        cand = leader & (sims >= threshold)
        has = jnp.any(cand)
        j = jnp.argmax(jnp.where(cand, sims, -jnp.inf)).astype(jnp.int32)
        labels = labels.at[i].set(jnp.where(act[i], jnp.where(has, j, i), -1))
        leader = leader.at[i].set(act[i] & ~has)
        return labels, leader

    init = (jnp.full((e,), -1, jnp.int32), jnp.zeros((e,), bool))
    sorted_labels, _ = lax.fori_loop(0, e, body, init)
    return jnp.zeros((e,), jnp.int32).at[order].set(sorted_labels)


def cluster_labels(contexts, active, prio, *, cluster: str = "similar", threshold=SIMILAR_THRESHOLD):
    """Cluster label per row ([0, E), -1 for inactive rows): "exact" (the original's prime-weighted basin-key sum),
    "key" (all 16 basin-key entries equal) or "similar" (leader clustering by Frobenius cosine >= threshold)."""
    if cluster not in CLUSTERS:
        raise ValueError(f"cluster must be one of {CLUSTERS}, got {cluster!r}")
    if cluster == "similar":
        return _leader_labels(contexts, active, prio, threshold)
    keys = cl.basin_key(contexts, 3, PHI**-12)
    if cluster == "exact":
        keys = jnp.sum(keys * jnp.asarray(PRIMES), axis=-1, keepdims=True)
    return _group_labels(keys, active)


# -- prototype formation ----------------------------------------------------------------------------------------------

def _cluster_targets(labels, targets, weights, k: int):
    """Per label ([E] rows), the top k targets by summed weight: (ids [E, k] (-1 unused), probs [E, k])."""
    e = labels.shape[0]
    lab = jnp.where(labels >= 0, labels, e)
    order = jnp.lexsort((targets, lab))
    ls, ts, ws = lab[order], targets[order], weights[order]
    first = jnp.concatenate([jnp.ones((1,), bool), (ls[1:] != ls[:-1]) | (ts[1:] != ts[:-1])])
    pair = (jnp.cumsum(first) - 1).astype(jnp.int32)
    total = jax.ops.segment_sum(ws, pair, num_segments=e)[pair]
    l2 = jnp.where(first & (ls < e), ls, e)
    order2 = jnp.lexsort((-total, l2))
    l2s, ts2, tot2 = l2[order2], ts[order2], total[order2]
    rank = jnp.arange(e) - jnp.searchsorted(l2s, l2s, side="left")
    keep = (l2s < e) & (rank < k)
    row, col = jnp.where(keep, l2s, e), jnp.where(keep, rank, 0)
    ids = jnp.full((e, k), -1, jnp.int32).at[row, col].set(ts2.astype(jnp.int32), mode="drop")
    w = jnp.zeros((e, k), jnp.float32).at[row, col].set(tot2, mode="drop")
    return ids, w / jnp.maximum(jnp.sum(w, axis=1, keepdims=True), EPS)


def _cluster_prototypes(contexts, targets, labels, prio, k: int):
    """Per label: (matrix [E, 4, 4], target ids/probs [E, k], radius [E], support [E])."""
    e = labels.shape[0]
    member = labels >= 0
    seg = jnp.where(member, labels, e)
    support = jax.ops.segment_sum(member.astype(jnp.int32), seg, num_segments=e + 1)[:e]
    w = jnp.where(member, jnp.maximum(PHI_INV8, prio), 0.0)
    wsum = jax.ops.segment_sum(w, seg, num_segments=e + 1)[:e]
    msum = jax.ops.segment_sum(w[:, None, None] * contexts, seg, num_segments=e + 1)[:e]
    matrix = _normalise(msum / (wsum + EPS)[:, None, None])
    dist = jnp.where(member, 1.0 - _cosine(matrix[jnp.minimum(seg, e - 1)], contexts), -jnp.inf)
    radius = jnp.maximum(jax.ops.segment_max(dist, seg, num_segments=e + 1)[:e], 0.0)
    ids, probs = _cluster_targets(labels, targets, jnp.where(member, 1.0 + prio, 0.0), k)
    return matrix, ids, probs, radius, support


def _set_rows(protos: Prototypes, dst, rows: Prototypes) -> Prototypes:
    """protos[dst] = rows, dropping rows whose dst is out of range."""
    return jax.tree_util.tree_map(lambda a, b: a.at[dst].set(b.astype(a.dtype), mode="drop"), protos, rows)


def _clear(protos: Prototypes, mask) -> Prototypes:
    def clear(a, fill):
        m = mask.reshape(mask.shape + (1,) * (a.ndim - 1))
        return jnp.where(m, jnp.asarray(fill, a.dtype), a)

    return Prototypes(matrix=clear(protos.matrix, 0), target_ids=clear(protos.target_ids, -1),
                      target_probs=clear(protos.target_probs, 0), radius=clear(protos.radius, 0),
                      support=clear(protos.support, 0), salience=clear(protos.salience, 0),
                      valid=clear(protos.valid, False))


def _store_clusters(protos: Prototypes, contexts, targets, labels, prio, min_support: int):
    """New prototypes from clusters of >= min_support rows into free slots, largest support first.
    Returns (prototypes, absorbed rows [E], formed, dropped)."""
    e, p = labels.shape[0], protos.capacity
    k = protos.target_ids.shape[1]
    matrix, ids, probs, radius, support = _cluster_prototypes(contexts, targets, labels, prio, k)
    cand = support >= min_support
    n_cand = jnp.sum(cand)
    order = jnp.argsort(jnp.where(cand, -support, 1))  # stable: ties by label
    free = jnp.argsort(protos.valid)  # False (free) first, in slot order
    n_free = p - jnp.sum(protos.valid)
    r = min(e, p)
    rr = jnp.arange(r)
    ok = (rr < n_cand) & (rr < n_free)
    src = order[:r]
    dst = jnp.where(ok, free[:r], p)
    rows = Prototypes(matrix=matrix[src], target_ids=ids[src], target_probs=probs[src], radius=radius[src],
                      support=support[src], salience=salience(matrix[src]), valid=jnp.ones((r,), bool))
    stored = jnp.zeros((e,), bool).at[jnp.where(ok, src, e)].set(True, mode="drop")
    absorbed = (labels >= 0) & stored[jnp.maximum(labels, 0)]
    formed = jnp.sum(ok)
    return _set_rows(protos, dst, rows), absorbed, formed, n_cand - formed


# -- maintenance --------------------------------------------------------------------------------------------------------

def prune(prototypes: Prototypes, *, salience_threshold: float = PHI_INV3, support_threshold: int = 2):
    """Drop valid prototypes with salience < phi^-3 AND support < 2; returns (prototypes, pruned)."""
    drop = prototypes.valid & (prototypes.salience < salience_threshold) & (prototypes.support < support_threshold)
    return _clear(prototypes, drop), jnp.sum(drop)


def _combine_targets(ids, weights, k: int):
    """Sum the weights of equal ids (ids < 0 unused) and keep the top k, renormalised: ([k] ids, [k] probs)."""
    used = ids >= 0
    same = (ids[:, None] == ids[None, :]) & used[:, None] & used[None, :]
    total = same.astype(jnp.float32) @ weights
    earlier = jnp.any(jnp.tril(same, -1), axis=1)
    score = jnp.where(used & ~earlier & (total > 0), total, -1.0)
    top, idx = lax.top_k(score, k)
    keep = top > 0
    w = jnp.where(keep, top, 0.0)
    return jnp.where(keep, ids[idx], -1).astype(jnp.int32), w / jnp.maximum(jnp.sum(w), EPS)


def _det4(m):
    """det of [..., 4, 4] by the 2x2 minors of rows (0, 1) and (2, 3) (Laplace expansion; cheaper to compile than LU)."""
    def minors(r0, r1):
        return [r0[..., a] * r1[..., b] - r0[..., b] * r1[..., a] for a, b in ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3),
                                                                               (2, 3))]

    s = minors(m[..., 0, :], m[..., 1, :])
    c = minors(m[..., 2, :], m[..., 3, :])
    return s[0] * c[5] - s[1] * c[4] + s[2] * c[3] + s[3] * c[2] - s[4] * c[1] + s[5] * c[0]


def merge_similarity(matrix, faithful: bool = False):
    """Pairwise prototype similarity [P, P]: cos_F (default) or the original's phi^-1 cos_F + (1 - phi^-1) cos(w),
    w = (tr M / 4, det M) (faithful)."""
    f = _flat(matrix)
    fn = f / (jnp.linalg.norm(f, axis=-1, keepdims=True) + 1e-10)
    sims = fn @ fn.T
    if faithful:
        w = jnp.stack([jnp.trace(matrix, axis1=-2, axis2=-1) / 4.0, _det4(matrix)], axis=-1)
        wn = w / (jnp.linalg.norm(w, axis=-1, keepdims=True) + 1e-10)
        sims = PHI_INV * sims + (1.0 - PHI_INV) * (wn @ wn.T)
    return sims


def _merge_pair(protos: Prototypes, i, j) -> Prototypes:
    k = protos.target_ids.shape[1]
    si, sj = protos.support[i].astype(jnp.float32), protos.support[j].astype(jnp.float32)
    tot = si + sj
    wi = jnp.where(tot > 0, si / jnp.where(tot > 0, tot, 1.0), 0.5)
    wj = 1.0 - wi
    matrix = _normalise(cl.grace(wi * protos.matrix[i] + wj * protos.matrix[j]))
    ids, probs = _combine_targets(jnp.concatenate([protos.target_ids[i], protos.target_ids[j]]),
                                  jnp.concatenate([wi * protos.target_probs[i], wj * protos.target_probs[j]]), k)
    row = Prototypes(matrix=matrix[None], target_ids=ids[None], target_probs=probs[None],
                     radius=jnp.maximum(protos.radius[i], protos.radius[j])[None],
                     support=(protos.support[i] + protos.support[j])[None], salience=salience(matrix)[None],
                     valid=jnp.ones((1,), bool))
    merged = _set_rows(protos, i[None], row)
    return _clear(merged, jnp.arange(protos.capacity) == j)


def merge_interfering(prototypes: Prototypes, *, threshold: float = PHI_INV, max_merges: int = 5,
                      faithful: bool = False):
    """Interference management: up to max_merges times, merge the most similar pair of valid prototypes whose
    similarity is >= threshold into the lower slot (the other is freed); returns (prototypes, merges)."""
    p = prototypes.capacity
    upper = jnp.triu(jnp.ones((p, p), bool), 1)

    def body(_, carry):
        protos, n = carry
        mask = upper & protos.valid[:, None] & protos.valid[None, :]
        sims = jnp.where(mask, merge_similarity(protos.matrix, faithful), -jnp.inf)
        flat = jnp.argmax(sims)
        i, j = (flat // p).astype(jnp.int32), (flat % p).astype(jnp.int32)
        do = sims[i, j] >= threshold
        merged = _merge_pair(protos, i, j)
        protos = jax.tree_util.tree_map(lambda a, b: jnp.where(do, a, b), merged, protos)
        return protos, n + do.astype(jnp.int32)

    return lax.fori_loop(0, max_merges, body, (prototypes, jnp.zeros((), jnp.int32)))


def target_entropy(prototypes: Prototypes):
    """-sum p ln(p + 1e-10) of each prototype's target distribution: [P] (0 for invalid rows)."""
    p = prototypes.target_probs
    h = -jnp.sum(jnp.where(prototypes.target_ids >= 0, p * jnp.log(p + 1e-10), 0.0), axis=-1)
    return jnp.where(prototypes.valid, h, 0.0)


# -- one sleep ----------------------------------------------------------------------------------------------------------

def consolidate(episodes: Episodes, prototypes: Prototypes, key, *, schemas: Schemas | None = None,
                cluster: str | None = None, faithful: bool = False, threshold=SIMILAR_THRESHOLD,
                min_support: int = 3, noise: float = 0.001, predictive_coding: bool = True,
                forget_floor: int = 5000, max_merges: int = 5, clear: bool = True):
    """One systems-consolidation pass (DreamingSystem.sleep without REM and sequence replay): forgetting, the adaptive
    threshold, the predictive-coding filter, selection, clustering, prototype formation, pruning and merging.

    cluster: "similar" (default), "exact" (the original's; the default when faithful=True) or "key".
    threshold: the "similar" cosine threshold, a float or "adaptive" (adaptive_threshold of the prototype and schema
    counts before the pass; under jit, pass "adaptive" as a static argument). clear=True (may be traced) empties the buffer afterwards, as the original's training
    loop does; with clear=False the rows that survived forgetting and were not absorbed into a new prototype stay, in
    order.
    Returns (prototypes, episodes, metrics), metrics a dict of scalars."""
    cluster = cluster or ("exact" if faithful else "similar")
    k_forget, k_prio = jax.random.split(key)
    contexts, targets = episodes.context, episodes.target
    n_in = jnp.sum(episodes.valid)
    n_proto = jnp.sum(prototypes.valid)
    n_schema = jnp.sum(schemas.valid & schemas.promoted) if schemas is not None else 0
    kept = _forget_mask(episodes, forget_limit(n_proto, forget_floor), k_forget)
    adaptive = adaptive_threshold(n_proto, n_schema)
    thr = adaptive if isinstance(threshold, str) and threshold == "adaptive" else threshold
    active = predictive_filter(contexts, kept, prototypes) if predictive_coding else kept
    prio = priority(contexts, k_prio, noise)
    selected = selection_mask(contexts, targets, active)
    labels = cluster_labels(contexts, selected, prio, cluster=cluster, threshold=thr)
    protos, absorbed, formed, dropped = _store_clusters(prototypes, contexts, targets, labels, prio, min_support)
    protos, pruned = prune(protos)
    protos, merged = merge_interfering(protos, max_merges=max_merges, faithful=faithful)
    out = _compact(contexts, targets, kept & ~absorbed & jnp.logical_not(clear), episodes.capacity)
    n_valid = jnp.sum(protos.valid)
    consolidated = jnp.sum(absorbed)
    metrics = {
        "episodes": n_in, "forgotten": n_in - jnp.sum(kept), "filtered": jnp.sum(kept) - jnp.sum(active),
        "selected": jnp.sum(selected), "consolidated": consolidated,
        "consolidation_ratio": consolidated / jnp.maximum(n_in, 1),
        "formed": formed, "dropped": dropped, "pruned": pruned, "merged": merged, "prototypes": n_valid,
        "mean_target_entropy": jnp.sum(target_entropy(protos)) / jnp.maximum(n_valid, 1),
        "threshold": adaptive,
    }
    return protos, out, metrics
