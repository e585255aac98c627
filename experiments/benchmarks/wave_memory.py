"""Compiled memory of ONE wave attention layer's forward + backward: the blockwise interference attention against
the original's [B,H,T,T,W] form, and the pure-wave linear attention against its quadratic mode.

    python -m experiments.benchmarks.wave_memory  # [K] shape: B=32, T=256, d=384, H=8, W=48
    python -m experiments.benchmarks.wave_memory --batch 2 --seq 32 --d_model 32 --heads 2 --waves 4 --blocks 4,8 \
        --long_seq 64

Nothing is executed: each variant is lowered from abstract inputs (jax.ShapeDtypeStruct), compiled, and XLA's
compiled.memory_analysis() is read (argument, output and temp bytes; temp is the working memory beyond inputs and
outputs). The program is value_and_grad of sum(layer(x)) with respect to the layer's parameters and x in training
mode (attention dropout 0.1, as the original). Interference rows: the layer as shipped (`interference_attention`, a
lax.scan over key blocks with a rematerialised body) for each --blocks size, and the same layer with its op swapped
for `interference_attention_reference` (the original's [B,H,T,T,W] tensors, kept by autograd); "temp / block
tensor" divides temp by the bytes of one [B,H,T,block,W] float32 tensor, so a constant column means
O(B*H*T*block*W). The cosine ("hybrid") attention of the published runs is the standard O(T^2) baseline row.
Pure-wave rows: quadratic vs linear (chunk 64) at --long_seq.

Exit status 1 when the shipped blockwise layer at the default block (64; the smallest of --blocks when T <= 64)
needs more than a quarter of the naive form's temp memory, 2 for bad arguments. GB = 10^9 bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from experiments import common as C

DEFAULT_BLOCK = 64


def layer_config(args, attention: str, **wave):
    preset = {"wave_interference": "interference", "wave_pure": "pure_elu", "wave_cosine": None}[attention]
    config = C.load_config("wave", preset)
    m = config.model
    m.d_model, m.n_head, m.wave.num_waves, m.attn_dropout = args.d_model, args.heads, args.waves, 0.1
    for key, value in wave.items():
        m.wave[key] = value
    return m


@contextlib.contextmanager
def naive_interference(enabled: bool):
    """While tracing, the layer calls the [B,H,T,T,W] reference instead of the blockwise op."""
    from wavejax.ops import wave_attention as A

    if not enabled:
        yield
        return
    original = A.interference_attention

    def reference(omega, phase, amp, v, *, normalize, block_size=0, dropout_rng=None, dropout_rate=0.0):
        return A.interference_attention_reference(omega, phase, amp, v, normalize, dropout_rng, dropout_rate)

    A.interference_attention = reference
    try:
        yield
    finally:
        A.interference_attention = original


def compile_layer(model_config, attention: str, batch: int, seq: int, naive: bool = False) -> dict:
    import jax
    import jax.numpy as jnp
    import ml_collections

    from wavejax.nn import registry

    layer = registry.ATTENTIONS[attention](ml_collections.FrozenConfigDict(model_config))
    x = jax.ShapeDtypeStruct((batch, seq, model_config.d_model), jnp.float32)
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    from flax.core.meta import unbox
    params = unbox(jax.eval_shape(lambda: layer.init(jax.random.PRNGKey(0), jnp.zeros(x.shape, x.dtype)))["params"])

    def loss(p, xs, rng):
        return jnp.sum(layer.apply({"params": p}, xs, False, rngs={"dropout": rng}, mutable=["diagnostics"])[0])

    t0 = time.perf_counter()
    with naive_interference(naive):
        lowered = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(params, x, key)
    m = lowered.compile().memory_analysis()
    return {"argument": m.argument_size_in_bytes, "output": m.output_size_in_bytes, "temp": m.temp_size_in_bytes,
            "compile_s": time.perf_counter() - t0,
            "params": sum(int(v.size) for v in jax.tree_util.tree_leaves(params))}


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--d_model", type=int, default=384)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--waves", type=int, default=48, help="W per head")
    ap.add_argument("--blocks", default="16,64,256", help="key-block sizes of the blockwise rows")
    ap.add_argument("--long_seq", type=int, default=4096, help="sequence length of the pure-wave rows")
    ap.add_argument("--long_batch", type=int, default=4)
    ap.add_argument("--no_naive", action="store_true", help="leave out the naive interference row")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        blocks = [int(b) for b in args.blocks.split(",") if b.strip()]
    except ValueError:
        C.fail(f"--blocks takes comma-separated integers, got {args.blocks!r}.")
    for name in ("batch", "seq", "d_model", "heads", "waves", "long_seq", "long_batch"):
        if getattr(args, name) < 1:
            C.fail(f"--{name} must be >= 1.")
    if not blocks or min(blocks) < 1 or args.d_model % args.heads:
        C.fail("--blocks must be >= 1 and --d_model divisible by --heads.")
    checked = DEFAULT_BLOCK if DEFAULT_BLOCK < args.seq else min(blocks)  # the block whose saving is checked
    if checked not in blocks:
        blocks.append(checked)

    import jax

    b, t, h, w = args.batch, args.seq, args.heads, args.waves
    print(f"wave_memory: {jax.devices()[0].device_kind} ({jax.default_backend()}), one attention layer, value_and_grad "
          f"w.r.t. params and x, float32, B={b}, T={t}, d={args.d_model}, H={h}, W={w}", flush=True)
    rows = []
    for block in sorted(set(blocks)):
        r = compile_layer(layer_config(args, "wave_interference", interference_block=block), "wave_interference", b, t)
        rows.append({"variant": "interference, blockwise (shipped)", "block": min(block, t), **r})
        print(f"  blockwise block={block}: temp {C.fmt_gb(r['temp'])}", flush=True)
    if not args.no_naive:
        r = compile_layer(layer_config(args, "wave_interference"), "wave_interference", b, t, naive=True)
        rows.append({"variant": "interference, naive [B,H,T,T,W] (original)", "block": t, **r})
        print(f"  naive: temp {C.fmt_gb(r['temp'])}", flush=True)
    r = compile_layer(layer_config(args, "wave_cosine"), "wave_cosine", b, t)
    rows.append({"variant": "cosine 'hybrid' (published runs)", "block": None, **r})

    def block_bytes(block):
        return b * h * t * block * w * 4

    body = [[r["variant"], "—" if r["block"] is None else str(r["block"]), f"{r['params']:,}", C.fmt_gb(r["argument"]),
             C.fmt_gb(r["output"]), C.fmt_gb(r["temp"]),
             "—" if r["block"] is None else f"{r['temp'] / block_bytes(r['block']):.1f}", f"{r['compile_s']:.1f}"]
            for r in rows]
    print()
    print(C.markdown_table(["attention", "key block", "params", "arguments", "outputs", "temp", "temp / block tensor",
                            "compile s"], body, align="lrrrrrrr"))

    lt, lb = args.long_seq, args.long_batch
    long_rows = []
    for mode in ("quadratic", "linear"):
        r = compile_layer(layer_config(args, "wave_pure", pure_mode=mode), "wave_pure", lb, lt)
        long_rows.append([f"pure wave (elu+1), {mode}", f"{lb}×{lt:,}", C.fmt_gb(r["temp"]), f"{r['compile_s']:.1f}"])
    print()
    print(C.markdown_table(["attention", "B×T", "temp", "compile s"], long_rows, align="lrrr"))

    naive = next((r for r in rows if r["variant"].startswith("interference, naive")), None)
    shipped = next(r for r in rows if r["variant"].startswith("interference, blockwise") and r["block"] == checked)
    print(f"\n[B,H,T,T,W] float32 = [{b},{h},{t},{t},{w}]: {C.fmt_gb(b * h * t * t * w * 4)} per tensor; "
          f"[B,H,T,{shipped['block']},W]: {C.fmt_gb(block_bytes(shipped['block']))}")
    if naive is None:
        return 0
    ok = shipped["temp"] <= naive["temp"] / 4
    print(f"{'PASS' if ok else 'FAIL'}: blockwise (block {shipped['block']}) temp {C.fmt_gb(shipped['temp'])} vs naive "
          f"{C.fmt_gb(naive['temp'])} ({naive['temp'] / max(shipped['temp'], 1):.1f}x less)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
