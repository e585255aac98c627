"""Training-step speed of configs in one process: ms/step, tokens/s, model TFLOP/s, MFU, ratio to the first.

    python -m experiments.benchmarks.bench_train  # baseline:tiny, baseline:nanogpt_cpu, baseline
    python -m experiments.benchmarks.bench_train --configs baseline,phase --set model.dtype=bfloat16 \
        --json runs/bench.json
    python -m experiments.benchmarks.bench_train --configs baseline:tiny --steps 3 --warmup 1  # CPU smoke test

Each config builds a Trainer in a temporary folder and times its jitted train step alone: batches
are on the device before timing, each step is waited for (block_until_ready), and the first
--warmup steps (compilation included) are not timed. tokens/s = batch_size x block_size / median
step time. Model FLOPs per token are 6 N + 12 L d T (wavejax/analysis/flops.py: N = parameters in
matmuls, i.e. all but the position table); MFU divides model FLOP/s by the dense peak of the
devices for the config's compute dtype (bf16, or TF32 for float32), on GPU only unless
--peak_tflops gives the per-device peak. The ratio column is tokens/s over the first config's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from experiments import common as C
from wavejax.errors import WavejaxError

DEFAULT_CONFIGS = "baseline:tiny,baseline:nanogpt_cpu,baseline"


def build_config(name: str, arg: str | None, sets, batch: int | None):
    config = C.apply_overrides(C.load_config(name, arg), sets)
    if batch:
        config.train.batch_size = int(batch)
    t = config.train
    t.progress = False
    t.sample_tokens = 0
    return config


def bench_one(config, steps: int, warmup: int) -> dict:
    import jax

    from wavejax.analysis import flops
    from wavejax.train.loop import Trainer

    with tempfile.TemporaryDirectory(prefix="wavejax-bench-") as workdir:
        trainer = Trainer(config, workdir)
        try:
            n_batches = max(1, min(steps + warmup, 8))
            batches = [trainer.next_batch() for _ in range(n_batches)]
            jax.block_until_ready(batches)
            state = trainer.state
            trainer.state = None  # the step donates the state; keep one live reference
            times = []
            t_first = None
            for i in range(warmup + steps):
                x, y = batches[i % n_batches]
                t0 = time.perf_counter()
                state, metrics = trainer.train_step(state, x, y)
                jax.block_until_ready((state, metrics))
                dt = time.perf_counter() - t0
                if i == 0:
                    t_first = dt
                if i >= warmup:
                    times.append(dt)
            fpt = flops.model_flops_per_token(config.model, state.params)
            n_params = trainer.n_params
            n_matmul = flops.matmul_params(state.params)
            devices = trainer.mesh.devices.size
        finally:
            trainer.close()
            trainer.writer.close()
    del state, batches
    dev = jax.devices()[0]
    return {"times": times, "first_step_s": t_first, "flops_per_token": fpt, "params": n_params,
            "matmul_params": n_matmul, "devices": devices, "device_kind": dev.device_kind, "backend": jax.default_backend()}


def make_row(lab: str, config, res: dict, peak_tflops: float | None) -> dict:
    from wavejax.analysis import flops

    tokens = C.tokens_per_step(config)
    med, mean = statistics.median(res["times"]), statistics.fmean(res["times"])
    tok_s = tokens / med
    model_flops = tok_s * res["flops_per_token"]
    dtype = config.model.dtype
    if peak_tflops:
        peak_dev = peak_tflops * 1e12
    elif res["backend"] == "gpu":
        peak_dev = flops.peak_flops(res["device_kind"], dtype)
    else:
        peak_dev = None
    peak = peak_dev * res["devices"] if peak_dev else None
    return {
        "config": lab, "params": res["params"], "matmul_params": res["matmul_params"],
        "batch_size": int(config.train.batch_size), "block_size": int(config.model.block_size), "tokens_per_step": tokens,
        "dtype": dtype, "steps_timed": len(res["times"]), "ms_per_step_median": med * 1e3, "ms_per_step_mean": mean * 1e3,
        "first_step_s": res["first_step_s"], "tokens_per_s": tok_s, "flops_per_token": res["flops_per_token"],
        "model_tflops": model_flops / 1e12, "peak_tflops": peak / 1e12 if peak else None,
        "mfu": flops.mfu(tok_s, res["flops_per_token"], peak), "device_kind": res["device_kind"],
        "backend": res["backend"], "devices": res["devices"],
    }


def render(rows: list[dict]) -> str:
    headers = ["config", "params", "batch×block", "dtype", "ms/step median (mean)", "tokens/s", "model TFLOP/s", "MFU",
               "tokens/s vs first"]
    base = rows[0]["tokens_per_s"] if rows else None
    body = []
    for r in rows:
        body.append([
            r["config"], f"{r['params']:,}", f"{r['batch_size']}×{r['block_size']}", r["dtype"],
            f"{r['ms_per_step_median']:.2f} ({r['ms_per_step_mean']:.2f})", f"{r['tokens_per_s']:,.0f}",
            f"{r['model_tflops']:.3f}", "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%",
            f"{r['tokens_per_s'] / base:.2f}×",
        ])
    return C.markdown_table(headers, body)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma-separated NAME or NAME:ARG (configs/NAME.py, preset ARG)")
    ap.add_argument("--arg", default=None, help="preset for every config that does not name one")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per config")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation)")
    ap.add_argument("--batch", type=int, default=None, help="override train.batch_size of every config")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override for every config (repeatable)")
    ap.add_argument("--peak_tflops", type=float, default=None, help="peak TFLOP/s of ONE device for MFU (overrides the table)")
    ap.add_argument("--json", default=None, metavar="PATH", help="also save the rows as JSON")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.steps < 1 or args.warmup < 0:
            raise WavejaxError("--steps must be >= 1 and --warmup >= 0.")
        if args.batch is not None and args.batch < 1:
            raise WavejaxError("--batch must be >= 1.")
        specs = C.parse_specs(args.configs, args.arg)
        configs = [(C.label(n, a), build_config(n, a, args.set, args.batch)) for n, a in specs]
        from wavejax.config import validate

        for _, config in configs:
            validate(config)
    except WavejaxError as e:
        C.fail(str(e), 2)

    import jax

    dev = jax.devices()[0]
    print(f"bench_train: {jax.device_count()} x {dev.device_kind} ({jax.default_backend()}), "
          f"{args.steps} timed steps after {args.warmup} warmup", flush=True)
    rows = []
    for lab, config in configs:
        try:
            res = bench_one(config, args.steps, args.warmup)
        except WavejaxError as e:
            C.fail(f"{lab}: {e}", e.exit_code)
        rows.append(make_row(lab, config, res, args.peak_tflops))
        r = rows[-1]
        print(f"  {lab}: {r['ms_per_step_median']:.2f} ms/step, {r['tokens_per_s']:,.0f} tokens/s "
              f"(first step {r['first_step_s']:.1f} s)", flush=True)
    print()
    print(render(rows))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"device_kind": dev.device_kind, "backend": jax.default_backend(), "device_count": jax.device_count(),
                       "steps": args.steps, "warmup": args.warmup, "argv": sys.argv[1:] if argv is None else argv,
                       "rows": rows}, f, indent=2)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
