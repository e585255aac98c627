"""How far float32 Kuramoto runs can be trusted: phases and R(t) of a lattice run in float32 and float64 against a
float64 DOP853-class reference (diffrax Dopri8, rtol = atol = 1e-12), at several times and step sizes.

    python -m experiments.benchmarks.field_precision                  # 32 x 32 lattice, K = 1.5, ω ~ N(0, 1)
    python -m experiments.benchmarks.field_precision --side 16 --times 5,10 --results docs/results/field_precision.json

Every run starts from the same θ0 and ω (float64 draws, rounded once for float32). Phase error: the largest wrapped
|θ - θ_ref| over the nodes at time t; R error: the largest |R - R_ref| over the records up to t. A last row perturbs
θ0 by 1e-10 in float64: how much the dynamics amplify a rounding-sized difference by itself, which bounds what any
float32 run can keep (float32 rounds θ at about 1e-7 relative every step).
"""

from __future__ import annotations

import argparse
import sys

from experiments import common as C


def wrapped(a, b):
    import numpy as np

    return np.abs(np.angle(np.exp(1j * (np.asarray(a, np.float64) - np.asarray(b, np.float64)))))


def run(args) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 runs; float32 arrays stay float32
    import jax.numpy as jnp
    import numpy as np

    from wavejax.field import graphs as G
    from wavejax.field import simulate as S

    graph = G.square_lattice(args.side)
    rng = np.random.default_rng(args.seed)
    theta0 = rng.uniform(-np.pi, np.pi, graph.n)
    omega = rng.normal(0, args.omega_std, graph.n)
    t_end = max(args.times)
    record = 0.5  # time between records
    net64, net32 = S.network(graph, dtype=np.float64), S.network(graph, dtype=np.float32)

    def sim(net, th, dtype, dt, method="rk4", **kw):
        steps = int(round(t_end / dt))
        every = max(1, int(round(record / dt)))
        return S.simulate(net, jnp.asarray(th, dtype), jnp.asarray(omega, dtype), args.coupling, dt=dt, steps=steps,
                          record_every=every, method=method, **kw)

    ref = sim(net64, theta0, jnp.float64, args.dts[-1], "dopri8", rtol=1e-12, atol=1e-12)
    runs = {f"float64 rk4 dt={dt:g}": sim(net64, theta0, jnp.float64, dt) for dt in args.dts}
    runs |= {f"float32 rk4 dt={dt:g}": sim(net32, theta0, jnp.float32, dt) for dt in args.dts}
    runs["float64 dopri8, θ0 + 1e-10"] = sim(net64, theta0 + 1e-10, jnp.float64, args.dts[-1], "dopri8", rtol=1e-12,
                                              atol=1e-12)
    ref_t = np.asarray(ref.times)
    rows = {}
    for name, traj in runs.items():
        row = {}
        for t in args.times:
            i = int(np.argmin(np.abs(ref_t - t)))
            j = int(np.argmin(np.abs(np.asarray(traj.times) - t)))
            upto = np.asarray(traj.times) <= t + 1e-9
            r_err = np.abs(np.asarray(traj.r, np.float64)[upto] - np.interp(np.asarray(traj.times)[upto], ref_t,
                                                                            np.asarray(ref.r)))
            row[str(t)] = {"phase": float(wrapped(traj.theta[j], ref.theta[i]).max()), "R": float(r_err.max())}
        rows[name] = row
    return {"side": args.side, "coupling": args.coupling, "omega_std": args.omega_std, "times": list(args.times),
            "R_ref_final": float(ref.r[-1]), "runs": rows}


def render(data: dict) -> str:
    times = [str(t) for t in data["times"]]
    head = ["run"] + [f"max abs Δθ at t={t}" for t in times] + [f"max abs ΔR up to t={t}" for t in times]
    body = [[name] + [f"{row[t]['phase']:.1e}" for t in times] + [f"{row[t]['R']:.1e}" for t in times]
            for name, row in data["runs"].items()]
    return C.markdown_table(head, body)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", type=int, default=32, help="lattice side (periodic, side x side nodes)")
    ap.add_argument("--coupling", type=float, default=1.5)
    ap.add_argument("--omega_std", type=float, default=1.0)
    ap.add_argument("--times", type=C.int_list, default=(5, 10, 20, 40))
    ap.add_argument("--dts", default="0.05,0.01", help="step sizes of the fixed-step runs (the last also seeds dopri8)")
    ap.add_argument("--seed", type=int, default=0)
    C.add_results_arg(ap, "field_precision")
    args = ap.parse_args(argv)
    try:
        args.dts = [float(x) for x in args.dts.split(",") if x.strip()]
    except ValueError:
        C.fail(f"--dts takes comma-separated step sizes, got {args.dts!r}.")
    if args.side < 3 or not args.dts or min(args.dts) <= 0:
        C.fail("need --side >= 3 and positive --dts.")
    data = run(args)
    print(f"{args.side}x{args.side} periodic lattice, K = {args.coupling}, ω ~ N(0, {args.omega_std}²), reference: "
          f"float64 Dopri8 at rtol = atol = 1e-12 (final R {data['R_ref_final']:.4f})\n")
    print(render(data))
    C.write_results(args.results, "experiments.benchmarks.field_precision", argv, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
