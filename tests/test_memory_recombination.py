"""REM recombination (wavejax.memory.recombination, spec 4.4): rules, survival, hashing, promotion, capacity."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wavejax.memory import clifford as cl
from wavejax.memory import prototypes as pt
from wavejax.memory import recombination as rc

PHI = (1 + 5**0.5) / 2

recombine = jax.jit(rc.recombine, static_argnames=("survival", "max_pairs", "promote_at"))
survival_test = jax.jit(rc.survival_test, static_argnames=("survival", "steps"))
record = jax.jit(rc.record_sightings, static_argnames=("promote_at",))


def blade(*names: int) -> np.ndarray:
    out = np.eye(4)
    for i in names:
        out = out @ cl.GAMMA[i - 1]
    return out


def table(matrices, valid_rows=None, capacity: int = 32) -> pt.Prototypes:
    matrices = np.asarray(matrices, np.float32)
    rows = np.arange(len(matrices)) if valid_rows is None else np.asarray(valid_rows)
    p = pt.empty_prototypes(capacity, k=4)
    return p.replace(matrix=p.matrix.at[rows].set(matrices), valid=p.valid.at[rows].set(True),
                     support=p.support.at[rows].set(3))


def normed(x):
    return x / np.linalg.norm(x, axis=(-2, -1), keepdims=True)


def test_rules_on_hand_made_matrices():
    a = (blade(1, 2) + 0.5 * np.eye(4)).astype(np.float32)
    b = (blade(3) + 2.0 * blade(1, 2, 3, 4)).astype(np.float32)
    noise = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_allclose(rc.compose(a, b), a @ b, atol=1e-6)
    np.testing.assert_allclose(rc.unbind(a, b), a @ b.T, atol=1e-6)
    np.testing.assert_allclose(rc.perturb(a, noise), a + PHI**-4 * noise, atol=1e-6)
    # for orthogonal B the "unbind" undoes the composition
    e = blade(1, 3).astype(np.float32)
    np.testing.assert_allclose(rc.unbind(rc.compose(a, e), e), a, atol=1e-6)
    ops = jnp.array([0, 1, 2])
    out = rc.combine(jnp.stack([a] * 3), jnp.stack([b] * 3), ops, jnp.stack([noise] * 3))
    np.testing.assert_allclose(out, np.stack([a @ b, a @ b.T, a + PHI**-4 * noise]), atol=1e-6)


def test_faithful_survival_passes_almost_everything_and_sound_can_fail():
    x = np.random.default_rng(0).standard_normal((200, 4, 4)).astype(np.float32)
    ok_f, canon_f, score_f = survival_test(x, survival="faithful")
    ok_s, _, score_s = survival_test(x, survival="sound")
    assert np.mean(ok_f) >= 0.95 and np.all(ok_f)  # in fact every nonzero input passes:
    assert float(np.min(score_f)) >= rc.faithful_floor() - 1e-5 and rc.faithful_floor() > 0.87
    assert np.mean(ok_s) < 0.05  # random forms keep ~1/16 of their energy in the scalar
    # the canonical form is the normalised 10th iterate, and is dominated by the scalar part
    np.testing.assert_allclose(np.linalg.norm(canon_f, axis=(1, 2)), 1.0, atol=1e-5)
    # the sound score against numpy: |D^10 c| / (d_max^10 |c|) in coefficient space
    d = PHI**-2 * cl.GRACE_SCALES + 0.1 * (1 - PHI**-2)
    c = x.astype(np.float64).reshape(-1, 16) @ cl.BASIS.reshape(16, 16).T / 4
    want = np.linalg.norm(c * d**10, axis=1) / (d.max() ** 10 * np.linalg.norm(c, axis=1))
    np.testing.assert_allclose(score_s, want, rtol=1e-4)

    # a constructed case: a pure bivector passes the faithful test (it is an eigenvector of the iteration,
    # cos = 1) but keeps only (d_2 / d_0)^10 = 5e-4 of a scalar's norm, so the sound test rejects it
    cases = np.stack([blade(1, 2), np.eye(4) + 0.1 * x[0], np.zeros((4, 4))]).astype(np.float32)
    ok_f, _, score_f = survival_test(cases, survival="faithful")
    ok_s, _, score_s = survival_test(cases, survival="sound")
    assert list(np.asarray(ok_f)) == [True, True, False]  # only the zero candidate fails
    assert list(np.asarray(ok_s)) == [False, True, False]
    assert float(score_s[0]) < 1e-3 and float(score_f[0]) > 0.999
    with pytest.raises(ValueError):
        rc.survival_test(cases, survival="nope")


def test_canonical_key_rounds_to_two_decimals():
    base = normed(np.random.default_rng(1).standard_normal((4, 4))).astype(np.float32)
    base = np.round(base, 2)
    near = base + 0.003  # same rounding
    far = base.copy()
    far[0, 0] += 0.01
    keys = np.asarray(rc.canonical_key(jnp.asarray(np.stack([base, near, far]))))
    assert keys.dtype == np.uint32 and keys.shape == (3, 2)
    assert (keys[0] == keys[1]).all() and (keys[0] != keys[2]).any()
    assert (np.asarray(rc.canonical_key(jnp.zeros((4, 4)))) == np.asarray(rc.canonical_key(-jnp.zeros((4, 4))))).all()


def _sighting(matrix, n, source, rows: int = 4):
    """n sightings of one form, padded to `rows` candidates (one shape: record compiles once)."""
    canon = jnp.asarray(np.stack([matrix] * rows), jnp.float32)
    ok = jnp.arange(rows) < n
    return canon, rc.canonical_key(canon), jnp.asarray([source] * rows, jnp.int32), ok


def test_three_sightings_promote_across_sleeps_two_do_not():
    form = normed(np.eye(4) + 0.3 * blade(1)).astype(np.float32)
    other = normed(np.eye(4) - 0.3 * blade(2)).astype(np.float32)
    s = pt.empty_schemas(8)
    s, dropped = record(s, *_sighting(form, 2, (4, 7)))  # sleep 1: twice
    assert int(dropped) == 0 and int(s.valid.sum()) == 1
    assert int(s.sightings.max()) == 2 and not bool(s.promoted.any())
    canon, keys, src, ok = _sighting(other, 1, (1, 2))
    s, _ = record(s, canon, keys, src, ok)  # sleep 2: another form once
    assert not bool(s.promoted.any()) and int(s.valid.sum()) == 2
    s, _ = record(s, *_sighting(form, 1, (5, 6)))  # sleep 3: the first form a third time
    row = int(np.argmax(np.asarray(s.promoted)))
    assert int(s.promoted.sum()) == 1 and int(s.sightings[row]) == 3
    assert tuple(np.asarray(s.sources[row])) == (4, 7)  # the first sighting's sources are kept
    np.testing.assert_allclose(s.matrix[row], form)
    # candidates that did not survive (ok False) are not sighted
    canon, keys, src, _ = _sighting(other, 3, (1, 2))
    s2, _ = record(s, canon, keys, src, jnp.zeros((4,), bool))
    assert int(s2.promoted.sum()) == 1


def test_full_table_evicts_least_sighted_unpromoted_rows_only():
    forms = [normed(np.eye(4) + 0.2 * (i + 1) * blade(1)).astype(np.float32) for i in range(4)]
    s = pt.empty_schemas(2)
    s, _ = record(s, *_sighting(forms[0], 3, (0, 1)))  # promoted
    s, _ = record(s, *_sighting(forms[1], 1, (2, 3)))  # one sighting
    s, dropped = record(s, *_sighting(forms[2], 1, (4, 5)))  # one sighting: may not evict an equal row
    assert int(dropped) == 1 and int(s.valid.sum()) == 2
    s, dropped = record(s, *_sighting(forms[3], 2, (6, 7)))  # two sightings: evicts forms[1], not the promoted one
    assert int(dropped) == 0
    srcs = {tuple(r) for r in np.asarray(s.sources)}
    assert srcs == {(0, 1), (6, 7)} and int(s.promoted.sum()) == 1


def test_recombine_pairs_promotion_and_determinism():
    rng = np.random.default_rng(2)
    protos = table(normed(rng.standard_normal((15, 4, 4))), valid_rows=np.arange(15) * 2 + 1)
    s = pt.empty_schemas(1024)
    pairs, _, _, mask = jax.jit(rc.sample_pairs, static_argnums=2)(protos, jax.random.key(0), 1000)
    pairs, mask = np.asarray(pairs)[np.asarray(mask)], np.asarray(mask)
    assert mask.sum() == 150 and (pairs % 2 == 1).all() and (pairs[:, 0] != pairs[:, 1]).all()
    assert int(rc.pair_count(1)) == 0 and int(rc.pair_count(150)) == 1000 and int(rc.pair_count(7)) == 70
    assert rc.schema_capacity(10) == 10000 and rc.schema_capacity(1000) == int(PHI**2 * 1000 * 100)

    s1, m1 = recombine(protos, s, jax.random.key(3), survival="faithful")
    s1b, m1b = recombine(protos, s, jax.random.key(3), survival="faithful")
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), (s1, m1), (s1b, m1b)))
    assert int(m1["pairs"]) == 150 and int(m1["survived"]) == 150  # faithful: everything survives
    s2, m2 = recombine(protos, s, jax.random.key(4), survival="faithful")
    assert not bool(jnp.array_equal(s1.key, s2.key))
    _, ms = recombine(protos, s, jax.random.key(3), survival="sound")
    assert int(ms["survived"]) < 15  # random unit prototypes: almost nothing is mostly scalar

    # two (near-)identity prototypes: every composition/unbinding canonicalises to one form -> promoted in one sleep,
    # with source ids among the valid rows
    ident = table(np.stack([np.eye(4) / 2, np.eye(4) / 2]), valid_rows=[3, 9])
    sa, ma = recombine(ident, s, jax.random.key(5), survival="sound")
    assert int(ma["pairs"]) == 20 and int(ma["survived"]) == 20
    assert int(ma["promoted_new"]) >= 1 and int(ma["promoted"]) == int(sa.promoted.sum())
    row = int(np.argmax(np.asarray(sa.sightings)))
    assert bool(sa.promoted[row]) and set(np.asarray(sa.sources[row])) <= {3, 9}
    np.testing.assert_allclose(sa.matrix[row], np.eye(4) / 2, atol=0.02)
    # sightings accumulate across sleeps: a second sleep adds to the same rows, nothing is newly promoted twice
    sb, mb = recombine(ident, sa, jax.random.key(6), survival="sound")
    assert int(sb.sightings.sum()) == int(sa.sightings.sum()) + 20
    assert int(mb["promoted"]) >= int(ma["promoted"])


def test_jit_matches_eager_and_vmap():
    x = np.random.default_rng(3).standard_normal((50, 4, 4)).astype(np.float32)
    for mode in rc.SURVIVALS:
        eager = rc.survival_test(x, mode)
        jitted = survival_test(x, survival=mode)
        np.testing.assert_array_equal(eager[0], jitted[0])
        np.testing.assert_allclose(eager[2], jitted[2], rtol=1e-5)
    keys = jax.vmap(rc.canonical_key)(jnp.asarray(normed(x)))
    np.testing.assert_array_equal(keys, rc.canonical_key(jnp.asarray(normed(x))))
    fn = jax.jit(functools.partial(rc.recombine, survival="sound", max_pairs=64))
    _, m = fn(table(normed(x[:5])), pt.empty_schemas(16), jax.random.key(0))
    assert int(m["pairs"]) == 50
