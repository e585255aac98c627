"""Graphs for the oscillator field: lattices, small-world, scale-free and modular graphs, node removal, the tables
the dynamics read, Laplacians and their eigenmodes.

Graphs are built once on the host (numpy; building a Barabási–Albert graph is sequential by nature) and handed to
the jitted dynamics as arrays: a padded neighbour table [N, max_degree] + weights for any graph, a roll stencil for
square lattices, dense or sparse Laplacians. Laplacian eigenmodes come in a pinned basis (`laplacian_eigenmodes`):
the closed-form Fourier modes of a square lattice in a stated order, or for other graphs float64 eigh (scipy, dense)
or eigsh (sparse, shift-invert) on the host with every eigenspace in a canonical basis.

Node numbering of a square lattice follows the original experiment: node i*side + j sits in row i, column j at the
position (x, y) = (j, i) (numpy's meshgrid), with 4 neighbours (i±1, j), (i, j±1), wrapped when periodic.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

KINDS = ("lattice", "small_world", "scale_free", "modular")
REMOVAL_STRATEGIES = ("random", "highest_degree", "lowest_degree")
EIGEN_METHODS = ("auto", "dense", "sparse", "lattice")
DENSE_EIGH_MAX_NODES = 5000  # auto, graphs other than lattices: dense float64 eigh up to here, sparse eigsh beyond


@dataclasses.dataclass(frozen=True, eq=False)
class Graph:
    """An undirected simple graph on nodes 0..n-1.

    edges: [E, 2] int64 with edges[:, 0] < edges[:, 1], sorted, unique. positions: [n, 2] float coordinates (grid
    coordinates for lattices, a spectral layout otherwise, see `layout_positions`) or None. side/periodic describe a
    square lattice (side = 0 otherwise); node_ids maps each node to its id in the graph it was cut from.
    """

    kind: str
    n: int
    edges: np.ndarray
    positions: np.ndarray | None = None
    side: int = 0
    periodic: bool = False
    node_ids: np.ndarray | None = None

    @property
    def is_lattice(self) -> bool:
        return self.side > 0 and self.n == self.side * self.side

    def degrees(self) -> np.ndarray:
        return np.bincount(self.edges.ravel(), minlength=self.n).astype(np.int64)


def _canonical_edges(pairs, n: int) -> np.ndarray:
    """Unique undirected edges (i < j, no self loops), sorted, as [E, 2] int64."""
    e = np.asarray(pairs, np.int64).reshape(-1, 2)
    e = e[e[:, 0] != e[:, 1]]
    e = np.sort(e, axis=1)
    if len(e) == 0:
        return np.zeros((0, 2), np.int64)
    key = np.unique(e[:, 0] * n + e[:, 1])
    return np.stack([key // n, key % n], axis=1)


# -- generators ------------------------------------------------------------------------------------------------

def lattice_side(nodes: int) -> int:
    """The original's side for a requested node count: floor(sqrt(nodes)) (1000 -> 31, 2500 -> 50, 5000 -> 70)."""
    return math.isqrt(int(nodes))


def square_lattice(side: int, periodic: bool = True) -> Graph:
    """4-neighbour square lattice of side x side nodes (periodic: a torus). Periodic needs side >= 3 (at side 2 the
    two wrapped neighbours coincide and the original's sparse sum would double the edge)."""
    if side < 2 or (periodic and side < 3):
        raise ValueError(f"a {'periodic ' if periodic else ''}lattice needs side >= {3 if periodic else 2}, got {side}")
    i, j = np.divmod(np.arange(side * side), side)
    pairs = []
    for di, dj in ((1, 0), (0, 1)):  # each undirected edge once: to the row below and the column to the right
        ni, nj = i + di, j + dj
        if periodic:
            ni, nj = ni % side, nj % side
            keep = np.ones_like(ni, bool)
        else:
            keep = (ni < side) & (nj < side)
        pairs.append(np.stack([(i * side + j)[keep], (ni * side + nj)[keep]], axis=1))
    positions = np.stack([j, i], axis=1).astype(np.float64)  # (x, y) = (column, row), as np.meshgrid
    return Graph("lattice", side * side, _canonical_edges(np.concatenate(pairs), side * side), positions, side,
                 periodic, np.arange(side * side))


def watts_strogatz(n: int, k: int, p: float, seed: int) -> Graph:
    """Watts–Strogatz small world (networkx's algorithm): a ring where each node links to its k/2 nearest neighbours
    on each side, then each edge (u, u+j) is rewired with probability p to (u, w), w uniform among nodes that are
    neither u nor already linked to u."""
    if k % 2 or not 0 < k < n:
        raise ValueError(f"small_world needs an even k with 0 < k < n, got k={k}, n={n}")
    rng = np.random.default_rng(seed)
    adj = [set() for _ in range(n)]
    for u in range(n):
        for j in range(1, k // 2 + 1):
            v = (u + j) % n
            adj[u].add(v)
            adj[v].add(u)
    for j in range(1, k // 2 + 1):  # networkx order: all nodes for offset 1, then offset 2, ...
        for u in range(n):
            v = (u + j) % n
            if rng.random() < p and v in adj[u] and len(adj[u]) < n - 1:
                w = int(rng.integers(n))
                while w == u or w in adj[u]:
                    w = int(rng.integers(n))
                adj[u].discard(v)
                adj[v].discard(u)
                adj[u].add(w)
                adj[w].add(u)
    pairs = [(u, v) for u in range(n) for v in adj[u] if u < v]
    return Graph("small_world", n, _canonical_edges(pairs, n), node_ids=np.arange(n))


def barabasi_albert(n: int, m: int, seed: int) -> Graph:
    """Barabási–Albert preferential attachment (networkx's algorithm): a star on m+1 nodes, then each new node links
    to m distinct existing nodes drawn with probability proportional to their degree."""
    if not 1 <= m < n:
        raise ValueError(f"scale_free needs 1 <= m < n, got m={m}, n={n}")
    rng = np.random.default_rng(seed)
    pairs = [(0, v) for v in range(1, m + 1)]
    repeated = [0] * m + list(range(1, m + 1))  # each node listed once per incident edge end
    for source in range(m + 1, n):
        targets: set[int] = set()
        while len(targets) < m:
            targets.add(repeated[int(rng.integers(len(repeated)))])
        for t in targets:
            pairs.append((source, t))
        repeated.extend(targets)
        repeated.extend([source] * m)
    return Graph("scale_free", n, _canonical_edges(pairs, n), node_ids=np.arange(n))


def modular(n: int, modules: int, p_in: float, p_out: float, seed: int) -> Graph:
    """Modules of n // modules consecutive nodes (the last takes the rest); each pair inside a module is linked with
    probability p_in, across modules with p_out; then consecutive connected components are joined by one edge
    between their smallest nodes (the original generate_modular)."""
    if not 1 <= modules <= n:
        raise ValueError(f"modular needs 1 <= modules <= n, got modules={modules}, n={n}")
    rng = np.random.default_rng(seed)
    size = n // modules
    module = np.minimum(np.arange(n) // max(size, 1), modules - 1)
    iu, ju = np.triu_indices(n, k=1)
    prob = np.where(module[iu] == module[ju], p_in, p_out)
    keep = rng.random(len(iu)) < prob
    edges = _canonical_edges(np.stack([iu[keep], ju[keep]], axis=1), n)
    labels = component_labels(n, edges)
    firsts = [int(np.flatnonzero(labels == c)[0]) for c in range(labels.max() + 1)]
    bridges = [(firsts[c], firsts[c + 1]) for c in range(len(firsts) - 1)]
    edges = _canonical_edges(np.concatenate([edges, np.asarray(bridges, np.int64).reshape(-1, 2)]), n)
    return Graph("modular", n, edges, node_ids=np.arange(n))


def build_graph(kind: str, nodes: int, *, periodic: bool = True, ws_k: int = 6, ws_p: float = 0.1, ba_m: int = 3,
                modules: int = 4, p_in: float = 0.3, p_out: float = 0.01, seed: int = 0) -> Graph:
    """One of KINDS with `nodes` nodes (lattices: side floor(sqrt(nodes)))."""
    if kind == "lattice":
        return square_lattice(lattice_side(nodes), periodic)
    if kind == "small_world":
        return watts_strogatz(nodes, ws_k, ws_p, seed)
    if kind == "scale_free":
        return barabasi_albert(nodes, ba_m, seed)
    if kind == "modular":
        return modular(nodes, modules, p_in, p_out, seed)
    raise ValueError(f"unknown graph kind {kind!r}; choose one of {KINDS}")


# -- structure: components, removal ----------------------------------------------------------------------------

def sparse_adjacency(n: int, edges: np.ndarray, dtype=np.float64):
    import scipy.sparse as sp

    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    return sp.csr_matrix((np.ones(len(rows), dtype), (rows, cols)), shape=(n, n))


def component_labels(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected-component label per node (scipy.sparse.csgraph), labels in order of each component's first node."""
    from scipy.sparse.csgraph import connected_components

    _, labels = connected_components(sparse_adjacency(n, edges), directed=False)
    return labels


def subgraph(graph: Graph, keep: np.ndarray) -> Graph:
    """The graph induced on the nodes where `keep` is True, renumbered 0..n'-1 in their old order."""
    keep = np.asarray(keep, bool)
    new_id = np.full(graph.n, -1, np.int64)
    new_id[keep] = np.arange(int(keep.sum()))
    e = new_id[graph.edges]
    e = e[(e >= 0).all(axis=1)]
    old_ids = graph.node_ids if graph.node_ids is not None else np.arange(graph.n)
    pos = graph.positions[keep] if graph.positions is not None else None
    full = bool(keep.all())
    return Graph(graph.kind, int(keep.sum()), _canonical_edges(e, int(keep.sum())), pos, graph.side if full else 0,
                 graph.periodic and full, old_ids[keep])


def removal_order(graph: Graph, strategy: str, seed: int = 0) -> np.ndarray:
    """Nodes in the order they are removed: random (a seeded permutation), highest_degree / lowest_degree (by degree,
    ties broken by the lower node id, as a stable sort of the original's centrality ranking)."""
    deg = graph.degrees()
    if strategy == "random":
        return np.random.default_rng(seed).permutation(graph.n)
    if strategy == "highest_degree":
        return np.argsort(-deg, kind="stable")
    if strategy == "lowest_degree":
        return np.argsort(deg, kind="stable")
    raise ValueError(f"unknown removal strategy {strategy!r}; choose one of {REMOVAL_STRATEGIES}")


def remove_nodes(graph: Graph, fraction: float, strategy: str, seed: int = 0) -> Graph:
    """The graph without the first int(n * fraction) nodes of `removal_order` (the original's int(N * pct / 100))."""
    n_remove = int(graph.n * fraction)
    keep = np.ones(graph.n, bool)
    keep[removal_order(graph, strategy, seed)[:n_remove]] = False
    return subgraph(graph, keep)


def largest_component(graph: Graph) -> Graph:
    """The largest connected component (the lowest-labelled one among equals)."""
    labels = component_labels(graph.n, graph.edges)
    return subgraph(graph, labels == np.argmax(np.bincount(labels)))


# -- tables the dynamics read -----------------------------------------------------------------------------------

def neighbour_table(graph: Graph, dtype=np.float32, pad_nodes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(neighbours [n, D] int32, weights [n, D]) with D = the largest degree (at least 1): row i lists i's neighbours
    with weight 1, padded with index i and weight 0, so that sum_j A_ij f_j = sum_d weights[i, d] f[neighbours[i, d]].
    pad_nodes appends isolated nodes (rows of zero weights)."""
    deg = graph.degrees()
    d_max = max(int(deg.max(initial=0)), 1)
    rows = max(graph.n, pad_nodes or 0)
    src = np.concatenate([graph.edges[:, 0], graph.edges[:, 1]])
    dst = np.concatenate([graph.edges[:, 1], graph.edges[:, 0]])
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    starts = np.concatenate([[0], np.cumsum(deg)[:-1]])
    slot = np.arange(len(src)) - starts[src]
    neighbours = np.repeat(np.arange(rows, dtype=np.int32)[:, None], d_max, axis=1)
    weights = np.zeros((rows, d_max), dtype)
    neighbours[src, slot] = dst
    weights[src, slot] = 1
    return neighbours, weights


def adjacency_dense(graph: Graph, dtype=np.float32) -> np.ndarray:
    a = np.zeros((graph.n, graph.n), dtype)
    a[graph.edges[:, 0], graph.edges[:, 1]] = 1
    a[graph.edges[:, 1], graph.edges[:, 0]] = 1
    return a


def laplacian_dense(graph: Graph, dtype=np.float32) -> np.ndarray:
    """L = D - A as a dense [n, n] array."""
    a = adjacency_dense(graph, dtype)
    return np.diag(a.sum(axis=1)) - a


def laplacian_sparse(graph: Graph):
    """L = D - A as a scipy CSR matrix (float64)."""
    import scipy.sparse as sp

    a = sparse_adjacency(graph.n, graph.edges)
    return (sp.diags(np.asarray(a.sum(axis=1)).ravel()) - a).tocsr()


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


# -- geometry ---------------------------------------------------------------------------------------------------

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


def mean_pairwise_distance(positions: np.ndarray, chunk: int = 2048) -> float:
    """Mean of the full [n, n] Euclidean distance matrix, diagonal zeros included (the original's
    torch.mean(torch.cdist(positions, positions))). Integer grids use the closed form over coordinate offsets."""
    p = np.asarray(positions, np.float64)
    n = len(p)
    if np.array_equal(p, np.round(p)) and n == len(np.unique(p, axis=0)):
        xs, ys = np.unique(p[:, 0]), np.unique(p[:, 1])
        if len(xs) * len(ys) == n:  # a full rectangular grid: count pairs per offset (dx, dy)
            cx = np.correlate(np.isin(np.arange(xs.min(), xs.max() + 1), xs).astype(float),
                              np.isin(np.arange(xs.min(), xs.max() + 1), xs).astype(float), "full")
            cy = np.correlate(np.isin(np.arange(ys.min(), ys.max() + 1), ys).astype(float),
                              np.isin(np.arange(ys.min(), ys.max() + 1), ys).astype(float), "full")
            dx = np.arange(len(cx)) - (len(cx) - 1) / 2
            dy = np.arange(len(cy)) - (len(cy) - 1) / 2
            return float((cx[:, None] * cy[None, :] * np.hypot(dx[:, None], dy[None, :])).sum() / n**2)
    total = 0.0
    for start in range(0, n, chunk):
        d = p[start:start + chunk, None, :] - p[None, :, :]
        total += np.sqrt((d**2).sum(-1)).sum()
    return total / n**2
