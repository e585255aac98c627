"""Systems consolidation and semantic retrieval (wavejax.memory.consolidation), checked against hand-computed values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wavejax.memory import clifford as cl
from wavejax.memory import consolidation as co
from wavejax.memory import semantic as sem
from wavejax.memory.prototypes import Episodes, Prototypes, empty_episodes, empty_prototypes, empty_schemas

PHI = (1 + 5**0.5) / 2
B = cl.BASIS  # B0 = I, B1 = e1, B2 = e2, B5 = e1e2, B15 = gamma5
RES = PHI**-12
E_CAP, P_CAP, K = 8, 4, 4

# One compiled program per (cluster, faithful, clear); the numeric options are traced.
_consolidate = jax.jit(co.consolidate, static_argnames=("cluster", "faithful", "predictive_coding"))
add_episodes = jax.jit(co.add_episodes, static_argnames=("fraction", "keep"))
forget = jax.jit(co.forget, static_argnames=("floor",))
predictive_filter = jax.jit(co.predictive_filter)
pattern_complete = jax.jit(sem.pattern_complete, static_argnames=("steps",))
predict_targets = jax.jit(sem.predict_targets, static_argnames=("k", "vocab_size"))
cluster_labels = jax.jit(co.cluster_labels, static_argnames=("cluster",))
merge = jax.jit(co.merge_interfering, static_argnames=("faithful",))
retrieve = jax.jit(sem.retrieve, static_argnames=("completion_steps",))

# A transient context (grace stability 0.09 / 1.34 < phi^-2) with salience 0.3.
C0 = 0.3 * B[0] + B[5] + 0.5 * B[1]


def episodes(contexts, targets, cap: int = E_CAP) -> Episodes:
    n = len(contexts)
    ctx = np.zeros((cap, 4, 4), np.float32)
    ctx[:n] = np.asarray(contexts)
    tgt = np.zeros(cap, np.int32)
    tgt[:n] = targets
    return Episodes(context=jnp.asarray(ctx), target=jnp.asarray(tgt), valid=jnp.arange(cap) < n)


def prototypes(mats, support, sal=None, ids=None, probs=None, cap: int = P_CAP) -> Prototypes:
    n = len(mats)
    p = empty_prototypes(cap, K)
    m = np.zeros((cap, 4, 4), np.float32)
    m[:n] = [np.asarray(x) / np.linalg.norm(x) for x in mats]
    tid = np.full((cap, K), -1, np.int32)
    tpr = np.zeros((cap, K), np.float32)
    for r in range(n):
        row_ids = ids[r] if ids is not None else [r]
        row_p = probs[r] if probs is not None else [1.0]
        tid[r, : len(row_ids)], tpr[r, : len(row_p)] = row_ids, row_p
    sal = np.asarray(co.salience(jnp.asarray(m))) if sal is None else np.pad(np.asarray(sal, np.float32), (0, cap - n))
    return p.replace(matrix=jnp.asarray(m), target_ids=jnp.asarray(tid), target_probs=jnp.asarray(tpr),
                     support=jnp.asarray(np.pad(np.asarray(support, np.int32), (0, cap - n))),
                     salience=jnp.asarray(sal), valid=jnp.arange(cap) < n, radius=jnp.zeros(cap, jnp.float32))


def consolidate(buf, protos, key, *, faithful=False, noise=0.001, min_support=3, clear=True):
    """The jitted sleep, always called with the same keywords (so two programs in all: similar and faithful)."""
    return _consolidate(buf, protos, key, faithful=faithful, noise=noise, min_support=min_support, clear=clear)


def run(contexts, targets, key=0, **kw):
    return consolidate(episodes(contexts, targets), empty_prototypes(P_CAP, K), jax.random.PRNGKey(key), noise=0.0,
                       **kw)


def test_salience_and_priority():
    m = jnp.asarray(0.7 * B[0] - 0.4 * B[15] + 0.3 * B[1], jnp.float32)
    assert float(co.salience(m)) == pytest.approx(0.7 + 0.4 / PHI, rel=1e-6)
    ms = jnp.stack([m, 2 * m, -m])
    key = jax.random.PRNGKey(3)
    pr = np.asarray(co.priority(ms, key))
    sal = np.asarray(co.salience(ms))
    assert np.all(pr >= sal) and np.all(pr < sal + 0.001 + 1e-7)
    np.testing.assert_array_equal(pr, np.asarray(co.priority(ms, key)))  # keyed: reproducible
    np.testing.assert_array_equal(np.asarray(co.priority(ms, key, noise=0.0)), sal)


def test_selection_rule():
    ctx = jnp.asarray(np.stack([B[0], B[0], B[0], B[0], B[0], B[0], C0]), jnp.float32)
    tgt = jnp.asarray([1, 2, 2, 3, 3, 3, 9])
    # I is fully stable (1 > phi^-2): selected only through a target seen >= 3 times; C0 is transient.
    sel = co.selection_mask(ctx, tgt, jnp.ones(7, bool))
    np.testing.assert_array_equal(np.asarray(sel), [False, False, False, True, True, True, True])
    # Inactive rows neither count nor get selected.
    sel = co.selection_mask(ctx, tgt, jnp.asarray([1, 1, 1, 1, 1, 0, 1], bool))
    np.testing.assert_array_equal(np.asarray(sel), [False, False, False, False, False, False, True])


def test_three_identical_contexts_make_one_prototype():
    norm = np.linalg.norm(C0)
    for faithful in (False, True):
        protos, buf, m = run([C0] * 3, [5, 5, 7], faithful=faithful)
        assert int(m["formed"]) == 1 and int(protos.count) == 1
        np.testing.assert_allclose(np.asarray(protos.matrix[0]), C0 / norm, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(protos.target_ids[0]), [5, 7, -1, -1])
        # weights count (1 + priority) = 1.3 each: 2.6 : 1.3
        np.testing.assert_allclose(np.asarray(protos.target_probs[0]), [2 / 3, 1 / 3, 0, 0], atol=1e-6)
        assert float(protos.radius[0]) == pytest.approx(0.0, abs=1e-6)
        assert int(protos.support[0]) == 3
        assert float(protos.salience[0]) == pytest.approx(0.3 / norm, rel=1e-5)
        assert float(m["consolidation_ratio"]) == 1.0 and int(m["consolidated"]) == 3
        assert float(m["mean_target_entropy"]) == pytest.approx(-(2 / 3) * np.log(2 / 3) - (1 / 3) * np.log(1 / 3),
                                                                 rel=1e-5)
        assert not bool(jnp.any(buf.valid))  # the buffer is emptied after the sleep


def test_weighted_mean_and_radius_of_similar_members():
    c1 = C0
    c2 = C0 + 0.2 * B[2]
    c3 = 0.6 * B[0] + B[5] + 0.5 * B[1]
    protos, _, m = run([c1, c2, c3], [4, 4, 4])
    mats = np.stack([c1, c2, c3])
    w = np.array([0.3, 0.3, 0.6])  # priority = salience (noise 0) = |sigma|
    mean = np.einsum("n,nij->ij", w / w.sum(), mats)
    mean /= np.linalg.norm(mean)
    np.testing.assert_allclose(np.asarray(protos.matrix[0]), mean, atol=1e-6)
    cos = np.einsum("ij,nij->n", mean, mats) / np.linalg.norm(mats, axis=(1, 2))
    assert float(protos.radius[0]) == pytest.approx(float(np.max(1 - cos)), abs=1e-6)
    assert int(m["formed"]) == 1 and int(protos.support[0]) == 3
    np.testing.assert_allclose(np.asarray(protos.target_probs[0]), [1, 0, 0, 0])


def test_min_support():
    protos, _, m = run([C0] * 2, [5, 7])
    assert int(m["formed"]) == 0 and int(protos.count) == 0 and int(m["selected"]) == 2
    protos, _, m = run([C0] * 2, [5, 7], min_support=2)
    assert int(m["formed"]) == 1 and int(protos.support[0]) == 2


def test_exact_separates_slightly_different_contexts_similar_merges_them():
    c1 = C0 + 0.01 * B[0]  # scalar coefficient +0.01 = 3.2 basin-key bins; cos(C0, c1) > 0.9999
    _, _, m = run([C0, C0, C0, c1, c1, c1], [1, 1, 1, 2, 2, 2], faithful=True)
    assert int(m["formed"]) == 2
    protos, _, m = run([C0, C0, C0, c1, c1, c1], [1, 1, 1, 2, 2, 2])
    assert int(m["formed"]) == 1 and int(protos.support[0]) == 6
    _, _, m = run([C0, C0, c1], [1, 1, 2], faithful=True)
    assert int(m["formed"]) == 0
    protos, _, m = run([C0, C0, c1], [1, 1, 2])
    assert int(m["formed"]) == 1 and int(protos.support[0]) == 3


def test_exact_ids_collide_key_separates():
    # Mid-bin coefficients: keys (100, 10) and (103, 8) on (scalar, e1); 2*3 - 3*2 = 0, the same prime-weighted sum.
    s3 = PHI**-3  # the e1 Grace scale cubed
    a = 100.5 * RES * B[0] + 10.5 * RES / s3 * B[1] + 0.3 * B[5]
    b = 103.5 * RES * B[0] + 8.5 * RES / s3 * B[1] + 0.3 * B[5]
    ctx = jnp.asarray(np.stack([a, b, 2 * a]), jnp.float32)
    keys = np.asarray(cl.basin_key(ctx))
    assert keys[0, 0] == 100 and keys[0, 1] == 10 and keys[1, 0] == 103 and keys[1, 1] == 8
    act, prio = jnp.ones(3, bool), jnp.zeros(3)
    exact = np.asarray(cluster_labels(ctx, act, prio, cluster="exact"))
    key = np.asarray(cluster_labels(ctx, act, prio, cluster="key"))
    assert exact[0] == exact[1] != exact[2]
    assert len(set(key.tolist())) == 3
    assert np.all(np.asarray(cluster_labels(ctx, jnp.asarray([True, False, True]), prio, cluster="key"))[1] == -1)


def test_pruning():
    mats = [B[0], B[5], B[6]]
    protos = prototypes(mats, support=[1, 2, 1], sal=[0.1, 0.1, 0.5])
    out, n = co.prune(protos)
    assert int(n) == 1
    np.testing.assert_array_equal(np.asarray(out.valid), [False, True, True, False])
    assert int(out.target_ids[0, 0]) == -1 and float(jnp.abs(out.matrix[0]).sum()) == 0.0


def test_merging():
    a, a2, c = 2 * B[0] + B[1], 2 * B[0] + B[2], B[5]  # cos(a, a2) = 16 / 20 = 0.8 > phi^-1; c is orthogonal
    protos = prototypes([a, a2, c], support=[3, 1, 5], ids=[[1], [1, 2], [7]], probs=[[1.0], [0.5, 0.5], [1.0]],
                        cap=8)
    protos = protos.replace(radius=jnp.asarray([0.1, 0.3, 0.2] + [0.0] * 5, jnp.float32))
    out, n = merge(protos, max_merges=5)
    assert int(n) == 1
    np.testing.assert_array_equal(np.asarray(out.valid), [True, False, True] + [False] * 5)
    an, a2n = a / np.linalg.norm(a), a2 / np.linalg.norm(a2)
    expect = np.asarray(cl.grace(jnp.asarray(0.75 * an + 0.25 * a2n, jnp.float32)))
    np.testing.assert_allclose(np.asarray(out.matrix[0]), expect / np.linalg.norm(expect), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(out.target_ids[0]), [1, 2, -1, -1])
    np.testing.assert_allclose(np.asarray(out.target_probs[0]), [0.875, 0.125, 0, 0], atol=1e-6)
    assert int(out.support[0]) == 4 and float(out.radius[0]) == pytest.approx(0.3)
    np.testing.assert_array_equal(np.asarray(out.matrix[2]), np.asarray(protos.matrix[2]))  # untouched


def test_merging_stops_after_max_merges():
    base = 2 * B[0] + B[1]
    mats = [base + 0.01 * i * B[5] for i in range(8)]
    protos = prototypes(mats, support=[1] * 8, cap=8)
    out, n = merge(protos, max_merges=5)
    assert int(n) == 5 and int(out.count) == 3
    out, n = merge(protos, max_merges=10)
    assert int(n) == 7 and int(out.count) == 1 and int(out.support.sum()) == 8


def test_retrieval_ranking_and_schema_boost():
    protos = prototypes([B[3], B[5], B[7], B[5]], support=[3, 3, 3, 3])
    protos = protos.replace(valid=jnp.asarray([True, True, True, False]))  # the invalid copy of P1 never counts
    q = jnp.asarray(0.4 * B[5] + 0.1 * B[7] + 0.8 * B[9], jnp.float32)
    nq = np.sqrt(0.16 + 0.01 + 0.64)
    cos1, cos2, cos_s = 0.4 / nq, 0.1 / nq, 0.8 / nq
    scores, best = retrieve(protos, q)
    assert int(best) == 1
    np.testing.assert_allclose(np.asarray(scores[:3]), [0, cos1, cos2], atol=1e-4)
    assert np.asarray(scores)[3] == -np.inf
    sch = empty_schemas(2)
    sch = sch.replace(matrix=sch.matrix.at[0].set(jnp.asarray(B[9] / 2, jnp.float32)),
                      sources=sch.sources.at[0].set(jnp.asarray([2, -1])), valid=jnp.asarray([True, False]),
                      promoted=jnp.asarray([True, False]))
    scores, best = retrieve(protos, q, schemas=sch)
    boosted = cos_s / PHI + (1 - 1 / PHI) * cos2  # 0.592 > cos1 = 0.444
    assert int(best) == 2
    np.testing.assert_allclose(np.asarray(scores[:3]), [0, cos1, boosted], atol=1e-4)
    _, best = retrieve(protos, q, schemas=sch.replace(promoted=jnp.asarray([False, False])))
    assert int(best) == 1
    q_far = jnp.asarray(0.4 * B[5] + 0.1 * B[7] + 0.2 * B[9], jnp.float32)  # cos(q, S) = 0.44 > phi^-2 still
    scores_far, _ = retrieve(protos, q_far, schemas=sch)
    n2 = np.sqrt(0.16 + 0.01 + 0.04)
    np.testing.assert_allclose(float(scores_far[2]), max(0.1 / n2, 0.2 / n2 / PHI + (1 - 1 / PHI) * 0.1 / n2),
                               atol=1e-4)



def test_schema_boosts_scattered_equal_the_membership_mask():
    """retrieve's scatter-max onto each schema's sources equals the dense [batch, S, P] membership reference."""
    rng = np.random.default_rng(0)
    n_p, n_s = 6, 5
    protos = prototypes(list(rng.normal(size=(n_p, 4, 4))), support=[3] * n_p, cap=n_p)
    sch = empty_schemas(n_s)
    sources = np.array([[0, 2], [2, -1], [5, 5], [1, 3], [4, 0]], np.int32)
    q = rng.normal(size=(3, 2, 4, 4))
    near = q.reshape(-1, 4, 4)[:n_s] + 0.5 * rng.normal(size=(n_s, 4, 4))  # schemas near some queries: boosts fire
    sch = sch.replace(matrix=jnp.asarray(near, jnp.float32), sources=jnp.asarray(sources),
                      valid=jnp.asarray([True, True, True, True, False]), promoted=jnp.asarray([True] * n_s))
    q = jnp.asarray(q, jnp.float32)
    scores, _ = retrieve(protos, q, schemas=sch)
    sims = np.asarray(cl.cosine_scores(q, protos.matrix))
    ssims = np.asarray(cl.cosine_scores(q, sch.matrix))
    active = np.asarray(sch.valid)[None, None] & (ssims > PHI**-2)
    member = (sources[:, :, None] == np.arange(n_p)[None, None]).any(axis=1)  # [S, P]
    boost = np.where(active[..., None] & member, ssims[..., None] / PHI, -np.inf).max(axis=-2)
    want = np.maximum(sims, boost + (1 - 1 / PHI) * sims)
    assert np.isfinite(boost).sum() >= 3 and (boost + (1 - 1 / PHI) * sims > sims).any()  # boosts that win
    np.testing.assert_allclose(np.asarray(scores), want, atol=1e-6)

def test_pattern_completion_and_predict_targets():
    protos = prototypes([B[0], B[5]], support=[3, 3], ids=[[1, 2], [3]], probs=[[0.75, 0.25], [1.0]])
    q = jnp.asarray(0.5 * B[0] + 0.6 * B[5], jnp.float32)
    _, best = retrieve(protos, q)
    assert int(best) == 1
    completed = pattern_complete(q, 2)
    g2 = np.asarray(cl.grace(q, 2))
    np.testing.assert_allclose(np.asarray(completed), g2 * np.linalg.norm(q) / np.linalg.norm(g2), atol=1e-6)
    _, best = retrieve(protos, q, completion_steps=2)  # the bivector shrinks by phi^-4: the scalar prototype wins
    assert int(best) == 0
    ids, probs = predict_targets(protos, q)
    np.testing.assert_array_equal(np.asarray(ids), [3, -1, -1, -1])
    np.testing.assert_allclose(np.asarray(probs), [1, 0, 0, 0])
    dense = predict_targets(protos, jnp.stack([q, jnp.asarray(B[0], jnp.float32)]), vocab_size=5)
    np.testing.assert_allclose(np.asarray(dense), [[0, 0, 0, 1, 0], [0, 0.75, 0.25, 0, 0]], atol=1e-6)


def test_adaptive_threshold_forgetting_and_predictive_filter():
    def at(n, s):
        return float(co.adaptive_threshold(jnp.asarray(n), jnp.asarray(s)))

    assert at(5, 100) == pytest.approx(PHI**-3)
    assert at(10, 0) == pytest.approx(1 - PHI**-3, rel=1e-6)  # phi^-2 + phi^-2 = 1 - phi^-3, at the clip
    assert at(99, 100 * PHI) == pytest.approx(PHI**-2, rel=1e-5)
    assert at(10, 1000) == pytest.approx(PHI**-3)
    assert int(co.forget_limit(0)) == 5000 and int(co.forget_limit(1000)) == 28798
    n = 2700  # > trunc(phi^2 100 10) = 2618 with floor 0
    a = np.linspace(0.05, 0.05 * n, n).astype(np.float32)[::-1].copy()
    buf = Episodes(context=jnp.asarray(a[:, None, None] * np.eye(4, dtype=np.float32)),
                   target=jnp.arange(n, dtype=jnp.int32), valid=jnp.ones(n, bool))
    kept, forgotten = forget(buf, 0, jax.random.PRNGKey(0), floor=0)
    assert int(forgotten) == 82
    np.testing.assert_array_equal(np.asarray(kept.target[:2618]), np.arange(2618))  # the 2618 most salient, in order
    protos = prototypes([C0], support=[3])
    ctx = jnp.asarray(np.stack([C0, 2 * C0, B[15]]), jnp.float32)
    np.testing.assert_array_equal(np.asarray(predictive_filter(ctx, jnp.ones(3, bool), protos)), [0, 0, 1])
    empty = protos.replace(valid=jnp.zeros(P_CAP, bool))
    assert bool(jnp.all(predictive_filter(ctx, jnp.ones(3, bool), empty)))
    # In a sleep: the episodes an existing prototype predicts are skipped, so nothing new forms.
    out, _, m = consolidate(episodes([C0] * 3, [5, 5, 7]), protos, jax.random.PRNGKey(0))
    assert int(m["filtered"]) == 3 and int(m["formed"]) == 0 and int(out.count) == 1


def test_add_episodes():
    batch = jnp.asarray(np.arange(1, 21, dtype=np.float32)[:, None, None] * np.eye(4, dtype=np.float32))
    tgt = jnp.arange(20, dtype=jnp.int32)
    buf = add_episodes(empty_episodes(4), batch, tgt, jax.random.PRNGKey(0))
    assert int(buf.valid.sum()) == 2  # 10% of 20
    t = np.asarray(buf.target[:2])
    assert len(set(t.tolist())) == 2
    np.testing.assert_allclose(np.asarray(buf.context[:2, 0, 0]), t + 1.0)  # rows stay paired with their targets
    again = add_episodes(empty_episodes(4), batch, tgt, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(again.target), np.asarray(buf.target))
    full = add_episodes(empty_episodes(4), batch[10:14], tgt[10:14], jax.random.PRNGKey(1), fraction=1.0)
    newest = add_episodes(full, batch[:3], tgt[:3], jax.random.PRNGKey(2), fraction=1.0)
    np.testing.assert_array_equal(np.asarray(newest.target), [13, 0, 1, 2])
    best = add_episodes(full, batch[:3], tgt[:3], jax.random.PRNGKey(2), fraction=1.0, keep="priority")
    np.testing.assert_array_equal(np.asarray(best.target), [10, 11, 12, 13])  # salience = |sigma| = 11..14 beat 1..3


def test_determinism_keep_buffer_and_jit():
    rng = np.random.default_rng(0)
    ctx = np.concatenate([np.repeat(rng.standard_normal((2, 4, 4)), 3, axis=0), rng.standard_normal((2, 4, 4))])
    buf = episodes(ctx.astype(np.float32), [1, 1, 2, 3, 3, 4, 5, 6])
    protos = empty_prototypes(P_CAP, K)
    a = consolidate(buf, protos, jax.random.PRNGKey(7))
    b = consolidate(buf, protos, jax.random.PRNGKey(7))
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert int(a[2]["formed"]) == 2
    # The target weights carry the keyed priority jitter; a different key changes them only within 0.001.
    c = consolidate(buf, protos, jax.random.PRNGKey(8))
    np.testing.assert_allclose(np.asarray(c[0].target_probs), np.asarray(a[0].target_probs), atol=1e-3)
    _, kept, m = consolidate(buf, protos, jax.random.PRNGKey(7), clear=False)
    assert int(m["consolidated"]) == 6 and int(kept.valid.sum()) == 2  # the unabsorbed rows stay, in order
    np.testing.assert_array_equal(np.asarray(kept.context[:2]), np.asarray(buf.context[6:]))
    np.testing.assert_array_equal(np.asarray(kept.target[:2]), [5, 6])
    # jit and eager agree (retrieval; the whole sleep runs jitted above)
    q = buf.context[0]
    for x, y in zip(sem.retrieve(a[0], q), retrieve(a[0], q)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6)
