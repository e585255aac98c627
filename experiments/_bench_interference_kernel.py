"""Interference attention kernel (pallas_kernels/interference_attention.py) against the blockwise XLA path, one run.

    python experiments/_bench_interference_kernel.py                  # CPU: tiny lengths, interpret mode (smoke test)
    python experiments/_bench_interference_kernel.py --lengths 1024,2048,4096,8192    # a GPU (bf16, the wave model's
                                                                      # heads: B=4, H=8, W=48, D=48): issue 9's row
    python experiments/bench_kernels.py --kernels interference        # the same rows in the one kernel table

Per sequence length, both implementations of the wave family's interference attention (normalised rows, the sound
default) on the same random inputs (omega, phase ~ N(0,1), amp = softplus(N(0,1)) + 1e-8, v ~ N(0,1)):
  xla     wavejax.ops.wave_attention.interference_attention: lax.scan over key blocks of --block_k, rematerialised
          (the model's default impl, and the baseline every ratio is taken against)
  pallas  interference_flash_attention: query tiles x causal key blocks, the wave sum on chip
Columns: fwd ms and fwd+bwd ms (the gradient of sum(w · out) with respect to omega, phase, amp and v), medians of
--repeats calls after --warmup; XLA's memory_analysis of the compiled fwd+bwd program (temp: working memory beyond
inputs and outputs) and that temp divided by T (constant when memory is linear in T); throughput in causal
(query, key, wave) triples per second of fwd+bwd; the speed-up (xla fwd+bwd / this row's); the sin/cos evaluations per
causal triple that fwd+bwd asks for (exact from the shapes, `trig_per_causal_pair`; the trig work dominates both);
the largest |out - xla out|. --work_only prints T and that column alone without running anything (exact on a CPU at
GPU sizes).

On a CPU the kernel runs in interpret mode (a sequential loop over the grid in XLA): its timings say nothing about GPU
speed; the run only checks that the benchmark works and that both paths agree. The issue's GPU target: the kernel at
least 5x faster than the blockwise XLA path (fwd+bwd) with memory linear in T; it has not been measured yet.

experiments/bench_kernels.py imports `rows(args)` (and `add_arguments`) to put these rows in its table.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402

KERNEL = "interference"
TARGET_SPEEDUP = 5.0  # issue 9, fwd+bwd on an H100/H200
# (CPU, GPU) defaults of the options bench_kernels.py shares with this script
DEFAULTS = {"lengths": ((32, 64), (1024, 2048, 4096, 8192)), "batch": (1, 4), "heads": (2, 8), "head_dim": (8, 48),
            "waves": (8, 48), "block_q": (16, 64), "block_k": (16, 64), "repeats": (3, 20), "dtype": ("float32",
                                                                                                      "bfloat16")}


def add_arguments(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """The benchmark's options; bench_kernels.py adds them with prefix 'interference_' and shares its --lengths,
    --batch, --heads, --head_dim, --block_q, --block_k, --dtype, --reps and --warmup."""
    p.add_argument(f"--{prefix}waves", type=int, default=None, help="waves per head W (default 8 on CPU, 48 on GPU)")
    p.add_argument(f"--{prefix}unnormalized", action="store_true", help="the original's unnormalised rows")
    if prefix:
        return
    p.add_argument("--work_only", action="store_true", help="only the sin/cos count per causal pair (no timing)")
    p.add_argument("--lengths", type=C.int_list, default=None, help="sequence lengths (default 32,64 CPU; 1024..8192 GPU)")
    for name, help_text in (("batch", "B"), ("heads", "H"), ("head_dim", "D (the wave model: 384 / 8 = 48)"),
                            ("block_q", "kernel query tile"), ("block_k", "kernel key block and the XLA path's")):
        p.add_argument(f"--{name}", type=int, default=None, help=f"{help_text} (default: CPU / GPU values)")
    p.add_argument("--dtype", default=None, help="float32 or bfloat16 (default: bfloat16 on GPU, float32 on CPU)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls (default 3 on CPU, 20 on GPU)")
    p.add_argument("--warmup", type=int, default=1)


def _options(args) -> dict:
    """This benchmark's settings from args (its own flags, or bench_kernels' shared and prefixed ones)."""
    import jax

    on_gpu = jax.default_backend() == "gpu"

    def get(name):
        for key in (f"interference_{name}", name, "reps" if name == "repeats" else name):
            value = getattr(args, key, None)
            if value:
                return value
        return DEFAULTS[name][on_gpu]

    o = {name: get(name) for name in DEFAULTS}
    o["lengths"] = tuple(int(t) for t in o["lengths"])
    o["normalize"] = not (getattr(args, "interference_unnormalized", False) or getattr(args, "unnormalized", False))
    o["warmup"] = int(getattr(args, "warmup", 1) or 0)
    o["on_gpu"] = on_gpu
    if o["dtype"] not in ("float32", "bfloat16"):
        C.fail(f"--dtype must be float32 or bfloat16, got {o['dtype']!r}.")
    for key in ("batch", "heads", "head_dim", "waves", "block_q", "block_k", "repeats"):
        if int(o[key]) < 1:
            C.fail(f"--{key} must be >= 1, got {o[key]}.")
    for key in ("block_q", "block_k"):
        if o[key] & (o[key] - 1) or (on_gpu and o[key] < 16):
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


def rows(args) -> list[dict]:
    """Per length, an "xla" and a "pallas" row in bench_kernels' keys (plus temp_per_t and meets_target)."""
    import functools

    import jax
    import jax.numpy as jnp
    import numpy as np
    from bench_kernels import compile_and_time

    from pallas_kernels.interference_attention import interference_attention, interference_flash_attention

    o = _options(args)
    b, h, w, d = o["batch"], o["heads"], o["waves"], o["head_dim"]
    impls = {
        "xla": functools.partial(interference_attention, normalize=o["normalize"], block_size=o["block_k"]),
        "pallas": functools.partial(interference_flash_attention, normalize=o["normalize"], block_q=o["block_q"],
                                    block_k=o["block_k"]),
    }
    print(f"interference: B={b}, H={h}, W={w}, D={d}, blocks {o['block_q']}/{o['block_k']}, {o['dtype']}, "
          f"{'normalised' if o['normalize'] else 'unnormalised'}, median of {o['repeats']}", flush=True)
    table = []
    for t in o["lengths"]:
        omega, phase, amp, v, weights = _inputs(np.random.default_rng(t), b, h, t, w, d, jnp.dtype(o["dtype"]))
        triples = b * h * w * t * (t + 1) / 2
        results = {}
        for impl, attend in impls.items():
            def loss(omega, phase, amp, v, weights, attend=attend):
                out = attend(omega, phase, amp, v).astype(jnp.float32)
                return jnp.sum(weights.astype(jnp.float32) * out)

            try:
                fwd_ms, _, out = compile_and_time(attend, (omega, phase, amp, v), o["repeats"], o["warmup"])
                bwd_ms, temp, _ = compile_and_time(jax.grad(loss, argnums=(0, 1, 2, 3)),
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
        for impl, r in results.items():
            out = r.pop("out")
            if ref is not None:
                r["speedup"] = ref["fwd_bwd_ms"] / r["fwd_bwd_ms"]
                r["max_err"] = float(np.abs(out - ref_out).max())
                r["meets_target"] = impl == "pallas" and r["speedup"] >= TARGET_SPEEDUP
            table.append(r)
    return table


COLUMNS = (("size", "T"), ("impl", "impl"), ("fwd_ms", "fwd ms"), ("fwd_bwd_ms", "fwd+bwd ms"),
           ("speedup", "fwd+bwd speed-up vs xla"), ("temp_bytes", "temp (fwd+bwd)"), ("temp_per_t", "temp / T"),
           ("throughput", "throughput"), ("trig", "sin/cos per causal pair-wave"), ("max_err", "max err vs xla"))


def markdown(table: list[dict]) -> str:
    from bench_kernels import fmt_cell

    def cell(key, value):
        if key == "temp_per_t" and value is not None:
            return C.fmt_bytes(value)
        if key == "trig":
            return f"{value:.2f}"
        return fmt_cell(key, value)

    return C.markdown_table([hd for _, hd in COLUMNS], [[cell(k, r.get(k)) for k, _ in COLUMNS] for r in table],
                            align="ll" + "r" * (len(COLUMNS) - 2))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    import jax

    from pallas_kernels import default_interpret

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    interpret = default_interpret()
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}"
          f"{', kernel in interpret mode' if interpret else ''}; load average {load}")
    if args.work_only:
        o = _options(args)
        print(C.markdown_table(["T", "blocks q/k", "xla sin/cos per causal pair-wave", "pallas"], [
            [t, f"{o['block_q']}/{o['block_k']}", *(f"{trig_per_causal_pair(i, t, o['block_q'], o['block_k']):.2f}"
                                                    for i in ("xla", "pallas"))] for t in o["lengths"]]))
        return 0
    table = rows(args)
    print()
    print(markdown(table))
    if interpret:
        print("\nCPU: the kernel ran in interpret mode; these timings say nothing about GPU speed (a smoke test).")
    else:
        hits = [r["size"] for r in table if r.get("meets_target")]
        verdict = "met at " + ", ".join(hits) if hits else "not met"
        print(f"\ntarget: pallas fwd+bwd >= {TARGET_SPEEDUP:g}x the blockwise XLA path: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
