"""Lattice Kuramoto rows of bench_kernels: the fused kernel (pallas_kernels/kuramoto_lattice.py) against the
simulator's XLA path.

    python -m experiments.benchmarks.bench_kernels --kernels kuramoto --per_kernel  # CPU: tiny lattices (smoke test)
    python -m experiments.benchmarks.bench_kernels --kernels kuramoto --per_kernel --kuramoto_sides 1000,100 \
        --kuramoto_batches 1,100 --kuramoto_steps 400                               # a GPU's target shapes
    python -m experiments.benchmarks.bench_kernels --kernels kuramoto --per_kernel --kuramoto_windows 32,64 \
        --kuramoto_integrators rk4                                                  # window sweep

Both columns integrate the same periodic lattice (dt 0.05, K = 1, ω ~ N(0, 0.5²), no noise) through
wavejax.ops.oscillators.kuramoto_run, vmapped over trials as the simulator runs them: impl="xla" (one scanned step at a
time, roll stencil) and impl="pallas" (L steps per launch: 8 Euler or 2 RK4, halo 8, 64 x 64 windows on large
lattices). Reported: oscillator-steps/s (trials x nodes x steps / s, median of --reps (3 unless given) after a warm-up
call), the ratio kernel / XLA, the largest |Δθ| between the two final states, an effective bandwidth (the bytes a fused
launch must move, 12 per node: read θ and ω, write θ, over L steps; the XLA path moves them every step) against the
device's copy bandwidth measured in the same run, and the compiled programs' temporary memory.

On a CPU the kernel runs in interpret mode (a sequential loop over the grid in XLA): its timings say nothing about
GPU speed; the run only checks that the benchmark works and that both paths agree. The issue's GPU target is
1e11 oscillator-steps/s on a 1000 x 1000 lattice or 100 trials of 100 x 100; it has not been measured yet.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import time

from experiments import common as C

KERNEL = "lattice Kuramoto (fused steps)"
TARGET_OSC_STEPS = 1e11  # issue 9, on an H100/H200


def add_arguments(p: argparse.ArgumentParser) -> None:
    """This kernel's options (prefixed kuramoto_); bench_kernels' --reps gives the timed calls (3 unless given)."""
    p.add_argument("--kuramoto_sides", type=C.int_list, default=None,
                   help="lattice sides, paired with --kuramoto_batches (default: 16,32 on CPU; 1000,100 on GPU)")
    p.add_argument("--kuramoto_batches", type=C.int_list, default=None,
                   help="trials per call, one per side (default: 2,2 on CPU; 1,100 on GPU)")
    p.add_argument("--kuramoto_steps", type=int, default=0, help="steps per timed call (default 48 CPU, 400 GPU)")
    p.add_argument("--kuramoto_integrators", default="euler,rk4")
    p.add_argument("--kuramoto_windows", type=C.int_list, default=None,
                   help="kernel windows P = Q to try (powers of two; default: the kernel's choice per lattice)")


def _options(args) -> dict:
    """This benchmark's settings from bench_kernels' args (its prefixed options, and --reps as given), defaults per
    backend."""
    import jax

    def get(name, default=None):
        for key in (f"kuramoto_{name}", name):
            value = getattr(args, key, None)
            if value:
                return value
        return default

    on_gpu = jax.default_backend() == "gpu"
    sides = get("sides", (1000, 100) if on_gpu else (16, 32))
    batches = get("batches", (1, 100) if on_gpu else (2, 2))
    if len(batches) == 1:
        batches = batches * len(sides)
    if len(batches) != len(sides):
        C.fail(f"give one batch per lattice side: {len(sides)} sides, {len(batches)} batches.")
    steps = int(get("steps", 400 if on_gpu else 48))
    integrators = tuple(s.strip() for s in str(get("integrators", "euler,rk4")).split(",") if s.strip())
    bad = [i for i in integrators if i not in ("euler", "rk4")]
    if bad or not integrators:
        C.fail(f"integrators must be among euler, rk4; got {','.join(integrators) or 'none'}.")
    if min(sides) < 3 or steps < 8 or steps % 8:
        C.fail(f"need lattice sides >= 3 and a step count that is a positive multiple of 8, got {sides}, {steps}.")
    windows = get("windows", (0,))
    from pallas_kernels import kuramoto_lattice as KL

    halo = max(KL.halo_width(KL.steps_per_launch(steps, i), i) for i in integrators)
    if any(w and (w & (w - 1) or w <= 2 * halo) for w in windows):
        C.fail(f"windows must be powers of two above twice the halo ({2 * halo} at {steps} steps), got {windows}.")
    return dict(sides=sides, batches=batches, steps=steps, integrators=integrators, windows=windows,
                repeats=max(1, int(get("repeats", 3))), on_gpu=on_gpu)


def _temp_bytes(compiled) -> float | None:
    try:
        return float(compiled.memory_analysis().temp_size_in_bytes)
    except Exception:  # noqa: BLE001 - not every backend reports it
        return None


def measure(side: int, batch: int, steps: int, integrator: str, repeats: int, window: int = 0) -> dict:
    """Both paths on one shape: rates, agreement and compiled memory. The kernel runs through fused_kuramoto_run,
    the function dynamics.kuramoto_run(impl="pallas") calls, so that a window can be chosen."""
    import jax
    import numpy as np

    from pallas_kernels import kuramoto_lattice as KL
    from wavejax.field import graphs as G
    from wavejax.ops import oscillators as D

    coupling = G.graph_coupling(G.square_lattice(side))
    rng = np.random.default_rng(0)
    theta0 = rng.uniform(-np.pi, np.pi, (batch, side * side)).astype(np.float32)
    omega = (0.5 * rng.standard_normal((batch, side * side))).astype(np.float32)
    per_launch = KL.steps_per_launch(steps, integrator)
    window = window or KL.default_window(side, KL.halo_width(per_launch, integrator))
    runs = {"xla": D.kuramoto_run, "pallas": functools.partial(KL.fused_kuramoto_run, window=window)}
    out = {}
    for impl, integrate in runs.items():
        run = jax.jit(jax.vmap(lambda t, o, integrate=integrate: integrate(
            t, o, 1.0, coupling, dt=0.05, steps=steps, record_every=steps, integrator=integrator)[0]))
        start = time.perf_counter()
        compiled = run.lower(theta0, omega).compile()
        compile_s = time.perf_counter() - start
        seconds = C.median_seconds(lambda: jax.block_until_ready(compiled(theta0, omega)), repeats)
        out[impl] = dict(seconds=seconds, compile_s=compile_s, temp=_temp_bytes(compiled),
                         final=np.asarray(compiled(theta0, omega)))
    return dict(out, per_launch=per_launch, window=window)


def rows(args) -> list[dict]:
    """One dict per (lattice, integrator): the columns of this kernel's own table (and a pair for bench_kernels')."""
    import jax
    import numpy as np

    from pallas_kernels.kuramoto_lattice import default_interpret

    o = _options(args)
    peak = C.copy_bandwidth(o["on_gpu"], o["repeats"])
    device = f"{jax.devices()[0].device_kind} (jax {jax.__version__}{', interpret' if default_interpret() else ''})"
    out = []
    for side, batch in zip(o["sides"], o["batches"]):
        for integrator, window in itertools.product(o["integrators"], o["windows"]):
            m = measure(side, batch, o["steps"], integrator, o["repeats"], window)
            work = batch * side * side * o["steps"]
            xla_rate, kern_rate = work / m["xla"]["seconds"], work / m["pallas"]["seconds"]
            kern_bytes = 12.0 * batch * side * side * o["steps"] / m["per_launch"]
            out.append({
                "kernel": KERNEL,
                "shape": f"{batch} x {side}² {integrator}, L={m['per_launch']}, window {m['window']}",
                "device": device,
                "reference": "XLA scan (roll stencil)",
                "ref_ms": 1e3 * m["xla"]["seconds"],
                "kernel_ms": 1e3 * m["pallas"]["seconds"],
                "speedup": m["xla"]["seconds"] / m["pallas"]["seconds"],
                "throughput": f"{kern_rate:.3g} osc-steps/s",
                "xla_throughput": f"{xla_rate:.3g} osc-steps/s",
                "of_peak": f"{kern_bytes / m['pallas']['seconds'] / peak:.1%} of {peak / 1e9:.0f} GB/s copy",
                "ref_temp": m["xla"]["temp"],
                "kernel_temp": m["pallas"]["temp"],
                "max_abs_diff": float(np.max(np.abs(m["pallas"]["final"] - m["xla"]["final"]))),
                "compile_s": m["pallas"]["compile_s"],
                "osc_steps_per_s": kern_rate,
                "xla_osc_steps_per_s": xla_rate,
                "meets_target": kern_rate >= TARGET_OSC_STEPS,
            })
    return out


COLUMNS = (("shape", "lattice"), ("ref_ms", "XLA ms"), ("kernel_ms", "kernel ms"), ("speedup", "kernel / XLA"),
           ("xla_throughput", "XLA rate"), ("throughput", "kernel rate"), ("of_peak", "effective bandwidth"),
           ("ref_temp", "XLA temp"), ("kernel_temp", "kernel temp"), ("max_abs_diff", "max |Δθ|"))


def table(rows: list[dict]) -> str:
    """This kernel's own table: both paths' times, rates and memory on one line per lattice."""
    def cell(key, value):
        if key in ("ref_temp", "kernel_temp"):
            return C.fmt_bytes(value)
        if key in ("ref_ms", "kernel_ms"):
            return f"{value:.2f}"
        if key == "speedup":
            return f"{value:.2f}x"
        if key == "max_abs_diff":
            return f"{value:.1e}"
        return str(value)

    return C.markdown_table([h for _, h in COLUMNS], [[cell(k, r[k]) for k, _ in COLUMNS] for r in rows])


def verdict(rows: list[dict]) -> list[str]:
    """On a GPU, whether the kernel reaches TARGET_OSC_STEPS oscillator-steps/s (issue 9)."""
    from pallas_kernels.kuramoto_lattice import default_interpret

    if default_interpret():
        return []
    hits = [r["shape"] for r in rows if r["meets_target"]]
    return [f"target {TARGET_OSC_STEPS:.0e} oscillator-steps/s: " + ("met by " + "; ".join(hits) if hits else "not met")]
