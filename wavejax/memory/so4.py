"""Token embeddings in SO(4): random (Haar or the original's biased QR), grounded in given vectors (PCA to 6 dims,
then the exponential of so(4) generators), and the original's position rotations (spec sections 2.1-2.3).

Faithful: `haar=False` keeps numpy/LAPACK's uncorrected QR (its mean matrix is ~0.4 diag(1,-1,-1,1), not 0) and the
grounded map's order-8 Taylor series + uncorrected QR; `original_embeddings` is the original's exact numpy table.
Default: QR with the signs of diag(R) moved into Q (Haar-uniform on O(4)), then a determinant fix (Haar on SO(4)).
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from wavejax.memory.clifford import PHI, mm

# The 6 elementary antisymmetric generators of so(4): +1 at (a, b), -1 at (b, a), in the original's order.
GENERATOR_PLANES = list(itertools.combinations(range(4), 2))  # (0,1), (0,2), (0,3), (1,2), (1,3), (2,3)
GROUNDING_SCALE = 0.3  # the original's angle scale for grounded embeddings


def so4_generators() -> np.ndarray:
    g = np.zeros((6, 4, 4))
    for k, (a, b) in enumerate(GENERATOR_PLANES):
        g[k, a, b], g[k, b, a] = 1.0, -1.0
    return g


def _fix_determinant(q):
    """Negates column 0 where det(Q) < 0 (the original's fix): O(4) -> SO(4)."""
    flip = jnp.where(jnp.linalg.det(q) < 0, -1.0, 1.0).astype(q.dtype)
    return q.at[..., :, 0].multiply(flip[..., None])


def orthogonalize(a, haar: bool = True):
    """SO(4) matrices from square matrices [..., 4, 4] by batched QR.

    haar=True: Q diag(sign(diag R)), the unique QR with a positive diagonal of R, so Gaussian input gives a Haar
    sample of O(4); the determinant fix (x -> x diag(-1,1,1,1) on det -1, a bijection onto SO(4)) keeps it Haar.
    haar=False: LAPACK's Q as returned (the original), whose sign convention biases the distribution.
    """
    q, r = jnp.linalg.qr(a)
    if haar:
        d = jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1))
        q = q * jnp.where(d == 0, 1.0, d).astype(q.dtype)[..., None, :]
    return _fix_determinant(q)


@functools.partial(jax.jit, static_argnames=("shape", "haar", "dtype"))
def _random_so4(key, shape: tuple, haar: bool, dtype):
    return orthogonalize(jax.random.normal(key, shape + (4, 4), dtype), haar=haar)


def random_so4(key, shape: tuple = (), haar: bool = True, dtype=jnp.float32):
    """[*shape, 4, 4] random SO(4) matrices from Gaussian matrices (Haar-uniform unless haar=False); one compiled
    program per shape."""
    return _random_so4(key, tuple(shape), haar, jnp.dtype(dtype))


def original_embeddings(vocab_size: int, seed: int = 42) -> np.ndarray:
    """The original's table exactly (core/grounded_embeddings.py): numpy seed(seed), randn(V,4,4) as float32,
    batched np.linalg.qr without sign correction, column 0 negated where det < 0. numpy, float32."""
    a = np.random.RandomState(seed).randn(vocab_size, 4, 4).astype(np.float32)
    q, _ = np.linalg.qr(a)
    q[np.linalg.det(q) < 0, :, 0] *= -1.0
    return q.astype(np.float32)


# -- grounded embeddings -------------------------------------------------------------------------------------------------

def pca_directions(vectors, dim: int = 6):
    """Rows of U sqrt(S) from the top-`dim` principal components of the centred rows, each scaled to unit norm
    (the original's grounding). vectors [V, d] with d >= dim -> [V, dim]. Computed from the d x d covariance."""
    x = vectors - jnp.mean(vectors, axis=0, keepdims=True)
    evals, evecs = jnp.linalg.eigh(x.T @ x)  # ascending
    evals, evecs = evals[::-1][:dim], evecs[:, ::-1][:, :dim]
    u_sqrt_s = (x @ evecs) / jnp.sqrt(jnp.sqrt(jnp.maximum(evals, 1e-30)))  # U S / sqrt(S) with S = sqrt(eval)
    return u_sqrt_s / jnp.maximum(jnp.linalg.norm(u_sqrt_s, axis=-1, keepdims=True), 1e-12)


def taylor_exp(a, order: int = 8):
    """sum_{k <= order} A^k / k! (the original's truncated exponential)."""
    term = jnp.broadcast_to(jnp.eye(4, dtype=a.dtype), a.shape)
    total = term
    for k in range(1, order + 1):
        term = mm(term, a) / k
        total = total + term
    return total


def so4_exp(a):
    """The matrix exponential of so(4) elements [..., 4, 4] (exact: scaling and squaring with a Pade approximant)."""
    return jax.scipy.linalg.expm(a)


def embeddings_from_vectors(vectors, scale: float = GROUNDING_SCALE, faithful: bool = False):
    """SO(4) embeddings from any d-dimensional vectors (d >= 6): u = unit PCA-6 rows, A = scale sum_j u_j G_j,
    E = exp(A). Faithful: order-8 Taylor series, then LAPACK QR without sign correction and the determinant fix,
    which multiplies every token by about the same diag(1,-1,-1,1), as the original does."""
    u = pca_directions(jnp.asarray(vectors, jnp.float32))
    a = scale * jnp.einsum("vj,jab->vab", u, jnp.asarray(so4_generators(), u.dtype))
    if faithful:
        return orthogonalize(taylor_exp(a), haar=False)
    return so4_exp(a)


def ppmi_vectors(tokens: np.ndarray, vocab_size: int, window: int = 5) -> np.ndarray:
    """Positive pointwise mutual information of symmetric co-occurrence within `window` tokens: [V, V] float32
    (the original's alternative grounding, fed to embeddings_from_vectors)."""
    tokens = np.asarray(tokens, np.int64)
    counts = np.zeros(vocab_size * vocab_size, np.float64)
    for offset in range(1, window + 1):  # one vectorised pass per offset (window is small)
        pair = tokens[:-offset] * vocab_size + tokens[offset:]
        counts += np.bincount(pair, minlength=vocab_size * vocab_size)
    counts = counts.reshape(vocab_size, vocab_size)
    counts = counts + counts.T
    total = counts.sum()
    row = counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(counts * total / (row * row.T))
    return np.where(np.isfinite(pmi) & (pmi > 0), pmi, 0.0).astype(np.float32)


# -- position rotations ----------------------------------------------------------------------------------------------------

def position_angles(n_scales: int) -> tuple[float, float]:
    """(alpha, beta) with R(p) = diag(rot(alpha p), rot(beta p)): each scale k adds a = 2 pi / phi^k to the angle of
    plane (0,1) and a / phi to plane (2,3) (k even), or the reverse (k odd). 2 scales (production): alpha = 2 pi
    (1 + phi^-2) (the golden angle mod 2 pi) and beta = 4 pi / phi."""
    alpha = sum(2 * math.pi / PHI**k * (1.0 if k % 2 == 0 else 1.0 / PHI) for k in range(n_scales))
    beta = sum(2 * math.pi / PHI**k * (1.0 / PHI if k % 2 == 0 else 1.0) for k in range(n_scales))
    return alpha, beta


def _double_rotation(t1, t2):
    c1, s1, c2, s2 = jnp.cos(t1), jnp.sin(t1), jnp.cos(t2), jnp.sin(t2)
    z = jnp.zeros_like(t1)
    rows = [[c1, -s1, z, z], [s1, c1, z, z], [z, z, c2, -s2], [z, z, s2, c2]]
    return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)


def position_rotation(p, n_scales: int = 2, dtype=jnp.float32):
    """R(p) for positions p (any shape) -> [..., 4, 4]; the identity for n_scales = 0. R(p) R(q) = R(p + q)."""
    alpha, beta = position_angles(n_scales)
    p = jnp.asarray(p, dtype)
    return _double_rotation(alpha * p, beta * p)


def position_rotation_factors(p: float, n_scales: int = 2) -> np.ndarray:
    """R(p) as the original builds it: the product over scales of the per-scale double rotations (numpy float64,
    the reference for position_rotation)."""
    out = np.eye(4)
    for k in range(n_scales):
        a = p * 2 * math.pi / PHI**k
        factor = np.eye(4)
        for plane, angle in zip((slice(0, 2), slice(2, 4)), (a, a / PHI) if k % 2 == 0 else (a / PHI, a)):
            factor[plane, plane] = [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
        out = out @ factor
    return out


# -- embedding tables ------------------------------------------------------------------------------------------------------

EMBEDDINGS = ("haar", "qr_faithful", "original", "ppmi", "ppmi_faithful")


def embedding_table(kind: str, vocab_size: int, seed: int = 0, tokens: np.ndarray | None = None) -> np.ndarray:
    """The [V, 4, 4] float32 token table of a store.

    haar           Haar-random SO(4), computed in float64 and rounded: float32 QR leaves each factor ~2e-7 from
                   orthogonal, which a product of 1024 factors accumulates to ~1e-5; rounded float64 factors are ~6e-8 off
    qr_faithful    the original's sampler in JAX (uncorrected QR, float32): biased towards 0.4 diag(1,-1,-1,1)
    original       the original's exact table (numpy seed 42; `seed` is ignored)
    ppmi           grounded: PPMI co-occurrence rows of `tokens` (window 5) -> PCA-6 -> exp of so(4) generators
    ppmi_faithful  the same with the original's Taylor series and uncorrected QR
    """
    key = jax.random.PRNGKey(seed)
    if kind == "haar":
        with jax.enable_x64(True):
            table = random_so4(key, (vocab_size,), haar=True, dtype=jnp.float64)
        return np.asarray(table, np.float32)
    if kind == "qr_faithful":
        return np.asarray(random_so4(key, (vocab_size,), haar=False), np.float32)
    if kind == "original":
        return original_embeddings(vocab_size)
    if kind in ("ppmi", "ppmi_faithful"):
        if tokens is None:
            raise ValueError("ppmi embeddings need the training tokens")
        vectors = ppmi_vectors(tokens, vocab_size)
        return np.asarray(embeddings_from_vectors(vectors, faithful=kind == "ppmi_faithful"), np.float32)
    raise ValueError(f"unknown embedding kind {kind!r}; choose one of {EMBEDDINGS}")
