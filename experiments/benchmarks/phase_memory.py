"""Compiled memory of ONE PhaseGPT layer's forward + backward, mean-field against the naive pairwise form.

    python -m experiments.benchmarks.phase_memory                  # Phase A shape: B=32, S=512, D=768, H=12, O=32, T=10
    python -m experiments.benchmarks.phase_memory --batch 2 --seq 64  # a small shape (the tests)
    python -m experiments.benchmarks.phase_memory --naive_batch 1  # naive rows compiled at B=1, scaled to --batch

Nothing is executed: each variant is lowered from abstract inputs (jax.ShapeDtypeStruct), compiled with
jax.jit(...).lower(...).compile(), and XLA's compiled.memory_analysis() is printed (argument, output and temp
bytes of the program; temp is the working memory the step needs beyond its inputs and outputs). The program is
value_and_grad of sum(layer(x)) with respect to the layer's parameters and x, in training mode (dropout on).

Variants: the layer as configured by configs/phase.py (`faithful`: non-causal, repulsive, raw angles; default:
causal prefix means, attractive, cos/sin features; and the default with causal=False) with the mean-field
coupling `kuramoto_coupling` and per-step rematerialisation (model.phase.remat, the default: the backward pass
recomputes each Euler step's sin, cos and means instead of storing them); the default layer with remat off;
and the layer with `kuramoto_coupling_reference` (remat off, as autograd in the original), which builds the
original's [B,H,S,S,O] phase_diff tensor. The layer has no coupling option (the naive form is a test
reference), so those rows swap the coupling_fn into its kuramoto_dynamics call while tracing. The analytic
table gives the original's phase_diff sizes (spec section 1.4).

Exit status 1 when one of the three mean-field layer variants as shipped needs temp memory >= --limit_gb
(default 2 GB = 2e9 bytes, the target of the OOM issue), 2 for bad arguments. GB is 10^9 bytes, as in the spec.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import time

from experiments import common as C


def layer_config(faithful: bool, causal: bool | None, remat: bool, steps: int, oscillators: int, d_model: int, n_head: int):
    config = C.load_config("phase", "faithful" if faithful else None)
    m = config.model
    m.d_model, m.n_head = d_model, n_head
    m.phase.oscillators, m.phase.steps, m.phase.remat = oscillators, steps, remat
    if causal is not None:
        m.phase.causal = causal
    return m


COUPLINGS = {  # label -> the coupling_fn the layer's kuramoto_dynamics call gets while tracing (None: unchanged)
    "mean-field": None,
    "mean-field, no remat": None,
    "naive pairwise": "reference",
}


def coupling_fn(kind: str | None):
    from wavejax.ops import phase

    if kind == "reference":
        return phase.kuramoto_coupling_reference  # builds [B,H,S,S,O]
    return None


@contextlib.contextmanager
def layer_coupling(kind: str | None):
    """While tracing, the layer integrates with another coupling_fn (the layer itself has no such option): the
    layer's module-level kuramoto_dynamics is swapped for the duration."""
    from wavejax.models import phase

    fn = coupling_fn(kind)
    if fn is None:
        yield
        return
    original = phase.kuramoto_dynamics
    phase.kuramoto_dynamics = functools.partial(original, coupling_fn=fn)
    try:
        yield
    finally:
        phase.kuramoto_dynamics = original


def compile_variant(model_config, batch: int, seq: int, coupling: str) -> dict:
    import jax
    import jax.numpy as jnp

    from wavejax.models.phase import KuramotoAttention, resolved

    layer = KuramotoAttention(model_config)
    x = jax.ShapeDtypeStruct((batch, seq, model_config.d_model), jnp.float32)
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    from flax.core.meta import unbox
    params = unbox(jax.eval_shape(lambda: layer.init(jax.random.PRNGKey(0), jnp.zeros(x.shape, x.dtype)))["params"])

    def loss(p, xs, rng):
        y = layer.apply({"params": p}, xs, deterministic=False, rngs={"dropout": rng}, mutable=["diagnostics", "losses"])[0]
        return jnp.sum(y)

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    t0 = time.perf_counter()
    with layer_coupling(COUPLINGS[coupling]):
        lowered = step.lower(params, x, key)
    compiled = lowered.compile()
    secs = time.perf_counter() - t0
    m = compiled.memory_analysis()
    p = resolved(model_config.phase)
    n_params = sum(int(v.size) for v in jax.tree_util.tree_leaves(params))
    return {"coupling": coupling, "causal": bool(p["causal"]), "sign": p["sign"],
            "features": p["output_features"], "batch": batch, "seq": seq, "params": n_params,
            "argument": m.argument_size_in_bytes, "output": m.output_size_in_bytes, "alias": m.alias_size_in_bytes,
            "temp": m.temp_size_in_bytes, "peak": getattr(m, "peak_memory_in_bytes", None), "compile_s": secs}


def scaled(row: dict, factor: float) -> dict:
    """A row compiled at a smaller batch, with temp scaled linearly to the target batch (memory is linear in B)."""
    out = dict(row)
    out["scaled_from"] = row["batch"]
    out["batch"] = int(row["batch"] * factor)
    out["temp"] = row["temp"] * factor
    out["peak"] = None  # arguments and outputs are from the small shape; only temp is scaled
    return out


def analytic(batch: int, seq: int, heads: int, osc: int, steps: int) -> list[list[str]]:
    """The original's pairwise tensors (spec 1.4) and the mean-field residuals, in float32."""
    diff = batch * heads * seq * seq * osc * 4
    theta = batch * heads * seq * osc * 4
    return [
        [f"phase_diff [B,H,S,S,O] = [{batch},{heads},{seq},{seq},{osc}]", "one tensor", C.fmt_gb(diff)],
        ["phase_diff + sin(phase_diff) kept for backward", "per Euler step", C.fmt_gb(2 * diff)],
        ["phase_diff + sin(phase_diff) kept for backward", f"{steps} steps", C.fmt_gb(2 * diff * steps)],
        [f"theta [B,H,S,O] = [{batch},{heads},{seq},{osc}] (mean-field residual)", f"{steps} steps", C.fmt_gb(theta * steps)],
    ]


def render(rows: list[dict]) -> str:
    headers = ["coupling", "causal", "sign / features", "params", "B×S", "arguments", "outputs", "temp", "compile s"]
    body = []
    for r in rows:
        shape = f"{r['batch']}×{r['seq']}"
        temp = C.fmt_gb(r["temp"])
        if r.get("scaled_from"):
            shape += f" (compiled at B={r['scaled_from']})"
            temp += f" (B={r['scaled_from']}: {C.fmt_gb(r['temp'] * r['scaled_from'] / r['batch'])}, ×{r['batch'] // r['scaled_from']})"
        body.append([r["coupling"], "yes" if r["causal"] else "no", f"{r['sign']} / {r['features']}", f"{r['params']:,}", shape,
                     "n/a" if r.get("scaled_from") else C.fmt_gb(r["argument"]),
                     "n/a" if r.get("scaled_from") else C.fmt_gb(r["output"]), temp, f"{r['compile_s']:.1f}"])
    return C.markdown_table(headers, body, align="lllrrrrrr")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--d_model", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--osc", type=int, default=32, help="oscillators per head O")
    ap.add_argument("--steps", type=int, default=10, help="Euler steps T")
    ap.add_argument("--naive_batch", type=int, default=None,
                    help="compile the naive rows at this batch and scale temp linearly to --batch (default: --batch)")
    ap.add_argument("--no_naive", action="store_true", help="leave out the naive pairwise rows")
    ap.add_argument("--limit_gb", type=float, default=2.0, help="fail (exit 1) when a mean-field temp is >= this many GB")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    for name in ("batch", "seq", "d_model", "heads", "osc", "steps"):
        if getattr(args, name) < 1:
            C.fail(f"--{name} must be >= 1.")
    naive_batch = args.naive_batch or args.batch
    if naive_batch < 1 or args.batch % naive_batch:
        C.fail(f"--naive_batch must divide --batch ({args.batch}), got {naive_batch}.")

    import jax

    dims = dict(steps=args.steps, oscillators=args.osc, d_model=args.d_model, n_head=args.heads)
    print(f"phase_memory: {jax.devices()[0].device_kind} ({jax.default_backend()}), one phase layer, "
          f"value_and_grad of sum(y) w.r.t. params and x, float32, D={args.d_model}, H={args.heads}, O={args.osc}, "
          f"T={args.steps}", flush=True)
    # (coupling, faithful preset, causal override, remat, checked against --limit_gb)
    variants = [("mean-field", True, None, True, True), ("mean-field", False, False, True, True),
                ("mean-field", False, None, True, True), ("mean-field, no remat", False, None, False, False)]
    if not args.no_naive:
        variants += [("naive pairwise", True, None, False, False), ("naive pairwise", False, None, False, False)]
    rows = []
    for coupling, faithful, causal, remat, checked in variants:
        naive = coupling == "naive pairwise"
        b = naive_batch if naive else args.batch
        row = compile_variant(layer_config(faithful, causal, remat, **dims), b, args.seq, coupling)
        if b != args.batch:
            row = scaled(row, args.batch / b)
        row["checked"] = checked
        rows.append(row)
        print(f"  {coupling}, {'faithful' if faithful else 'default'}, causal={row['causal']}: temp {C.fmt_gb(row['temp'])}, "
              f"compiled in {row['compile_s']:.1f} s", flush=True)
    print()
    print(render(rows))
    print()
    print(C.markdown_table(["tensor (float32)", "kept", "size"],
                           analytic(args.batch, args.seq, args.heads, args.osc, args.steps), align="llr"))
    limit = args.limit_gb * C.GB
    checked = [r for r in rows if r["checked"]]
    worst = max(checked, key=lambda r: r["temp"])
    over = [r for r in checked if r["temp"] >= limit]
    verdict = "FAIL" if over else "PASS"
    print(f"\n{verdict}: largest mean-field temp {C.fmt_gb(worst['temp'])} (causal={worst['causal']}, {worst['features']}) "
          f"vs limit {args.limit_gb:g} GB; {len(over)} of {len(checked)} layer variants at or over it")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
