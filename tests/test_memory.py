"""Holographic SO(4) memory (wavejax/memory/, configs/holographic.py; spec: docs/specs/holographic.md).

1. the Cl(3,1) basis (anticommutation, Frobenius orthogonality <B_i,B_j> = 4 delta_ij, the spec's gamma5), exact
   decomposition/reconstruction, grades, the true reversion against hand products (and the original's transpose),
   Grace, witness, stability, enstrophy, chirality, vorticity, the coherence and vorticity-weighted scores, basin keys;
2. SO(4): the Haar sampler's mean over 20,000 samples (and the original's biased one), QR against numpy, products of
   1024 factors staying in SO(4) in float32, grounded embeddings, position rotations;
3. the store: sliding-window contexts = independent windows = the explicit position-conjugated product, the JAX store
   = the numpy reference slot by slot (both routings, float64), a single pair unbinding exactly, the routing digits,
   the episodic cache on device (hits, misses, last write wins), generation;
4. evaluation: ranks, temperature fit, the Witten-Bell n-gram against a dictionary implementation, query sets;
5. config checks, and the CLI end to end (learn, save, evaluate, sample; rerun restores; refusals).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wavejax.config import validate
from wavejax.errors import ConfigError
from wavejax.memory import clifford as cl
from wavejax.memory import eval as mem_eval
from wavejax.memory import so4, store
from wavejax.memory.numpy_store import NumpyStore, fold_hash

from conftest import assert_one_error_line, configs, run_module

holographic = configs("holographic")

PHI = (1 + 5**0.5) / 2
B = cl.BASIS
E1, E2, E3, E4 = cl.GAMMA
G5 = cl.GAMMA5


# Store functions under jit: one compile each, instead of one per primitive in eager mode.
window_contexts = jax.jit(store.window_contexts, static_argnums=0)
stream_contexts = jax.jit(store.stream_contexts, static_argnums=0)
scores = jax.jit(store.scores, static_argnums=(0, 3))
write = jax.jit(store.write, static_argnums=0)
unbind = jax.jit(store.unbind, static_argnums=0)
cache_insert = jax.jit(store.cache_insert)
cache_lookup = jax.jit(store.cache_lookup)


def rand(seed: int, shape, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def blade(*names: int) -> np.ndarray:
    """Product of gammas by 1-based index, e.g. blade(1, 2) = e1 e2."""
    out = np.eye(4)
    for i in names:
        out = out @ cl.GAMMA[i - 1]
    return out


@functools.lru_cache(maxsize=None)
def _haar_rows(seed: int) -> np.ndarray:
    return so4.embedding_table("haar", 4096, seed)  # one shape: the float64 QR compiles once for every seed


def haar_table(n: int, seed: int = 0) -> np.ndarray:
    return _haar_rows(seed)[:n]


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


# -- 3. the store --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [1, 5, 8])
def test_sliding_window_contexts_equal_independent_windows_and_the_conjugated_product(length):
    v = 23
    table = haar_table(v, seed=4)
    spec = store.StoreSpec(vocab_size=v, context_length=length, levels=2)
    tokens = np.random.default_rng(length).integers(0, v, 77).astype(np.int32)
    windows = np.stack([tokens[s : s + length] for s in range(len(tokens) - length + 1)])
    reference = NumpyStore(spec, table, dtype=np.float64).contexts(windows)  # prod_i R(i) E R(i)^T, from scratch
    factors = jnp.asarray(store.context_table(spec, table))
    stream = np.asarray(stream_contexts(spec, factors, jnp.asarray(tokens)))
    independent = np.asarray(window_contexts(spec, factors, jnp.asarray(windows)))
    np.testing.assert_allclose(stream, reference, atol=1e-5)
    np.testing.assert_allclose(independent, reference, atol=1e-5)


def test_hashes_agree_between_stream_windows_and_numpy():
    tokens = np.random.default_rng(15).integers(0, 40, 60).astype(np.int32)
    windows = np.stack([tokens[s : s + 6] for s in range(55)])
    stream = [np.asarray(h) for h in store.stream_hashes(jnp.asarray(tokens), 6)]
    independent = [np.asarray(h) for h in store.window_hashes(jnp.asarray(windows))]
    for a, b, c in zip(stream, independent, fold_hash(windows)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert len(set(zip(*[h.tolist() for h in stream]))) == len({w.tobytes() for w in windows})


@pytest.mark.parametrize("routing", store.ROUTINGS)
def test_jax_store_equals_the_numpy_reference(routing):
    """Float64, so that both association orders give the same quantised keys: same slots, same counts."""
    v, length = 31, 6
    spec = store.StoreSpec(vocab_size=v, context_length=length, levels=2, routing=routing, stream_chunk=48)
    tokens = np.random.default_rng(16).integers(0, v, 300).astype(np.int32)
    table = haar_table(v, seed=5).astype(np.float64)
    with jax.enable_x64(True):
        memory, pairs = store.learn_stream(spec, store.init_memory(spec, jnp.asarray(table)), tokens)
        slots, counts = np.asarray(memory.slots), np.asarray(memory.counts)
    ref = NumpyStore(spec, table, dtype=np.float64)
    windows = np.stack([tokens[s : s + length] for s in range(pairs)])
    ref.write(windows, tokens[length : length + pairs])
    assert pairs == 300 - length and counts.sum() == pairs
    np.testing.assert_array_equal(counts, ref.counts)
    np.testing.assert_allclose(slots, ref.slots, atol=1e-12)


def test_closing_rotation_is_formed_in_float64():
    """R(L)^T is computed in float64 on the host and rounded once, as the original builds R(p) (numpy angles). With
    the angle alpha L = 1229 rad formed in float32 (half an ulp: 6e-5 rad at L = 512), R(512) is off by > 1e-5."""
    spec = store.StoreSpec(vocab_size=1, context_length=512)
    want = so4.position_rotation_factors(512, 2).T
    got = np.asarray(store.closing_rotation(spec, 512))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=6e-8)  # float32 rounding only
    traced = jax.jit(lambda n: store.closing_rotation(spec, n))  # generation passes a traced length
    for n in (0, 7, 512):
        np.testing.assert_array_equal(np.asarray(traced(jnp.int32(n))), np.asarray(store.closing_rotation(spec, n)))
    assert np.abs(np.asarray(so4.position_rotation(512.0, 2)).T - want).max() > 1e-5  # the float32 angle


@functools.lru_cache(maxsize=None)
def _faithful_512():
    """200 windows of 512 tokens of one stream, the original's table (V = 1,000), the faithful store's spec, and the
    windows' contexts prod_i R(i) E R(i)^T in float64 by the numpy reference."""
    v, length, n = 1000, 512, 200
    spec = store.StoreSpec(vocab_size=v, context_length=length, levels=6, routing="digits")
    table = so4.original_embeddings(v)
    tokens = np.random.default_rng(31).integers(0, v, n + length).astype(np.int32)
    windows = np.stack([tokens[s : s + length] for s in range(n)])
    return spec, table, tokens, windows, NumpyStore(spec, table, dtype=np.float64).contexts(windows)


def test_faithful_contexts_of_512_tokens_match_float64_slot_for_slot():
    """Both context paths in float32 against the original's product in float64: equal to float32 rounding
    (2e-6 here; 8e-5 with the float32 closing rotation), so no context changes slot under either routing."""
    spec, table, tokens, windows, reference = _faithful_512()
    factors = jnp.asarray(store.context_table(spec, table))
    independent = np.asarray(window_contexts(spec, factors, jnp.asarray(windows)))
    stream = np.asarray(stream_contexts(spec, factors, jnp.asarray(tokens[:-1])))
    assert stream.shape == independent.shape == (200, 4, 4)
    for contexts in (independent, stream):
        assert np.abs(contexts - reference).max() < 1e-5
        for routing in store.ROUTINGS:
            s = dataclasses.replace(spec, routing=routing)
            np.testing.assert_array_equal(np.asarray(store.route(s, jnp.asarray(contexts))),
                                          NumpyStore(s, table, dtype=np.float64).route(reference))


def test_faithful_confidences_match_the_original_in_float64():
    """The faithful read (Grace(C^T M) + coherence) of the float32 store against the original's retrieve_parallel
    in float64 (NumpyStore.retrieve_parallel, token by token, / max(x, eps)): the same token for all 200 windows of
    512 tokens and the same confidence (the top coherence) to 1e-5. With x + eps they differ by up to 3e-3."""
    spec, table, tokens, windows, _ = _faithful_512()
    spec = dataclasses.replace(spec, levels=4)  # 65,536 slots rather than 16.8M (1 GB of float32)
    targets = tokens[spec.context_length :]
    ref = NumpyStore(spec, table, dtype=np.float64)
    ref.write(windows, targets)
    token, confidence = ref.retrieve_parallel(windows)
    memory = store.init_memory(spec, jnp.asarray(table))
    contexts = window_contexts(spec, memory.table, jnp.asarray(windows))
    memory = write(spec, memory, contexts, jnp.asarray(targets))
    np.testing.assert_array_equal(np.asarray(memory.counts), ref.counts)
    got = np.asarray(scores(spec, memory, contexts, "coherence"))
    np.testing.assert_array_equal(got.argmax(1), token)
    assert np.abs(got.max(1) - confidence).max() < 1e-5


def test_float32_store_matches_the_reference_and_reads_back():
    v, length = 29, 8
    spec = store.StoreSpec(vocab_size=v, context_length=length, levels=4)
    tokens = np.random.default_rng(17).integers(0, v, 400).astype(np.int32)
    table = haar_table(v, seed=6)
    memory, pairs = store.learn_stream(spec, store.init_memory(spec, jnp.asarray(table)), tokens)
    ref = NumpyStore(spec, table)
    windows = np.stack([tokens[s : s + length] for s in range(pairs)])
    ref.write(windows, tokens[length:])
    assert np.mean(np.asarray(memory.counts) == ref.counts) > 0.999
    contexts = store.contexts_at(spec, memory.table, tokens, np.arange(pairs))
    jax_scores = np.asarray(scores(spec, memory, contexts, "cosine"))
    np.testing.assert_array_equal(jax_scores.argmax(1), ref.read(windows).argmax(1))
    assert np.mean(jax_scores.argmax(1) == tokens[length:]) > 0.9  # 392 pairs in 65,536 slots: few collisions


def test_a_single_stored_pair_unbinds_exactly():
    v = 40
    spec = store.StoreSpec(vocab_size=v, context_length=8, levels=2)
    table = jnp.asarray(haar_table(v, seed=7))
    window = jnp.asarray(np.random.default_rng(18).integers(0, v, (1, 8)).astype(np.int32))
    memory = store.init_memory(spec, table)
    context = window_contexts(spec, memory.table, window)
    memory = write(spec, memory, context, jnp.asarray([13]))
    unbound, count = unbind(spec, memory, context)
    np.testing.assert_allclose(np.asarray(unbound[0]), np.asarray(table[13]) / PHI, atol=1e-6)  # C^T (phi^-1 C T) = phi^-1 T
    assert int(count[0]) == 1
    for decoder in store.DECODERS:
        assert int(np.argmax(np.asarray(scores(spec, memory, context, decoder))[0])) == 13
    cosine = 4 / PHI / (4 / PHI + cl.EPS)  # <R, E> = ||R|| ||E|| = 4 phi^-1, and the original's eps below
    assert float(np.asarray(scores(spec, memory, context, "cosine"))[0, 13]) == pytest.approx(cosine, abs=1e-6)


def test_routing_digits_hand_case():
    res, levels = PHI**-12, 2
    c = np.zeros(16)
    c[14], c[15] = -3.5 * res / PHI**-9, 5.5 * res / PHI**-3  # keys -3, 5: digit 0 = (4 * -3 + 5) mod 16 = 9
    c[12], c[13] = 1.5 * res / PHI**-9, -1.5 * res / PHI**-9  # keys 1, -1: digit 1 = 3
    spec = store.StoreSpec(vocab_size=4, context_length=1, levels=levels, routing="digits")
    assert int(store.route(spec, cl.reconstruct(jnp.asarray(c, jnp.float32))[None])[0]) == 9 + 3 * 16


def test_hash_routing_spreads_contexts_the_digits_do_not():
    """Spec 3.3: the digits use a few coarse coefficients; 4,096 random contexts into 4,096 slots."""
    contexts = jnp.asarray(haar_table(4096, seed=8))
    used = {}
    for routing in store.ROUTINGS:
        slots = np.asarray(store.route(store.StoreSpec(vocab_size=1, context_length=1, levels=3, routing=routing), contexts))
        used[routing] = len(np.unique(slots))
    assert used["hash"] > 0.6 * 4096  # uniform: 4096 (1 - 1/e) = 2589 expected
    assert used["digits"] < 0.5 * used["hash"]


def test_episodic_cache_exact_hits_and_misses_on_device():
    v, length = 12, 5
    spec = store.StoreSpec(vocab_size=v, context_length=length, levels=2, stream_chunk=40)
    rng = np.random.default_rng(19)
    tokens = rng.integers(0, v, 200).astype(np.int32)
    tokens[100:106] = tokens[0:6]  # window 0 appears again at 100, with a different target
    tokens[105] = (tokens[5] + 1) % v
    memory, pairs = store.learn_stream(spec, store.init_memory(spec, jnp.asarray(haar_table(v))), tokens)
    windows = np.stack([tokens[s : s + length] for s in range(pairs)])
    last_target = {}
    for w, t in zip(windows, tokens[length:]):
        last_target[w.tobytes()] = t  # the original's dict: the last write wins
    assert int(memory.cache.size) == len(last_target)

    lookup = jax.jit(lambda cache, w: store.cache_lookup(cache, *store.window_hashes(w)))
    hit, target = lookup(memory.cache, jnp.asarray(windows))
    assert isinstance(hit, jax.Array) and isinstance(target, jax.Array)
    assert np.asarray(hit).all()
    np.testing.assert_array_equal(np.asarray(target), [last_target[w.tobytes()] for w in windows])
    assert int(target[0]) == tokens[105]

    unseen = rng.integers(0, v, (300, length)).astype(np.int32)
    unseen = unseen[[u.tobytes() not in last_target for u in unseen]]
    changed = windows.copy()
    changed[:, 2] = (changed[:, 2] + 1) % v
    changed = changed[[c.tobytes() not in last_target for c in changed]]
    for queries in (unseen, changed):
        assert len(queries) > 50 and not np.asarray(lookup(memory.cache, jnp.asarray(queries))[0]).any()


def test_cache_insert_overwrites_and_reports_overflow():
    cache = store.empty_cache(4)
    h = lambda *x: jnp.asarray(x, jnp.uint32)  # noqa: E731
    cache, n = cache_insert(cache, h(5, 1, 5), h(0, 0, 0), jnp.asarray([10, 11, 12]))
    assert int(n) == 2 and int(cache.size) == 2
    cache, n = cache_insert(cache, h(1, 9), h(0, 0), jnp.asarray([21, 22]))
    hit, target = cache_lookup(cache, h(5, 1, 9, 7), h(0, 0, 0, 0))
    np.testing.assert_array_equal(np.asarray(hit), [True, True, True, False])
    np.testing.assert_array_equal(np.asarray(target)[:3], [12, 21, 22])
    _, n = cache_insert(cache, h(2, 3, 4), h(0, 0, 0), jnp.asarray([1, 2, 3]))
    assert int(n) == 6  # more distinct keys than the capacity of 4


def test_generation_continues_seen_text_from_the_cache():
    v, length = 30, 6
    spec = store.StoreSpec(vocab_size=v, context_length=length, levels=3)
    tokens = np.random.default_rng(20).integers(0, v, 120).astype(np.int32)
    memory, _ = store.learn_stream(spec, store.init_memory(spec, jnp.asarray(haar_table(v, 9))), tokens)
    out = store.generate(spec, memory, tokens[:length], 20, jax.random.PRNGKey(0), temperature=1.0)
    np.testing.assert_array_equal(out, tokens[length : length + 20])  # every window is seen: the cache answers
    greedy = store.generate(spec, memory, tokens[:3], 10, jax.random.PRNGKey(0), temperature=0.0, use_cache=False)
    assert greedy.shape == (10,) and greedy.dtype == np.int32 and (greedy < v).all()


# -- 4. evaluation -------------------------------------------------------------------------------------------------------

def test_ranks_are_pessimistic_and_temperature_fits():
    scores = np.array([[0.0, 0.0, 0.0], [0.1, 0.9, 0.5], [0.2, 0.2, 0.1]])
    np.testing.assert_array_equal(mem_eval.ranks(scores, np.array([0, 1, 1])), [2, 0, 1])
    rng = np.random.default_rng(21)
    s = rng.uniform(-1, 1, (4000, 20))
    p = np.exp(s / 0.2)
    p /= p.sum(1, keepdims=True)
    targets = np.array([rng.choice(20, p=row) for row in p])
    assert mem_eval.fit_temperature(s, targets) == pytest.approx(0.2, rel=0.25)
    assert mem_eval.softmax_nll(np.zeros((2, 8)), np.array([0, 3]), 0.5) == pytest.approx([math.log(8)] * 2)


def _witten_bell_reference(tokens, vocab: int, order: int, history) -> np.ndarray:
    """Dictionary counts, one query at a time."""
    from collections import Counter

    uni = (np.bincount(tokens, minlength=vocab) + 1) / (len(tokens) + vocab)
    p = uni.copy()
    for k in range(1, order):
        h = tuple(history[-k:])
        follow = Counter(tokens[i + k] for i in range(len(tokens) - k) if tuple(tokens[i : i + k]) == h)
        total, types = sum(follow.values()), len(follow)
        if total:
            p = np.array([(follow[w] + types * p[w]) / (total + types) for w in range(vocab)])
    return p


def test_ngram_matches_a_dictionary_witten_bell_and_normalises():
    tokens = np.random.default_rng(22).integers(0, 5, 400)
    tokens[50:60] = 1
    model = mem_eval.NGramModel(tokens, 5, 4)
    histories = np.stack([tokens[i : i + 3] for i in (0, 45, 52, 300)] + [np.array([4, 4, 4])])
    p = model.probs(histories)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-12)
    for row, hist in zip(p, histories):
        np.testing.assert_allclose(row, _witten_bell_reference(tokens, 5, 4, hist), atol=1e-12)
    np.testing.assert_allclose(mem_eval.NGramModel(tokens, 5, 1).probs(histories[:1])[0], mem_eval.unigram_probs(tokens, 5))


def test_query_sets_seen_heldout_changed():
    train = np.random.default_rng(23).integers(0, 9, 500).astype(np.int32)
    heldout = np.random.default_rng(24).integers(0, 9, 200).astype(np.int32)
    sets = mem_eval.query_sets(train, heldout, count=60, calibration=20, history=10, change_window=4, vocab_size=9, seed=0)
    calib, seen = sets["seen"]
    assert len(calib) == 20 and len(seen) == 60 and not set(calib.positions) & set(seen.positions)
    np.testing.assert_array_equal(seen.windows(4), np.stack([train[t - 4 : t] for t in seen.positions]))
    np.testing.assert_array_equal(seen.targets, train[seen.positions])
    _, changed = sets["changed"]
    assert changed.positions is None and len(changed) == 60
    h_calib, h_test = sets["heldout"]
    assert h_calib.stream is not h_test.stream and len(h_calib.stream) + len(h_test.stream) == 200
    for q in (calib, seen, h_calib, h_test):
        np.testing.assert_array_equal(q.history[:, -4:], q.windows(4))


def test_changed_queries_differ_in_exactly_one_window_token():
    train = np.arange(300, dtype=np.int32) % 7
    q = mem_eval.make_queries("changed", train, 50, 12, 5, 7, np.random.default_rng(25))
    original = (q.targets[:, None] - 12 + np.arange(12)) % 7  # token at stream position p is p % 7
    diff = q.history != original
    np.testing.assert_array_equal(diff.sum(1), 1)
    assert diff[:, :-5].sum() == 0  # the change is inside the memory's window


def test_evaluate_memory_rows():
    v, length = 20, 4
    train = np.random.default_rng(26).integers(0, v, 3000).astype(np.int32)
    heldout = np.random.default_rng(27).integers(0, v, 600).astype(np.int32)
    spec = store.StoreSpec(vocab_size=v, context_length=length, levels=5)
    memory, _ = store.learn_stream(spec, store.init_memory(spec, jnp.asarray(haar_table(v))), train)
    sets = mem_eval.query_sets(train, heldout, 200, 100, length, length, v, seed=1)
    rows = mem_eval.evaluate_memory(spec, memory, sets, ("cosine",))
    by = {r["condition"]: r for r in rows}
    assert by["seen"]["exact"] > 0.8  # 2,996 pairs in 16^5 slots; contexts of 4 random tokens rarely repeat
    assert by["heldout"]["exact"] < 0.2 and by["changed"]["exact"] < 0.2
    cache = mem_eval.cache_row(spec, memory, sets["seen"][1], "cosine")
    assert cache["cache_hits"] == 1.0 and cache["exact"] > by["seen"]["exact"]
    table = mem_eval.results_table(rows + [cache])
    assert "| memory (cosine) |" in table and table.count("\n") == 3


# -- 5. config and CLI ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key,value,fragment", [
    ("memory.levels", 8, "memory.levels must be in 1..7"),
    ("memory.routing", "prime", "memory.routing must be one of"),
    ("memory.decoder", "argmax", "memory.decoder must be one of"),
    ("memory.embedding", "glove", "memory.embedding must be one of"),
    ("memory.context_length", 0, "memory.context_length"),
    ("memory.key_resolution", 0.0, "memory.key_resolution must be > 0"),
    ("eval.decoders", ("cosine", "dot"), "eval.decoders"),
    ("data.tokenizer", "word", "data.tokenizer"),
])
def test_config_errors(key, value, fragment):
    config = holographic.get_config()
    node, leaf = key.split(".")
    config[node][leaf] = value
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        validate(config)


def test_presets_validate():
    for arg in (None, "tiny", "faithful", "short", "tiny+faithful"):
        validate(holographic.get_config(arg))
    f = holographic.get_config("tiny+faithful")
    assert (f.memory.embedding, f.memory.routing, f.memory.decoder, f.memory.context_length) == ("original", "digits", "coherence", 8)


@pytest.mark.slow
def test_cli_learns_saves_evaluates_samples_and_reuses(tmp_path):
    workdir = tmp_path / "mem"
    proc = run_module("wavejax.main", "--config=configs/holographic.py:tiny", f"--workdir={workdir}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "learned 17,992 pairs" in proc.stdout and "done: 17,992 pairs" in proc.stdout
    for name in ("config.json", "tokenizer.json", "memory_meta.json", "eval.json", "eval.md", "samples.txt", "memory"):
        assert (workdir / name).exists(), name
    rows = json.loads((workdir / "eval.json").read_text())["rows"]
    methods = {r["method"] for r in rows}
    assert {"memory (cosine)", "memory (vorticity)", "memory (coherence)", "unigram", "3-gram (Witten-Bell)",
            "memory (cosine) + episodic cache"} <= methods
    table = (workdir / "eval.md").read_text()
    assert table.startswith("| method | seen exact | seen top-5 | seen NLL | heldout exact")
    assert "=== training text" in (workdir / "samples.txt").read_text()

    again = run_module("wavejax.main", "--config=configs/holographic.py:tiny", f"--workdir={workdir}")
    assert again.returncode == 0, again.stderr
    assert "restored the memory saved in" in again.stdout and "learning" not in again.stdout
    assert json.loads((workdir / "eval.json").read_text())["rows"] == rows  # same memory, same queries

    refused = run_module("wavejax.main", "--config=configs/holographic.py:tiny", f"--workdir={workdir}",
                         "--config.memory.levels=4")
    assert "memory.levels" in assert_one_error_line(refused, 2)

    bad = tmp_path / "bad"
    proc = run_module("wavejax.main", "--config=configs/holographic.py:tiny", f"--workdir={bad}", "--config.memory.routing=prime")
    assert "memory.routing" in assert_one_error_line(proc, 2)
    assert not os.path.exists(bad)
