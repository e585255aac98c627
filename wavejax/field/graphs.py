"""Graphs for the oscillator field: lattices, small-world, scale-free and modular graphs, node removal, the tables
the dynamics read and Laplacians.

Graphs are built once on the host (numpy; building a Barabási–Albert graph is sequential by nature) and handed to
the jitted dynamics as arrays: a padded neighbour table [N, max_degree] + weights for any graph, a roll stencil for
square lattices, dense or sparse Laplacians. Their eigenmodes, in a pinned basis: wavejax/field/eigenmodes.py.

Node numbering of a square lattice follows the original experiment: node i*side + j sits in row i, column j at the
position (x, y) = (j, i) (numpy's meshgrid), with 4 neighbours (i±1, j), (i, j±1), wrapped when periodic.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from wavejax.ops import oscillators as D

KINDS = ("lattice", "small_world", "scale_free", "modular")
REMOVAL_STRATEGIES = ("random", "highest_degree", "lowest_degree")


@dataclasses.dataclass(frozen=True, eq=False)
class Graph:
    """An undirected simple graph on nodes 0..n-1.

    edges: [E, 2] int64 with edges[:, 0] < edges[:, 1], sorted, unique. positions: [n, 2] float coordinates (grid
    coordinates for lattices, a spectral layout otherwise, see `eigenmodes.layout_positions`) or None. side/periodic describe a
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


# -- geometry ---------------------------------------------------------------------------------------------------


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


def graph_coupling(graph, dtype=np.float32, stencil: bool = True, pad_nodes: int | None = None,
                   width: int | None = None, pad_hubs: int | None = None, pad_hub_width: int | None = None):
    """The coupling of a wavejax.field.graphs.Graph: the roll stencil for an uncut square lattice (stencil=True),
    else the two-tier neighbour table (first tier `width`, default table_width). pad_nodes appends isolated nodes,
    pad_hubs / pad_hub_width enlarge the hub tier with zero weights, so that graphs of different sizes share one
    compiled program."""
    deg = graph.degrees()
    rows = max(graph.n, pad_nodes or 0)
    inv = np.pad(np.where(deg > 0, 1.0 / np.maximum(deg, 1), 0.0), (0, rows - graph.n)).astype(dtype)
    uncut = graph.node_ids is not None and np.array_equal(graph.node_ids, np.arange(graph.n))
    if stencil and graph.is_lattice and uncut and rows == graph.n:
        return D.LatticeCoupling(jnp.asarray(inv), graph.side, graph.periodic)
    nbr, w = neighbour_table(graph, dtype, pad_nodes)
    return _tiered(nbr, w, deg, inv, dtype, width, pad_hubs, pad_hub_width)


def _tiered(nbr, w, deg, inv, dtype, width=None, pad_hubs=None, pad_hub_width=None):
    """D.TableCoupling from a full neighbour table nbr/w [rows, D]: the first `width` columns (default table_width)
    for every row, the rest for the rows with more neighbours (hubs) only."""
    width = min(width or D.table_width(deg), nbr.shape[1])
    hubs = np.flatnonzero(deg > width)
    hub_width = max(nbr.shape[1] - width, pad_hub_width or 0)
    n_hubs = max(len(hubs), pad_hubs or 0)
    hub_n = np.zeros((n_hubs, hub_width), np.int32)
    hub_w = np.zeros((n_hubs, hub_width), dtype)
    hub_n[: len(hubs), : nbr.shape[1] - width] = nbr[hubs, width:]
    hub_w[: len(hubs), : nbr.shape[1] - width] = w[hubs, width:]
    hub_rows = np.concatenate([hubs, np.zeros(n_hubs - len(hubs), np.int64)]).astype(np.int32)  # padding adds 0
    return D.TableCoupling(jnp.asarray(nbr[:, :width]), jnp.asarray(w[:, :width]), jnp.asarray(inv),
                         jnp.asarray(hub_rows), jnp.asarray(hub_n), jnp.asarray(hub_w))


def weighted_coupling(adjacency, normalize: str = "in_degree", dtype=np.float32):
    """D.TableCoupling of a directed, weighted adjacency (dense array or scipy sparse matrix; A[i, j] = the weight of
    the edge j -> i; explicit zeros are no edge). Row i lists its in-neighbours j with weights A_ij; the
    normalisation n_i is 1/(number of in-edges) ("in_degree"), 1/Σ_j A_ij ("in_weight") or 1/N ("n"), and 0 for
    a node with no in-edges (it then turns at its own frequency; the pairwise form 0/0 would be NaN)."""
    import scipy.sparse as sp

    a = sp.csr_matrix(adjacency, dtype=np.float64)
    a.eliminate_zeros()
    a.sort_indices()
    n = a.shape[0]
    if a.shape != (n, n):
        raise ValueError(f"the adjacency must be square, got shape {a.shape}")
    deg = np.diff(a.indptr).astype(np.int64)
    if normalize == "in_degree":
        total = deg.astype(np.float64)
    elif normalize == "in_weight":
        total = np.asarray(a.sum(axis=1)).ravel()
    elif normalize == "n":
        total = np.where(deg > 0, float(n), 0.0)
    else:
        raise ValueError(f"unknown normalisation {normalize!r}; choose in_degree, in_weight or n")
    inv = np.where(total != 0, 1.0 / np.where(total != 0, total, 1.0), 0.0).astype(dtype)
    d_max = max(int(deg.max(initial=0)), 1)
    rows = np.repeat(np.arange(n), deg)
    slot = np.arange(a.nnz) - np.repeat(a.indptr[:-1], deg)
    nbr = np.repeat(np.arange(n, dtype=np.int32)[:, None], d_max, axis=1)
    w = np.zeros((n, d_max), dtype)
    nbr[rows, slot] = a.indices
    w[rows, slot] = a.data
    return _tiered(nbr, w, deg, inv, dtype)
