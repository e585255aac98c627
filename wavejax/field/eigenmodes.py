"""Laplacian eigenmodes of the field's graphs in a pinned basis (`laplacian_eigenmodes`): the closed-form Fourier
modes of a square lattice in a stated order, or for other graphs float64 eigh (scipy, dense) or eigsh (sparse,
shift-invert) on the host with every eigenspace in a canonical basis."""

from __future__ import annotations

import math

import numpy as np

from wavejax.field.graphs import Graph, laplacian_dense, laplacian_sparse

EIGEN_METHODS = ("auto", "dense", "sparse", "lattice")
DENSE_EIGH_MAX_NODES = 5000  # auto, graphs other than lattices: dense float64 eigh up to here, sparse eigsh beyond


# -- eigenmodes -------------------------------------------------------------------------------------------------
#
# The k lowest eigenvectors are a basis only up to sign and, inside a degenerate eigenspace, up to any rotation; which
# one a solver returns depends on its algorithm, its precision and the BLAS thread count. The mode experiment is not
# invariant to that choice (the cubic term acts on each coefficient: a pattern survives or overflows depending on how
# its energy in a degenerate eigenspace is split between basis vectors), so every method here returns a pinned basis.

DEGENERACY_TOL = 1e-9  # eigenvalues this close form one eigenspace (solvers: times the bound 2 x largest degree)
PIVOT_RTOL = 1e-6  # canonical_basis: pivot weights this close to the largest count as tied (lowest node id wins)


def _eigen_order(values: np.ndarray, tol: float) -> np.ndarray:
    """Indices sorting `values` ascending, where values chained within `tol` of their sorted neighbour count as equal
    and keep their index order."""
    srt = np.argsort(values, kind="stable")
    group = np.empty(len(values), np.int64)
    group[srt] = np.concatenate([[0], np.cumsum(np.diff(values[srt]) > tol)])
    return np.lexsort((np.arange(len(values)), group))


def lattice_spectrum(side: int, periodic: bool = True) -> np.ndarray:
    """All n^2 Laplacian eigenvalues of the square lattice in closed form, ascending:
    periodic 4 - 2cos(2 pi a / n) - 2cos(2 pi b / n); open (free ends) 4 - 2cos(pi a / n) - 2cos(pi b / n)."""
    mu = _lattice_1d_values(side, periodic)
    return np.sort((mu[:, None] + mu[None, :]).ravel())


def _lattice_1d_values(side: int, periodic: bool) -> np.ndarray:
    """Eigenvalues of the 1-D path/cycle Laplacian, in the order of `_lattice_1d_vectors`' columns (a cos/sin pair
    shares one computed value, so degenerate 2-D eigenvalues are bitwise equal)."""
    freqs, inverse = np.unique(_lattice_1d_freqs(side, periodic), return_inverse=True)
    return (2 - 2 * np.cos((2 if periodic else 1) * np.pi * freqs / side))[inverse]


def _lattice_1d_freqs(side: int, periodic: bool) -> np.ndarray:
    if not periodic:
        return np.arange(side, dtype=np.float64)
    # cycle: frequency 0, then a cos/sin pair per 0 < a < n/2, then n/2 alone when n is even
    freqs = [0.0]
    for a in range(1, (side + 1) // 2):
        freqs += [a, a]
    if side % 2 == 0:
        freqs.append(side / 2)
    return np.asarray(freqs)


def _lattice_1d_vectors(side: int, periodic: bool) -> np.ndarray:
    """[side, side] orthonormal real eigenvectors of the 1-D cycle (periodic) or path (open) Laplacian: periodic
    1, cos(2 pi 1 x/n), sin(2 pi 1 x/n), cos(2 pi 2 x/n), sin(2 pi 2 x/n), ..., (cos(pi x) when n is even); open
    cos(pi a (x + 1/2) / n) for a = 0 .. n-1; each divided by its norm."""
    x = np.arange(side, dtype=np.float64)
    if not periodic:  # path: cos(pi a (x + 1/2) / n)
        v = np.cos(np.pi * np.arange(side)[None, :] * (x[:, None] + 0.5) / side)
    else:
        cols = [np.ones(side)]
        for a in range(1, (side + 1) // 2):
            cols += [np.cos(2 * np.pi * a * x / side), np.sin(2 * np.pi * a * x / side)]
        if side % 2 == 0:
            cols.append(np.cos(np.pi * x))
        v = np.stack(cols, axis=1)
    return v / np.linalg.norm(v, axis=0, keepdims=True)


def lattice_eigenmodes(side: int, k: int, periodic: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest Laplacian eigenpairs of a square lattice in closed form, float64: (eigenvalues [k], eigenvectors
    [n^2, k]) with node i*side + j <-> (row i, column j).

    The basis is pinned, with no solver involved: mode (r, c) is the product u_r(row) * u_c(column) of two 1-D modes
    of `_lattice_1d_vectors` (periodic: 1, cos 1, sin 1, cos 2, sin 2, ...; open: cos(pi a (x + 1/2) / n)), with
    eigenvalue mu_r + mu_c. Modes are ordered by eigenvalue; equal eigenvalues (within 1e-9) by r * side + c, i.e.
    by the row mode, then the column mode. For example the periodic lattice's modes 1-4 (eigenvalue 2 - 2cos(2 pi/n))
    are 1 x cos 1, 1 x sin 1, cos 1 x 1, sin 1 x 1 (row mode x column mode), and an 8-fold eigenvalue (frequencies
    {p, q}, 0 < p < q < n/2) lists cos p x cos q, cos p x sin q, sin p x cos q, sin p x sin q, then the same with p
    and q swapped; eigenvalues equal by accident (other frequencies, same sum) follow the same rule. Every mode's
    first nonzero entry (in node order) is positive.
    """
    mu = _lattice_1d_values(side, periodic)
    vecs = _lattice_1d_vectors(side, periodic)
    lam = (mu[:, None] + mu[None, :]).ravel()  # index r * side + c: row mode r, column mode c
    order = _eigen_order(lam, DEGENERACY_TOL)[:k]
    r, c = np.divmod(order, side)
    modes = vecs[:, r][:, None, :] * vecs[:, c][None, :, :]  # [row, col, k]
    return lam[order], modes.reshape(side * side, len(order))


def canonical_basis(vectors: np.ndarray) -> np.ndarray:
    """The pinned orthonormal basis of the space spanned by the orthonormal columns of `vectors` [n, m]: a function
    of the space alone, not of the basis handed in (any rotation or sign flip of the columns gives the same result).

    Pivoted Gram-Schmidt on the space's projector P = V V^T: column j is the residual projector's column at the pivot
    node i_j, normalised, P_j e_i / sqrt(P_j[i, i]) (so it is positive at its pivot); P_{j+1} = P_j - u_j u_j^T. The
    pivot is the node with the largest residual weight P_j[i, i]; weights within a relative PIVOT_RTOL of the largest
    count as tied and the lowest node id wins. For m = 1 this fixes the sign: the entry of largest magnitude (the
    first of equals) is positive.
    """
    c = np.array(vectors, np.float64)
    out = np.empty_like(c)
    for j in range(c.shape[1]):
        weight = (c * c).sum(axis=1)
        i = int(np.flatnonzero(weight >= (1 - PIVOT_RTOL) * weight.max())[0])
        q = c[i] / math.sqrt(weight[i])
        u = c @ q
        out[:, j] = u
        c -= np.outer(u, q)
    return out


def pin_eigenbasis(values: np.ndarray, vectors: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Ascending eigenpairs with every eigenspace (eigenvalues chained within tol) replaced by its `canonical_basis`
    and its eigenvalues by their mean. A space cut off at the end of `values` is pinned only as far as it goes."""
    order = np.argsort(values, kind="stable")
    w, v = np.array(values, np.float64)[order], np.array(vectors, np.float64)[:, order]
    bounds = np.flatnonzero(np.concatenate([[True], np.diff(w) > tol, [True]]))
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        v[:, lo:hi] = canonical_basis(v[:, lo:hi])
        w[lo:hi] = w[lo:hi].mean()
    return w, v


def _eigen_tol(graph: Graph) -> float:
    """DEGENERACY_TOL times a bound on the Laplacian's norm (twice the largest degree)."""
    return DEGENERACY_TOL * max(1.0, 2.0 * float(graph.degrees().max(initial=0)))


def _complete_spaces(solve, k: int, limit: int, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """solve(m) -> the m lowest eigenpairs, for m = k + 8, k + 16, k + 32, ... (at most `limit`) until the eigenspace
    of the k-th eigenvalue ends before the last pair computed; returns those pairs pinned (`pin_eigenbasis`), cut
    to k."""
    extra = 8
    while True:
        m = min(limit, k + extra)
        w, v = pin_eigenbasis(*solve(m), tol)
        if m >= limit or w[-1] - w[k - 1] > tol:
            return w[:k], v[:, :k]
        extra *= 2


def eigen_method(graph: Graph, method: str = "auto") -> str:
    """The method `laplacian_eigenmodes` runs for `method`: auto is lattice for a square lattice (periodic or open),
    else dense up to DENSE_EIGH_MAX_NODES nodes and sparse beyond."""
    if method not in EIGEN_METHODS:
        raise ValueError(f"unknown eigen method {method!r}; choose one of {EIGEN_METHODS}")
    if method != "auto":
        return method
    if graph.is_lattice:
        return "lattice"
    return "dense" if graph.n <= DENSE_EIGH_MAX_NODES else "sparse"


def laplacian_eigenmodes(graph: Graph, k: int, method: str = "auto", dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest eigenpairs of L = D - A: (eigenvalues [k] ascending, eigenvectors [n, k] orthonormal columns),
    computed in float64 on the host and returned in `dtype`, in a pinned basis, so that they do not depend on the
    BLAS thread count, the number of devices or the LAPACK build.

    lattice: the closed form of a square lattice (`lattice_eigenmodes`; its docstring states the order and basis
    inside each degenerate eigenspace), any size; no solver, the same bits everywhere.
    dense: scipy.linalg.eigh of the dense Laplacian in float64 (the lowest k + 8 or more pairs, enough to hold the
    whole eigenspace of the k-th eigenvalue), then `pin_eigenbasis`: every eigenspace in its `canonical_basis`.
    Solvers differ only by rounding in the last float64 bits, which a float32 result hides.
    sparse: scipy.sparse.linalg.eigsh in float64 with shift-invert just below 0 (large n, any graph), pinned the same.
    auto: `eigen_method` (lattice for square lattices, dense up to DENSE_EIGH_MAX_NODES nodes, sparse beyond).

    The original ran torch.linalg.eigh in float32, whose basis inside a degenerate eigenspace is whatever the solver
    returns (with jnp.linalg.eigh in float32 it changed with OPENBLAS_NUM_THREADS, and so did which initial patterns
    overflow); the closed form is as valid a basis and is the one pinned here for lattices.
    """
    if not 1 <= k <= graph.n:
        raise ValueError(f"need 1 <= modes <= nodes, got modes={k} for a graph of {graph.n} nodes")
    method = eigen_method(graph, method)
    if method == "lattice":
        if not graph.is_lattice:
            raise ValueError("eigen method 'lattice' needs a square lattice graph")
        w, v = lattice_eigenmodes(graph.side, k, graph.periodic)
        return w.astype(dtype), v.astype(dtype)
    tol = _eigen_tol(graph)
    if method == "sparse" and k + 8 <= graph.n - 2:  # ARPACK needs fewer than n - 1 pairs; small graphs go dense
        from scipy.sparse.linalg import eigsh

        lap = laplacian_sparse(graph)
        v0 = np.ones(graph.n) / math.sqrt(graph.n)
        w, v = _complete_spaces(lambda m: eigsh(lap, k=m, sigma=-1e-3, which="LM", v0=v0), k, graph.n - 2, tol)
        return w.astype(dtype), v.astype(dtype)
    import scipy.linalg

    lap = laplacian_dense(graph, np.float64)
    n = graph.n
    w, v = _complete_spaces(lambda m: scipy.linalg.eigh(lap, subset_by_index=None if m >= n else [0, m - 1]),
                            k, n, tol)
    return w.astype(dtype), v.astype(dtype)


def layout_positions(graph: Graph, eigenvectors: np.ndarray | None = None) -> np.ndarray:
    """Node coordinates: the graph's own (lattices), else a spectral layout, the eigenvectors of the 2nd and 3rd
    smallest Laplacian eigenvalues, each scaled to [0, sqrt(n)] so distances are on a lattice's scale."""
    if graph.positions is not None:
        return np.asarray(graph.positions, np.float64)
    if eigenvectors is None or eigenvectors.shape[1] < 3:
        _, eigenvectors = laplacian_eigenmodes(graph, min(3, graph.n), "dense", np.float64)
    xy = np.asarray(eigenvectors[:, 1:3], np.float64)
    span = xy.max(axis=0) - xy.min(axis=0)
    return (xy - xy.min(axis=0)) / np.where(span > 0, span, 1) * math.sqrt(graph.n)
