"""wavejax/field/graphs.py: lattice spectra against their closed forms, the original's node numbering, the three
eigensolver paths and the basis they pin (independent of the solver, the input basis and the BLAS thread count),
random-graph generators, node removal and the neighbour tables the dynamics read."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from wavejax.field import eigenmodes as EM
from wavejax.field import graphs as G
from wavejax.field import reference as R


@pytest.mark.parametrize("side", [5, 6])
def test_periodic_lattice_spectrum_matches_closed_form(side):
    """eigh of L = D - A equals 4 - 2cos(2πa/n) - 2cos(2πb/n) over all (a, b)."""
    lam = np.linalg.eigvalsh(G.laplacian_dense(G.square_lattice(side, periodic=True), np.float64))
    a, b = np.meshgrid(np.arange(side), np.arange(side))
    closed = np.sort((4 - 2 * np.cos(2 * np.pi * a / side) - 2 * np.cos(2 * np.pi * b / side)).ravel())
    np.testing.assert_allclose(lam, closed, atol=1e-12)
    np.testing.assert_allclose(EM.lattice_spectrum(side, True), closed, atol=1e-12)
    # the dense solver path (float64 eigh on the host, returned in float32)
    w, _ = EM.laplacian_eigenmodes(G.square_lattice(side), side * side, "dense")
    np.testing.assert_allclose(w, closed, atol=2e-5)


def test_open_lattice_spectrum_matches_closed_form():
    side = 5
    lam = np.linalg.eigvalsh(G.laplacian_dense(G.square_lattice(side, periodic=False), np.float64))
    a, b = np.meshgrid(np.arange(side), np.arange(side))
    closed = np.sort((4 - 2 * np.cos(np.pi * a / side) - 2 * np.cos(np.pi * b / side)).ravel())
    np.testing.assert_allclose(lam, closed, atol=1e-12)


@pytest.mark.parametrize("side,periodic,k", [(6, True, 20), (7, True, 49), (5, False, 12)])
def test_closed_form_modes_are_orthonormal_eigenvectors(side, periodic, k):
    graph = G.square_lattice(side, periodic)
    lam, psi = EM.lattice_eigenmodes(side, k, periodic)
    lap = G.laplacian_dense(graph, np.float64)
    np.testing.assert_allclose(lap @ psi, psi * lam, atol=1e-12)
    np.testing.assert_allclose(psi.T @ psi, np.eye(k), atol=1e-12)
    np.testing.assert_allclose(lam, np.linalg.eigvalsh(lap)[:k], atol=1e-12)  # the k smallest, ascending


def _original_lattice_adjacency(side: int) -> np.ndarray:
    """exp_gpu_massive.py's create_lattice_laplacian_gpu loop (periodic), transcribed: a dense adjacency."""
    adj = np.zeros((side * side, side * side))
    for i in range(side):
        for j in range(side):
            node = i * side + j
            for ni, nj in (((i + 1) % side, j), ((i - 1) % side, j), (i, (j + 1) % side), (i, (j - 1) % side)):
                if ni * side + nj != node:
                    adj[node, ni * side + nj] += 1  # the sparse COO -> dense sum
    return adj


def test_lattice_numbering_and_positions_follow_the_original():
    side = 5
    graph = G.square_lattice(side)
    np.testing.assert_array_equal(G.adjacency_dense(graph, np.float64), _original_lattice_adjacency(side))
    xx, yy = np.meshgrid(np.arange(side), np.arange(side))  # the original's positions
    np.testing.assert_array_equal(graph.positions, np.column_stack([xx.ravel(), yy.ravel()]))
    assert graph.degrees().tolist() == [4] * 25 and len(graph.edges) == 50
    open_graph = G.square_lattice(4, periodic=False)
    assert sorted(open_graph.degrees().tolist()) == [2] * 4 + [3] * 8 + [4] * 4
    assert G.lattice_side(1000) == 31 and G.lattice_side(2500) == 50 and G.lattice_side(5000) == 70
    with pytest.raises(ValueError, match="side >= 3"):
        G.square_lattice(2, periodic=True)


def test_sparse_and_lattice_eigensolvers_match_dense():
    ws = G.watts_strogatz(80, 4, 0.2, seed=1)
    w_dense, _ = EM.laplacian_eigenmodes(ws, 10, "dense", np.float64)
    w_sparse, v_sparse = EM.laplacian_eigenmodes(ws, 10, "sparse", np.float64)
    np.testing.assert_allclose(w_sparse, w_dense, atol=1e-6)
    lap = G.laplacian_dense(ws, np.float64)
    np.testing.assert_allclose(lap @ v_sparse, v_sparse * w_sparse, atol=1e-6)
    lattice = G.square_lattice(10)
    w_closed, _ = EM.laplacian_eigenmodes(lattice, 30, "lattice", np.float64)
    np.testing.assert_allclose(w_closed, EM.laplacian_eigenmodes(lattice, 30, "sparse", np.float64)[0], atol=1e-6)
    with pytest.raises(ValueError, match="needs a square lattice"):
        EM.laplacian_eigenmodes(ws, 5, "lattice")
    with pytest.raises(ValueError, match="1 <= modes <= nodes"):
        EM.laplacian_eigenmodes(ws, 81)


def _documented_lattice_basis(side: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The periodic lattice's modes restated from lattice_eigenmodes' docstring: products (row mode r) x (column mode c)
    of the 1-D modes 1, cos 1, sin 1, cos 2, sin 2, ..., ordered by eigenvalue, then r, then c (side odd here)."""
    x = np.arange(side)
    one_d = [(0, np.ones(side))]
    for p in range(1, (side + 1) // 2):
        one_d += [(p, np.cos(2 * np.pi * p * x / side)), (p, np.sin(2 * np.pi * p * x / side))]
    rows = []
    for r, (fr, ur) in enumerate(one_d):
        for c, (fc, uc) in enumerate(one_d):
            lam = 4 - 2 * np.cos(2 * np.pi * fr / side) - 2 * np.cos(2 * np.pi * fc / side)
            rows.append((round(lam, 9), r, c, lam, np.outer(ur, uc).ravel()))  # node i*side + j: row i, column j
    rows.sort(key=lambda t: t[:3])
    vecs = np.stack([t[4] / np.linalg.norm(t[4]) for t in rows[:k]], axis=1)
    return np.array([t[3] for t in rows[:k]]), vecs


def test_auto_modes_of_the_small_lattice_are_the_pinned_closed_form():
    """The small config's 31 x 31 periodic lattice: auto runs no solver and returns exactly the closed form, whose
    order and basis inside each degenerate eigenspace are the documented ones."""
    graph = G.square_lattice(31)
    assert EM.eigen_method(graph) == "lattice" and EM.eigen_method(G.square_lattice(5, periodic=False)) == "lattice"
    lam, psi = EM.laplacian_eigenmodes(graph, 200)
    closed_lam, closed_psi = EM.lattice_eigenmodes(31, 200)
    assert lam.dtype == psi.dtype == np.float32
    np.testing.assert_array_equal(lam, closed_lam.astype(np.float32))
    np.testing.assert_array_equal(psi, closed_psi.astype(np.float32))
    doc_lam, doc_psi = _documented_lattice_basis(31, 200)
    np.testing.assert_allclose(closed_lam, doc_lam, atol=1e-12)
    np.testing.assert_allclose(closed_psi, doc_psi, atol=1e-12)
    # modes 1-4 (eigenvalue 2 - 2cos(2π/31)): 1 x cos 1, 1 x sin 1, cos 1 x 1, sin 1 x 1 (row mode x column mode)
    i, j = np.divmod(np.arange(961), 31)
    unit = np.sqrt(2 / 961)
    for mode, expected in zip(psi.T[1:5], (np.cos(2 * np.pi * j / 31), np.sin(2 * np.pi * j / 31),
                                           np.cos(2 * np.pi * i / 31), np.sin(2 * np.pi * i / 31))):
        np.testing.assert_allclose(mode, unit * expected, atol=1e-7)
    first_nonzero = psi[np.argmax(np.abs(psi) > 1e-6, axis=0), np.arange(200)]
    assert (first_nonzero > 0).all()


def _rotate_within_eigenspaces(w, v, seed):
    """The same eigenspaces in another basis: a random orthogonal matrix (signs included) inside each one."""
    rng = np.random.default_rng(seed)
    out = v.copy()
    bounds = np.flatnonzero(np.concatenate([[True], np.diff(w) > 1e-9, [True]]))
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        q, _ = np.linalg.qr(rng.standard_normal((hi - lo, hi - lo)))
        out[:, lo:hi] = v[:, lo:hi] @ q
    return out


def test_solver_bases_are_pinned_whatever_basis_the_solver_returns():
    """dense and sparse return every eigenspace in canonical_basis: a function of the space, so a rotated input
    basis, the dense solver and the sparse one all give the same vectors (k = 30 cuts an 8-fold eigenspace of the
    10 x 10 lattice: the whole space is pinned before the cut)."""
    lattice = G.square_lattice(10)
    w, v = np.linalg.eigh(G.laplacian_dense(lattice, np.float64))
    w_pin, v_pin = EM.pin_eigenbasis(w, v, 1e-9)
    for seed in range(3):
        w_rot, v_rot = EM.pin_eigenbasis(w, _rotate_within_eigenspaces(w, v, seed), 1e-9)
        np.testing.assert_allclose(v_rot, v_pin, atol=1e-12)
        np.testing.assert_allclose(w_rot, w_pin, atol=1e-12)
    lap = G.laplacian_dense(lattice, np.float64)
    np.testing.assert_allclose(lap @ v_pin, v_pin * w_pin, atol=1e-12)
    np.testing.assert_allclose(v_pin.T @ v_pin, np.eye(100), atol=1e-12)
    for method in ("dense", "sparse"):
        w_k, v_k = EM.laplacian_eigenmodes(lattice, 30, method, np.float64)
        np.testing.assert_allclose(v_k, v_pin[:, :30], atol=1e-10, err_msg=method)
        np.testing.assert_allclose(w_k, w_pin[:30], atol=1e-10, err_msg=method)
    # a graph without symmetry: only signs are free; the entry of largest magnitude is positive
    ba = G.barabasi_albert(200, 3, seed=0)
    assert EM.eigen_method(ba) == "dense"
    w_d, v_d = EM.laplacian_eigenmodes(ba, 20, "auto", np.float64)
    w_s, v_s = EM.laplacian_eigenmodes(ba, 20, "sparse", np.float64)
    np.testing.assert_allclose(v_s, v_d, atol=1e-9)
    assert (v_d[np.argmax(np.abs(v_d), axis=0), np.arange(20)] > 0).all()


THREADS_SCRIPT = """
import sys, numpy as np
from wavejax.field import eigenmodes as EM
from wavejax.field import graphs as G
lattice, ba = G.square_lattice(31), G.barabasi_albert(400, 3, seed=0)
np.savez(sys.argv[1], auto=EM.laplacian_eigenmodes(lattice, 200)[1],
         dense=EM.laplacian_eigenmodes(lattice, 200, "dense", np.float64)[1],
         ba=EM.laplacian_eigenmodes(ba, 50, "auto", np.float64)[1])
"""


def test_eigenmodes_do_not_depend_on_blas_threads(tmp_path):
    """The same modes with OPENBLAS_NUM_THREADS=1 and =2 (float32 eigh's basis inside the 31 x 31 lattice's degenerate
    eigenspaces changed with it): the lattice's auto modes bit for bit, the solver paths (float64, run on the lattice
    and on a scale-free graph) to rounding."""
    procs = {t: subprocess.Popen([sys.executable, "-c", THREADS_SCRIPT, str(tmp_path / f"t{t}.npz")],
                                 env=dict(os.environ, OPENBLAS_NUM_THREADS=str(t), OMP_NUM_THREADS=str(t)),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for t in (1, 2)}
    for proc in procs.values():
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    one, two = np.load(tmp_path / "t1.npz"), np.load(tmp_path / "t2.npz")
    np.testing.assert_array_equal(one["auto"], two["auto"])
    np.testing.assert_allclose(one["dense"], two["dense"], atol=1e-12)
    np.testing.assert_allclose(one["ba"], two["ba"], atol=1e-12)


def test_watts_strogatz_ring_rewiring_and_seeds():
    ring = G.watts_strogatz(30, 4, 0.0, seed=0)
    assert ring.degrees().tolist() == [4] * 30
    assert {(0, 1), (0, 2), (0, 28), (0, 29)} <= set(map(tuple, ring.edges.tolist()))
    a, b = G.watts_strogatz(60, 6, 0.3, seed=3), G.watts_strogatz(60, 6, 0.3, seed=3)
    np.testing.assert_array_equal(a.edges, b.edges)
    assert len(a.edges) == 60 * 3  # rewiring keeps the edge count
    assert (a.edges[:, 0] < a.edges[:, 1]).all() and len(np.unique(a.edges, axis=0)) == len(a.edges)
    assert not np.array_equal(a.edges, ring.edges)


def test_barabasi_albert_edges_and_hubs():
    n, m = 300, 3
    g = G.barabasi_albert(n, m, seed=0)
    assert len(g.edges) == m + (n - m - 1) * m  # the star, then m edges per new node
    deg = g.degrees()
    assert deg.min() >= 1 and deg[m + 1:].min() >= m
    assert deg.max() > 5 * m  # preferential attachment grows hubs
    np.testing.assert_array_equal(g.edges, G.barabasi_albert(n, m, seed=0).edges)


def test_modular_graph_is_connected_and_modular():
    g = G.modular(80, 4, 0.5, 0.02, seed=0)
    assert len(np.unique(G.component_labels(g.n, g.edges))) == 1
    module = np.minimum(np.arange(80) // 20, 3)
    inside = (module[g.edges[:, 0]] == module[g.edges[:, 1]]).mean()
    assert inside > 0.8


def test_node_removal_strategies():
    g = G.barabasi_albert(200, 2, seed=1)
    deg = g.degrees()
    hubs_cut = G.remove_nodes(g, 0.1, "highest_degree")
    assert hubs_cut.n == 180
    removed = np.setdiff1d(np.arange(200), hubs_cut.node_ids)
    assert deg[removed].min() >= deg[hubs_cut.node_ids].max()  # the 20 largest degrees went
    leaves_cut = G.remove_nodes(g, 0.1, "lowest_degree")
    removed = np.setdiff1d(np.arange(200), leaves_cut.node_ids)
    assert deg[removed].max() <= deg[leaves_cut.node_ids].min()
    r1, r2 = G.remove_nodes(g, 0.25, "random", seed=5), G.remove_nodes(g, 0.25, "random", seed=5)
    np.testing.assert_array_equal(r1.node_ids, r2.node_ids)
    assert r1.n == 150
    # edges survive only between kept nodes, renumbered
    kept = set(map(tuple, np.sort(r1.node_ids[r1.edges], axis=1).tolist()))
    assert kept == {e for e in map(tuple, g.edges.tolist()) if e[0] in set(r1.node_ids) and e[1] in set(r1.node_ids)}
    lcc = G.largest_component(hubs_cut)
    assert len(np.unique(G.component_labels(lcc.n, lcc.edges))) == 1 and lcc.n <= hubs_cut.n
    assert G.remove_nodes(g, 0.0, "highest_degree").n == 200


def test_neighbour_table_sums_equal_dense_adjacency():
    g = G.barabasi_albert(50, 2, seed=2)
    f = np.random.default_rng(0).standard_normal(50)
    nbr, w = G.neighbour_table(g, np.float64)
    np.testing.assert_allclose((w * f[nbr]).sum(1), G.adjacency_dense(g, np.float64) @ f, atol=1e-12)
    nbr_p, w_p = G.neighbour_table(g, np.float64, pad_nodes=60)
    fp = np.concatenate([f, np.ones(10)])
    assert nbr_p.shape == (60, nbr.shape[1])
    np.testing.assert_allclose((w_p * fp[nbr_p]).sum(1)[:50], G.adjacency_dense(g, np.float64) @ f, atol=1e-12)
    assert (w_p[50:] == 0).all()


def test_mean_pairwise_distance_closed_form_equals_bruteforce():
    grid = G.square_lattice(7).positions
    assert G.mean_pairwise_distance(grid) == pytest.approx(R.mean_distance_bruteforce(grid), rel=1e-12)
    pts = np.random.default_rng(0).uniform(0, 5, (40, 2))
    assert G.mean_pairwise_distance(pts, chunk=16) == pytest.approx(R.mean_distance_bruteforce(pts), rel=1e-12)


def test_spectral_layout_spans_a_root_n_square():
    g = G.barabasi_albert(64, 2, seed=0)
    pos = EM.layout_positions(g)
    assert pos.shape == (64, 2)
    np.testing.assert_allclose(pos.min(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(pos.max(axis=0), 8, atol=1e-12)
