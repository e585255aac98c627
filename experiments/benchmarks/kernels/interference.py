"""Interference attention rows of bench_kernels: the kernel (pallas_kernels/interference_attention.py) against the
blockwise XLA path.

    python -m experiments.benchmarks.bench_kernels --kernels interference --per_kernel --head_dim 8  # CPU smoke test
    python -m experiments.benchmarks.bench_kernels --kernels interference --per_kernel --lengths 1024,2048,4096,8192 \
        --head_dim 48                  # on a GPU (bf16, the wave model's heads: B=4, H=8, W=48, D=48): issue 9's row

Per sequence length, both implementations of the wave family's interference attention (normalised rows, the sound
default) on the same random inputs (omega, phase ~ N(0,1), amp = softplus(N(0,1)) + 1e-8, v ~ N(0,1)):
  xla     wavejax.ops.wave_attention.interference_attention: lax.scan over key blocks of --block_k, rematerialised
          (the model's default impl, and the baseline every ratio is taken against)
  pallas  interference_flash_attention: query tiles x causal key blocks, the wave sum on chip
Options: bench_kernels' --lengths, --batch, --heads, --head_dim, --block_q, --block_k, --dtype, --reps and --warmup,
and this kernel's --interference_waves (W per head, default 8 on CPU, 48 on GPU) and --interference_unnormalized.
Columns of its own table (--per_kernel): fwd ms and fwd+bwd ms (the gradient of sum(w · out) with respect to omega,
phase, amp and v), medians of --reps calls after --warmup; XLA's memory_analysis of the compiled fwd+bwd program
(temp: working memory beyond inputs and outputs) and that temp divided by T (constant when memory is linear in T);
throughput in causal (query, key, wave) triples per second of fwd+bwd; the speed-up (xla fwd+bwd / this row's); the
sin/cos evaluations per causal triple that fwd+bwd asks for (exact from the shapes, `trig_per_causal_pair`; the trig
work dominates both); the largest |out - xla out|. --work_only --per_kernel prints T and that column alone without
running anything (exact on a CPU at GPU sizes).

On a CPU the kernel runs in interpret mode (a sequential loop over the grid in XLA): its timings say nothing about GPU
speed; the run only checks that the benchmark works and that both paths agree. The issue's GPU target: the kernel at
least 5x faster than the blockwise XLA path (fwd+bwd) with memory linear in T; it has not been measured yet.
"""

from __future__ import annotations

from experiments import common as C
from experiments.benchmarks.kernels.table import fmt_cell

KERNEL = "interference"
TARGET_SPEEDUP = 5.0  # issue 9, fwd+bwd on an H100/H200
WAVES = (8, 48)  # waves per head W by default: (CPU, GPU)


def add_arguments(parser) -> None:
    """This kernel's options; bench_kernels' shared --lengths, --batch, --heads, --head_dim, --block_q, --block_k,
    --dtype, --reps and --warmup give the rest."""
    parser.add_argument("--interference_waves", type=int, default=None,
                        help="waves per head W (default 8 on CPU, 48 on GPU)")
    parser.add_argument("--interference_unnormalized", action="store_true", help="the original's unnormalised rows")


def _options(args) -> dict:
    """This benchmark's settings from bench_kernels' shared options (filled in per backend) and its own."""
    import jax

    on_gpu = jax.default_backend() == "gpu"
    o = {"lengths": tuple(int(t) for t in args.lengths), "batch": args.batch, "heads": args.heads,
         "head_dim": args.head_dim, "waves": args.interference_waves or WAVES[on_gpu], "block_q": args.block_q,
         "block_k": args.block_k, "repeats": args.reps, "dtype": args.dtype,
         "normalize": not args.interference_unnormalized, "warmup": int(args.warmup or 0), "on_gpu": on_gpu}
    if o["waves"] < 1:
        C.fail(f"--interference_waves must be >= 1, got {o['waves']}.")
    for key in ("block_q", "block_k"):
        if on_gpu and o[key] < 16:
            C.fail(f"--{key} must be a power of two (>= 16 on a GPU), got {o[key]}.")
    return o


def trig_per_causal_pair(impl: str, t: int, block_q: int, block_k: int) -> float:
    """Sin/cos evaluations per causal (query, key, wave) triple that one fwd+bwd of `impl` asks for, exact from the
    shapes: xla evaluates every (query, key) pair of its padded key blocks, 3 times (forward cos, the rematerialised
    cos, the backward's sin); pallas evaluates the pairs of the causal blocks once forward (key blocks up to each query
    tile's last row) and 3 times in its one backward pass (query tiles from each key block's first row: α's cos, then
    cos and sin for the gradients)."""
    causal = t * (t + 1) / 2
    if impl == "xla":
        block = min(block_k, t)
        return 3 * t * (-(-t // block) * block) / causal
    tile = max(block_q, block_k)
    tp = -(-t // tile) * tile
    query_side = sum(-(-(i + 1) * block_q // block_k) for i in range(tp // block_q)) * block_q * block_k
    key_side = sum(tp // block_q - j * block_k // block_q for j in range(tp // block_k)) * block_q * block_k
    return (query_side + 3 * key_side) / causal


def _inputs(rng, b, h, t, w, d, dtype):
    import jax.numpy as jnp
    import numpy as np

    omega, phase, logits = (rng.standard_normal((b, h, t, w)) for _ in range(3))
    amp = np.logaddexp(0.0, logits) + 1e-8
    v, weights = rng.standard_normal((b, h, t, d)), rng.standard_normal((b, h, t, d))
    return tuple(jnp.asarray(a, dtype) for a in (omega, phase, amp, v, weights))


def _length_rows(t: int, o: dict, impls: dict) -> list[dict]:
    """The "xla" and "pallas" rows of one sequence length (an impl that fails prints why and has no row)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    b, h, w, d = o["batch"], o["heads"], o["waves"], o["head_dim"]
    omega, phase, amp, v, weights = _inputs(np.random.default_rng(t), b, h, t, w, d, jnp.dtype(o["dtype"]))
    triples = b * h * w * t * (t + 1) / 2
    results = {}
    for impl, attend in impls.items():
        def loss(omega, phase, amp, v, weights, attend=attend):
            out = attend(omega, phase, amp, v).astype(jnp.float32)
            return jnp.sum(weights.astype(jnp.float32) * out)

        try:
            fwd_ms, _, out = C.compile_and_time(attend, (omega, phase, amp, v), o["repeats"], o["warmup"])
            bwd_ms, temp, _ = C.compile_and_time(jax.grad(loss, argnums=(0, 1, 2, 3)),
                                                 (omega, phase, amp, v, weights), o["repeats"], o["warmup"])
        except Exception as e:  # e.g. out of memory at a long length: one line says why, the run goes on
            print(f"  T={t} {impl}: failed ({type(e).__name__}: {str(e).splitlines()[0][:120]})", flush=True)
            continue
        print(f"  T={t} {impl}: fwd {fwd_ms:.2f} ms, fwd+bwd {bwd_ms:.2f} ms", flush=True)
        results[impl] = {"kernel": KERNEL, "size": f"T={t}", "impl": impl, "fwd_ms": fwd_ms, "fwd_bwd_ms": bwd_ms,
                         "temp_bytes": temp, "temp_per_t": None if temp is None else temp / t,
                         "throughput": f"{triples / (bwd_ms / 1e3):.3g} pair-waves/s",
                         "trig": trig_per_causal_pair(impl, t, o["block_q"], o["block_k"]),
                         "out": np.asarray(out, np.float32)}
    ref = results.get("xla")
    ref_out = None if ref is None else ref["out"]
    rows = []
    for impl, r in results.items():
        out = r.pop("out")
        if ref is not None:
            r["speedup"] = ref["fwd_bwd_ms"] / r["fwd_bwd_ms"]
            r["max_err"] = float(np.abs(out - ref_out).max())
            r["meets_target"] = impl == "pallas" and r["speedup"] >= TARGET_SPEEDUP
        rows.append(r)
    return rows


def rows(args) -> list[dict]:
    """Per length, an "xla" and a "pallas" row in bench_kernels' keys (plus temp_per_t, trig and meets_target)."""
    import functools

    from pallas_kernels.interference_attention import interference_attention, interference_flash_attention

    o = _options(args)
    impls = {
        "xla": functools.partial(interference_attention, normalize=o["normalize"], block_size=o["block_k"]),
        "pallas": functools.partial(interference_flash_attention, normalize=o["normalize"], block_q=o["block_q"],
                                    block_k=o["block_k"]),
    }
    print(f"interference: B={o['batch']}, H={o['heads']}, W={o['waves']}, D={o['head_dim']}, blocks "
          f"{o['block_q']}/{o['block_k']}, {o['dtype']}, {'normalised' if o['normalize'] else 'unnormalised'}, "
          f"median of {o['repeats']}", flush=True)
    return [r for t in o["lengths"] for r in _length_rows(t, o, impls)]


COLUMNS = (("size", "T"), ("impl", "impl"), ("fwd_ms", "fwd ms"), ("fwd_bwd_ms", "fwd+bwd ms"),
           ("speedup", "fwd+bwd speed-up vs xla"), ("temp_bytes", "temp (fwd+bwd)"), ("temp_per_t", "temp / T"),
           ("throughput", "throughput"), ("trig", "sin/cos per causal pair-wave"), ("max_err", "max err vs xla"))


def table(rows: list[dict]) -> str:
    """This kernel's own table: the shared columns and temp / T and the sin/cos count."""
    def cell(key, value):
        if key == "temp_per_t" and value is not None:
            return C.fmt_bytes(value)
        if key == "trig":
            return f"{value:.2f}"
        return fmt_cell(key, value)

    return C.markdown_table([hd for _, hd in COLUMNS], [[cell(k, r.get(k)) for k, _ in COLUMNS] for r in rows],
                            align="ll" + "r" * (len(COLUMNS) - 2))


def work_table(args) -> str:
    """T and the sin/cos count per causal pair-wave of both impls, computed from the shapes without running."""
    o = _options(args)
    return C.markdown_table(["T", "blocks q/k", "xla sin/cos per causal pair-wave", "pallas"], [
        [t, f"{o['block_q']}/{o['block_k']}", *(f"{trig_per_causal_pair(i, t, o['block_q'], o['block_k']):.2f}"
                                                for i in ("xla", "pallas"))] for t in o["lengths"]])


def verdict(rows: list[dict]) -> list[str]:
    """On a GPU, whether the kernel's fwd+bwd is at least TARGET_SPEEDUP times the blockwise XLA path's (issue 9)."""
    from pallas_kernels import default_interpret

    if default_interpret():
        return []
    hits = [r["size"] for r in rows if r.get("meets_target")]
    return [f"target: pallas fwd+bwd >= {TARGET_SPEEDUP:g}x the blockwise XLA path: "
            + ("met at " + ", ".join(hits) if hits else "not met")]
