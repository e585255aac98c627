"""Harmonic GPT speed: (a) the report's step-time benchmark, (b) wave-selective vs dense causal attention alone.

    python -m experiments.benchmarks.bench_harmonic                          # both parts at the report's settings
    python -m experiments.benchmarks.bench_harmonic --part steps --steps 20  # (a) only
    python -m experiments.benchmarks.bench_harmonic --part attention --lengths 256,512,1024,2048
    python -m experiments.benchmarks.bench_harmonic --part attention --lengths 256,1024,4096,8192 --dtype bfloat16 # GPU

(a) steps: configs/harmonic.py's standard GPT, Harmonic "no MoE" and "full MoE" at the report's batch 4 × 256, in one
process: median time of the jitted forward pass (evaluation mode) and of the jitted train step (forward, backward, AdamW
update), each call waited for, after warmup calls that include compilation; ratio = time / the standard GPT's. The
original reported 3.57 ms (standard) against 991 ms (no MoE) and 1003 ms (full MoE) per iteration on an RTX 4070 Ti.

(b) attention: one attention op at B × T × H × D (default 4 × T × 4 × 64, the report's width 256), forward and
forward + backward (gradient of sum(w · out) with respect to q, k, v), for T in --lengths:
  dense      jax.nn.dot_product_attention(is_causal=True): XLA's dense T×T form on CPU; cuDNN flash attention on GPU
             for bfloat16 inputs (implementation chosen by JAX)
  selective  wave_selective_attention (wavejax/ops/selective.py): k = ceil(fraction·T) gathered queries over all keys
             plus banded local attention; the selection (random, exactly k per row) is made outside the timed call
memory = temp bytes of the compiled program (XLA's memory_analysis: working memory beyond inputs and outputs).
"flop ratio" is the issue's fraction + (1 - fraction)·W/(T/2) (selective over causal-dense score work); "time ratio"
is selective / dense as measured here (< 1 means the selective op is faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys

from experiments import common as C
from wavejax.errors import WavejaxError

REPORT = {"harmonic:standard": 3.57, "harmonic": 991.12, "harmonic:moe": 1003.37}  # ms / iteration, RTX 4070 Ti
STEP_CONFIGS = "harmonic:standard,harmonic,harmonic:moe"
VOCAB = 65  # char tinyshakespeare, the data bench_train.bench_one trains on


# -- (a) whole-model steps -----------------------------------------------------------------------------------------

def bench_steps(specs, batch: int, steps: int, warmup: int, sets) -> list[dict]:
    import jax

    from experiments.benchmarks import bench_train

    rows = []
    for name, arg in specs:
        lab = C.label(name, arg)
        config = bench_train.build_config(name, arg, sets, batch)
        res = bench_train.bench_one(config, steps, warmup)
        from wavejax.models.gpt import build_model, init_params

        model = build_model(config.model, VOCAB)
        params = init_params(model, jax.random.PRNGKey(0), config.model.block_size)
        tokens = jax.numpy.zeros((batch, config.model.block_size), jax.numpy.int32)
        forward = jax.jit(lambda p, x: model.apply({"params": p}, x, True))
        fwd = C.time_calls(lambda: jax.block_until_ready(forward(params, tokens)), steps, warmup)
        rows.append({"config": lab, "params": res["params"], "forward_ms": 1e3 * statistics.median(fwd),
                     "train_ms": 1e3 * statistics.median(res["times"]), "report_ms": REPORT.get(lab),
                     "tokens": batch * config.model.block_size})
        print(f"  {lab}: forward {rows[-1]['forward_ms']:.2f} ms, train step {rows[-1]['train_ms']:.2f} ms", flush=True)
    return rows


def render_steps(rows: list[dict]) -> str:
    base = rows[0]
    headers = ["model", "params", "forward ms", "forward ratio", "train step ms", "train ratio", "train tokens/s",
               "report ms/iter (ratio)"]
    body = []
    for r in rows:
        rep = "—" if r["report_ms"] is None else f"{r['report_ms']:.2f} ({r['report_ms'] / REPORT['harmonic:standard']:.0f}×)"
        body.append([r["config"], f"{r['params']:,}", f"{r['forward_ms']:.2f}", f"{r['forward_ms'] / base['forward_ms']:.2f}×",
                     f"{r['train_ms']:.2f}", f"{r['train_ms'] / base['train_ms']:.2f}×",
                     f"{r['tokens'] / (r['train_ms'] / 1e3):,.0f}", rep])
    return C.markdown_table(headers, body)


# -- (b) attention alone -------------------------------------------------------------------------------------------

def bench_attention(lengths, batch: int, heads: int, head_dim: int, fraction: float, window: int, dtype: str,
                    reps: int, warmup: int) -> list[dict]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from experiments.benchmarks.kernels.selective import random_waves
    from wavejax.ops.selective import capacity, selection_indices, wave_selective_attention

    dt = jnp.dtype(dtype)
    rows = []
    for t in lengths:
        rng = np.random.default_rng(t)
        q, k, v, w = (jnp.asarray(rng.standard_normal((batch, t, heads, head_dim)), dt) for _ in range(4))
        kk = capacity(fraction, t)
        is_wave = random_waves(rng, batch, t, fraction)  # exactly kk wave tokens per row
        idx, valid = selection_indices(jnp.asarray(is_wave), kk)
        ops = {  # selection arrays are arguments, not constants, so XLA cannot fold them into the program
            "dense": lambda q, k, v, idx, valid: jax.nn.dot_product_attention(q, k, v, is_causal=True),
            "selective": lambda q, k, v, idx, valid: wave_selective_attention(q, k, v, idx, valid, window),
        }
        row = {"T": t, "k": kk}
        for name, op in ops.items():
            def loss(q, k, v, idx, valid, w, op=op):
                return jnp.sum(w.astype(jnp.float32) * op(q, k, v, idx, valid).astype(jnp.float32))

            fwd = jax.jit(lambda q, k, v, idx, valid, w, op=op: op(q, k, v, idx, valid))
            grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
            for mode, fn in (("fwd", fwd), ("bwd", grad)):
                args = (q, k, v, idx, valid, w)
                compiled = fn.lower(*args).compile()
                mem = compiled.memory_analysis()
                row[f"{name}_{mode}_mem"] = getattr(mem, "temp_size_in_bytes", None) if mem is not None else None
                times = C.time_calls(lambda: jax.block_until_ready(compiled(*args)), reps, warmup)
                row[f"{name}_{mode}_ms"] = 1e3 * statistics.median(times)
        row["flop_ratio"] = fraction + (1 - fraction) * min(window, t) / (t / 2)
        rows.append(row)
        print(f"  T={t}: dense {row['dense_fwd_ms']:.2f}/{row['dense_bwd_ms']:.2f} ms, selective "
              f"{row['selective_fwd_ms']:.2f}/{row['selective_bwd_ms']:.2f} ms (fwd/fwd+bwd)", flush=True)
    return rows


def render_attention(rows: list[dict]) -> str:
    headers = ["T", "k", "dense fwd ms", "selective fwd ms", "dense fwd+bwd ms", "selective fwd+bwd ms",
               "time ratio fwd", "time ratio fwd+bwd", "flop ratio", "dense temp (fwd+bwd)", "selective temp (fwd+bwd)"]
    body = [[r["T"], r["k"], f"{r['dense_fwd_ms']:.2f}", f"{r['selective_fwd_ms']:.2f}", f"{r['dense_bwd_ms']:.2f}",
             f"{r['selective_bwd_ms']:.2f}", f"{r['selective_fwd_ms'] / r['dense_fwd_ms']:.2f}",
             f"{r['selective_bwd_ms'] / r['dense_bwd_ms']:.2f}", f"{r['flop_ratio']:.3f}",
             C.fmt_bytes(r["dense_bwd_mem"]), C.fmt_bytes(r["selective_bwd_mem"])] for r in rows]
    return C.markdown_table(headers, body)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("all", "steps", "attention"), default="all")
    ap.add_argument("--configs", default=STEP_CONFIGS, help="(a) comma-separated NAME:ARG; the first is the ratio's base")
    ap.add_argument("--batch", type=int, default=4, help="(a) and (b) batch size (the report: 4)")
    ap.add_argument("--steps", type=int, default=20, help="(a) timed calls per config (the report: 20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls first (compilation)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="(a) override for every config")
    ap.add_argument("--lengths", default=None, help="(b) sequence lengths (default 256..2048 on CPU, ..8192 on GPU)")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--head_dim", type=int, default=64)
    ap.add_argument("--fraction", type=float, default=0.25)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--dtype", default=None, help="(b) float32 or bfloat16 (default: bfloat16 on GPU, float32 on CPU)")
    ap.add_argument("--reps", type=int, default=10, help="(b) timed calls per op")
    C.add_results_arg(ap, "bench_harmonic")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        if args.batch < 1 or args.steps < 1 or args.warmup < 0 or args.reps < 1:
            raise WavejaxError("--batch, --steps and --reps must be >= 1 and --warmup >= 0.")
        if not 0 < args.fraction <= 1 or args.window < 1:
            raise WavejaxError("--fraction must be in (0, 1] and --window >= 1.")
        specs = C.parse_specs(args.configs)
        lengths = [int(x) for x in args.lengths.split(",")] if args.lengths else None
        if lengths is not None and any(t < 1 for t in lengths):
            raise WavejaxError("--lengths must be positive integers.")
    except (WavejaxError, ValueError) as e:
        C.fail(str(e), 2)

    import jax

    dev = jax.devices()[0]
    gpu = jax.default_backend() == "gpu"
    print(f"bench_harmonic: {dev.device_kind} ({jax.default_backend()}), jax {jax.__version__}", flush=True)
    data = {"device": f"{dev.device_kind} ({jax.default_backend()})", "jax": jax.__version__}
    if args.part in ("all", "steps"):
        print(f"\n(a) step time at batch {args.batch}, {args.steps} timed calls after {args.warmup} warmup", flush=True)
        try:
            rows = bench_steps(specs, args.batch, args.steps, args.warmup, args.set)
        except WavejaxError as e:
            C.fail(str(e), e.exit_code)
        print()
        print(render_steps(rows))
        data["steps"] = rows
    if args.part in ("all", "attention"):
        lengths = lengths or ([256, 512, 1024, 2048, 4096, 8192] if gpu else [256, 512, 1024, 2048])
        dtype = args.dtype or ("bfloat16" if gpu else "float32")
        print(f"\n(b) attention alone: B={args.batch}, H={args.heads}, D={args.head_dim}, fraction {args.fraction}, "
              f"window {args.window}, {dtype}, median of {args.reps}", flush=True)
        rows = bench_attention(lengths, args.batch, args.heads, args.head_dim, args.fraction, args.window, dtype,
                               args.reps, args.warmup)
        print()
        print(render_attention(rows))
        data["attention"] = {"dtype": dtype, "fraction": args.fraction, "window": args.window, "rows": rows}
    C.write_results(args.results, "experiments.benchmarks.bench_harmonic", argv, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
