"""Wave-selective attention rows of bench_kernels: the Pallas kernel, the XLA reference and dense causal attention.

The mask is causal and (query is a wave token or q - k < W); the fraction --fraction of wave tokens is chosen at random
(exactly k = ceil(fraction·T) per row, outside the timed call):
  pallas  pallas_kernels/selective_attention.py (flash-style, permuted queries, block skipping)
  xla     wavejax/ops/selective.py's gathered k×T global + banded T×2W local form (the reference the ratio is taken
          against; the model's default impl)
  dense   jax.nn.dot_product_attention(is_causal=True): implementation="cudnn" on GPU, "xla" on CPU
This kernel takes bench_kernels' shared options (--lengths, --batch, --heads, --head_dim, --fraction, --window,
--block_q, --block_k, --dtype, --reps, --warmup) and has none of its own.
"""

from __future__ import annotations

from experiments import common as C
from experiments.benchmarks.kernels.table import render


def add_arguments(parser) -> None:
    """No options of its own: bench_kernels' shared ones describe this kernel."""


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


def _ops(args, dense_impl: str) -> dict:
    """{impl: attention(q, k, v, idx, valid, is_wave)}: the selection arrays are arguments, not constants, so XLA
    cannot fold them into the program."""
    import jax

    from pallas_kernels.selective_attention import wave_selective_flash_attention
    from wavejax.ops.selective import wave_selective_attention

    return {
        "xla": (lambda q, k, v, idx, valid, is_wave: wave_selective_attention(q, k, v, idx, valid, args.window)),
        "pallas": (lambda q, k, v, idx, valid, is_wave: wave_selective_flash_attention(
            q, k, v, is_wave, args.window, block_q=args.block_q, block_k=args.block_k)),
        "dense": (lambda q, k, v, idx, valid, is_wave: jax.nn.dot_product_attention(
            q, k, v, is_causal=True, implementation=dense_impl)),
    }


def _time_ops(ops: dict, inputs: tuple, w, t: int, args) -> dict:
    """{impl: (fwd ms, fwd+bwd ms, temp, out)} of the ops that compile and run; a failing one prints why."""
    import jax
    import jax.numpy as jnp

    timed = {}
    for name, op in ops.items():
        def loss(q, k, v, idx, valid, is_wave, w, op=op):
            return jnp.sum(w.astype(jnp.float32) * op(q, k, v, idx, valid, is_wave).astype(jnp.float32))

        try:
            fwd_ms, _, out = C.compile_and_time(op, inputs, args.reps, args.warmup)
            bwd_ms, temp, _ = C.compile_and_time(jax.grad(loss, argnums=(0, 1, 2)), inputs + (w,), args.reps,
                                                 args.warmup)
        except Exception as e:  # e.g. cuDNN refusing a shape: one row says why instead of the run dying
            print(f"  T={t} {name}: failed ({type(e).__name__}: {str(e).splitlines()[0][:120]})", flush=True)
            continue
        timed[name] = (fwd_ms, bwd_ms, temp, out)
        print(f"  T={t} {name}: fwd {fwd_ms:.2f} ms, fwd+bwd {bwd_ms:.2f} ms", flush=True)
    return timed


def _length_rows(t: int, args, gpu: bool, peak: float | None) -> list[dict]:
    """The rows of one sequence length: scores / causal only under --work_only, else every impl timed."""
    import jax.numpy as jnp
    import numpy as np

    from wavejax.ops.selective import selection_indices

    dt = jnp.dtype(args.dtype)
    b, h, d, window = args.batch, args.heads, args.head_dim, args.window
    rng = np.random.default_rng(t)
    is_wave = random_waves(rng, b, t, args.fraction)
    work = score_work(is_wave, window, args.block_q, args.block_k)
    if args.work_only:
        return [{"kernel": "selective", "size": f"T={t}", "impl": name, "work": work[name]} for name in work]
    q, k, v, w = (jnp.asarray(rng.standard_normal((b, t, h, d)), dt) for _ in range(4))
    idx, valid = selection_indices(jnp.asarray(is_wave), max(int(is_wave.sum(1).max()), 1))
    timed = _time_ops(_ops(args, "cudnn" if gpu else "xla"), (q, k, v, idx, valid, jnp.asarray(is_wave)), w, t, args)
    pairs = {"xla": visible_pairs(is_wave, window), "dense": b * t * (t + 1) // 2}
    pairs["pallas"] = pairs["xla"]
    results = {}
    for name, (fwd_ms, bwd_ms, temp, out) in timed.items():
        flops = 3.5 * 4 * d * h * pairs[name]
        results[name] = {"kernel": "selective", "size": f"T={t}", "impl": name, "fwd_ms": fwd_ms,
                         "fwd_bwd_ms": bwd_ms, "temp_bytes": temp, "flops_per_s": flops / (bwd_ms / 1e3),
                         "work": work.get(name), "out": np.asarray(out.astype(jnp.float32))}
    ref = results.get("xla")
    ref_out = None if ref is None else ref["out"]
    rows = []
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


def rows(args, gpu: bool, peak: float | None) -> list[dict]:
    """The rows of every --lengths value, in bench_kernels' keys."""
    print(f"\nselective: B={args.batch}, H={args.heads}, D={args.head_dim}, fraction {args.fraction}, "
          f"W={args.window}, blocks {args.block_q}/{args.block_k}, {args.dtype}, median of {args.reps}", flush=True)
    return [r for t in args.lengths for r in _length_rows(t, args, gpu, peak)]


def verdict(rows: list[dict]) -> list[str]:
    """One line per length: the kernel's fwd+bwd speed-up over dense causal attention (issue 9's target: >= 2× against
    cuDNN at T = 8192, fraction 0.25, W = 128 on an H100/H200)."""
    lines = []
    for size in dict.fromkeys(r["size"] for r in rows if r["kernel"] == "selective"):
        by_impl = {r["impl"]: r for r in rows if r["kernel"] == "selective" and r["size"] == size}
        if "fwd_bwd_ms" in by_impl.get("pallas", {}) and "fwd_bwd_ms" in by_impl.get("dense", {}):
            ratio = by_impl["dense"]["fwd_bwd_ms"] / by_impl["pallas"]["fwd_bwd_ms"]
            lines.append(f"selective {size}: pallas fwd+bwd is {ratio:.2f}× as fast as dense causal attention")
    return lines


def table(rows: list[dict]) -> str:
    """This kernel's own table: the shared one (it has no extra columns)."""
    return render(rows)


def plot(rows: list[dict], path: str, title: str) -> None:
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
