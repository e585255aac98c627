"""The wavejax training step against nanoGPT's (PyTorch, eager) at nanoGPT's CPU settings, in one process.

    pip install -e ".[torch]"
    python -m experiments.benchmarks.bench_torch_step                 # 3 alternations of 40 steps each
    python -m experiments.benchmarks.bench_torch_step --profile       # and where the JAX step's time goes
    python -m experiments.benchmarks.bench_torch_step --set model.scan_unroll=1   # a wavejax option against torch
    python -m experiments.benchmarks.bench_torch_step --set mesh.cpu_devices=0    # one device per core (data parallel)

Both sides train the same model (configs/baseline.py:nanogpt_cpu: 4 layers, 4 heads, width 128, block 64, batch 12,
float32; the torch side is experiments/reproductions/nanogpt_torch_reference.py, nanoGPT's model.py and train.py
step): forward, cross-entropy, backward, global-norm clipping at 1.0, AdamW with weight decay on the matrices. A step
is timed from batches already in memory to the updated parameters (torch: forward, backward, clip_grad_norm_, step,
zero_grad; wavejax: the jitted Trainer.train_step, waited for), torch with as many threads as CPUs. The two sides
alternate: --alternations times, --steps timed steps of torch then --steps of jax, each after --warmup untimed steps
(jax compiles before the first alternation). The ratio is jax ms/step over torch ms/step in the same alternation;
the verdict is the mean ratio against --target (1.3x). --profile traces --steps jitted steps with jax.profiler and
sums the XLA:CPU kernels' time by kind (matrix products, elementwise loops, reductions) and by the part of the model
named in their op_name (attention, MLP, LayerNorm, embedding and head, loss, optimizer).

--results PATH writes the figures as JSON. Exit status 1 when the mean ratio misses --target on a CPU; 2 when torch is
not installed (one error line says how to install it).
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import re
import sys
import tempfile
import time

from experiments import common as C

TORCH_MISSING = "PyTorch is not installed; install the comparison's extra with: pip install -e \".[torch]\""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--alternations", type=int, default=3)
    p.add_argument("--steps", type=int, default=40, help="timed steps per side per alternation")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per side before each timed block")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: os.cpu_count())")
    p.add_argument("--target", type=float, default=1.3, help="the largest acceptable jax/torch ratio on a CPU")
    p.add_argument("--profile", action="store_true", help="also trace the jax step and sum its kernels' time")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the wavejax config")
    C.add_results_arg(p, "bench_torch_step")
    args = p.parse_args(argv)
    for name in ("alternations", "steps"):
        if getattr(args, name) < 1:
            C.fail(f"--{name} must be >= 1, got {getattr(args, name)}.")
    if args.warmup < 0 or args.threads < 0:
        C.fail("--warmup and --threads must be >= 0.")
    return args


def jax_side(config):
    """(run(n) -> seconds per step, trainer, config, a batch) for the wavejax step of `config`."""
    import jax

    from wavejax.train.loop import Trainer

    config.train.progress = False
    config.train.sample_tokens = 0
    workdir = tempfile.mkdtemp(prefix="wavejax-bench-torch-")
    trainer = Trainer(config, workdir)
    batches = [trainer.next_batch() for _ in range(8)]
    jax.block_until_ready(batches)
    box = {"state": trainer.state}
    trainer.state = None  # the step donates its state: keep one live reference

    several = jax.device_count() > 1  # fake CPU devices deadlock on un-blocked collectives: wait on every step then

    def run(n: int) -> float:
        t0 = time.perf_counter()
        state = box["state"]
        for i in range(n):
            state, _ = trainer.train_step(state, *batches[i % len(batches)])
            if several:
                jax.block_until_ready(state)
        jax.block_until_ready(state)
        box["state"] = state
        return (time.perf_counter() - t0) / n

    return run, trainer, config, batches[0], box


def torch_side(args, config, vocab: int):
    """run(n) -> seconds per step of nanoGPT's step on the same sizes (experiments/reproductions/
    nanogpt_torch_reference.py's model, AdamW groups, clipping)."""
    import numpy as np
    import torch

    from experiments.reproductions import nanogpt_torch_reference as ref

    t, m = config.train, config.model
    if (t.batch_size, m.block_size, m.n_layer, m.n_head, m.d_model) != (ref.B, ref.T, ref.L, ref.H, ref.D):
        C.fail("the torch side is nanoGPT's CPU size (batch 12, block 64, 4 layers, 4 heads, width 128); "
               "--set may change wavejax options, not the model's size.")
    torch.manual_seed(0)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    model = ref.gpt_class()(vocab)
    params = list(model.parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": ref.WD},
                             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                            lr=ref.LR, betas=ref.BETAS)
    rng = np.random.default_rng(0)
    batches = [(torch.from_numpy(rng.integers(0, vocab, (ref.B, ref.T))), torch.from_numpy(rng.integers(0, vocab, (ref.B, ref.T))))
               for _ in range(8)]

    def run(n: int) -> float:
        t0 = time.perf_counter()
        for i in range(n):
            x, y = batches[i % len(batches)]
            loss = model(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, ref.CLIP)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return (time.perf_counter() - t0) / n

    return run, torch.__version__


# -- the profile ----------------------------------------------------------------------------------------------------------

PARTS = (("attention", ("/attn/",)), ("MLP", ("/mixer/",)), ("LayerNorm", ("/ln1/", "/ln2/", "/ln_f/")),
         ("embedding and head", ("/embed/",)), ("loss", ("softmax_cross_entropy", "log_softmax", "logsumexp")))


def kernel_kind(name: str, line: str) -> str:
    if name.startswith(("ynn_fusion", "dot", "xnn_fusion", "onednn")) and "dot_general" in line:
        return "matrix products"
    if "reduce" in line.split("calls=")[-1] or "reduce_" in line:
        return "reductions"
    return "elementwise and copies"


def model_part(op_name: str) -> str:
    if "transpose(jvp(" not in op_name and "jvp(" not in op_name:
        return "optimizer and step"
    for part, keys in PARTS:
        if any(k in op_name for k in keys):
            return part
    return "other model ops"


def profile_step(trainer, batch, box, steps: int) -> dict:
    """Milliseconds per step of the XLA kernels of the jitted step, by kind and by model part (from a jax.profiler
    trace; each kernel's op_name comes from the compiled HLO). Kernels that overlap in time both count."""
    import jax

    state = box["state"]
    hlo = trainer.train_step.lower(state, *batch).compile().as_text()
    lines = {m.group(1): m.group(2) for m in re.finditer(r"^\s*(?:ROOT )?%([\w.\-]+) = (.*)$", hlo, re.M)}
    trace_dir = tempfile.mkdtemp(prefix="wavejax-profile-")
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        for _ in range(steps):
            state, _ = trainer.train_step(state, *batch)
            jax.block_until_ready(state)
    box["state"] = state
    path = next(os.path.join(d, f) for d, _, fs in os.walk(trace_dir) for f in fs if f.endswith("perfetto_trace.json.gz"))
    with gzip.open(path, "rt") as f:
        events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    by_kind, by_part, count = collections.Counter(), collections.Counter(), 0
    for e in events:
        line = lines.get(e.get("name", "")) if e.get("ph") == "X" else None
        if line is None or not ("fusion(" in line or " dot(" in line or "custom-call(" in line or "copy(" in line):
            continue
        op = re.search(r'op_name="([^"]*)"', line)
        ms = e.get("dur", 0) / 1e3 / steps
        by_kind[kernel_kind(e["name"], line)] += ms
        by_part[model_part(op.group(1) if op else "")] += ms
        count += 1
    return {"by_kind": dict(by_kind), "by_part": dict(by_part), "kernels_per_step": count / steps,
            "total_ms": sum(by_kind.values())}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        C.fail(TORCH_MISSING)
    import jax

    from wavejax.errors import WavejaxError
    from wavejax.parallel.mesh import set_cpu_devices

    config = C.apply_overrides(C.load_config("baseline", "nanogpt_cpu"), args.set)
    try:
        set_cpu_devices(config.mesh.cpu_devices)  # --set mesh.cpu_devices=N: before JAX starts
    except WavejaxError as e:
        C.fail(str(e))
    run_jax, trainer, config, batch, box = jax_side(config)
    run_torch, torch_version = torch_side(args, config, trainer.data.vocab_size)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"jax {jax.__version__} ({jax.default_backend()}, {jax.device_count()} device(s)), torch {torch_version} ({args.threads or os.cpu_count()} threads), "
          f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; nanoGPT CPU size, "
          f"{args.alternations} alternations of {args.steps} steps", flush=True)
    run_jax(max(args.warmup, 1))  # compile
    rows, ratios, torch_ms, jax_ms = [], [], [], []
    for a in range(args.alternations):
        run_torch(args.warmup) if args.warmup else None
        t = run_torch(args.steps)
        run_jax(args.warmup) if args.warmup else None
        j = run_jax(args.steps)
        torch_ms.append(t * 1e3)
        jax_ms.append(j * 1e3)
        ratios.append(j / t)
        rows.append([a + 1, f"{t * 1e3:.1f}", f"{j * 1e3:.1f}", f"{j / t:.2f}x"])
        print(f"alternation {a + 1}: torch {t * 1e3:.1f} ms, jax {j * 1e3:.1f} ms, ratio {j / t:.2f}", flush=True)
    mean, sd, _ = C.mean_std(ratios)
    rows.append(["mean", C.fmt_mean_std(torch_ms, "{:.1f}", False), C.fmt_mean_std(jax_ms, "{:.1f}", False),
                 f"{mean:.2f}x" + (f" ± {sd:.2f}" if sd is not None else "")])
    print("\n" + C.markdown_table(["alternation", "torch ms/step", "jax ms/step", "jax / torch"], rows))
    data = {"torch_version": torch_version, "jax_version": jax.__version__, "backend": jax.default_backend(),
            "cpus": os.cpu_count(), "devices": jax.device_count(), "load_average": list(load), "sets": args.set, "steps": args.steps,
            "torch_ms": torch_ms, "jax_ms": jax_ms, "ratios": ratios, "mean_ratio": mean, "target": args.target}
    if args.profile:
        prof = profile_step(trainer, batch, box, args.steps)
        data["profile"] = prof
        print(f"\nXLA kernels of the jax step ({prof['kernels_per_step']:.0f} per step, {prof['total_ms']:.1f} ms of "
              "kernel time per step; overlapping kernels both count):\n")
        for title, table in (("kind", prof["by_kind"]), ("model part", prof["by_part"])):
            body = [[k, f"{v:.1f}", f"{100 * v / prof['total_ms']:.0f}%"] for k, v in
                    sorted(table.items(), key=lambda kv: -kv[1])]
            print(C.markdown_table([title, "ms/step", "share"], body) + "\n")
    on_cpu = jax.default_backend() == "cpu"
    ok = mean <= args.target
    print(f"{'PASS' if ok else 'FAIL'}: the jax step takes {mean:.2f}x torch's (target <= {args.target:g}x"
          f"{' on CPU' if on_cpu else '; the target is set for CPU'})")
    C.write_results(args.results, "experiments.benchmarks.bench_torch_step", argv, data)
    trainer.close()
    return 0 if ok or not on_cpu else 1


if __name__ == "__main__":
    sys.exit(main())
