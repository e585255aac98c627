"""The distributed prior (wavejax.memory.prior, spec 4.6) against numpy transcriptions of its formulas."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wavejax.memory import clifford as cl
from wavejax.memory import prior as pr
from wavejax.memory import prototypes as pt

PHI = (1 + 5**0.5) / 2
EPS = PHI**-20

superposed = jax.jit(pr.superposed_prior, static_argnames=("k", "grace_steps", "support"))
field = jax.jit(pr.prior_field, static_argnames=("grace_steps",))


def blade(*names: int) -> np.ndarray:
    out = np.eye(4)
    for i in names:
        out = out @ cl.GAMMA[i - 1]
    return out


# -- numpy references -------------------------------------------------------------------------------------------------

def coeffs(m):
    return np.asarray(m, np.float64).reshape(-1, 16) @ cl.BASIS.reshape(16, 16).T / 4


def np_grace(m, n=1):
    return (coeffs(m) * cl.GRACE_SCALES**n) @ cl.BASIS.reshape(16, 16)


def np_witness(m):
    c = coeffs(m)
    return np.stack([c[:, 0], c[:, 15]], axis=1)


def np_stability(m):
    c = coeffs(m)
    return np.minimum((c[:, 0] ** 2 + c[:, 15] ** 2) / np.sum(c**2, axis=1), 1.0)


def np_flow(m, a, steps=3, rate=PHI**-2):
    x = np.asarray(m, np.float64).reshape(16)
    for _ in range(steps):
        x = (1 - rate) * np_grace(x.reshape(4, 4))[0] + rate * a.reshape(16)
    return x.reshape(4, 4)


# -- fixtures ----------------------------------------------------------------------------------------------------------

def unit(x):
    return x / np.linalg.norm(x)


MATS = np.stack([unit(np.eye(4) + 0.3 * blade(1, 2)), unit(blade(1, 2, 3, 4) + 0.5 * np.eye(4)),
                 unit(blade(1) + 0.2 * np.eye(4) - 0.4 * blade(1, 2, 3, 4))]).astype(np.float32)
ROWS = np.array([1, 4, 6])  # valid rows of a table with gaps
SUPPORT = np.array([1, 4, 9])
TIDS = np.array([[10, 11, -1], [11, 12, -1], [13, -1, -1]])
TPROBS = np.array([[0.75, 0.25, 0.0], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], np.float32)
QUERY = (0.8 * np.eye(4) + 0.1 * blade(1, 2, 3, 4) + 0.3 * blade(2, 3) + 0.2 * blade(3)).astype(np.float32)


def table(capacity: int = 8) -> pt.Prototypes:
    p = pt.empty_prototypes(capacity, k=3)
    return p.replace(matrix=p.matrix.at[ROWS].set(MATS), valid=p.valid.at[ROWS].set(True),
                     support=p.support.at[ROWS].set(SUPPORT), target_ids=p.target_ids.at[ROWS].set(TIDS),
                     target_probs=p.target_probs.at[ROWS].set(TPROBS))


def test_phi_kernel_and_margin():
    np.testing.assert_allclose(pr.phi_kernel(jnp.array([0.0, 1.0, 2.0, 0.5])), [1, 1 / PHI, PHI**-2, PHI**-0.5],
                               rtol=1e-6)
    d = jnp.array([3.0, 1.0, 2.0, 0.1])
    np.testing.assert_allclose(pr.margin_confidence(d), (1.0 - 0.1) / (1.0 + EPS), rtol=1e-6)
    valid = jnp.array([True, True, True, False])
    np.testing.assert_allclose(pr.margin_confidence(d, valid), (2.0 - 1.0) / (2.0 + EPS), rtol=1e-6)
    assert float(pr.margin_confidence(d, jnp.array([False, True, False, False]))) == 1.0
    assert float(pr.margin_confidence(d, jnp.zeros(4, bool))) == 0.0
    # grace_flow: x <- (1 - r) Grace(x) + r A
    a = np_grace(MATS[0])[0].reshape(4, 4)
    np.testing.assert_allclose(pr.grace_flow(jnp.asarray(QUERY), jnp.asarray(a, jnp.float32)), np_flow(QUERY, a),
                               atol=1e-5)


def np_superposed(k, support="count"):
    qw = np_witness(np_grace(QUERY, 3))[0]
    d = np.linalg.norm(np_witness(MATS) - qw, axis=1)
    near = np.argsort(d)[:k]
    s = SUPPORT if support == "count" else TPROBS.sum(1)
    raw = PHI ** -d[near] * np.sqrt(s[near] + 1) * np_stability(MATS)[near]
    alpha = raw / raw.sum()
    a = np_grace(np.einsum("k,kij->ij", alpha, MATS[near]))[0].reshape(4, 4)
    dense = np.zeros(16)
    for w, i in zip(alpha, near):
        for t, p in zip(TIDS[i], TPROBS[i]):
            if t >= 0:
                dense[t] += w * p
    srt = np.sort(d)
    return near, d, alpha, a, np_flow(QUERY, a), dense, (srt[1] - srt[0]) / (srt[1] + EPS)


@pytest.mark.parametrize("k", [8, 2])
def test_superposed_weights_match_numpy(k):
    near, d, alpha, a, eq, dense, conf = np_superposed(k)
    out = superposed(jnp.asarray(QUERY), table(), k=k)
    used = np.asarray(out.rows) >= 0
    assert used.sum() == len(near)
    np.testing.assert_array_equal(np.asarray(out.rows)[used], ROWS[near])  # nearest first
    np.testing.assert_allclose(np.asarray(out.weights)[used], alpha, rtol=1e-5)
    assert np.all(np.asarray(out.weights)[~used] == 0)
    np.testing.assert_allclose(np.asarray(out.distances)[used], d[near], rtol=1e-5)
    np.testing.assert_allclose(out.attractor, a, atol=1e-5)
    np.testing.assert_allclose(out.equilibrium, eq, atol=1e-5)
    np.testing.assert_allclose(out.confidence, conf, rtol=1e-5)  # the margin is over all prototypes, not the K
    np.testing.assert_allclose(pr.dense_targets(out.target_ids, out.target_probs, 16), dense, atol=1e-6)
    ids = np.asarray(out.target_ids)
    assert len(set(ids[ids >= 0])) == (ids >= 0).sum()  # duplicates merged
    assert np.all(np.diff(np.asarray(out.target_probs)) <= 0)  # sorted by probability
    # the original's "support" (sum of the target probabilities) is the constant sqrt(2)
    _, _, alpha_f, *_ = np_superposed(k, support="faithful")
    out_f = superposed(jnp.asarray(QUERY), table(), k=k, support="faithful")
    np.testing.assert_allclose(np.asarray(out_f.weights)[used], alpha_f, rtol=1e-5)


def test_superposed_without_prototypes_returns_the_query():
    out = superposed(jnp.asarray(QUERY), pt.empty_prototypes(8, k=3), k=8)
    np.testing.assert_allclose(out.equilibrium, QUERY)
    assert float(out.confidence) == 0.0 and np.all(np.asarray(out.target_ids) == -1)
    with pytest.raises(ValueError):
        pr.superposed_prior(QUERY, table(), support="nope")


def test_prior_field_weights_and_confidence():
    qw = np_witness(np_grace(QUERY, 1))[0]
    d = np.linalg.norm(np_witness(MATS) - qw, axis=1)
    c = SUPPORT * PHI**-d
    w = c / c.sum()
    a = np_grace(np.einsum("k,kij->ij", w, MATS))[0].reshape(4, 4)
    out = field(jnp.asarray(QUERY), table())
    np.testing.assert_allclose(np.asarray(out.weights)[ROWS], w, rtol=1e-5)
    assert np.asarray(out.weights).sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(out.confidence, c.max() / (c.sum() + EPS), rtol=1e-5)
    np.testing.assert_allclose(out.attractor, a, atol=1e-5)
    np.testing.assert_allclose(out.equilibrium, np_flow(QUERY, a), atol=1e-5)
    assert list(np.asarray(out.rows)[ROWS]) == list(ROWS) and (np.asarray(out.rows) >= 0).sum() == 3
    dense = np.asarray(pr.dense_targets(out.target_ids, out.target_probs, 16))
    assert dense.sum() == pytest.approx(1.0, abs=1e-5) and set(np.nonzero(dense)[0]) == {10, 11, 12, 13}
    empty = field(jnp.asarray(QUERY), pt.empty_prototypes(8, k=3))
    assert float(empty.confidence) == 0.0
    np.testing.assert_allclose(empty.equilibrium, QUERY)


def test_factorized_prior_update_and_predict_against_numpy():
    rng = np.random.default_rng(0)
    lam = PHI**-12
    cov, assoc = lam * np.eye(4), np.zeros((16, 4))
    prior = pr.FactorizedPrior.init()
    update = jax.jit(lambda p, w, a, o: p.update(w, a, o))
    for step in range(3):
        ctx = (np.eye(4) + 0.5 * rng.standard_normal((4, 4))).astype(np.float32)
        w = np.asarray(cl.extended_witness(jnp.asarray(ctx)), np.float64)  # the original feeds (w(C), C)
        omega = 1.0 + step
        cov = (1 - 1 / PHI) * cov + (1 / PHI) * omega * np.outer(w, w)
        assoc = (1 - 1 / PHI) * assoc + (1 / PHI) * omega * np.outer(ctx.reshape(16), w)
        prior = update(prior, w.astype(np.float32), ctx, omega)
    assert int(prior.n_updates) == 3
    np.testing.assert_allclose(prior.cov, cov, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(prior.assoc, assoc, rtol=1e-5, atol=1e-7)
    q = rng.standard_normal(4)
    want = np_grace((assoc @ np.linalg.inv(cov + lam * np.eye(4)) @ q).reshape(4, 4))[0].reshape(4, 4)
    got = jax.jit(lambda p, w: p.predict(w))(prior, q.astype(np.float32))
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * np.abs(want).max())
    # EMA at rate phi^-1: the last two updates carry phi^-1 + phi^-3 = 85% of the weight
    assert 1 / PHI + (1 - 1 / PHI) / PHI == pytest.approx(0.854, abs=1e-3)
    eq = pr.factorized_retrieve(jnp.asarray(QUERY), prior)
    np.testing.assert_allclose(eq, np_flow(QUERY, np.asarray(prior.predict(cl.extended_witness(QUERY)))), atol=1e-4)


def test_determinism_jit_and_vmap():
    queries = np.stack([QUERY, QUERY.T, np.eye(4, dtype=np.float32)])
    eager = pr.superposed_prior(jnp.asarray(QUERY), table(), k=8)
    jitted = superposed(jnp.asarray(QUERY), table(), k=8)
    again = superposed(jnp.asarray(QUERY), table(), k=8)
    for x, y, z in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), jax.tree.leaves(again)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(y, z)
    batched = jax.jit(jax.vmap(lambda q: pr.superposed_prior(q, table(), k=8)))(jnp.asarray(queries))
    np.testing.assert_allclose(batched.weights[0], jitted.weights, rtol=1e-6)
    fb = jax.jit(jax.vmap(lambda q: pr.prior_field(q, table())))(jnp.asarray(queries))
    np.testing.assert_allclose(fb.confidence[0], field(jnp.asarray(QUERY), table()).confidence, rtol=1e-6)
