"""Pallas kernels against their XLA references: time, memory and throughput over sequence lengths, one table.

    python -m experiments.benchmarks.bench_kernels                               # CPU: tiny lengths, interpret mode
    python -m experiments.benchmarks.bench_kernels --lengths 1024,2048,4096,8192 --window 128  # GPU (bf16 by default)
    python -m experiments.benchmarks.bench_kernels --lengths 8192 --batch 4 --heads 8 --head_dim 128 --window 128
    python -m experiments.benchmarks.bench_kernels --kernels phase --per_kernel  # one kernel's own table and target

Rows per kernel (--kernels), all measured in this process; each kernel is a plain module of
experiments/benchmarks/kernels/ whose docstring says what it runs:
  selective     wave-selective attention: the Pallas kernel, the XLA reference and dense causal attention
  interference  the wave family's interference attention: kernel vs the blockwise XLA path (--interference_*)
  phase         PhaseGPT's fused T Euler steps: kernel vs the XLA scan (--phase_*)
  kuramoto      the field simulator's fused lattice steps: kernel vs the XLA scan (--kuramoto_*)
The shared options (--lengths, --batch, --heads, --head_dim, --block_q, --block_k, --dtype, --reps, --warmup) apply to
the attention kernels; phase and kuramoto time --reps calls (3 unless given) of their own shapes.

Columns:
  fwd ms, fwd+bwd ms  median of --reps calls after --warmup; fwd+bwd = the gradient of sum(w · out) with respect to
                      q, k, v (a simulator kernel has only the one call, in "fwd ms")
  temp                XLA's memory_analysis of the compiled fwd+bwd program: working memory beyond inputs and outputs
  throughput          useful FLOPs / fwd+bwd time: 4·D FLOPs per visible (query, key) pair and head forward, 3.5× that
                      forward + backward (FlashAttention's count); dense counts all causal pairs
  % of peak           against a bf16 / f32 matmul measured in this run
  speed-up vs ref     the reference's fwd+bwd time / this row's
  max err             largest |out - reference out| on the timed inputs
  scores / causal     attention scores the implementation computes (exact, from its shapes or the kernel's tile
                      schedule) over causal attention's T(T+1)/2 (a flash-style dense kernel computes about 1)
--work_only prints that last column alone, without running anything: it is exact on a CPU at GPU sizes.
--per_kernel prints one table per kernel instead, each with its own columns (interference: temp / T and its sin/cos
count, which --work_only --per_kernel prints alone; phase: the gradients' error; kuramoto: both paths' rates and the
effective bandwidth), then the kernel's GPU target line.

On CPU the Pallas kernels run in interpret mode: their timings say nothing about GPU speed (only that the kernels
run); the default lengths are tiny there. GPU figures need a GPU run of this script.
"""

from __future__ import annotations

import argparse
import os
import sys

from experiments import common as C
from experiments.benchmarks.kernels import interference, kuramoto, phase, selective
from experiments.benchmarks.kernels.table import render, table_rows
from wavejax.errors import WavejaxError

KERNELS = {"selective": selective, "interference": interference, "phase": phase, "kuramoto": kuramoto}  # run order


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernels", default="all", help=f"comma-separated: {', '.join(KERNELS)} (default: all)")
    ap.add_argument("--lengths", default=None, help="sequence lengths (default 64,128 on CPU; 1024..8192 on GPU)")
    ap.add_argument("--batch", type=int, default=None, help="default 1 on CPU, 4 on GPU")
    ap.add_argument("--heads", type=int, default=None, help="default 2 on CPU, 8 on GPU")
    ap.add_argument("--head_dim", type=int, default=None, help="default 16 on CPU, 128 on GPU")
    ap.add_argument("--fraction", type=float, default=0.25)
    ap.add_argument("--window", type=int, default=None, help="default 16 on CPU, 128 on GPU")
    ap.add_argument("--block_q", type=int, default=None, help="default 16 on CPU, 64 on GPU")
    ap.add_argument("--block_k", type=int, default=None, help="default 16 on CPU, 64 on GPU")
    ap.add_argument("--dtype", default=None, help="float32 or bfloat16 (default: bfloat16 on GPU, float32 on CPU)")
    ap.add_argument("--reps", type=int, default=None, help="timed calls per op (default 3 on CPU, 20 on GPU)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--work_only", action="store_true", help="only the scores / causal column (no timing)")
    ap.add_argument("--per_kernel", action="store_true",
                    help="one table per kernel with its own columns, and its GPU target line")
    ap.add_argument("--plot", default=None, help="save fwd+bwd time against T per impl (selective rows) to this PNG")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    for module in KERNELS.values():
        module.add_arguments(ap)
    args = ap.parse_args(argv)
    args.repeats = args.reps  # --reps as given (None when not): phase and kuramoto time 3 calls unless told
    return args


def check_args(args, gpu: bool) -> None:
    """Fills the backend defaults in and raises WavejaxError (one sentence) for bad values."""
    cpu_gpu = {"batch": (1, 4), "heads": (2, 8), "head_dim": (16, 128), "window": (16, 128), "block_q": (16, 64),
               "block_k": (16, 64), "reps": (3, 20)}
    for key, (on_cpu, on_gpu) in cpu_gpu.items():
        if getattr(args, key) is None:
            setattr(args, key, on_gpu if gpu else on_cpu)
        if getattr(args, key) < 1:
            raise WavejaxError(f"--{key} must be >= 1, got {getattr(args, key)}.")
    args.dtype = args.dtype or ("bfloat16" if gpu else "float32")
    if args.dtype not in ("float32", "bfloat16"):
        raise WavejaxError(f"--dtype must be float32 or bfloat16, got {args.dtype!r}.")
    for key in ("block_q", "block_k"):
        if getattr(args, key) & (getattr(args, key) - 1):
            raise WavejaxError(f"--{key} must be a power of two, got {getattr(args, key)}.")
    if not 0 <= args.fraction <= 1 or args.warmup < 0:
        raise WavejaxError("--fraction must be in [0, 1] and --warmup >= 0.")
    try:
        args.lengths = [int(x) for x in args.lengths.split(",")] if args.lengths else (
            [1024, 2048, 4096, 8192] if gpu else [64, 128])
    except ValueError:
        raise WavejaxError(f"--lengths must be comma-separated integers, got {args.lengths!r}.") from None
    if any(t < 1 for t in args.lengths):
        raise WavejaxError("--lengths must be positive integers.")
    known = list(KERNELS)
    args.kernels = known if args.kernels == "all" else [k.strip() for k in args.kernels.split(",") if k.strip()]
    for k in args.kernels:
        if k not in known:
            raise WavejaxError(f"unknown kernel {k!r} in --kernels; available here: {', '.join(known)}.")


def measure(args, gpu: bool, peak: float | None) -> dict:
    """{kernel: its rows} for the kernels of --kernels, in KERNELS' order (under --work_only: selective's alone, in the
    one table; a kernel's own work count comes with --per_kernel)."""
    measured = {}
    for name, module in KERNELS.items():
        if name not in args.kernels:
            continue
        if name == "selective":
            measured[name] = selective.rows(args, gpu, peak)
        elif not args.work_only:
            print(f"\n{name}: rows from {module.__name__}", flush=True)
            measured[name] = module.rows(args)
    return measured


def one_table_rows(measured: dict) -> list[dict]:
    """Every kernel's rows in the one table's keys (kernel-vs-reference pairs split into two rows)."""
    return [r for kernel_rows in measured.values() for row in kernel_rows for r in table_rows(row)]


def print_tables(measured: dict, args) -> None:
    """The one table (every row in this table's keys) and selective's verdict, or with --per_kernel each kernel's own
    table and target line (and under --work_only the work counts a kernel has)."""
    if not args.per_kernel:
        rows = one_table_rows(measured)
        print()
        print(render(rows))
        for line in selective.verdict(rows):
            print(line)
        return
    for name, module in KERNELS.items():
        if name in measured:
            print()
            print(module.table(measured[name]))
            for line in module.verdict(measured[name]):
                print(line)
        elif name in args.kernels and args.work_only and hasattr(module, "work_table"):
            print()
            print(module.work_table(args))


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import jax

    gpu = jax.default_backend() == "gpu"
    try:
        check_args(args, gpu)
    except WavejaxError as e:
        C.fail(str(e), 2)
    dev = jax.devices()[0]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"bench_kernels: {dev.device_kind} ({jax.default_backend()}), jax {jax.__version__}, load average {load}")
    if not gpu:
        print("note: on CPU the Pallas kernels run in interpret mode; these timings say nothing about GPU speed "
              "(they only show that the kernels run); measure on a GPU for the issue's targets.")
    peak = None
    if not args.work_only:
        peak = C.matmul_peak_flops(args.dtype, gpu, args.reps)
        print(f"measured {args.dtype} matmul peak: {peak / 1e12:.3g} TFLOP/s", flush=True)
    measured = measure(args, gpu, peak)
    print_tables(measured, args)
    rows = one_table_rows(measured)
    if args.plot and "selective" in args.kernels and not args.work_only:
        selective.plot(rows, args.plot, f"wave-selective attention, {dev.device_kind}, {args.dtype}")
        print(f"plot: {args.plot}")
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump({"device": dev.device_kind, "jax": jax.__version__, "args": {k: v for k, v in vars(args).items()},
                       "peak_flops": peak, "rows": rows}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
