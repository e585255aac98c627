"""The one-shot GPU check: every GPU number the project lacks, in one command that fits a short GPU loan.

    python -m experiments.gpu_check --out runs/gpu_check             # on one H100/H200: at most 6 minutes
    python -m experiments.gpu_check --dry-run                          # the plan and each section's time budget
    python -m experiments.gpu_check --budget_s 120 --out /tmp/gc       # CPU: the sections that apply, tiny sizes

Sections run most important first, each as subprocesses with a timeout (a hang or a crash costs one section, never
the check), and each is appended to OUT/gpu_check.json and OUT/gpu_check.md as soon as it finishes, so a check cut
short still leaves every finished section:
  1. env          JAX, jaxlib, the CUDA plugin, Triton, the device, peak bf16 TFLOP/s and bandwidth (table and measured)
  2. kernels      the compiled kernels' GPU-only tests, and forward / backward error against the references at one
                  real shape in bf16 and float32 (CPU: interpret mode at tiny shapes)
  3. kernel_speed each kernel against its XLA path (and attention against cuDNN through
                  jax.nn.dot_product_attention) at the target shapes of docs/RESULTS.md, after a short block-size
                  search whose choice is written to OUT/gpu_check_tuning.json (--tuning FILE skips the search);
                  GPU only
  4. models       the baseline GPT at GPT-2 small size (12 x 768, T = 1024, bf16): tokens/s and MFU; the Harmonic step
                  against the standard one at T = 256 and attention alone at T = 4096 and 8192; the Phase A layer's
                  memory (CPU: tiny configs)
  5. throughput   field trials/s on the original small config and lattice oscillator-steps/s; memory writes/s
--budget_s (default 360) cuts sections whose budget no longer fits, in order. docs/RESULTS.md takes its GPU rows from
gpu_check.md the first time this runs on a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from experiments import common as C

PY = sys.executable


def sections(gpu: bool, out: str, tuning: str | None) -> list[dict]:
    """The plan: [{name, budget_s, steps: [(label, argv)]}], most important first; budgets in seconds."""
    j = lambda name: os.path.join(out, f"{name}.json")  # noqa: E731
    m = [PY, "-m"]
    kernel_tests = ["tests/test_kernels_selective.py", "tests/test_kernels_interference.py",
                    "tests/test_kernels_phase.py", "tests/test_kernels_kuramoto.py"]
    if gpu:
        kernels = [("GPU-only kernel tests", m + ["pytest", "-q", "-p", "no:cacheprovider", "-n", "0", *kernel_tests,
                                                 "-k", "on_a_gpu"]),
                   ("errors at T=2048, float32", m + ["experiments.benchmarks.bench_kernels", "--lengths", "2048",
                                                      "--dtype", "float32", "--reps", "2", "--json",
                                                      j("kernels_f32")]),
                   ("errors at T=2048, bfloat16", m + ["experiments.benchmarks.bench_kernels", "--lengths", "2048",
                                                       "--dtype", "bfloat16", "--reps", "2", "--json",
                                                       j("kernels_bf16")])]
        speed = [("selective block search", m + ["experiments.gpu_check", "--tune", "--out", out]
                  + (["--tuning", tuning] if tuning else [])),
                 ("kernels vs XLA and cuDNN at the target shapes, the chosen blocks",
                  m + ["experiments.gpu_check", "--speed", "--out", out])]
        gpt2 = ["--set", "model.n_layer=12", "--set", "model.n_head=12", "--set", "model.d_model=768",
                "--set", "model.block_size=1024", "--set", "model.dtype=bfloat16", "--batch", "8"]
        models = [("baseline at GPT-2 small size, bf16", m + ["experiments.benchmarks.bench_train", "--configs",
                                                             "baseline", "--steps", "10", *gpt2, "--json",
                                                             j("train_gpt2")]),
                  ("Harmonic step vs standard, T=256", m + ["experiments.benchmarks.bench_harmonic", "--part", "steps",
                                                            "--steps", "10", "--results", j("harmonic_steps")]),
                  ("attention alone, T=4096 and 8192", m + ["experiments.benchmarks.bench_harmonic", "--part",
                                                            "attention", "--lengths", "4096,8192", "--reps", "5",
                                                            "--results", j("harmonic_attention")]),
                  ("Phase A layer memory", m + ["experiments.benchmarks.phase_memory", "--no_naive"])]
        through = [("field small config and lattice", m + ["experiments.benchmarks.bench_field", "--repeats", "2"]),
                   ("memory writes and reads", m + ["experiments.benchmarks.bench_memory", "--repeats", "2",
                                                    "--results", j("memory")])]
        budgets = (20, 80, 90, 120, 50)
    else:
        kernels = [("kernels at tiny shapes, interpret mode", m + ["experiments.benchmarks.bench_kernels",
                                                                   "--lengths", "32", "--reps", "1", "--warmup", "0",
                                                                   "--json", j("kernels_cpu")])]
        speed = []
        models = [("baseline and Harmonic tiny steps", m + ["experiments.benchmarks.bench_train", "--configs",
                                                           "baseline:tiny,harmonic:tiny", "--steps", "3", "--warmup",
                                                           "1", "--json", j("train_tiny")]),
                  ("Phase A layer memory (compiled, not run)", m + ["experiments.benchmarks.phase_memory",
                                                                    "--no_naive"])]
        through = [("memory writes and reads", m + ["experiments.benchmarks.bench_memory", "--lengths", "16",
                                                    "--pairs", "16384", "--queries", "512", "--repeats", "1",
                                                    "--levels", "4", "--results", j("memory")])]
        budgets = (15, 45, 0, 35, 25)
    env = [("environment", m + ["experiments.gpu_check", "--env", "--out", out])]
    names = ("env", "kernels", "kernel_speed", "models", "throughput")
    steps = (env, kernels, speed, models, through)
    return [{"name": n, "budget_s": b, "steps": s} for n, b, s in zip(names, budgets, steps)]


# -- section 1 and the block search (run as subprocesses of the check) ----------------------------------------------

BANDWIDTH = {"H100 SXM": 3.35e12, "H100 PCIe": 2.0e12, "H200": 4.8e12, "A100": 2.0e12}  # docs/specs/gpu_notes.md


def environment(out: str) -> dict:
    import importlib.metadata as md

    import jax

    from wavejax.analysis import flops

    def version(name):
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    try:
        from jax.experimental.pallas import triton as _  # noqa: F401

        triton = "importable"
    except Exception as e:  # noqa: BLE001 (any failure means no Triton backend here)
        triton = f"not importable: {type(e).__name__}"
    dev = jax.devices()[0]
    gpu = jax.default_backend() == "gpu"
    kind = dev.device_kind
    table_bw = next((v for k, v in BANDWIDTH.items() if all(w in kind for w in k.split())), None)
    info = {"jax": jax.__version__, "jaxlib": version("jaxlib"),
            "cuda_plugin": {p: version(p) for p in ("jax-cuda12-plugin", "jax-cuda12-pjrt", "jax-cuda13-plugin")
                            if version(p)},
            "triton": triton, "backend": jax.default_backend(), "device": kind, "devices": jax.device_count(),
            "peak_bf16_tflops_table": (flops.peak_flops(kind, "bfloat16") or 0) / 1e12 or None,
            "bandwidth_tbs_table": table_bw / 1e12 if table_bw else None,
            "matmul_tflops_measured": C.matmul_peak_flops("bfloat16" if gpu else "float32", gpu, 5) / 1e12,
            "copy_tbs_measured": C.copy_bandwidth(gpu, 5) / 1e12}
    print(json.dumps(info, indent=1))
    return info


def block_search(out: str, tuning: str | None) -> dict:
    """The selective kernel's (block_q, block_k) at T = 8192 by timing four candidates, or the values of --tuning."""
    path = os.path.join(out, "gpu_check_tuning.json")
    if tuning:
        with open(tuning, encoding="utf-8") as f:
            chosen = json.load(f)
        print(f"block sizes from {tuning}: {chosen}")
    else:
        times = {}
        for bq, bk in ((64, 64), (128, 64), (64, 128), (128, 128)):
            res = os.path.join(out, f"tune_{bq}_{bk}.json")
            argv = [PY, "-m", "experiments.benchmarks.bench_kernels", "--kernels", "selective", "--lengths", "8192",
                    "--batch", "4", "--heads", "8", "--head_dim", "128", "--window", "128", "--block_q", str(bq),
                    "--block_k", str(bk), "--reps", "3", "--json", res]
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=60).returncode == 0
            except subprocess.TimeoutExpired:
                done = False
            rows = json.load(open(res, encoding="utf-8"))["rows"] if done else []
            ms = [r["fwd_bwd_ms"] for r in rows if r.get("impl") == "pallas" and r.get("fwd_bwd_ms")]
            times[f"{bq}x{bk}"] = min(ms) if ms else None
        ok = {k: v for k, v in times.items() if v}
        best = min(ok, key=ok.get) if ok else "64x64"
        chosen = {"selective": {"block_q": int(best.split("x")[0]), "block_k": int(best.split("x")[1])},
                  "times_ms": times, "searched": True}
        print(f"block search (fwd+bwd ms at T=8192): {times}; chosen {best}")
    from wavejax.rundir import write_atomic

    write_atomic(path, json.dumps(chosen, indent=1) + "\n")
    return chosen


def kernel_speed(out: str) -> int:
    """bench_kernels at the target shapes of docs/RESULTS.md with the block sizes the search chose."""
    path = os.path.join(out, "gpu_check_tuning.json")
    blocks = json.load(open(path, encoding="utf-8"))["selective"] if os.path.exists(path) else {}
    argv = ["--lengths", "1024,4096,8192", "--batch", "4", "--heads", "8", "--head_dim", "128", "--window", "128",
            "--json", os.path.join(out, "kernel_speed.json")]
    for key in ("block_q", "block_k"):
        if key in blocks:
            argv += [f"--{key}", str(blocks[key])]
    from experiments.benchmarks import bench_kernels

    return bench_kernels.main(argv)


# -- the runner ------------------------------------------------------------------------------------------------------

def run_step(label: str, argv: list[str], timeout: float) -> dict:
    start = time.perf_counter()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=max(1.0, timeout),
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
        status, rc, text = ("ok" if proc.returncode == 0 else "failed"), proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        status, rc, text = "timeout", None, out
    return {"label": label, "command": " ".join(argv[1:]) if argv[0] == PY else " ".join(argv), "status": status,
            "returncode": rc, "wall_s": round(time.perf_counter() - start, 1), "output_tail": text[-6000:]}


def append(out: str, record: dict, header: dict) -> None:
    """Adds one finished section to OUT/gpu_check.json and OUT/gpu_check.md (both rewritten atomically)."""
    from wavejax.rundir import write_atomic

    path = os.path.join(out, "gpu_check.json")
    data = json.load(open(path, encoding="utf-8")) if os.path.exists(path) else {**header, "sections": []}
    data["sections"].append(record)
    write_atomic(path, json.dumps(data, indent=1) + "\n")
    lines = [f"# GPU check ({header['started']}, budget {header['budget_s']} s)", ""]
    for sec in data["sections"]:
        lines += [f"## {sec['name']}: {sec['status']} ({sec['wall_s']} s of {sec['budget_s']} s)", ""]
        for st in sec.get("steps", []):
            lines += [f"### {st['label']}: {st['status']} ({st['wall_s']} s)", "", f"`python {st['command']}`", "",
                      "```", st["output_tail"].strip()[-3000:], "```", ""]
    write_atomic(os.path.join(out, "gpu_check.md"), "\n".join(lines) + "\n")


def run_all(plan: list[dict], out: str, budget_s: float) -> list[dict]:
    os.makedirs(out, exist_ok=True)
    start = time.perf_counter()
    header = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "budget_s": budget_s}
    for name in ("gpu_check.json", "gpu_check.md"):
        if os.path.exists(os.path.join(out, name)):
            os.remove(os.path.join(out, name))
    done = []
    for sec in plan:
        left = budget_s - (time.perf_counter() - start)
        if not sec["steps"] or sec["budget_s"] == 0:
            record = {"name": sec["name"], "budget_s": 0, "status": "skipped (needs a GPU)", "wall_s": 0, "steps": []}
        elif sec["budget_s"] > left:
            record = {"name": sec["name"], "budget_s": sec["budget_s"], "wall_s": 0, "steps": [],
                      "status": f"cut: {sec['budget_s']} s budget, {max(0, left):.0f} s left"}
        else:
            t0, steps = time.perf_counter(), []
            for label, argv in sec["steps"]:
                remaining = sec["budget_s"] - (time.perf_counter() - t0)
                steps.append(run_step(label, argv, remaining) if remaining > 1 else
                             {"label": label, "command": " ".join(argv[1:]), "status": "cut (section budget spent)",
                              "returncode": None, "wall_s": 0, "output_tail": ""})
            status = "ok" if all(st["status"] == "ok" for st in steps) else "partial"
            record = {"name": sec["name"], "budget_s": sec["budget_s"], "status": status,
                      "wall_s": round(time.perf_counter() - t0, 1), "steps": steps}
        append(out, record, header)
        print(f"{record['name']}: {record['status']} ({record['wall_s']} s)", flush=True)
        done.append(record)
    return done


def dry_run(plan: list[dict], platform: str) -> None:
    total = sum(s["budget_s"] for s in plan)
    print(f"GPU check plan ({platform}): {len(plan)} sections, budgets sum to {total} s")
    for sec in plan:
        print(f"  {sec['name']:<13} {sec['budget_s']:>4} s" + ("  (skipped here)" if not sec["steps"] else ""))
        for label, argv in sec["steps"]:
            print(f"      {label}: python {' '.join(argv[1:])}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/gpu_check", help="folder for gpu_check.json, gpu_check.md and the rest")
    ap.add_argument("--budget_s", type=float, default=360.0, help="wall-clock budget; sections that would not fit are cut")
    ap.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true", help="print the plan and exit")
    ap.add_argument("--platform", choices=("auto", "gpu", "cpu"), default="auto",
                    help="plan for this platform (auto: the backend JAX finds; --dry-run shows the GPU plan on a CPU)")
    ap.add_argument("--tuning", default=None, help="block sizes from an earlier run's gpu_check_tuning.json")
    ap.add_argument("--env", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tune", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--speed", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.budget_s <= 0:
        C.fail("--budget_s must be > 0.")
    if args.tuning and not os.path.isfile(args.tuning):
        C.fail(f"--tuning {args.tuning}: no such file; pass the gpu_check_tuning.json an earlier run wrote.")
    if args.env or args.tune or args.speed:
        os.makedirs(args.out, exist_ok=True)
        if args.env:
            environment(args.out)
        elif args.tune:
            block_search(args.out, args.tuning)
        else:
            return kernel_speed(args.out)
        return 0
    if args.dry_run and args.platform == "auto":
        args.platform = "gpu"
    if args.platform == "auto":
        import jax

        args.platform = "gpu" if jax.default_backend() == "gpu" else "cpu"
    plan = sections(args.platform == "gpu", args.out, args.tuning)
    if args.dry_run:
        dry_run(plan, args.platform)
        return 0
    records = run_all(plan, args.out, args.budget_s)
    print(f"wrote {os.path.join(args.out, 'gpu_check.json')} and gpu_check.md")
    return 0 if all(r["status"] in ("ok", "skipped (needs a GPU)") for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
