"""wavejax's Kuramoto simulator against the public packages kuramoto 0.4.0 and jaxkuramoto 0.0.8, same equations.

    python -m experiments.benchmarks.bench_peers --results docs/results/bench_peers.json   # the issue's sizes
    python -m experiments.benchmarks.bench_peers --quick                                    # small sizes

The peers are the `peers` extra (pip install -e '.[peers]'); nothing is installed here: a peer that does not
import gets "not installed" rows and the wavejax rows still run.

The equations, from each peer's source (site-packages/<name>/; line numbers of 0.4.0 and 0.0.8):
  kuramoto (kuramoto/kuramoto.py): dθ_i/dt = ω_i + (K/k_i) Σ_j A_ji sin(θ_j - θ_i), A_ji the weight of the edge
    j -> i (node i sums its column, l. 60-63), k_i the number of nonzero A_ji (in-degree, not in-weight, l. 70-71);
    scipy odeint (LSODA) at its default rtol = atol = 1.49e-8, not settable (l. 74); output at linspace(0, T,
    int(T/dt)), spaced T/(int(T/dt) - 1), not dt. A node without in-edges gets K/0 = inf, inf·0 = NaN, and LSODA
    turns every phase NaN, so the ER graphs are redrawn (next seed) until none is isolated. Matched by
    network(A.T, normalize="in_degree") (wavejax's A[i, j] is the edge j -> i), the same K, RK4 at that spacing.
  jaxkuramoto (kuramoto.py l. 18-32, ode.py l. 24-66): all-to-all only, dθ_i/dt = ω_i + K(⟨sin θ⟩ cos θ_i -
    ⟨cos θ⟩ sin θ_i) = ω_i + (K/N) Σ_j sin(θ_j - θ_i); classic RK4 (solver.runge_kutta) in a fori_loop over
    arange(0, T, dt): len - 1 steps (it stops at T - dt), and observables[i] is the state's before step i ([0]
    and [1] are both θ0's). Matched by network(None, n=N) (also K/N), the same K, dt and step count; wavejax's
    record after step s is compared with observables[s + 1].
  So K needs no conversion. θ0 ~ U(0, 2π), ω ~ N(0, 1).

A. Correctness (float64): wavejax RK4, dopri5 (1e-10) and kuramoto against scipy DOP853 (1e-12) on an ER graph;
   RK4 against kuramoto and all-to-all against jaxkuramoto; each peer's rate function against wavejax's.
B. Speed: median of --repeats calls after an untimed compiling one, wavejax and the peer taking turns in one
   process, JAX sides jitted end to end (the peer's odeint too); ratio = peer s / wavejax s. ER: wavejax batches
   the runs, kuramoto loops in Python. All-to-all against jaxkuramoto: vmapped if jax.vmap takes its odeint (else
   looped; the table says which), final state only on both sides.
C. Features: wavejax's cells are checks run now (their notes say what they measured); the peers' come from their
   source (PEER_NOTES: file and line), a few confirmed by running them. x64 is on; every array has a dtype.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.integrate import solve_ivp

from experiments import common as C
from wavejax.field import simulate as S
from wavejax.field import theory as T
from wavejax.ops import oscillators as D

PEERS = {"kuramoto": "0.4.0", "jaxkuramoto": "0.0.8"}
NOT_INSTALLED = "not installed (pip install -e '.[peers]')"
FLAGS = {  # name: (type, full-size default, --quick default, help)
    "nodes": (int, 200, 40, "A: nodes of the ER graph and of the all-to-all run"),
    "degree": (float, 10.0, 6.0, "mean degree of the ER graphs: p = degree / (N - 1)"),
    "k": (float, 2.0, 2.0, "coupling strength K"),
    "time": (float, 10.0, 1.0, "integration time T"),
    "dt": (float, 0.01, 0.01, "RK4 step; kuramoto's output spacing is T / (int(T/dt) - 1)"),
    "trials": (int, 64, 4, "B1: runs on the ER graph"),
    "er_nodes": (int, 1000, 100, "B1: nodes of the ER graph"),
    "kuramoto_trials": (int, 0, 0, "B1: kuramoto runs timed, scaled to --trials (0: all)"),
    "a2a_nodes": (int, 10_000, 1000, "B2: oscillators of the single all-to-all run"),
    "a2a_trials": (int, 64, 4, "B3: all-to-all runs batched"),
    "a2a_trial_nodes": (int, 1000, 100, "B3: oscillators per run"),
    "record_every": (int, 10, 10, "B1: wavejax records θ and R every this many steps"),
    "repeats": (int, 3, 2, "timed calls per side"),
    "seed": (int, 0, 0, "ER graph (first seed without an isolated node from here) and draws"),
}
TOL = {"rk4_ref": (1e-6, 1e-7), "dopri5_ref": (1e-7, 1e-8), "rk4_kuramoto": (1e-5, 1e-6), "rhs": (1e-12, None),
       "rk4_jaxkuramoto": (1e-10, 1e-10)}  # (θ, R); the issue: RK4 at dt 0.01 is 1.7e-8 from DOP853 at T = 10
FEATURES = ("weighted adjacency", "directed graphs", "isolated nodes finite", "adaptive error-controlled integration",
            "SDE noise", "phase lag α", "mean-field theory (self-consistent R(K), Ott–Antonsen, K_c)",
            "frequency distributions (named, non-constant)", "user-written equation", "inertia (second order)",
            "time-varying coupling K(t)", "float64", "GPU/vmap trials")
_K, _J = "kuramoto/kuramoto.py", "jaxkuramoto/"
PEER_NOTES = dict(zip(FEATURES, (  # ((kuramoto ok, note), (jaxkuramoto ok, note)), from the files named
    ((True, f"{_K} l. 61: adj_mat * sin(...), weights used; l. 70: normalised by the edge count"),
     (False, f"{_J}kuramoto.py l. 5, 46: all-to-all only; NetworkKuramoto.vector_fn is a stub (l. 103-106)")),
    ((True, f"{_K} l. 63, 70: node i sums its column (incoming edges), k_i = in-degree"),
     (False, f"{_J}kuramoto.py: no network model (NetworkKuramoto is a stub)")),
    ((False, f"{_K} l. 71: K / 0 = inf, inf * 0 = NaN in derivative(); LSODA then makes every phase NaN"),
     (False, "no networks (all-to-all only), so no isolated nodes to handle")),
    ((True, f"{_K} l. 74: scipy odeint (LSODA), default rtol = atol = 1.49e-8, not settable"),
     (False, f"{_J}solver/ode_solver.py l. 11, 26: fixed-step euler and runge_kutta only")),
    ((False, "odeint only (deterministic)"), (False, f"{_J}solver/sde_solver.py is empty (0 bytes)")),
    ((False, f"{_K} l. 61: sin(angle_j - angle_i), no lag"),
     (True, f"{_J}kuramoto.py l. 46-77: SakaguchiKuramoto(omegas, K, alpha)")),
    ((False, "no theory module (the package is kuramoto.py and plotting.py)"),
     (True, f"{_J}theory/: orderparam (self-consistent r, self_consistent.py l. 49), critical_point "
            "(critical_point.py l. 3), OttAntonsen (ott_antonsen.py l. 8)")),
    ((True, f"1: {_K} l. 39: np.random.normal when natfreqs is omitted; any array can be passed"),
     (True, f"7: {_J}distribution/__init__.py: Normal, Cauchy, Uniform, GeneralNormal, GeneralCauchy, "
            "CauchyMultiply, FiniteDifferential; omegas is any array")),
    ((False, f"no API; {_K} l. 74 hands self.derivative to odeint, so a subclass could override it (undocumented)"),
     (True, f"{_J}ode.py l. 24: odeint(vector_fn, solver, t0, t1, dt, init_state) takes any vector_fn(t, x)")),
    ((False, "first order only"), (False, "first order only (a user vector_fn could stack (θ, v))")),
    ((False, f"{_K} l. 68-71: K / k_i computed once per integrate()"),
     (False, f"{_J}kuramoto.py l. 18-32: K is a constant attribute; vector_fn ignores t")),
    ((True, "numpy / scipy float64"), (True, "JAX: float64 with jax_enable_x64")),
    ((False, "numpy / scipy on the CPU; trials are a Python loop"),
     (True, "pure JAX: jax.vmap / jit over a wrapper of odeint (part B uses it)")),
)))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("--parts", default="correctness,speed,features", help="comma-separated: correctness,speed,features")
    p.add_argument("--quick", action="store_true", help="small sizes and T = 1 (the test's run)")
    quick = "--quick" in argv
    for name, (typ, full, small, text) in FLAGS.items():
        p.add_argument(f"--{name}", type=typ, default=small if quick else full, help=f"{text} ({full}; quick {small})")
    C.add_results_arg(p, "bench_peers")
    args = p.parse_args(argv)
    args.parts = {s.strip() for s in args.parts.split(",") if s.strip()}
    if not args.parts or args.parts - {"correctness", "speed", "features"}:
        C.fail(f"--parts takes correctness, speed, features (comma-separated), got {','.join(sorted(args.parts))}.")
    low = {n: 0 if n in ("kuramoto_trials", "seed") else 1 + n.endswith("nodes") for n in FLAGS if FLAGS[n][0] is int}
    for name in (n for n, v in low.items() if getattr(args, n) < v):
        C.fail(f"--{name} must be >= {low[name]}, got {getattr(args, name)}.")
    if not (args.dt > 0 and args.time >= 3 * args.dt and args.degree > 0 and math.isfinite(args.time + args.k)):
        C.fail(f"need dt > 0, T >= 3 dt, degree > 0 and finite K, got {args.dt}, {args.time}, {args.degree}, {args.k}.")
    return args


def load_peers():
    """{name: (module or None, version or the 'not installed' note)}."""
    out = {}
    for name, pinned in PEERS.items():
        try:
            mod, version = importlib.import_module(name), importlib.metadata.version(name)
            out[name] = (mod, version if version == pinned else f"{version} (the notes describe {pinned})")
        except ImportError:
            out[name] = (None, NOT_INSTALLED)
    return out


def er_graph(n: int, degree: float, seed: int):
    """(A, seed): a symmetric 0/1 Erdős–Rényi G(n, degree/(n-1)) adjacency, float64, from the first seed >= `seed`
    whose draw has no isolated node (kuramoto turns every phase NaN on one)."""
    for s in range(seed, seed + 1000):
        upper = np.triu(np.random.default_rng(s).random((n, n)) < min(1.0, degree / (n - 1)), 1)
        if (upper | upper.T).any(axis=1).all():
            return (upper | upper.T).astype(np.float64), s
    C.fail(f"no ER graph of {n} nodes and mean degree {degree} without isolated nodes in 1000 seeds; raise --degree.")


def draws(n: int, seed: int, lead=(), dtype=np.float64):
    """θ0 ~ U(0, 2π), ω ~ N(0, 1), shape lead + (n,)."""
    rng = np.random.default_rng(10_000 + seed)
    return rng.uniform(0, 2 * np.pi, lead + (n,)).astype(dtype), rng.standard_normal(lead + (n,)).astype(dtype)


def np_rhs(a, omega, k, theta, alpha=0.0, normalize="in_degree"):
    """The textbook pairwise form in numpy: ω_i + K n_i Σ_j a_ij sin(θ_j - θ_i - α), a_ij the edge j -> i, n_i =
    1/(number of in-edges) or 1/(in-weight), 0 without in-edges."""
    total = (a != 0).sum(axis=1) if normalize == "in_degree" else a.sum(axis=1)
    inv = np.where(total != 0, 1.0 / np.where(total != 0, total, 1), 0.0)
    return omega + k * inv * (a * np.sin(theta[None, :] - theta[:, None] - alpha)).sum(axis=1)


def compare(name, a=None, b=None, tol=None, r=True, note=""):
    """A part A row: max |Δθ| over the nodes of a[-1] and b[-1], max |ΔR| over all rows (r: True for R of a and b,
    a pair (Ra, Rb), or None). Without a: the peer is missing and `note` says so."""
    dth = dr = ok = None
    if a is not None:
        dth = float(np.max(np.abs(np.asarray(a)[-1] - np.asarray(b)[-1])))
        if r is not None:
            ra, rb = (np.abs(np.exp(1j * np.asarray(x)).mean(-1)) for x in (a, b)) if r is True else r
            dr = float(np.max(np.abs(np.asarray(ra) - np.asarray(rb))))
        ok = None if tol is None else bool(dth <= tol[0] and (dr is None or dr <= tol[1]))
    return {"comparison": name, "max_dtheta_T": dth, "max_dR": dr, "tol": tol, "ok": ok, "note": note}


def correctness_er(args, peer):
    a, seed = er_graph(args.nodes, args.degree, args.seed)
    theta0, omega = draws(args.nodes, args.seed)
    grid = np.linspace(0.0, args.time, int(args.time / args.dt))  # kuramoto's output times
    net, m, h = S.network(a.T, normalize="in_degree", dtype=np.float64), len(grid), grid[1]
    rk4 = S.simulate(net, theta0, omega, args.k, dt=h, steps=m - 1, method="rk4").theta
    dp5 = S.simulate(net, theta0, omega, args.k, dt=h, steps=m - 1, method="dopri5", rtol=1e-10, atol=1e-10).theta
    ref = solve_ivp(lambda t, th: np_rhs(a.T, omega, args.k, th), (0.0, args.time), theta0, method="DOP853",
                    t_eval=grid[1:], rtol=1e-12, atol=1e-12).y.T
    rows = [compare(f"wavejax rk4 (dt {h:.5g}) vs DOP853 1e-12, ER N={args.nodes} (seed {seed}), K={args.k}, "
                    f"T={args.time}", rk4, ref, TOL["rk4_ref"]),
            compare("wavejax dopri5 (rtol = atol = 1e-10) vs DOP853 1e-12", dp5, ref, TOL["dopri5_ref"])]
    if peer[0] is None:
        return rows + [compare("kuramoto: LSODA vs DOP853, wavejax rk4 vs it, its rate function", note=peer[1])]
    series = peer[0].Kuramoto(coupling=args.k, dt=args.dt, T=args.time, natfreqs=omega).run(a, theta0).T[1:]
    rows += [compare("kuramoto (LSODA, rtol = atol = 1.49e-8) vs DOP853 1e-12", series, ref, note="its own error"),
             compare("wavejax rk4 vs kuramoto", rk4, series, TOL["rk4_kuramoto"])]
    w, (th, om) = _graph(8, seed=seed), draws(8, seed)  # weighted, directed; kuramoto takes its transpose
    theirs = peer[0].Kuramoto(coupling=args.k, natfreqs=om).derivative(th, 0.0, w.T, args.k / (w.T != 0).sum(axis=0))
    ours = D.kuramoto_rhs(jnp.asarray(th), jnp.asarray(om), args.k, S.network(w, dtype=np.float64))
    return rows + [compare("rate, weighted directed N=8: kuramoto.derivative (with the K/k_i of integrate()) vs "
                           "wavejax", theirs[None], ours[None], TOL["rhs"], r=None)]


def jk_run(jk, theta0, omega, k, t1, dt, record_r=True):
    """jaxkuramoto's own call odeint(Kuramoto(ω, K).vector_fn, runge_kutta, 0, T, dt, θ0, R or a constant)."""
    model = jk.Kuramoto(omega, k)
    obs = model.orderparameter if record_r else (lambda t, x: jnp.zeros((), x.dtype))
    return jk.odeint(model.vector_fn, jk.solver.runge_kutta, 0.0, t1, dt, theta0, obs)


def correctness_a2a(args, peer):
    name = f"wavejax rk4 vs jaxkuramoto runge_kutta, all-to-all N={args.nodes}, dt {args.dt}, T={args.time}"
    if peer[0] is None:
        return [compare(name, note=peer[1])]
    theta0, omega = (jnp.asarray(x) for x in draws(args.nodes, args.seed))
    sol = jk_run(peer[0], theta0, omega, args.k, args.time, args.dt)
    steps, net = sol.ts.shape[0] - 1, S.network(None, n=args.nodes)
    traj = S.simulate(net, theta0, omega, args.k, dt=args.dt, steps=steps, method="rk4")
    theirs = peer[0].Kuramoto(omega, args.k).vector_fn(0.0, theta0)
    return [compare(name, traj.theta[-1:], sol.final_state[None], TOL["rk4_jaxkuramoto"],
                    (traj.r[:-1], sol.observables[2:]), f"{steps} steps each"),
            compare("rate, all-to-all: jaxkuramoto vector_fn vs wavejax", theirs[None],
                    D.kuramoto_rhs(theta0, omega, args.k, net)[None], TOL["rhs"], r=None)]


def alternate(fns, repeats):
    """fns: name -> (call, compiled). A compiled call is made once untimed first (compile seconds); then the calls
    take turns for `repeats` rounds. Returns {name: (median s, compile s or None, last output)}."""
    first, outs, times = {}, {}, {name: [] for name in fns}
    for rnd in range(-1, repeats):  # round -1: the untimed compiling calls
        for name, (call, compiled) in fns.items():
            if rnd >= 0 or compiled:
                start = time.perf_counter()
                outs[name] = call()
                (times[name] if rnd >= 0 else first.setdefault(name, [])).append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), first.get(name, [None])[0], outs[name]) for name in fns}


def speed_row(workload, ours, peer, res, key, scale=1.0, diff=None, note=""):
    t_peer = res["peer"][0] * scale if "peer" in res else None
    return {"workload": workload, "wavejax": ours, "peer": peer, "wavejax_s": res[key][0], "peer_s": t_peer,
            "ratio": None if t_peer is None else t_peer / res[key][0], "compile_s": res[key][1],
            "max_dtheta_T": diff, "note": note}


def speed_er(args, peer):
    a, seed = er_graph(args.er_nodes, args.degree, args.seed)
    theta0, omega = draws(args.er_nodes, args.seed, (args.trials,))
    steps = round(args.time / args.dt)
    rec, kt = min(args.record_every, steps), min(args.kuramoto_trials or args.trials, args.trials)
    fns = {}
    for dtype in ("float32", "float64"):
        run = jax.jit(lambda net, th, om: (lambda tr: (tr.theta[-1], tr.r))(
            S.simulate(net, th, om, args.k, dt=args.dt, steps=steps, record_every=rec)))
        inputs = (S.network(a.T, dtype=np.dtype(dtype)), jnp.asarray(theta0, dtype), jnp.asarray(omega, dtype))
        fns[dtype] = (lambda run=run, inputs=inputs: jax.block_until_ready(run(*inputs)), True)
    if peer[0] is not None:
        fns["peer"] = (lambda: [peer[0].Kuramoto(coupling=args.k, dt=args.dt, T=args.time, natfreqs=omega[i])
                                .run(a, theta0[i])[:, -1] for i in range(kt)], False)
    res = alternate(fns, args.repeats)
    work = (f"{args.trials} runs, ER N={args.er_nodes} (mean degree {args.degree:g}, seed {seed}), dt {args.dt}, "
            f"T={args.time}, records every {rec}")
    name = f"kuramoto {peer[1]} (LSODA, Python loop)" if peer[0] is not None else f"kuramoto: {peer[1]}"
    note = f"kuramoto timed on {kt} runs, scaled by {args.trials}/{kt}" if kt < args.trials else ""
    return [speed_row(work, f"rk4 {dtype}, runs batched", name, res, dtype, args.trials / kt, None if "peer" not in res
                      else float(np.max(np.abs(np.asarray(res[dtype][2][0])[:kt] - np.stack(res["peer"][2])))), note)
            for dtype in ("float32", "float64")]


def speed_a2a(args, peer, dtype, trials=0):
    n = args.a2a_trial_nodes if trials else args.a2a_nodes
    theta0, omega = (jnp.asarray(x, dtype) for x in draws(n, args.seed, (trials,) if trials else ()))
    steps, net = len(np.arange(0.0, args.time, args.dt)) - 1, S.network(None, n=n)  # jaxkuramoto's step count
    ours = jax.jit(lambda th, om: S.simulate(net, th, om, args.k, dt=args.dt, steps=steps, record_every=steps).theta)
    fns, mode = {"wavejax": (lambda: jax.block_until_ready(ours(theta0, omega)[-1]), True)}, "one run"
    if peer[0] is not None:
        def one(th, om):
            return jk_run(peer[0], th, om, args.k, args.time, args.dt, record_r=False).final_state

        theirs = jax.jit(one)
        if trials:
            try:
                jax.eval_shape(jax.vmap(one), theta0, omega)
                theirs, mode = jax.jit(jax.vmap(one)), "vmapped"
            except Exception as e:  # noqa: BLE001 - the peer's API may not vmap: loop then, and say so
                mode = f"looped (jax.vmap failed: {type(e).__name__})"
                theirs = lambda th, om, f=theirs: jnp.stack([f(th[i], om[i]) for i in range(trials)])  # noqa: E731
        fns["peer"] = (lambda: jax.block_until_ready(theirs(theta0, omega)), True)
    res = alternate(fns, args.repeats)
    diff = float(np.max(np.abs(np.asarray(res["wavejax"][2]) - np.asarray(res["peer"][2])))) if "peer" in res else None
    work = (f"{trials} runs x " if trials else "one run, ") + f"all-to-all N={n}, dt {args.dt}, {steps} steps"
    name = f"jaxkuramoto {peer[1]} ({mode}, jitted)" if peer[0] is not None else f"jaxkuramoto: {peer[1]}"
    return [speed_row(work, f"rk4 {dtype}" + (", runs batched" if trials else ""), name, res, "wavejax", diff=diff)]


# -- C. features: each wavejax cell is a check that runs --------------------------------------------------------

def _graph(n=6, weighted=True, seed=0):
    """A random directed graph on n nodes with the cycle j -> j+1 (every node has an in-edge), A[i, j]: j -> i."""
    rng = np.random.default_rng(seed)
    a = (rng.random((n, n)) < 0.5) * (1 - np.eye(n)) + np.eye(n, k=-1) + np.eye(n, k=n - 1)
    return a * rng.uniform(0.2, 2.0, (n, n)) if weighted else a


def _rate_err(a, normalize="in_degree", alpha=0.0):
    """max |wavejax's rate - the numpy pairwise rate| on one float64 state; the rate from one Euler step."""
    th, om = draws(len(a), 1)
    out = S.simulate(S.network(a, normalize=normalize, dtype=np.float64), th, om, 1.5, dt=1e-3, steps=1,
                     method="euler", phase_lag=alpha).theta[-1]
    return float(np.max(np.abs((np.asarray(out) - th) / 1e-3 - np_rhs(a, om, 1.5, th, alpha, normalize))))


def check_weighted():
    err = max(_rate_err(_graph(), nz) for nz in ("in_weight", "in_degree"))
    return err < 1e-9, f"rate on a weighted 6-node graph vs numpy pairwise form (in_weight, in_degree): {err:.1e}"


def check_directed():
    a, (th, om) = _graph(weighted=False), draws(6, 1)
    err, flip = _rate_err(a), np.max(np.abs(np_rhs(a.T, om, 1.5, th) - np_rhs(a, om, 1.5, th)))
    return err < 1e-9 < flip, f"directed 6-node graph vs numpy: {err:.1e} (A vs Aᵀ differ by {flip:.2f})"


def check_isolated():
    a, (th, om) = _graph() * (np.arange(6) > 0)[:, None], draws(6, 3)  # node 0: no in-edges, drives the others
    tr = np.asarray(S.simulate(S.network(a, dtype=np.float64), th, om, 2.0, dt=0.01, steps=200, method="rk4").theta)
    free = abs(tr[-1, 0] - (th[0] + 2.0 * om[0]))
    return np.isfinite(tr).all() and free < 1e-10, f"node without in-edges: finite, |θ(2) - θ0 - 2ω| = {free:.1e}"


def check_adaptive():
    net, (th, om) = S.network(None, n=6), draws(6, 4)
    tr = S.simulate(net, th, om, 2.0, dt=0.1, steps=20, method="dopri5", rtol=1e-10, atol=1e-10)
    fine = S.simulate(net, th, om, 2.0, dt=1e-3, steps=2000, record_every=100, method="rk4").theta
    err = float(np.max(np.abs(np.asarray(tr.theta) - np.asarray(fine))))
    return err < 1e-7 and bool(tr.num_steps), f"dopri5 1e-10: {tr.num_steps} accepted steps, {err:.1e} from RK4 dt 1e-3"


def check_sde():
    th, om = draws(2, 5, (400,))
    tr = S.simulate(S.network(None, n=2), th, om, 0.0, dt=0.01, steps=100, method="heun", noise_std=0.5,
                    key=jax.random.PRNGKey(0))
    ratio = float(np.var(np.asarray(tr.theta[-1]) - th - om) / 0.5**2)
    return abs(ratio - 1) < 0.2, f"heun, K=0: var(θ(1) - θ0 - ω) / σ²t = {ratio:.3f} (800 oscillators)"


def check_phase_lag():
    err = _rate_err(_graph(), alpha=0.4)
    return err < 1e-9, f"α = 0.4 on a weighted graph vs numpy sin(θ_j - θ_i - α): {err:.1e}"


def check_theory():
    got = (T.kc("lorentzian", 1.0), float(T.oa_steady_r(4.0, 1.0)),
           float(T.self_consistent_r(4.0, T.density("lorentzian", width=1.0))), T.kc("normal", 1.0))
    err = max(abs(g - w) for g, w in zip(got, (2.0, math.sqrt(0.5), math.sqrt(0.5), math.sqrt(8 / math.pi))))
    return err < 1e-6, f"K_c (Lorentzian 2γ, normal σ√(8/π)); OA, self-consistent r(K=4, γ=1) = √½: {err:.0e}"


def check_distributions():
    draw = {name: np.asarray(D.natural_frequencies(jax.random.PRNGKey(0), 512, name, separation=3.0,
                                                   dtype=np.float64)) for name in D.OMEGA_DISTRIBUTIONS}
    names = list(draw)  # an alias draws what an earlier name drew; constant has no spread
    distinct = [n for i, n in enumerate(names) if np.isfinite(draw[n]).all() and draw[n].std() > 0
                and not any(np.array_equal(draw[n], draw[m]) for m in names[:i])]
    return bool(distinct), f"{len(distinct)}: {', '.join(distinct)} (not counted: aliases, constant; or any array)"


def check_user_equation():
    """wavejax.field.simulate.integrate on a hand-written damped oscillator, adaptive, against its closed form."""
    times, ys = S.integrate(lambda t, y: jnp.stack([y[1], -y[0]]), jnp.array([1.0, 0.0], jnp.float64), dt=0.01,
                            steps=100, method="tsit5", rtol=1e-10, atol=1e-10)
    err = float(jnp.abs(ys[-1, 0] - jnp.cos(times[-1])))
    return err < 1e-7, f"simulate.integrate(field, y0, method=...): x'' = -x by tsit5, {err:.1e} from cos t"


def check_inertia():
    (th, om), m, g, t = draws(4, 7), 2.0, 0.5, 3.0
    tr = S.simulate(S.network(None, n=4), th, om, 0.0, dt=0.01, steps=300, method="rk4", inertia=m, damping=g)
    err = float(np.max(np.abs(np.asarray(tr.theta[-1]) - (th + om / g * (t - m / g * (1 - math.exp(-g * t / m)))))))
    return err < 1e-8, f"rk4, K=0, m=2, γ=0.5: θ(3) vs the closed form: {err:.1e}"


def check_schedule():
    (th, om), n = draws(5, 8), 5
    sched = D.CouplingSchedule(np.array([0.0, 1.0]), np.array([0.0, 3.0]))  # K(t) = 3t
    got = S.simulate(S.network(None, n=n), th, om, sched, dt=0.01, steps=100, method="rk4").theta[-1]
    ref = solve_ivp(lambda t, y: np_rhs(1 - np.eye(n), om, 3.0 * t * (n - 1) / n, y), (0, 1), th, method="DOP853",
                    rtol=1e-12, atol=1e-12).y[:, -1]  # K/N with N - 1 in-edges
    err = float(np.max(np.abs(np.asarray(got) - ref)))
    return err < 1e-7, f"CouplingSchedule K(t) = 3t, RK4 dt 0.01 vs scipy DOP853 1e-12 with K(t): {err:.1e}"


def check_float64():
    err = _rate_err(_graph()) * 1e-3  # the error of θ after the step
    return err < 1e-14, f"θ after one float64 Euler step vs numpy float64: {err:.1e}"


def check_vmap():
    net, (th, om) = S.network(_graph(), dtype=np.float64), draws(6, 10, (3,))
    run = lambda t, o: S.simulate(net, t, o, 1.5, dt=0.01, steps=20, method="rk4").theta  # noqa: E731
    one = np.stack([np.asarray(run(th[i], om[i])) for i in range(3)], axis=1)  # [records, run, node]
    err = max(float(np.max(np.abs(np.asarray(x) - one))) for x in (run(th, om), jax.vmap(run)(th, om).swapaxes(0, 1)))
    return err < 1e-12, f"runs on a leading axis and under jax.vmap = one by one: {err:.1e} ({jax.default_backend()})"


CHECKS = (check_weighted, check_directed, check_isolated, check_adaptive, check_sde, check_phase_lag, check_theory,
          check_distributions, check_user_equation, check_inertia, check_schedule, check_float64, check_vmap)


def peer_probes(peers):
    """Cells confirmed by running an installed peer: {(feature, peer): (ok, note)}."""
    out, kur, jk = {}, peers["kuramoto"][0], peers["jaxkuramoto"][0]
    if kur is not None:
        a = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], np.float64)  # node 2 isolated
        with np.errstate(all="ignore"):  # its K/0
            act = kur.Kuramoto(coupling=1.0, dt=0.01, T=1.0, natfreqs=np.array([0.1, 0.2, 0.3])).run(a, np.zeros(3))
        nan = int(np.isnan(act[:, -1]).sum())
        out[(FEATURES[2], "kuramoto")] = (nan == 0, f"ran: one isolated node of 3 -> {nan}/3 phases NaN at T")
    if jk is not None:
        stub = jk.kuramoto.NetworkKuramoto(None, np.eye(2)).vector_fn(0.0, jnp.zeros(2))
        out[(FEATURES[0], "jaxkuramoto")] = (stub is not None, f"ran: NetworkKuramoto.vector_fn returns {stub!r}")
        base = jk.distribution.Distribution
        subs = sorted(c.__name__ for c in vars(jk.distribution).values()
                      if isinstance(c, type) and issubclass(c, base) and c is not base)
        out[(FEATURES[7], "jaxkuramoto")] = (True, f"{len(subs)}: Distribution subclasses: {', '.join(subs)}")
        runs = jax.vmap(lambda t, o: jk_run(jk, t, o, 1.0, 0.05, 0.01, record_r=False).final_state)(
            jnp.zeros((2, 3)), jnp.ones((2, 3)))
        out[(FEATURES[12], "jaxkuramoto")] = (runs.shape == (2, 3), "ran: jax.vmap over odeint, 2 runs")
    return out


def features(peers):
    rows, probes = {}, peer_probes(peers)
    for feature, check in zip(FEATURES, CHECKS):
        ok, note = check()
        rows[feature] = row = {"wavejax": bool(ok), "notes": {"wavejax": note}}
        for i, name in enumerate(PEERS):
            p_ok, p_note = probes.get((feature, name), PEER_NOTES[feature][i])
            if peers[name][0] is None and (feature, name) not in probes:
                p_note += " (from the source; not installed here)"
            row[name], row["notes"][name] = p_ok, p_note
    return rows


def fmt(x, spec=".1e"):
    return "—" if x is None else format(x, spec)


def render(data):
    out = []
    if "correctness" in data:
        rows = [[r["comparison"], fmt(r["max_dtheta_T"]), fmt(r["max_dR"]),
                 "—" if r["tol"] is None else " / ".join(fmt(t, ".0e") for t in r["tol"]),
                 {True: "yes", False: "NO", None: "—"}[r["ok"]], r["note"]] for r in data["correctness"]]
        out += ["A. correctness (float64)", C.markdown_table(
            ["comparison", "max abs Δθ(T)", "max abs ΔR(t)", "tolerance θ / R", "within", "note"], rows, "lrrrll")]
    if "speed" in data:
        rows = [[r["workload"], r["wavejax"], r["peer"], fmt(r["wavejax_s"], ".3f"), fmt(r["peer_s"], ".3f"),
                 "—" if r["ratio"] is None else f"{r['ratio']:.1f}x", fmt(r["compile_s"], ".1f"),
                 fmt(r["max_dtheta_T"]), r["note"]] for r in data["speed"]]
        out += ["B. speed (median s; ratio = peer s / wavejax s, measured within one run)", C.markdown_table(
            ["workload", "wavejax", "peer", "wavejax s", "peer s", "ratio", "compile s", "max abs Δθ(T)", "note"],
            rows, "lllrrrrrl")]
    if "features" in data:
        def cell(v, c):  # ✔ or ✘, and the count of a note that starts with one ("7: ...")
            head = v["notes"][c].split(":")[0]
            return ("✔" if v[c] else "✘") + (f" {head}" if head.isdigit() else "")

        cols = list(PEERS) + ["wavejax"]
        rows = [[f] + [cell(v, c) for c in cols] for f, v in data["features"].items()]
        out += ["C. features (wavejax: checks run now; peers: their source, some cells run)", C.markdown_table(
            ["feature"] + [f"{c} {PEERS.get(c, '')}".strip() for c in cols], rows, "lccc"),
            "\n".join(f"- {f} / {c}: {v['notes'][c]}" for f, v in data["features"].items() for c in cols)]
    return "\n\n".join(out)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    jax.config.update("jax_enable_x64", True)  # for the float64 rows; every array below has an explicit dtype
    peers = load_peers()
    dev, load = jax.devices()[0], os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),)
    print(f"bench_peers: {dev.platform} ({dev.device_kind}), jax {jax.__version__}, load {load[0]:.2f}; "
          + "; ".join(f"{n} {v}" for n, (_, v) in peers.items()), flush=True)
    data = {"device": f"{dev.device_kind} ({dev.platform})", "jax": jax.__version__,
            "peers": {n: v for n, (_, v) in peers.items()},
            "args": {k: v for k, v in vars(args).items() if k not in ("parts", "results")}}
    if "correctness" in args.parts:
        data["correctness"] = correctness_er(args, peers["kuramoto"]) + correctness_a2a(args, peers["jaxkuramoto"])
    if "speed" in args.parts:
        jk = peers["jaxkuramoto"]
        data["speed"] = (speed_er(args, peers["kuramoto"]) + speed_a2a(args, jk, "float32")
                         + speed_a2a(args, jk, "float64") + speed_a2a(args, jk, "float32", args.a2a_trials))
    if "features" in args.parts:
        data["features"] = features(peers)
    print("\n" + render(data), flush=True)
    C.write_results(args.results, "experiments.benchmarks.bench_peers", argv, data)
    return 1 if any(r["ok"] is False for r in data.get("correctness", [])) else 0


if __name__ == "__main__":
    sys.exit(main())
