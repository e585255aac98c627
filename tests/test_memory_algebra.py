"""The holographic memory's algebra (wavejax/memory/clifford.py, so4.py; spec: docs/specs/holographic.md): the Cl(3,1)
basis (anticommutation, Frobenius orthogonality, the spec's gamma5), exact decomposition/reconstruction, grades, the
true reversion (and the original's transpose), Grace, witness, stability, enstrophy, chirality, vorticity, the scores,
basin keys; SO(4): the Haar sampler's mean over 20,000 samples (and the original's biased one), QR against numpy,
products of 1024 factors staying in SO(4) in float32, grounded embeddings, position rotations."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from memory_support import E1, E2, E3, E4, G5, PHI, B, blade, haar_table, rand, stream_contexts, window_contexts

from wavejax.memory import clifford as cl
from wavejax.memory import so4, store

# -- 1. algebra ---------------------------------------------------------------------------------------------------------

def test_gammas_anticommute_with_signature_3_1():
    for m in range(4):
        for n in range(4):
            np.testing.assert_array_equal(cl.GAMMA[m] @ cl.GAMMA[n] + cl.GAMMA[n] @ cl.GAMMA[m], 2 * cl.METRIC[m, n] * np.eye(4))
    np.testing.assert_array_equal(E4.T, -E4)


def test_basis_is_frobenius_orthogonal_signed_permutations():
    np.testing.assert_array_equal(np.einsum("iab,jab->ij", B, B), 4 * np.eye(16))
    for k in range(16):
        np.testing.assert_array_equal(B[k] @ B[k].T, np.eye(4))
        assert set(np.unique(B[k])) <= {-1.0, 0.0, 1.0} and np.all(np.abs(B[k]).sum(0) == 1)
    np.testing.assert_array_equal(G5, [[0, 0, 1, 0], [0, 0, 0, 1], [-1, 0, 0, 0], [0, -1, 0, 0]])  # spec 1.2
    assert cl.BLADE_NAMES[5:11] == ["e12", "e13", "e14", "e23", "e24", "e34"]
    assert cl.BLADE_NAMES[11:] == ["e123", "e124", "e134", "e234", "e1234"]
    np.testing.assert_array_equal(B[12], blade(1, 2, 4))
    np.testing.assert_array_equal(cl.GRADE_OF, [0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 4])


def test_decomposition_and_reconstruction_are_exact():
    m = rand(0, (3, 4, 4))
    c = cl.decompose(jnp.asarray(m))
    np.testing.assert_allclose(np.asarray(cl.reconstruct(c)), m, atol=1e-6)
    np.testing.assert_allclose(np.asarray(c), np.einsum("kij,bij->bk", B, m) / 4, atol=1e-6)
    np.testing.assert_allclose(np.sum(np.asarray(c) ** 2, -1) * 4, np.sum(m**2, (-1, -2)), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(cl.decompose(jnp.asarray(B, jnp.float32))), np.eye(16), atol=1e-7)


def test_grade_projections_and_energies():
    m = rand(1, (4, 4))
    parts = [np.asarray(cl.grade_project(jnp.asarray(m), g)) for g in range(5)]
    np.testing.assert_allclose(sum(parts), m, atol=1e-6)
    x = 3 * np.eye(4) + 2 * blade(1, 2) - blade(2, 3, 4)
    np.testing.assert_allclose(np.asarray(cl.grade_project(jnp.asarray(x, jnp.float32), 2)), 2 * blade(1, 2), atol=1e-6)
    np.testing.assert_allclose(np.asarray(cl.grade_energies(jnp.asarray(x, jnp.float32))), [9, 0, 4, 1, 0], atol=1e-5)


def test_reversion_reverses_every_blade():
    """rev(e_i1 ... e_ik) = e_ik ... e_i1, from the gamma products by hand; an anti-automorphism."""
    for k, b in enumerate(cl.BLADES):
        reversed_product = blade(*[i + 1 for i in reversed(b)])
        np.testing.assert_allclose(np.asarray(cl.reversion(jnp.asarray(B[k], jnp.float32))), reversed_product, atol=1e-6)
    np.testing.assert_allclose(np.asarray(cl.reversion(jnp.asarray(blade(1, 2), jnp.float32))), -blade(1, 2), atol=1e-6)
    with jax.enable_x64(True):
        a, b = jnp.asarray(rand(2, (4, 4)), jnp.float64), jnp.asarray(rand(3, (4, 4)), jnp.float64)
        np.testing.assert_allclose(np.asarray(cl.reversion(a @ b)), np.asarray(cl.reversion(b) @ cl.reversion(a)), atol=1e-12)


def test_faithful_reversion_is_the_transpose_and_wrong_on_e4_blades():
    wrong = [cl.BLADE_NAMES[k] for k in range(16)
             if not np.allclose(np.asarray(cl.reversion_faithful(jnp.asarray(B[k]))), np.asarray(cl.reversion(jnp.asarray(B[k], jnp.float32))))]
    assert wrong == ["e4", "e14", "e24", "e34", "e124", "e134", "e234", "e1234"]  # spec 1.2: every blade with e4


def test_grade_involution_is_minus_gamma5_conjugation():
    m = rand(4, (4, 4))
    np.testing.assert_allclose(np.asarray(cl.grade_involution(jnp.asarray(m))), -G5 @ m @ G5, atol=1e-6)


def test_wedge_inner_products():
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    np.testing.assert_allclose(np.asarray(cl.wedge(f(E1), f(E2))), blade(1, 2), atol=1e-7)
    np.testing.assert_allclose(np.asarray(cl.wedge(f(E1), f(E1))), 0 * E1, atol=1e-7)
    np.testing.assert_allclose(np.asarray(cl.inner(f(E1), f(E1))), np.eye(4), atol=1e-7)
    np.testing.assert_allclose(np.asarray(cl.inner(f(E4), f(E4))), -np.eye(4), atol=1e-7)
    np.testing.assert_allclose(np.asarray(cl.mm(f(rand(5, (2, 4, 4))), f(rand(6, (2, 4, 4))))),
                               rand(5, (2, 4, 4)) @ rand(6, (2, 4, 4)), atol=1e-5)


def test_grace_scales_basis_elements():
    s = [1] + [PHI**-1] * 4 + [PHI**-2] * 6 + [PHI**-3] * 4 + [PHI**-1]  # grade 4 gets phi^-1 (spec 1.1)
    graced = np.asarray(cl.grace(jnp.asarray(B, jnp.float32)))
    np.testing.assert_allclose(graced, np.asarray(s)[:, None, None] * B, atol=1e-7)
    m = jnp.asarray(rand(7, (4, 4)))
    np.testing.assert_allclose(np.asarray(cl.grace(m, 3)), np.asarray(cl.grace(cl.grace(cl.grace(m)))), atol=1e-6)
    np.testing.assert_allclose(np.asarray(cl.grace_inverse(cl.grace(m, 2), 2)), np.asarray(m), atol=1e-5)


def test_grace_with_stability_hand_case():
    g, stability, (c0, c15) = cl.grace_with_stability(jnp.asarray(np.eye(4) + E1, jnp.float32))
    np.testing.assert_allclose(np.asarray(g), np.eye(4) + E1 / PHI, atol=1e-7)
    assert float(stability) == pytest.approx(1 / (1 + PHI**-2), rel=1e-6)  # the original: / max(total, eps)
    assert (float(c0), float(c15)) == pytest.approx((1.0, 0.0), abs=1e-7)


def test_witness_stability_enstrophy_hand_cases():
    m = jnp.asarray(2 * np.eye(4) + 3 * G5 + E1 + 2 * blade(1, 2), jnp.float32)
    sigma, p = cl.witness(m)
    assert (float(sigma), float(p)) == pytest.approx((2.0, 3.0), abs=1e-6)
    np.testing.assert_allclose(np.asarray(cl.witness_matrix(m)), 2 * np.eye(4) + 3 / PHI * G5, atol=1e-6)
    assert float(cl.grace_stability(m)) == pytest.approx(13 / (4 + 9 + 1 + 4), rel=1e-6)
    assert float(cl.enstrophy(m)) == pytest.approx(4.0, rel=1e-6)
    np.testing.assert_allclose(np.asarray(cl.extended_witness(m)), [2, 3, 4, 13 / 18], rtol=1e-6)
    assert float(cl.grace_stability(jnp.zeros((4, 4)))) == 1.0  # the original's convention for a zero matrix
    assert float(cl.grace_stability(jnp.asarray(E1, jnp.float32))) == 0.0


def test_enstrophy_equals_the_involution_formula():
    """The original computes enstrophy as ||M_even||^2/4 - sigma^2 - p^2, M_even = (M + alpha(M)) / 2 (spec 1.4)."""
    m = rand(8, (5, 4, 4)).astype(np.float64)
    even = (m + np.einsum("ij,bjk,kl->bil", -G5, m, G5)) / 2
    sigma, p = np.trace(m, axis1=1, axis2=2) / 4, np.einsum("bij,ij->b", m, G5) / 4
    expected = np.sum(even**2, (1, 2)) / 4 - sigma**2 - p**2
    np.testing.assert_allclose(np.asarray(cl.enstrophy(jnp.asarray(m, jnp.float32))), expected, rtol=1e-5)


def test_chirality_and_match_scores():
    sign, strength = cl.chirality(jnp.asarray(np.eye(4) - 0.5 * G5, jnp.float32))
    assert (float(sign), float(strength)) == pytest.approx((-1.0, 0.5))
    tokens = jnp.asarray([0.3, -0.2, 0.0])
    penalty = (PHI**-3) ** min(1.0, 0.5 / PHI**-1)
    np.testing.assert_allclose(np.asarray(cl.chirality_match_scores(jnp.asarray(0.5), tokens)), [1, penalty, penalty], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(cl.chirality_match_scores(jnp.asarray(-0.9), tokens)), [PHI**-3, 1, PHI**-3], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(cl.chirality_match_scores(jnp.asarray(0.1), tokens)), [1, 1, 1])  # |p| < phi^-3


def test_vorticity_of_a_sequence():
    seq = jnp.asarray(np.stack([E1, E2, E3]), jnp.float32)
    np.testing.assert_allclose(np.asarray(cl.vorticity(seq)), -blade(1, 2) - blade(2, 3), atol=1e-7)


def test_coherence_closed_form_matches_the_coefficient_definition():
    """cos^2(R, E) + cos^2(R, gamma5 E) = (c_0(X)^2 + c_15(X)^2) / sum c(X)^2 with X = R E^T, for orthogonal E."""
    e = jnp.asarray(haar_table(7))
    r = jnp.asarray(rand(9, (3, 4, 4)))
    pairwise = np.asarray(cl.coherence(r[:, None], e[None]))
    np.testing.assert_allclose(np.asarray(cl.coherence_scores(r, e)), pairwise, atol=1e-5)
    np.testing.assert_allclose(np.asarray(cl.coherence_scores(r, -e)), pairwise, atol=1e-5)  # sign-blind
    np.testing.assert_allclose(np.asarray(cl.coherence_scores(e, e)).diagonal(), 1.0, rtol=1e-6)  # / max(x, eps)
    np.testing.assert_allclose(np.asarray(cl.cosine_scores(e, e)).diagonal(), 4 / (4 + cl.EPS), rtol=1e-6)  # / (x + eps)
    np.testing.assert_array_equal(np.asarray(cl.cosine_scores(jnp.zeros((1, 4, 4)), e)), 0.0)


def _coherence_parts(r: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(c_0(X)^2 + c_15(X)^2, sum_k c_k(X)^2) of X = R_b E_v^T, float64: [B, 4, 4], [V, 4, 4] -> two [B, V]."""
    x = np.einsum("kij,bvij->bvk", B, np.einsum("bij,vkj->bvik", r, e)) / 4
    return x[..., 0] ** 2 + x[..., 15] ** 2, np.sum(x**2, axis=-1)


def test_coherence_and_stability_divide_by_max_of_energy_and_eps():
    """The original divides coherence and stability by max(x, eps) (algebra.py l.1247, unified l.1746), not x + eps
    (which its cosines use). With x = 1e-6 < eps = 6.6e-5 the two differ by 1.5%; for x >> eps max is exact."""
    e = haar_table(5, seed=2)
    tiny = 1e-3 * rand(30, (3, 4, 4))
    witness, energy = _coherence_parts(tiny.astype(np.float64), e.astype(np.float64))
    assert energy.max() < cl.EPS
    for got in (cl.coherence_scores(jnp.asarray(tiny), jnp.asarray(e)), cl.coherence(tiny[:, None], e[None])):
        np.testing.assert_allclose(np.asarray(got), witness / cl.EPS, rtol=1e-4)
        assert np.abs(np.asarray(got) - witness / (energy + cl.EPS)).max() > 1e-4
    np.testing.assert_allclose(np.asarray(cl.coherence(jnp.asarray(e), jnp.asarray(e))), 1.0, rtol=1e-6)
    m = jnp.asarray(1e-3 * (np.eye(4) + E1), jnp.float32)  # c' = (1e-3, 1e-3 / phi): sum c'^2 = 1.38e-6 < eps
    _, stability, _ = cl.grace_with_stability(m)
    assert float(stability) == pytest.approx(1e-6 / cl.EPS, rel=1e-4)
    assert float(cl.grace_stability(m)) == 1.0  # the original: 1 where ||M||^2 / 4 < eps, not only for M = 0
    assert float(cl.grace_stability(jnp.asarray(0.1 * (np.eye(4) + E1), jnp.float32))) == pytest.approx(0.5, rel=1e-6)


def _vorticity_weighted_reference(a: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Spec 3.8 step by step, one token at a time, float64."""
    coeff = lambda m: np.einsum("kij,ij->k", B, m) / 4  # noqa: E731
    ca = coeff(a)
    ens_a, sa, pa = np.sum(ca[5:11] ** 2), ca[0], ca[15]
    out = []
    for ev in e:
        cv = coeff(ev)
        base = np.sum(a * ev) / (np.linalg.norm(a) * np.linalg.norm(ev) + cl.EPS)
        if ens_a < PHI**-8:
            out.append(base)
            continue
        ens_v, sv, pv = np.sum(cv[5:11] ** 2), cv[0], cv[15]
        em = PHI ** (-abs(ens_a - ens_v))
        miss = max(0.0, ens_a - ens_v) / (ens_a + cl.EPS)
        wm = min(1.0, max(0.0, ((sa * sv + pa * pv) / ((abs(sa) + abs(pa) + cl.EPS) * (abs(sv) + abs(pv) + cl.EPS)) + 1) / 2))
        w = PHI**-2 * min(1.0, ens_a / PHI**-3)
        out.append(((1 - w) * (base + 1) / 2 + w * (PHI**-1 * em + PHI**-2 * wm)) * (1 - w * miss))
    return np.asarray(out)


def test_vorticity_weighted_scores_match_the_spec_step_by_step():
    e = haar_table(9, seed=1).astype(np.float64)
    low = np.eye(4) + 0.01 * E1  # enstrophy 0 < phi^-8: plain cosine
    high = rand(10, (4, 4)).astype(np.float64) + 0.8 * blade(1, 2)
    for a in (low, high):
        got = np.asarray(cl.vorticity_weighted_scores(jnp.asarray(a, jnp.float32), jnp.asarray(e, jnp.float32)))
        np.testing.assert_allclose(got, _vorticity_weighted_reference(a, e), atol=1e-5)


def test_basin_key_scales_and_truncates_toward_zero():
    res = PHI**-12
    c = np.zeros(16)
    c[0], c[1], c[5], c[14], c[15] = 2.5 * res, -2.7 * res / PHI**-3, 3.6 * res / PHI**-6, -3.5 * res / PHI**-9, 7.9 * res / PHI**-3
    key = np.asarray(cl.basin_key(cl.reconstruct(jnp.asarray(c, jnp.float32))))
    expected = np.zeros(16, np.int32)
    expected[[0, 1, 5, 14, 15]] = [2, -2, 3, -3, 7]
    np.testing.assert_array_equal(key, expected)
    assert key.dtype == np.int32


# -- 2. SO(4) -------------------------------------------------------------------------------------------------------------

def _so4_error(q: np.ndarray) -> tuple[float, float]:
    q = np.asarray(q, np.float64)
    orth = np.abs(np.swapaxes(q, -1, -2) @ q - np.eye(4)).max()
    return float(orth), float(np.abs(np.linalg.det(q) - 1).max())


def test_haar_sampler_mean_is_zero_and_the_faithful_one_is_biased():
    """Mean of 20,000 samples: within 0.02 of 0 in every entry for the corrected sampler (the std of one entry's
    mean is 0.5 / sqrt(20000) = 0.0035); about 0.4 diag(1,-1,-1,1) for the original's uncorrected QR (spec 2.1)."""
    key = jax.random.PRNGKey(11)
    haar = np.asarray(jax.jit(lambda k: so4.random_so4(k, (20000,)))(key))
    faithful = np.asarray(jax.jit(lambda k: so4.random_so4(k, (20000,), haar=False))(key))
    assert np.abs(haar.mean(0)).max() < 0.02
    assert np.abs(faithful.mean(0)).max() > 0.3
    np.testing.assert_allclose(np.diag(faithful.mean(0)), [0.4, -0.4, -0.4, 0.4], atol=0.04)
    for q in (haar, faithful):
        assert max(_so4_error(q)) < 1e-5


def test_qr_paths_match_numpy_and_the_original_table():
    a = rand(12, (50, 4, 4)).astype(np.float64)
    q, r = np.linalg.qr(a)
    fixed = lambda x: np.where((np.linalg.det(x) < 0)[:, None, None] & (np.arange(4) == 0), -x, x)  # noqa: E731
    with jax.enable_x64(True):
        np.testing.assert_allclose(np.asarray(so4.orthogonalize(jnp.asarray(a), haar=False)), fixed(q), atol=1e-10)
        q_haar = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
        np.testing.assert_allclose(np.asarray(so4.orthogonalize(jnp.asarray(a), haar=True)), fixed(q_haar), atol=1e-10)
    table = so4.original_embeddings(3000)
    assert table.dtype == np.float32 and max(_so4_error(table)) < 1e-5
    np.testing.assert_allclose(np.diag(table.mean(0)), [0.4, -0.4, -0.4, 0.4], atol=0.05)  # spec 2.1: 0.4 B13
    np.testing.assert_array_equal(so4.original_embeddings(3), so4.original_embeddings(3000)[:3])


def test_products_of_1024_factors_stay_in_so4_in_float32():
    """Spec 7: group closure. 8 sequences of 1024 Haar tokens, multiplied by the tree (independent windows) and by the
    sliding-window path, all in float32: orthogonal and det 1 to 1e-5."""
    table = haar_table(256, seed=3)
    assert table.dtype == np.float32
    spec = store.StoreSpec(vocab_size=256, context_length=1024, position_scales=2)
    tokens = np.random.default_rng(13).integers(0, 256, (8, 1024)).astype(np.int32)
    factors = jnp.asarray(store.context_table(spec, table))
    windows = np.asarray(window_contexts(spec, factors, jnp.asarray(tokens)))
    stream = np.asarray(stream_contexts(spec, factors, jnp.asarray(tokens[0])))
    assert windows.dtype == np.float32 and stream.shape == (1, 4, 4)
    assert max(_so4_error(windows)) < 1e-5 and max(_so4_error(stream)) < 1e-5
    np.testing.assert_allclose(stream[0], windows[0], atol=2e-5)


def test_grounded_embeddings_are_so4_and_the_faithful_map_adds_a_constant_factor():
    v = rand(14, (30, 10))
    sound = np.asarray(so4.embeddings_from_vectors(v))
    faithful = np.asarray(so4.embeddings_from_vectors(v, faithful=True))
    assert max(_so4_error(sound)) < 1e-5 and max(_so4_error(faithful)) < 1e-5
    np.testing.assert_allclose(faithful, sound @ np.diag([1.0, -1, -1, 1]), atol=1e-5)  # spec 2.2
    u = np.asarray(so4.pca_directions(jnp.asarray(v)))
    x = (v - v.mean(0)).astype(np.float64)
    left, s, _ = np.linalg.svd(x, full_matrices=False)
    ref = left[:, :6] * np.sqrt(s[:6])
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(np.abs(u), np.abs(ref), atol=1e-4)  # columns agree up to sign
    g = np.asarray(so4.taylor_exp(jnp.asarray(0.3 * so4.so4_generators()[0], jnp.float32)))
    np.testing.assert_allclose(g[:2, :2], [[math.cos(0.3), math.sin(0.3)], [-math.sin(0.3), math.cos(0.3)]], atol=1e-6)


def test_ppmi_vectors_hand_case():
    pmi = so4.ppmi_vectors(np.array([0, 1, 0, 1]), 3, window=1)
    # pairs (0,1),(1,0),(0,1) and their mirrors: counts [[0,3,0],[3,0,0],[0,0,0]], total 6, rows 3 and 3
    np.testing.assert_allclose(pmi, [[0, math.log(3 * 6 / 9), 0], [math.log(2), 0, 0], [0, 0, 0]], rtol=1e-6)


def test_position_rotations():
    alpha, beta = so4.position_angles(2)
    assert alpha % (2 * math.pi) == pytest.approx(2.39996, abs=1e-5)  # the golden angle (spec 2.3)
    assert beta % (2 * math.pi) == pytest.approx(1.48326, abs=1e-5)
    for scales in (0, 1, 2, 4):
        got = np.asarray(so4.position_rotation(jnp.arange(6.0), scales))
        want = np.stack([so4.position_rotation_factors(p, scales) for p in range(6)])
        np.testing.assert_allclose(got, want, atol=2e-5)
    r = lambda p: so4.position_rotation_factors(p, 2)  # noqa: E731
    np.testing.assert_allclose(r(2) @ r(3), r(5), atol=1e-12)
