"""wavejax.memory.tower against the formulas of docs/specs/holographic.md sections 4.1-4.2, on small hand-made towers
(float64 where a formula is checked to rounding)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wavejax.memory import clifford as cl
from wavejax.memory import store, tower

PHI = (1 + 5**0.5) / 2
EPS = PHI**-20
BASIS = cl.BASIS.reshape(16, 16)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def coeffs(m):
    """numpy c_k(M) = <M, B_k>_F / 4: [..., 4, 4] -> [..., 16]."""
    m = np.asarray(m, np.float64)
    return m.reshape(m.shape[:-2] + (16,)) @ BASIS.T / 4.0


def matrices(c):
    """numpy M = sum_k c_k B_k: [..., 16] -> [..., 4, 4]."""
    c = np.asarray(c, np.float64)
    return (c @ BASIS).reshape(c.shape[:-1] + (4, 4))


def random_tower(seed, n=16, active=10, witness=0.0):
    """n slots of N(0, 1) coefficients (plus `witness` on c_0); the first `active` get counts 1..5, the rest 0 (their
    content is left nonzero, so a function that touches them shows)."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(n, 16))
    c[:, 0] += witness
    counts = np.zeros(n, np.int32)
    counts[:active] = rng.integers(1, 6, size=active)
    return matrices(c), counts


def kappa(c):
    return (c[..., 0] ** 2 + c[..., 15] ** 2) / np.maximum(np.sum(c**2, axis=-1), EPS)


def test_aggregation_weights(x64):
    w = np.asarray(tower.aggregation_weights(jnp.float64))
    assert w.shape == (16,) and w.dtype == np.float64
    assert abs(w.sum() - 1.0) < 1e-15
    np.testing.assert_allclose(w / w[0], [PHI ** (i % 4) for i in range(16)], rtol=1e-14)
    np.testing.assert_allclose(w[0], 1 / (4 * (1 + PHI + PHI**2 + PHI**3)), rtol=1e-14)
    assert tower.aggregation_weights().dtype == jnp.float32


def test_masters_and_levels(x64):
    slots, _ = random_tower(0, n=256, active=0)
    w = np.array([PHI ** (i % 4) for i in range(16)])
    w /= w.sum()
    c = coeffs(slots)
    expect = np.einsum("i,jik->jk", w, c.reshape(16, 16, 16))  # master_j = sum_i w_i c(M_{16j+i})
    np.testing.assert_allclose(np.asarray(tower.masters(jnp.asarray(slots))), expect, rtol=1e-12, atol=1e-12)
    level1, top = tower.master_levels(jnp.asarray(slots))
    assert level1.shape == (16, 16) and top.shape == (1, 16)
    np.testing.assert_allclose(np.asarray(top[0]), w @ expect, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError):
        tower.masters(jnp.zeros((8, 4, 4)))
    with pytest.raises(ValueError):
        tower.master_levels(jnp.zeros((32, 4, 4)))


def test_grand_master_is_the_count_weighted_mean_of_the_active_satellites(x64):
    c = np.zeros((16, 16))
    c[2] = np.arange(16) / 10.0
    c[7] = -np.linspace(1.0, 2.0, 16)
    c[11, [0, 5, 15]] = [3.0, -1.0, 0.5]
    c[[0, 1, 3]] = 7.0  # inactive, with content: must not count
    counts = np.zeros(16, np.int32)
    counts[[2, 7, 11]] = [2, 5, 1]
    expect = (2 * c[2] + 5 * c[7] + 1 * c[11]) / (8 + EPS)
    got = np.asarray(tower.grand_master(jnp.asarray(matrices(c)), jnp.asarray(counts)))
    np.testing.assert_allclose(got, expect, rtol=1e-12, atol=1e-14)
    # not the recursive aggregate
    assert not np.allclose(got, np.asarray(tower.master_levels(jnp.asarray(matrices(c)))[-1][0]))
    # no active satellite: the scalar 1
    empty = tower.grand_master(jnp.asarray(matrices(c)), jnp.zeros(16, jnp.int32))
    np.testing.assert_array_equal(np.asarray(empty), np.eye(16)[0])


def test_tower_stability(x64):
    slots, counts = random_tower(1)
    c = coeffs(slots)[counts > 0]
    expect = np.mean((c[:, 0] ** 2 + c[:, 15] ** 2) / (np.sum(c**2, axis=-1) + EPS))
    got = float(tower.tower_stability(jnp.asarray(slots), jnp.asarray(counts)))
    assert abs(got - expect) < 1e-14
    assert float(tower.tower_stability(jnp.asarray(slots), jnp.zeros(16, jnp.int32))) == 0.0
    # batched: one value per tower
    both = tower.tower_stability(jnp.stack([jnp.asarray(slots)] * 2), jnp.asarray(np.stack([counts, 0 * counts])))
    np.testing.assert_allclose(np.asarray(both), [expect, 0.0], rtol=1e-14)


def test_non_rem_step(x64):
    slots, counts = random_tower(2, active=4)
    rho = PHI**-2
    c = coeffs(slots)
    n = counts[counts > 0].astype(np.float64)
    g = n @ c[counts > 0] / (n.sum() + EPS)
    out = np.asarray(tower.non_rem(jnp.asarray(slots), jnp.asarray(counts), rho))
    co = coeffs(out)
    act = counts > 0
    np.testing.assert_allclose(co[act, 0], (1 - rho) * c[act, 0] + rho * g[0], rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(co[act, 15], (1 - rho) * c[act, 15] + rho * g[15], rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(co[act, 1:15], c[act, 1:15], rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(out[~act], slots[~act])  # inactive: bit for bit
    # float32 by default, same law
    out32 = tower.non_rem(jnp.asarray(slots, jnp.float32), jnp.asarray(counts))
    assert out32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out32), out, atol=2e-5)


def test_rem_keeps_a_rise_and_rejects_a_fall(x64):
    key = jax.random.key(7)
    n = 16
    z = np.asarray(jax.random.normal(key, (n, 16), jnp.float64))  # the draws rem makes from this key
    witness = np.zeros(16, bool)
    witness[[0, 15]] = True
    slots, counts = random_tower(3, n=n, active=10)
    c = coeffs(slots)
    # slot 0: witness along the draw, the rest against it -> the jitter raises kappa; slot 1: the opposite -> it falls
    c[0] = np.where(witness, 0.5 * z[0], -0.5 * z[0])
    c[1] = np.where(witness, -0.5 * z[1], 0.5 * z[1])
    slots = matrices(c)
    scale = PHI**-3
    out, accepted = tower.rem(jnp.asarray(slots), jnp.asarray(counts), key, scale)
    out, accepted = np.asarray(out), np.asarray(accepted)

    k0 = kappa(c)
    dc = z * (scale * PHI**-2) * np.clip(1 - k0, 0, 1)[:, None] ** 2  # effective std phi^-5 * (1 - kappa)^2
    k1 = kappa(c + dc)
    assert k1[0] > k0[0] and k1[1] < k0[1]
    assert accepted[0] and not accepted[1]
    np.testing.assert_array_equal(accepted, (counts > 0) & (k1 >= k0))
    np.testing.assert_allclose(coeffs(out[accepted]), (c + dc)[accepted], rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(out[~accepted], slots[~accepted])  # rejected and inactive: bit for bit


def test_dream_stops_early_when_stable(x64):
    key = jax.random.key(0)
    stable, counts = random_tower(4, witness=20.0)  # nearly pure scalar: stability ~ 0.96 > phi^-1
    unstable, _ = random_tower(4)
    s, m = tower.dream(jnp.asarray(stable), jnp.asarray(counts), key)
    assert int(m["cycles"]) == 1 and float(m["stability_after"]) > PHI**-1
    # one cycle = non_rem(phi^-2) then rem(phi^-3) with fold_in(key, 0)
    one, kept = tower.rem(tower.non_rem(jnp.asarray(stable), jnp.asarray(counts), PHI**-2), jnp.asarray(counts),
                          jax.random.fold_in(key, 0), PHI**-3)
    np.testing.assert_array_equal(np.asarray(s), np.asarray(one))
    assert int(m["rem_accepted"]) == int(kept.sum())
    assert abs(float(m["rem_accept_fraction"]) - int(kept.sum()) / 10) < 1e-12
    s2, m2 = tower.dream(jnp.asarray(unstable), jnp.asarray(counts), key)
    assert int(m2["cycles"]) == 2 and float(m2["stability_after"]) <= PHI**-1
    assert abs(float(m2["stability_before"]) - float(tower.tower_stability(jnp.asarray(unstable),
                                                                           jnp.asarray(counts)))) < 1e-15
    # batched: each tower stops on its own; the inactive slots never change
    sb, mb = tower.dream(jnp.asarray(np.stack([stable, unstable])), jnp.asarray(np.stack([counts, counts])), key,
                         max_cycles=3)
    np.testing.assert_array_equal(np.asarray(mb["cycles"]), [1, 3])
    np.testing.assert_array_equal(np.asarray(sb)[0], np.asarray(s))
    np.testing.assert_array_equal(np.asarray(sb)[:, counts == 0], np.stack([stable, unstable])[:, counts == 0])


def test_dream_is_deterministic_under_a_key_and_jits():
    slots, counts = random_tower(5, n=256, active=40)
    slots, counts = jnp.asarray(slots, jnp.float32), jnp.asarray(counts)
    a, ma = tower.dream(slots, counts, jax.random.key(1))
    b, mb = tower.dream(slots, counts, jax.random.key(1))
    c, _ = tower.dream(slots, counts, jax.random.key(2))
    assert a.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    assert int(ma["cycles"]) == 2 and 0 < float(ma["rem_accept_fraction"]) < 1
    # inside an outer jit, with a traced cycle bound
    jitted = jax.jit(lambda s, k, c: tower.dream(s, counts, k, max_cycles=c))
    j, mj = jitted(slots, jax.random.key(1), 2)
    np.testing.assert_allclose(np.asarray(j), np.asarray(a), atol=1e-6)
    assert int(mj["cycles"]) == 2 and int(mj["rem_accepted"]) == int(ma["rem_accepted"])
    _, m3 = jitted(slots, jax.random.key(1), 3)
    assert int(m3["cycles"]) == 3


def test_dream_memory_replaces_only_the_slots():
    slots, counts = random_tower(6, n=256, active=40)  # the shape of the test above: no second compile
    memory = store.Memory(embeddings=jnp.zeros((3, 4, 4)), table=jnp.zeros((4, 4, 4)),
                          slots=jnp.asarray(slots, jnp.float32), counts=jnp.asarray(counts),
                          cache=store.empty_cache(0))
    new, metrics = tower.dream_memory(memory, jax.random.key(3))
    expect, _ = tower.dream(memory.slots, memory.counts, jax.random.key(3))
    np.testing.assert_array_equal(np.asarray(new.slots), np.asarray(expect))
    assert new.counts is memory.counts and new.cache is memory.cache and new.embeddings is memory.embeddings
    np.testing.assert_array_equal(np.asarray(new.slots)[counts == 0], np.asarray(memory.slots)[counts == 0])
    assert set(metrics) == {"stability_before", "stability_after", "cycles", "rem_accepted", "rem_accept_fraction",
                            "discoveries"}
