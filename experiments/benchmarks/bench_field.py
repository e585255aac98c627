"""Speed of the field simulator against a straightforward numpy implementation of the same work, in one run.

    python -m experiments.benchmarks.bench_field  # small config + 100 x 100 Kuramoto
    python -m experiments.benchmarks.bench_field --trials 16 --ref_trials 2 --side 16 --batch 2 --steps 50 \
        --ref_steps 5                             # quick
    XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m experiments.benchmarks.bench_field --shard  # 2 cores

1. The original small config (31 x 31 periodic lattice, 200 modes, 1000 timesteps, trial % 4 initial conditions):
   trials/s of the jitted experiment (wavejax.field.trials.mode_trials: initial pattern, scanned mode model,
   rotation, lag-correlation wave detection and speed, C(t), all trials vmapped) against the numpy transcription
   of the original trial loop (wavejax.field.reference.original_trial: a Python loop over timesteps, the spatial
   field A Ψᵀ, a flattened Pearson correlation per lag), both without the one-off eigendecomposition. The ratio is
   the speed-up; the target is 25x on a CPU and 500 trials/s on a GPU (the original: 4.6 trials/s, RTX 4070 Ti).
   Timing: after compiling and one untimed call of each side, --repeats alternating pairs (the numpy loop's
   --ref_trials trials, then the jitted --trials), so that a change of machine load hits both sides of a pair; each
   pair gives a ratio, the table reports their median (PASS/FAIL and the exit status go by it) and each side's
   median trials/s, and a line above the table lists every pair.
   Same outputs: --check trials are rerun through the numpy loop with the jitted run's own patterns and noise, and
   the table reports the largest difference.
2. Kuramoto on a side x side periodic lattice (Euler, dt 0.05, no noise, R recorded every 100 steps): oscillator
   steps per second (batch x N x steps / s) of the scanned integrator (roll stencil, and the general neighbour-table
   gather) against a numpy loop over steps vectorised over batch and nodes (a gather of the neighbour table and one
   sin per edge). Target on a GPU: 1e10 oscillator-steps/s, batched over trials.

Kuramoto timings are the median of --repeats runs after a warm-up call (the numpy loop: of max(1, repeats // 2));
compile time is reported separately. --shard splits the trial axis over all devices (e.g. both CPU cores via
XLA_FLAGS, or several GPUs). Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

from experiments import common as C

CPU_RATIO = 25.0  # small config, CPU: the median per-pair ratio jit / numpy must reach this
GPU_TRIALS_PER_S = 500  # small config, GPU


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=100, help="trials of the small config per timed run")
    p.add_argument("--ref_trials", type=int, default=8, help="trials of the numpy reference (timed)")
    p.add_argument("--check", type=int, default=4, help="trials rerun through numpy on the jitted run's draws")
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--modes", type=int, default=200)
    p.add_argument("--timesteps", type=int, default=1000)
    p.add_argument("--side", type=int, default=100, help="Kuramoto lattice side")
    p.add_argument("--batch", type=int, default=0, help="Kuramoto trials per call (0: 8 on CPU, 1024 on GPU)")
    p.add_argument("--steps", type=int, default=0, help="Kuramoto steps per timed run (0: 400 on CPU, 2000 on GPU)")
    p.add_argument("--ref_steps", type=int, default=20, help="Kuramoto steps of the numpy reference")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed runs: alternating (numpy, jit) pairs of the small config; Kuramoto: runs per side")
    p.add_argument("--shard", action="store_true", help="split the trial axis over all devices")
    p.add_argument("--skip_modes", action="store_true")
    p.add_argument("--skip_kuramoto", action="store_true")
    args = p.parse_args(argv)
    for name in ("trials", "ref_trials", "timesteps", "side", "ref_steps", "repeats", "modes", "nodes"):
        if getattr(args, name) < 1:
            C.fail(f"--{name} must be >= 1, got {getattr(args, name)}.")
    if args.check > min(args.trials, args.ref_trials) or args.check < 0:
        C.fail(f"--check must be between 0 and min(--trials, --ref_trials), got {args.check}.")
    if math.isqrt(args.nodes) < 3 or args.side < 3:
        C.fail("--nodes must be >= 9 and --side >= 3 (periodic lattices).")
    if not 2 <= args.modes <= math.isqrt(args.nodes) ** 2:
        C.fail(f"--modes must be between 2 and the lattice's {math.isqrt(args.nodes) ** 2} nodes, got {args.modes}.")
    return args


def trial_sharding(n: int, shard: bool):
    """A NamedSharding that splits a leading axis of n over all devices, or None."""
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    if not shard or jax.device_count() == 1:
        return None
    if n % jax.device_count():
        C.fail(f"--shard needs the trial count ({n}) to be a multiple of the {jax.device_count()} devices.")
    mesh = Mesh(jax.devices(), ("trials",))
    return NamedSharding(mesh, PartitionSpec("trials"))


def bench_modes(args):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from wavejax.field import graphs as G
    from wavejax.field import metrics as M
    from wavejax.field import reference as R
    from wavejax.field import trials as E
    from wavejax.ops import oscillators as D

    graph = G.square_lattice(G.lattice_side(args.nodes))
    setup = E.mode_setup(graph, args.modes, "dense")
    arrays = dict(setup.arrays(), rate=jnp.float32(0.05), cubic=jnp.float32(0.01), noise_std=jnp.float32(0.02),
                  random_phases=jnp.bool_(True))
    n_lags = M.n_wave_lags(args.timesteps)
    block = n_lags * max(1, round(50 / n_lags)) if n_lags else 50
    static = dict(timesteps=args.timesteps, n_lags=n_lags, block=min(block, args.timesteps - 1))
    keys = E.trial_keys(0, 42, args.trials)
    types = (np.arange(args.trials) % 4).astype(np.int32)
    sharding = trial_sharding(args.trials, args.shard)
    if sharding is not None:
        keys, types = jax.device_put(keys, sharding), jax.device_put(types, sharding)
    start = time.perf_counter()
    compiled = E.mode_trials.lower(keys, types, arrays, **static).compile()
    compile_s = time.perf_counter() - start

    def ours():
        return jax.block_until_ready(compiled(keys, types, arrays))

    def numpy_loop():  # the numpy loop, drawing its own randomness as the original does (numpy's generator for torch's)
        for t in range(args.ref_trials):
            R.original_trial(setup.eigenvalues, setup.eigenvectors, setup.positions, t % 4, args.timesteps,
                             rng=np.random.default_rng(42 + t), mean_distance=setup.mean_distance)

    # untimed warm-up of both sides, then alternating pairs (numpy, jax), so a change of load hits both sides of a
    # pair alike; each pair gives one ratio, and the reported ratio is their median
    res = jax.device_get(ours())
    R.original_trial(setup.eigenvalues, setup.eigenvectors, setup.positions, 0, args.timesteps,
                     rng=np.random.default_rng(42), mean_distance=setup.mean_distance)
    pairs = []
    for _ in range(args.repeats):
        ref_s = C.time_calls(numpy_loop, 1, warmup=0)[0]
        ours_s = C.time_calls(ours, 1, warmup=0)[0]
        pairs.append((args.trials / ours_s, args.ref_trials / ref_s))

    # same draws -> same outputs
    diffs, agree = [], 0
    keys_host = np.asarray(keys)
    pattern = jax.jit(D.initial_pattern)
    noise_of = jax.jit(D.mode_noise, static_argnums=(1, 2))
    for t in range(args.check):
        ic_key, noise_key, _ = jax.random.split(keys_host[t], 3)
        ref = R.original_trial(setup.eigenvalues, setup.eigenvectors, setup.positions, t % 4, args.timesteps,
                               initial=np.asarray(pattern(t % 4, ic_key, jnp.asarray(setup.positions, jnp.float32))),
                               noise=np.asarray(noise_of(noise_key, args.timesteps, args.modes)),
                               mean_distance=setup.mean_distance)
        agree += (bool(res["has_wave"][t]) == ref["has_wave"]) and ((res["blowup_step"][t] < 0) == ref["finite"])
        if ref["finite"]:
            diffs.append(abs(float(res["rotation"][t]) - ref["rotation_angle"]) / ref["rotation_angle"])
            diffs.append(float(np.max(np.abs(res["correlations"][t] - ref["correlations"]))))
    ratios = [o / r for o, r in pairs]
    return {"setup_s": setup.seconds, "compile_s": compile_s, "ours_tps": statistics.median(o for o, _ in pairs),
            "ref_tps": statistics.median(r for _, r in pairs), "ratio": statistics.median(ratios), "pairs": pairs,
            "agree": agree, "max_diff": max(diffs) if diffs else float("nan"), "nodes": graph.n}


def bench_kuramoto(args, on_gpu: bool):
    import jax
    import numpy as np

    from wavejax.field import graphs as G
    from wavejax.field import metrics as M
    from wavejax.field import reference as R
    from wavejax.ops import oscillators as D

    batch = args.batch or (1024 if on_gpu else 8)
    steps = args.steps or (2000 if on_gpu else 400)
    graph = G.square_lattice(args.side)
    n = graph.n
    rng = np.random.default_rng(0)
    theta0 = rng.uniform(-np.pi, np.pi, (batch, n)).astype(np.float32)
    omega = (0.5 * rng.standard_normal((batch, n))).astype(np.float32)
    sharding = trial_sharding(batch, args.shard)
    if sharding is not None:
        theta0, omega = jax.device_put(theta0, sharding), jax.device_put(omega, sharding)
    rows = {}
    for name, coupling in (("roll stencil", G.graph_coupling(graph)),
                           ("neighbour table", G.graph_coupling(graph, stencil=False))):
        def run(th, om, n_steps, coupling=coupling):
            return jax.vmap(lambda t, o: D.kuramoto_run(
                t, o, 1.0, coupling, dt=0.05, steps=n_steps, record_every=min(100, n_steps),
                observe=lambda a, x, tf, nv: (a, M.order_parameter(x))))(th, om)

        run = jax.jit(run, static_argnums=2)
        start = time.perf_counter()
        compiled = run.lower(theta0, omega, steps).compile()
        compile_s = time.perf_counter() - start
        seconds = C.median_seconds(lambda: jax.block_until_ready(compiled(theta0, omega)), args.repeats)
        rows[name] = {"osc_steps": batch * n * steps / seconds, "compile_s": compile_s}
        check = np.asarray(run(theta0, omega, args.ref_steps)[0])
        rows[name]["check"] = check

    nbr, w = G.neighbour_table(graph)
    inv = (1.0 / graph.degrees()).astype(np.float32)
    th_host, om_host = np.asarray(theta0), np.asarray(omega)
    times = []
    for _ in range(max(1, args.repeats // 2)):
        start = time.perf_counter()
        ref_theta, _ = R.kuramoto_numpy(th_host, om_host, np.float32(1.0), nbr, w, inv, dt=0.05, steps=args.ref_steps)
        times.append(time.perf_counter() - start)
    ref_rate = batch * n * args.ref_steps / statistics.median(times)
    for row in rows.values():
        row["ref_osc_steps"] = ref_rate
        row["ratio"] = row["osc_steps"] / ref_rate
        row["max_diff"] = float(np.max(np.abs(row.pop("check") - ref_theta)))
    return {"batch": batch, "steps": steps, "n": n, "rows": rows}


def main(argv=None) -> int:
    args = parse_args(argv)
    import jax

    dev = jax.devices()[0]
    on_gpu = dev.platform == "gpu"
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"device: {jax.device_count()} x {dev.platform} ({dev.device_kind}); jax {jax.__version__}; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; shard={args.shard}", flush=True)
    rows, ok = [], True
    if not args.skip_modes:
        m = bench_modes(args)
        target = f"≥ {GPU_TRIALS_PER_S} trials/s" if on_gpu else f"≥ {CPU_RATIO:g}x numpy"
        passed = m["ours_tps"] >= GPU_TRIALS_PER_S if on_gpu else m["ratio"] >= CPU_RATIO
        ok &= passed
        print(f"original experiment, {len(m['pairs'])} alternating pairs (numpy loop {args.ref_trials} trials, then "
              f"jit {args.trials} trials): " + ", ".join(f"{o:,.1f} / {r:,.2f} trials/s = {o / r:.1f}x"
                                                         for o, r in m["pairs"]), flush=True)
        rows.append([f"original experiment: {m['nodes']} nodes, {args.modes} modes, {args.timesteps} steps",
                     f"{m['ours_tps']:,.1f} trials/s", f"{m['ref_tps']:,.2f} trials/s", f"{m['ratio']:.1f}x",
                     f"{m['compile_s']:.1f} s", f"{m['agree']}/{args.check} agree, max diff {m['max_diff']:.1e}",
                     target, "PASS" if passed else "FAIL"])
    if not args.skip_kuramoto:
        k = bench_kuramoto(args, on_gpu)
        for name, r in k["rows"].items():
            passed = r["osc_steps"] >= 1e10 if on_gpu else None
            ok &= passed is not False
            rows.append([f"Kuramoto {args.side}x{args.side}, {name}, batch {k['batch']}, {k['steps']} Euler steps",
                         f"{r['osc_steps']:.3g} osc-steps/s", f"{r['ref_osc_steps']:.3g} osc-steps/s",
                         f"{r['ratio']:.1f}x", f"{r['compile_s']:.1f} s",
                         f"θ after {args.ref_steps} steps: max diff {r['max_diff']:.1e}",
                         "≥ 1e10 osc-steps/s (GPU)", ("PASS" if passed else "FAIL") if on_gpu else "n/a (CPU)"])
    print(C.markdown_table(["workload", "wavejax (jit, scan, vmap)", "numpy loop", "ratio", "compile",
                            "same outputs", "target", "result"], rows, align="lllrrlll"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
