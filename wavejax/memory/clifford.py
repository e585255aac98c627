"""Cl(3,1) as 4x4 real matrices: basis, coefficients, grades, reversion, Grace, witness, enstrophy, chirality and the
original's scores (spec: docs/specs/holographic.md sections 1, 3.7, 3.8).

Faithful: `reversion_faithful` is the original's transpose, which has the wrong sign on every blade containing e4.
Default: `reversion` applies the true sign (-1)^(k(k-1)/2) to the grade-k coefficients. Everything is batched.

Conventions (spec 1.2): signature (+,+,+,-); B0 = I, B1..4 = e1..e4, B5..10 = e1e2, e1e3, e1e4, e2e3, e2e4, e3e4,
B11..14 = e1e2e3, e1e2e4, e1e3e4, e2e3e4, B15 = e1e2e3e4 = gamma5. Every B_k is a signed permutation matrix and
<B_i, B_j>_F = 4 delta_ij, so c_k(M) = <M, B_k>_F / 4 and M = sum_k c_k B_k is an exact isomorphism R^16 <-> M4(R).
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np

PHI = (1.0 + 5.0**0.5) / 2.0
PHI_INV = 1.0 / PHI
EPS = PHI**-20  # the original's PHI_EPSILON = PHI_INV**20 = 6.6e-5 (its comment says 6.6e-9), the eps of every division
# The original adds it to cosine denominators (x + eps) but floors coherence and stability ones (max(x, eps)); so do we.

# -- the basis ------------------------------------------------------------------------------------------------------

GAMMA = np.array(
    [
        np.diag([1, 1, -1, -1]),
        [[0, 0, 1, 0], [0, 0, 0, -1], [1, 0, 0, 0], [0, -1, 0, 0]],
        np.fliplr(np.eye(4)),
        [[0, 0, 0, -1], [0, 0, 1, 0], [0, -1, 0, 0], [1, 0, 0, 0]],
    ],
    dtype=np.float64,
)
METRIC = np.diag([1.0, 1.0, 1.0, -1.0])  # e_mu e_nu + e_nu e_mu = 2 eta_mu_nu I

# Index tuples of the 16 blades in the original's order: () scalar, (0,) = e1, (0, 1) = e1e2, ...
BLADES = [()] + [b for k in (1, 2, 3, 4) for b in itertools.combinations(range(4), k)]
BLADE_NAMES = ["1"] + ["e" + "".join(str(i + 1) for i in b) for b in BLADES[1:]]
GRADE_OF = np.array([len(b) for b in BLADES], dtype=np.int32)


def _blade_matrix(blade) -> np.ndarray:
    m = np.eye(4)
    for i in blade:
        m = m @ GAMMA[i]
    return m


BASIS = np.stack([_blade_matrix(b) for b in BLADES])  # [16, 4, 4], float64 (entries are 0, +-1)
GAMMA5 = BASIS[15]
IDENTITY = BASIS[0]

# Grace scales (spec 1.1): grade g gets phi^-g, except the pseudoscalar, which gets phi^-1 (not phi^-4).
GRACE_SCALES = np.array([1.0] + [PHI**-1] * 4 + [PHI**-2] * 6 + [PHI**-3] * 4 + [PHI**-1])
REVERSION_SIGNS = np.array([(-1.0) ** (g * (g - 1) // 2) for g in GRADE_OF])  # + + - - + by grade
INVOLUTION_SIGNS = np.array([(-1.0) ** g for g in GRADE_OF])  # + - + - + by grade
BIVECTORS = slice(5, 11)
ENSTROPHY_THRESHOLD = PHI**-8


def _const(a: np.ndarray, like) -> jnp.ndarray:
    return jnp.asarray(a, dtype=jnp.result_type(like, jnp.float32))


# -- products ---------------------------------------------------------------------------------------------------------

def mm(a, b):
    """a @ b for stacks of 4x4 matrices ([..., 4, 4]), written as a sum of four outer products (column j of a times
    row j of b). XLA:CPU runs this form about 10x faster than jnp.matmul at 4x4; the sum order is fixed."""
    return ((a[..., :, 0, None] * b[..., None, 0, :] + a[..., :, 1, None] * b[..., None, 1, :])
            + (a[..., :, 2, None] * b[..., None, 2, :] + a[..., :, 3, None] * b[..., None, 3, :]))


def transpose(m):
    return jnp.swapaxes(m, -1, -2)


def wedge(a, b):
    """A ^ B = (AB - BA) / 2 (the original's wedge: the commutator half)."""
    return 0.5 * (mm(a, b) - mm(b, a))


def inner(a, b):
    """A . B = (AB + BA) / 2."""
    return 0.5 * (mm(a, b) + mm(b, a))


def frobenius(a, b):
    """<A, B>_F over the last two axes."""
    return jnp.sum(a * b, axis=(-1, -2))


# -- coefficients and grades -----------------------------------------------------------------------------------------

def decompose(m):
    """c_k(M) = <M, B_k>_F / 4: [..., 4, 4] -> [..., 16]."""
    flat = m.reshape(m.shape[:-2] + (16,))
    return flat @ _const(BASIS.reshape(16, 16).T / 4.0, m)


def reconstruct(c):
    """M = sum_k c_k B_k: [..., 16] -> [..., 4, 4]."""
    return (c @ _const(BASIS.reshape(16, 16), c)).reshape(c.shape[:-1] + (4, 4))


def grade_project(m, grade: int):
    """<M>_g: the part of M in grade g (0 scalar .. 4 pseudoscalar)."""
    mask = _const((GRADE_OF == grade).astype(np.float64), m)
    return reconstruct(decompose(m) * mask)


def grade_energies(m):
    """sum of c_k^2 per grade: [..., 4, 4] -> [..., 5] (they add up to ||M||_F^2 / 4)."""
    onehot = _const(np.eye(5)[GRADE_OF], m)  # [16, 5]
    return (decompose(m) ** 2) @ onehot


def reversion(m):
    """The true Clifford reversion: grade-k coefficients times (-1)^(k(k-1)/2); an anti-automorphism,
    rev(AB) = rev(B) rev(A)."""
    return reconstruct(decompose(m) * _const(REVERSION_SIGNS, m))


def reversion_faithful(m):
    """The original's `clifford_reversion`: the transpose. It equals the reversion on blades without e4 and flips
    the sign of e4, e1e4, e2e4, e3e4, e1e2e4, e1e3e4, e2e3e4 and gamma5; for SO(4) it is the inverse."""
    return transpose(m)


def grade_involution(m):
    """alpha(M): grade-k coefficients times (-1)^k; equals -gamma5 M gamma5."""
    return reconstruct(decompose(m) * _const(INVOLUTION_SIGNS, m))


# -- Grace ------------------------------------------------------------------------------------------------------------

def grace_scales(power: int | float = 1, like=jnp.float32):
    return _const(GRACE_SCALES**power, like)


def grace(m, power: int | float = 1):
    """Grace^n(M) = sum_k s_k^n c_k B_k: a fixed diagonal scaling of the coefficients (not norm-preserving)."""
    return reconstruct(decompose(m) * grace_scales(power, m))


def grace_inverse(m, power: int | float = 1):
    return grace(m, -power)


def grace_with_stability(m):
    """(Grace(M), stability, (c'_0, c'_15)) with c' = s * c and stability = (c'_0^2 + c'_15^2) / max(sum c'^2, eps)
    (the original's denominator: max, not + eps)."""
    c = decompose(m) * grace_scales(1, m)
    total = jnp.sum(c**2, axis=-1)
    stability = (c[..., 0] ** 2 + c[..., 15] ** 2) / jnp.maximum(total, EPS)
    return reconstruct(c), stability, (c[..., 0], c[..., 15])


# -- witness, stability, enstrophy, chirality --------------------------------------------------------------------------

def witness(m):
    """(sigma, p) = (tr(M) / 4, <M, gamma5>_F / 4): the scalar and pseudoscalar coefficients."""
    return jnp.trace(m, axis1=-2, axis2=-1) / 4.0, frobenius(m, _const(GAMMA5, m)) / 4.0


def witness_matrix(m):
    """W(M) = sigma I + phi^-1 p gamma5."""
    sigma, p = witness(m)
    return sigma[..., None, None] * _const(IDENTITY, m) + (PHI_INV * p)[..., None, None] * _const(GAMMA5, m)


def grace_stability(m):
    """(sigma^2 + p^2) / (||M||_F^2 / 4), clipped to <= 1; 1 where ||M||_F^2 / 4 < eps, as in the original (the
    witness-energy fraction)."""
    sigma, p = witness(m)
    energy = frobenius(m, m) / 4.0
    small = energy < EPS
    value = jnp.minimum((sigma**2 + p**2) / jnp.where(small, 1.0, energy), 1.0)
    return jnp.where(small, 1.0, value)


def enstrophy(m):
    """sum of the squared bivector coefficients c_5..c_10."""
    return jnp.sum(decompose(m)[..., BIVECTORS] ** 2, axis=-1)


def extended_witness(m):
    """[sigma, p, enstrophy, grace_stability] (the original's distributed-prior feature vector)."""
    sigma, p = witness(m)
    return jnp.stack([sigma, p, enstrophy(m), grace_stability(m)], axis=-1)


def chirality(m):
    """(sign(p), |p|): the handedness of M and its strength."""
    _, p = witness(m)
    return jnp.sign(p), jnp.abs(p)


def chirality_match_scores(p_context, p_tokens):
    """Per-token multiplier: 1 where sign(p_token) == sign(p_context), else (phi^-3)^min(1, |p_ctx| / phi^-1);
    all ones when |p_ctx| < phi^-3. p_context [...], p_tokens [V] -> [..., V]."""
    pc = p_context[..., None]
    penalty = (PHI**-3) ** jnp.minimum(1.0, jnp.abs(pc) / PHI_INV)
    match = jnp.sign(pc) == jnp.sign(p_tokens)
    scores = jnp.where(match, 1.0, penalty)
    return jnp.where(jnp.abs(pc) >= PHI**-3, scores, jnp.ones_like(scores))


def vorticity(sequence):
    """sum_i E_i ^ E_{i-1} over consecutive matrices of [..., L, 4, 4] (the original's sequence vorticity)."""
    return jnp.sum(wedge(sequence[..., 1:, :, :], sequence[..., :-1, :, :]), axis=-3)


# -- scores (decoders, spec 3.7-3.8) ------------------------------------------------------------------------------------

def coherence(r, e):
    """The original's coherence of X = R E^T: (c_0(X)^2 + c_15(X)^2) / max(sum_k c_k(X)^2, eps), for any pair of
    matrices."""
    c = decompose(mm(r, transpose(e)))
    return (c[..., 0] ** 2 + c[..., 15] ** 2) / jnp.maximum(jnp.sum(c**2, axis=-1), EPS)


def coherence_scores(r, embeddings):
    """coherence(R, E_v) for every token v at once, for orthogonal E_v: cos^2_F(R, E_v) + cos^2_F(R, gamma5 E_v).
    r [..., 4, 4], embeddings [V, 4, 4] -> [..., V]. Sign-blind (-E scores as E); chance level ~2/16."""
    g5e = jnp.einsum("ij,vjk->vik", _const(GAMMA5, embeddings), embeddings)
    rf = r.reshape(r.shape[:-2] + (16,))
    dots = rf @ embeddings.reshape(-1, 16).T, rf @ g5e.reshape(-1, 16).T
    norm2 = jnp.sum(rf**2, axis=-1, keepdims=True)  # sum_k c_k(X)^2 = ||R E^T||^2 / 4 = ||R||^2 / 4 for orthogonal E
    return (dots[0] ** 2 + dots[1] ** 2) / 16.0 / jnp.maximum(norm2 / 4.0, EPS)


def cosine_scores(r, embeddings):
    """Frobenius cosine <R, E_v> / (||R|| ||E_v|| + eps) for every token: [..., 4, 4], [V, 4, 4] -> [..., V].
    A zero R (an empty slot) scores 0 everywhere."""
    rf = r.reshape(r.shape[:-2] + (16,))
    ef = embeddings.reshape(-1, 16)
    norms = jnp.sqrt(jnp.sum(rf**2, axis=-1, keepdims=True)) * jnp.sqrt(jnp.sum(ef**2, axis=-1))
    return (rf @ ef.T) / (norms + EPS)


def vorticity_weighted_scores(a, embeddings):
    """The original's `vorticity_weighted_scores(A, E)` (spec 3.8), for every token: [..., 4, 4], [V, 4, 4] -> [..., V].

    base_v = cos_F(A, E_v); if enstrophy(A) < phi^-8 the score is base_v (in [-1, 1]). Otherwise, with b = (base+1)/2,
    em = phi^-|ens_A - ens_v|, miss = max(0, ens_A - ens_v) / (ens_A + eps), wm = clip(((s_A s_v + p_A p_v) /
    ((|s_A|+|p_A|+eps)(|s_v|+|p_v|+eps)) + 1) / 2, 0, 1), struct = phi^-1 em + phi^-2 wm, w = phi^-2 min(1, ens_A / phi^-3):
    score = ((1 - w) b + w struct) (1 - w miss), in [0, 1].
    """
    base = cosine_scores(a, embeddings)
    ens_a = enstrophy(a)[..., None]
    sig_a, p_a = (x[..., None] for x in witness(a))
    ens_v = enstrophy(embeddings)
    sig_v, p_v = witness(embeddings)
    b = (base + 1.0) / 2.0
    em = PHI ** (-jnp.abs(ens_a - ens_v))
    miss = jnp.maximum(0.0, ens_a - ens_v) / (ens_a + EPS)
    wm = ((sig_a * sig_v + p_a * p_v) / ((jnp.abs(sig_a) + jnp.abs(p_a) + EPS) * (jnp.abs(sig_v) + jnp.abs(p_v) + EPS))
          + 1.0) / 2.0
    wm = jnp.clip(wm, 0.0, 1.0)
    struct = PHI_INV * em + PHI**-2 * wm
    w = PHI**-2 * jnp.minimum(1.0, ens_a / PHI**-3)
    weighted = ((1.0 - w) * b + w * struct) * (1.0 - w * miss)
    return jnp.where(ens_a < ENSTROPHY_THRESHOLD, base, weighted)


# -- routing keys (spec 1.5) ---------------------------------------------------------------------------------------------

def basin_key(m, power: int = 3, resolution: float = PHI**-12):
    """key_k = trunc(c_k(M) s_k^n / res) as int32 (truncation toward zero, so the zero bin is twice as wide).
    The original's production settings are n = 3 and res = phi^-12: essentially an exact-match hash of M."""
    scaled = decompose(m) * grace_scales(power, m) / resolution
    return jnp.trunc(scaled).astype(jnp.int32)
