"""Pallas kernels against their XLA references: time, memory and throughput over sequence lengths, one table.

    python experiments/bench_kernels.py                                   # CPU: tiny lengths, interpret mode
    python experiments/bench_kernels.py --lengths 1024,2048,4096,8192 --window 128     # GPU (bf16 by default)
    python experiments/bench_kernels.py --lengths 8192 --batch 4 --heads 8 --head_dim 128 --window 128  # issue 9

Rows per kernel, all measured in this process:
  selective  wave-selective attention (mask: causal and (query is a wave token or q - k < W)), fraction of wave
             tokens --fraction chosen at random (exactly k = ceil(fraction·T) per row, outside the timed call):
               pallas  pallas_kernels/selective_attention.py (flash-style, permuted queries, block skipping)
               xla     wavejax/ops/selective.py's gathered k×T global + banded T×2W local form (the reference the ratio
                       is taken against; the model's default impl)
               dense   jax.nn.dot_product_attention(is_causal=True): implementation="cudnn" on GPU, "xla" on CPU
  interference, phase, kuramoto
             rows from experiments/_bench_<name>_kernel.py when that module exists: its `add_arguments(parser,
             prefix="<name>_")` adds its options here and its `rows(args)` returns dicts, either with this table's
             keys (one row per impl) or as kernel-vs-reference pairs (ref_ms/kernel_ms, ref_temp/kernel_temp,
             shape, of_peak, max_abs_diff), which become an "xla" and a "pallas" row

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

On CPU the Pallas kernels run in interpret mode: their timings say nothing about GPU speed (only that the kernels
run); the default lengths are tiny there. GPU figures need a GPU run of this script.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402

from wavejax.errors import WavejaxError  # noqa: E402

COLUMNS = [  # (row key, header); rows from other kernels use the same keys (missing or None prints "—")
    ("kernel", "kernel"), ("size", "size"), ("impl", "impl"), ("fwd_ms", "fwd ms"), ("fwd_bwd_ms", "fwd+bwd ms"),
    ("temp_bytes", "temp (fwd+bwd)"), ("throughput", "throughput"), ("peak_pct", "% of peak"),
    ("speedup", "speed-up vs ref"), ("max_err", "max err"), ("work", "scores / causal"),
]
OPTIONAL_MODULES = ("_bench_interference_kernel", "_bench_phase_kernel", "_bench_kuramoto_kernel")


def parse_args(argv, extra_modules=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernels", default="all", help="comma-separated: selective, interference, phase, kuramoto (default: all available)")
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
    ap.add_argument("--plot", default=None, help="save fwd+bwd time against T per impl (selective rows) to this PNG")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    for name, module in (extra_modules or {}).items():
        if hasattr(module, "add_arguments"):
            module.add_arguments(ap, prefix=f"{name}_")
    args = ap.parse_args(argv)
    args.repeats = args.reps  # the name the optional modules read
    return args


def check_args(args, gpu: bool, extra_modules) -> None:
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
    known = ["selective"] + list(extra_modules)
    args.kernels = known if args.kernels == "all" else [k.strip() for k in args.kernels.split(",") if k.strip()]
    for k in args.kernels:
        if k not in known:
            raise WavejaxError(f"unknown kernel {k!r} in --kernels; available here: {', '.join(known)}.")


def optional_kernel_modules() -> dict:
    """{kernel name: module} for the optional row providers that import (e.g. "kuramoto")."""
    found = {}
    for name in OPTIONAL_MODULES:
        try:
            found[name.removeprefix("_bench_").removesuffix("_kernel")] = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise  # the module exists but is broken: say so rather than silently drop its rows
    return found


# -- measurement helpers (shared by the kernels' rows) -------------------------------------------------------------

def compile_and_time(fn, args, reps: int, warmup: int):
    """(median ms, temp bytes or None, output) of the jitted fn(*args)."""
    import jax

    compiled = jax.jit(fn).lower(*args).compile()
    mem = compiled.memory_analysis()
    temp = getattr(mem, "temp_size_in_bytes", None) if mem is not None else None
    out = compiled(*args)
    times = C.time_calls(lambda: jax.block_until_ready(compiled(*args)), reps, warmup)
    return 1e3 * statistics.median(times), temp, out


def matmul_peak_flops(dtype: str, gpu: bool, reps: int) -> float:
    """FLOP/s of one square matmul (8192 on GPU, 512 on CPU) in `dtype`, measured now: the '% of peak' base."""
    import jax.numpy as jnp
    import numpy as np

    n = 8192 if gpu else 512
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.dtype(dtype))
    ms, _, _ = compile_and_time(lambda x, y: x @ y, (a, a), max(reps, 3), 1)
    return 2 * n**3 / (ms / 1e3)


# -- the wave-selective attention rows ------------------------------------------------------------------------------

def visible_pairs(is_wave, window: int) -> int:
    """Number of (query, key) pairs the wave-selective mask allows, summed over the batch."""
    import numpy as np

    t = is_wave.shape[1]
    pos = np.arange(t)
    return int(np.where(is_wave, pos + 1, np.minimum(pos + 1, window)).sum())


def score_work(is_wave, window: int, block_q: int, block_k: int) -> dict:
    """{impl: scores computed / causal pairs}: xla = k·T gathered + T_pad·2W banded (its [T/W, W, 2W] blocks);
    pallas = the forward schedule's key blocks × block_q·block_k."""
    import jax
    import numpy as np

    from pallas_kernels.selective_attention import scheduled_score_blocks, tile_schedule

    b, t = is_wave.shape
    causal = b * t * (t + 1) / 2
    w = min(window, t)
    k = max(int(is_wave.sum(1).max()), 1)
    xla = b * (k * t + -(-t // w) * w * 2 * w)
    tile = max(block_q, block_k)
    padded = np.pad(is_wave, ((0, 0), (0, -t % tile)))
    schedule = jax.jit(tile_schedule, static_argnums=(1, 2, 3))(padded, window, block_q, block_k)
    pallas = float(np.asarray(scheduled_score_blocks(schedule)).sum()) * block_q * block_k
    return {"xla": xla / causal, "pallas": pallas / causal}


def random_waves(rng, b: int, t: int, fraction: float):
    """[b, t] bool with exactly ceil(fraction·t) wave tokens per row at random positions (none for fraction 0)."""
    import numpy as np

    from wavejax.ops.selective import capacity

    kk = capacity(fraction, t) if fraction > 0 else 0
    is_wave = np.zeros((b, t), bool)
    for row in range(b):
        is_wave[row, rng.choice(t, kk, replace=False)] = True
    return is_wave


def selective_rows(args, gpu: bool, peak: float | None) -> list[dict]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from pallas_kernels.selective_attention import wave_selective_flash_attention
    from wavejax.ops.selective import selection_indices, wave_selective_attention

    dt = jnp.dtype(args.dtype)
    b, h, d, window = args.batch, args.heads, args.head_dim, args.window
    dense_impl = "cudnn" if gpu else "xla"
    rows = []
    for t in args.lengths:
        rng = np.random.default_rng(t)
        is_wave = random_waves(rng, b, t, args.fraction)
        work = score_work(is_wave, window, args.block_q, args.block_k)
        if args.work_only:
            rows += [{"kernel": "selective", "size": f"T={t}", "impl": name, "work": work[name]} for name in work]
            continue
        q, k, v, w = (jnp.asarray(rng.standard_normal((b, t, h, d)), dt) for _ in range(4))
        idx, valid = selection_indices(jnp.asarray(is_wave), max(int(is_wave.sum(1).max()), 1))
        wave_arr = jnp.asarray(is_wave)
        ops = {  # selection arrays are arguments, not constants, so XLA cannot fold them into the program
            "xla": (lambda q, k, v, idx, valid, is_wave: wave_selective_attention(q, k, v, idx, valid, window)),
            "pallas": (lambda q, k, v, idx, valid, is_wave: wave_selective_flash_attention(
                q, k, v, is_wave, window, block_q=args.block_q, block_k=args.block_k)),
            "dense": (lambda q, k, v, idx, valid, is_wave: jax.nn.dot_product_attention(
                q, k, v, is_causal=True, implementation=dense_impl)),
        }
        pairs = {"xla": visible_pairs(is_wave, window), "dense": b * t * (t + 1) // 2}
        pairs["pallas"] = pairs["xla"]
        results = {}
        for name, op in ops.items():
            def loss(q, k, v, idx, valid, is_wave, w, op=op):
                return jnp.sum(w.astype(jnp.float32) * op(q, k, v, idx, valid, is_wave).astype(jnp.float32))

            inputs = (q, k, v, idx, valid, wave_arr)
            try:
                fwd_ms, _, out = compile_and_time(op, inputs, args.reps, args.warmup)
                bwd_ms, temp, _ = compile_and_time(jax.grad(loss, argnums=(0, 1, 2)), inputs + (w,), args.reps,
                                                   args.warmup)
            except Exception as e:  # e.g. cuDNN refusing a shape: one row says why instead of the run dying
                print(f"  T={t} {name}: failed ({type(e).__name__}: {str(e).splitlines()[0][:120]})", flush=True)
                continue
            flops = 3.5 * 4 * d * h * pairs[name]
            results[name] = {"kernel": "selective", "size": f"T={t}", "impl": name, "fwd_ms": fwd_ms,
                             "fwd_bwd_ms": bwd_ms, "temp_bytes": temp, "flops_per_s": flops / (bwd_ms / 1e3),
                             "work": work.get(name), "out": np.asarray(out.astype(jnp.float32))}
            print(f"  T={t} {name}: fwd {fwd_ms:.2f} ms, fwd+bwd {bwd_ms:.2f} ms", flush=True)
        ref = results.get("xla")
        ref_out = None if ref is None else ref["out"]
        for name, r in results.items():
            out = r.pop("out")
            r["peak_pct"] = 100 * r["flops_per_s"] / peak
            r["throughput"] = f"{r.pop('flops_per_s') / 1e12:.3g} TFLOP/s"
            if ref is not None:
                r["speedup"] = ref["fwd_bwd_ms"] / r["fwd_bwd_ms"]
                if name != "dense":  # dense attention has another mask: no error column
                    r["max_err"] = float(np.abs(out - ref_out).max())
            rows.append(r)
    return rows


def selective_versus_dense(rows: list[dict]) -> list[str]:
    """One line per length: the kernel's fwd+bwd speed-up over dense causal attention (issue 9's target: >= 2× against
    cuDNN at T = 8192, fraction 0.25, W = 128 on an H100/H200)."""
    lines = []
    for size in dict.fromkeys(r["size"] for r in rows if r["kernel"] == "selective"):
        by_impl = {r["impl"]: r for r in rows if r["kernel"] == "selective" and r["size"] == size}
        if "fwd_bwd_ms" in by_impl.get("pallas", {}) and "fwd_bwd_ms" in by_impl.get("dense", {}):
            ratio = by_impl["dense"]["fwd_bwd_ms"] / by_impl["pallas"]["fwd_bwd_ms"]
            lines.append(f"selective {size}: pallas fwd+bwd is {ratio:.2f}× as fast as dense causal attention")
    return lines


def plot_selective(rows: list[dict], path: str, title: str) -> None:
    """fwd+bwd ms against T, one line per impl, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    selective = [r for r in rows if r["kernel"] == "selective" and r.get("fwd_bwd_ms") is not None]
    for impl in dict.fromkeys(r["impl"] for r in selective):
        points = [(int(r["size"].removeprefix("T=")), r["fwd_bwd_ms"]) for r in selective if r["impl"] == impl]
        ax.plot(*zip(*points), marker="o", label=impl)
    ax.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel="fwd+bwd ms", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table_rows(row: dict) -> list[dict]:
    """A provider's row in this table's keys: as is when it names its impl, else a kernel-vs-reference pair split into
    an "xla" row and a "pallas" row."""
    if "impl" in row or "kernel_ms" not in row:
        return [row]
    size = row.get("shape", row.get("size"))
    xla_rate = row.get("xla_osc_steps_per_s")
    reference = {"kernel": row["kernel"], "size": size, "impl": "xla", "fwd_ms": row.get("ref_ms"),
                 "temp_bytes": row.get("ref_temp"), "speedup": 1.0,
                 "throughput": None if xla_rate is None else f"{xla_rate:.3g} osc-steps/s"}
    kernel = {"kernel": row["kernel"], "size": size, "impl": "pallas", "fwd_ms": row.get("kernel_ms"),
              "temp_bytes": row.get("kernel_temp"), "throughput": row.get("throughput"),
              "peak_pct": row.get("of_peak"), "speedup": row.get("speedup"), "max_err": row.get("max_abs_diff")}
    return [reference, kernel]


# -- output ---------------------------------------------------------------------------------------------------------

def fmt_cell(key: str, value) -> str:
    if value is None:
        return "—"
    if key in ("fwd_ms", "fwd_bwd_ms"):
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    if key == "temp_bytes":
        return C.fmt_bytes(value)
    if key == "peak_pct" and not isinstance(value, str):
        return f"{value:.1f}%"
    if key == "speedup":
        return f"{value:.2f}×"
    if key == "max_err":
        return f"{value:.1e}"
    if key == "work":
        return f"{value:.3f}"
    return str(value)


def render(rows: list[dict]) -> str:
    """The markdown table of the columns some row has a value for."""
    columns = [(k, hd) for k, hd in COLUMNS if any(r.get(k) is not None for r in rows)]
    return C.markdown_table([hd for _, hd in columns], [[fmt_cell(k, r.get(k)) for k, _ in columns] for r in rows],
                            align="".join("l" if k in ("kernel", "size", "impl") else "r" for k, _ in columns))


def main(argv=None) -> int:
    extra = optional_kernel_modules()
    args = parse_args(sys.argv[1:] if argv is None else argv, extra)
    import jax

    gpu = jax.default_backend() == "gpu"
    try:
        check_args(args, gpu, extra)
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
        peak = matmul_peak_flops(args.dtype, gpu, args.reps)
        print(f"measured {args.dtype} matmul peak: {peak / 1e12:.3g} TFLOP/s", flush=True)
    rows = []
    if "selective" in args.kernels:
        print(f"\nselective: B={args.batch}, H={args.heads}, D={args.head_dim}, fraction {args.fraction}, "
              f"W={args.window}, blocks {args.block_q}/{args.block_k}, {args.dtype}, median of {args.reps}", flush=True)
        rows += selective_rows(args, gpu, peak)
    for name, module in extra.items():
        if name in args.kernels and not args.work_only:
            print(f"\n{name}: rows from experiments/{module.__name__}.py", flush=True)
            rows += [r for row in module.rows(args) for r in table_rows(row)]
    print()
    print(render(rows))
    for line in selective_versus_dense(rows):
        print(line)
    if args.plot and "selective" in args.kernels and not args.work_only:
        plot_selective(rows, args.plot, f"wave-selective attention, {dev.device_kind}, {args.dtype}")
        print(f"plot: {args.plot}")
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump({"device": dev.device_kind, "jax": jax.__version__, "args": {k: v for k, v in vars(args).items()},
                       "peak_flops": peak, "rows": rows}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
