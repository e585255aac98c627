"""Equal-budget comparison of configs over seeds: one table of mean ± std, one loss-curve plot.

    python -m experiments.reproductions.compare --configs baseline,harmonic,phase,wave --seeds 3
    python -m experiments.reproductions.compare --configs baseline:tiny,phase:tiny --seeds 3 --steps 200 --out runs/cmp
    python -m experiments.reproductions.compare --configs baseline,phase --arg tiny --tokens 2048000 \
        --set model.dtype=bfloat16

Every config x seed trains on the SAME number of tokens. A config's step consumes
train.batch_size x model.block_size tokens, so it runs tokens / that many steps; a budget that is
not a whole number of steps for every config is refused. The budget is --tokens, or --steps of the
FIRST config (default: its train.steps) converted to tokens. When a config decays its learning rate
over exactly train.steps (train.decay_steps == train.steps), the decay follows the new step count.

Each run trains in its own subprocess (so peak device memory and wall time are per run) in
OUT/runs/NAME_sSEED (NAME-ARG_sSEED when a preset is named). Rerunning the same command reuses
finished runs and resumes partial ones from their last checkpoint; a run folder holding different
settings is an error (use another --out).

Outputs: OUT/results.md (table), OUT/results.json (per-seed numbers), OUT/loss_curves.png.
Columns: val loss = loss at the final evaluation (after the last step); best val = lowest evaluation
during the run; both mean ± sample std over seeds (n shown). Δ val = mean val minus the first
config's, ± the standard error of that difference. tokens/s = training tokens over training time
from metrics.jsonl, leaving out each window that contains compilation (the first one and the first
after a resume); evaluation and checkpoint time are not in it. Wall time per run includes start-up,
compilation, evaluation and checkpoints. Peak memory is `peak_bytes_in_use` of the device
(max over seeds), n/a where the backend does not report it (CPU).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time

from experiments import common as C
from wavejax.errors import ConfigError, WavejaxError

RUN_SUMMARY = "compare_run.json"
REQUEST = "compare_request.json"
LOG = "compare.log"
FORBIDDEN = {
    "train.steps": "the step count follows from the token budget; use --steps or --tokens.",
    "seed": "seeds come from --seeds.",
}


# -- configs -----------------------------------------------------------------------------------

def base_config(name: str, arg: str | None, sets):
    return C.apply_overrides(C.load_config(name, arg), sets, FORBIDDEN)


def build_run_config(name: str, arg: str | None, sets, seed: int, steps: int):
    """The exact config of one run; the parent and the run's subprocess both build it with this."""
    config = base_config(name, arg, sets)
    t = config.train
    if t.decay_steps == t.steps:  # "decay over the whole run" stays so at the new length
        t.decay_steps = steps
    t.steps = steps
    t.progress = False  # the per-step bar would go to the run's log file
    config.seed = int(seed)
    return config


def parse_seeds(text: str) -> list[int]:
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise ConfigError(f"--seeds takes a count (3) or a list (0,1,2), got {text!r}.") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds must name at least one seed and no seed twice, got {text!r}.")
    return seeds


def make_plan(args) -> dict:
    """Resolves configs, budget, steps and run folders; every user error is a ConfigError sentence."""
    specs = C.parse_specs(args.configs, args.arg)
    labels = [C.label(n, a) for n, a in specs]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ConfigError(f"--configs names {', '.join(dup)} more than once.")
    seeds = parse_seeds(args.seeds)
    bases = [base_config(n, a, args.set) for n, a in specs]
    per_step = {lab: C.tokens_per_step(c) for lab, c in zip(labels, bases)}
    budget = C.token_budget(per_step[labels[0]], steps=args.steps, tokens=args.tokens, default_steps=bases[0].train.steps)
    steps = C.steps_for_tokens(budget, per_step)

    from wavejax.config import validate  # imports flax; after the cheap checks

    entries = []
    for (name, arg), lab in zip(specs, labels):
        runs = []
        for seed in seeds:
            config = build_run_config(name, arg, args.set, seed, steps[lab])
            validate(config)
            workdir = os.path.join(args.out, "runs", C.run_name(name, arg, seed))
            runs.append({"seed": seed, "workdir": workdir, "config": C.config_json(config)})
        entries.append({"label": lab, "name": name, "arg": arg, "tokens_per_step": per_step[lab], "steps": steps[lab],
                        "runs": runs})
    # A run folder left by different settings would silently mix results: refuse before any work.
    for e in entries:
        for r in e["runs"]:
            saved = _read_json(os.path.join(r["workdir"], "config.json"))
            if saved is not None:
                diff = C.configs_differ(saved, r["config"])
                if diff:
                    raise ConfigError(f"{r['workdir']} holds a run with other settings ({', '.join(diff[:6])}); "
                                      "use another --out or delete that folder.")
    return {"tokens": budget, "seeds": seeds, "entries": entries}


def _read_json(path: str):
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_json(path: str, obj) -> None:
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
    os.replace(path + ".tmp", path)


# -- one run, in a subprocess -------------------------------------------------------------------

def worker(request_path: str) -> int:
    req = _read_json(request_path)
    try:
        config = build_run_config(req["name"], req["arg"], req["set"], req["seed"], req["steps"])
        import jax

        from wavejax.train.loop import Trainer

        t0 = time.perf_counter()
        trainer = Trainer(config, req["workdir"])
        resumed_from = trainer.start_step
        try:
            summary = trainer.run()
        finally:
            trainer.close()
        wall = time.perf_counter() - t0
    except WavejaxError as e:
        C.fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        C.fail("interrupted; rerun the same command to resume from the last checkpoint.", 130)
    stats = [d.memory_stats() or {} for d in jax.local_devices()]
    peaks = [s["peak_bytes_in_use"] for s in stats if "peak_bytes_in_use" in s]
    dev = jax.devices()[0]
    _write_json(os.path.join(req["workdir"], RUN_SUMMARY), {
        "seed": req["seed"], "steps": summary["step"], "tokens": summary["step"] * C.tokens_per_step(config),
        "params": summary["params"], "val_loss": summary["val_loss"], "best_val_loss": summary["best_val_loss"],
        "wall_s": wall, "resumed_from_step": resumed_from, "peak_bytes": max(peaks) if peaks else None,
        "backend": jax.default_backend(), "device_kind": dev.device_kind, "device_count": jax.device_count(),
        "config": C.config_json(config),
    })
    return 0


def _last_record(workdir: str) -> dict | None:
    path = os.path.join(workdir, "metrics.jsonl")
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            lines = [ln for ln in f.read().decode("utf-8", "ignore").splitlines() if ln.strip()]
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None


def _error_line(log_path: str) -> str:
    try:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            lines = [ln.strip() for ln in f if ln.strip()]
    except OSError:
        return "no log"
    errors = [ln for ln in lines if ln.startswith("error:")]
    return (errors[-1][len("error:"):].strip() if errors else (lines[-1] if lines else "no output"))


def launch(entry: dict, run: dict, sets, bar) -> dict:
    """Trains one run in a subprocess (or reuses a finished one); returns its summary or an error."""
    workdir = run["workdir"]
    done = _read_json(os.path.join(workdir, RUN_SUMMARY))
    if done is not None and done.get("config") == run["config"] and done.get("steps") == entry["steps"]:
        return {**done, "reused": True}
    os.makedirs(workdir, exist_ok=True)
    req_path = os.path.join(workdir, REQUEST)
    _write_json(req_path, {"name": entry["name"], "arg": entry["arg"], "set": list(sets), "seed": run["seed"],
                           "steps": entry["steps"], "workdir": workdir})
    # the worker is this module run with -m: the repository root goes on its path, wherever the caller runs from
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([C.REPO, *filter(None, [os.environ.get("PYTHONPATH")])])}
    with open(os.path.join(workdir, LOG), "a", encoding="utf-8") as log:
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {entry['label']} seed {run['seed']}\n")
        log.flush()
        proc = subprocess.Popen([sys.executable, "-m", __spec__.name, "--worker", req_path],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
        shown = None
        try:
            while proc.poll() is None:
                rec = _last_record(workdir)
                if rec is not None and rec.get("step") != shown:
                    shown = rec.get("step")
                    bar.set_postfix_str(f"{entry['label']} s{run['seed']} step {shown}/{entry['steps']}", refresh=True)
                time.sleep(0.5)
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)  # the run closes its checkpoints and stops
            proc.wait()
            raise
    if proc.returncode != 0:
        return {"seed": run["seed"], "error": _error_line(os.path.join(workdir, LOG)), "returncode": proc.returncode}
    return {**_read_json(os.path.join(workdir, RUN_SUMMARY)), "reused": False}


# -- results -----------------------------------------------------------------------------------

def train_throughput(records: list[dict], tokens_per_step: int, resumed_from: int = 0) -> float | None:
    """Tokens over time of the logged train windows, leaving out windows that include compilation."""
    train = sorted((r for r in records if r.get("split") == "train" and r.get("tokens_per_s")), key=lambda r: r["step"])
    windows, prev = [], 0
    for r in train:
        windows.append((prev, r["step"], r["tokens_per_s"]))
        prev = r["step"]
    starts = {0, resumed_from}
    warm = [w for w in windows if not any(w[0] <= s < w[1] for s in starts)]
    use = warm or windows  # a run with a single window keeps it (compile included)
    if not use:
        return None
    tokens = sum((b - a) * tokens_per_step for a, b, _ in use)
    seconds = sum((b - a) * tokens_per_step / rate for a, b, rate in use)
    return tokens / seconds if seconds > 0 else None


def collect(plan: dict, outcomes: dict) -> dict:
    from wavejax.runlog import read_metrics

    configs = []
    for e in plan["entries"]:
        runs = []
        for r in e["runs"]:
            out = outcomes[(e["label"], r["seed"])]
            row = {"seed": r["seed"], "workdir": r["workdir"]}
            if "error" in out:
                runs.append({**row, "error": out["error"]})
                continue
            records = read_metrics(r["workdir"])
            vals = [x["loss"] for x in records if x.get("split") == "val"]
            row.update({
                "steps": out["steps"], "tokens": out["tokens"], "params": out["params"],
                "val_loss": out["val_loss"], "best_val_loss": min(vals) if vals else out["best_val_loss"],
                "tokens_per_s": train_throughput(records, e["tokens_per_step"], out.get("resumed_from_step", 0)),
                "wall_s": out["wall_s"], "peak_bytes": out["peak_bytes"], "resumed_from_step": out.get("resumed_from_step", 0),
                "reused": out.get("reused", False), "backend": out["backend"], "device_kind": out["device_kind"],
                "device_count": out["device_count"],
            })
            runs.append(row)
        configs.append({"label": e["label"], "name": e["name"], "arg": e["arg"], "tokens_per_step": e["tokens_per_step"],
                        "steps": e["steps"], "tokens": e["steps"] * e["tokens_per_step"], "runs": runs})
    return configs


def _ok(runs, key):
    return [r[key] for r in runs if "error" not in r and r.get(key) is not None]


def table(configs: list[dict]) -> str:
    headers = ["config", "params", "tokens", "steps", "val loss", "best val loss", "Δ val vs first (± s.e.)",
               "tokens/s", "wall time / run", "peak memory"]
    first = C.mean_std(_ok(configs[0]["runs"], "val_loss"))
    rows = []
    for i, c in enumerate(configs):
        runs = c["runs"]
        params = _ok(runs, "params")
        m, s, n = C.mean_std(_ok(runs, "val_loss"))
        if i == 0:
            delta = "—"
        elif m is None or first[0] is None:
            delta = "n/a"
        else:
            se = math.sqrt((s or 0.0) ** 2 / n + (first[1] or 0.0) ** 2 / first[2]) if (s is not None or first[1] is not None) else None
            delta = f"{m - first[0]:+.4f}" + (f" ± {se:.4f}" if se is not None else "")
        walls = _ok(runs, "wall_s")
        wm, ws, _ = C.mean_std(walls)
        wall = "n/a" if wm is None else C.fmt_seconds(wm) + (f" ± {C.fmt_seconds(ws)}" if ws is not None else "")
        peaks = _ok(runs, "peak_bytes")
        rows.append([
            c["label"], f"{params[0]:,}" if params else "n/a", f"{c['tokens']:,}", f"{c['steps']:,}",
            C.fmt_mean_std(_ok(runs, "val_loss")), C.fmt_mean_std(_ok(runs, "best_val_loss")), delta,
            C.fmt_mean_std(_ok(runs, "tokens_per_s"), "{:,.0f}", show_n=False), wall,
            C.fmt_bytes(max(peaks)) if peaks else "n/a",
        ])
    return C.markdown_table(headers, rows)


def summary(plan: dict, configs: list[dict]) -> dict:
    """The per-seed numbers the claims ledger reads: tokens, seeds and, per config, params, steps and val losses."""
    return {"tokens": plan["tokens"], "seeds": plan["seeds"], "configs": [
        {"label": c["label"], "steps": c["steps"], "params": (_ok(c["runs"], "params") or [None])[0],
         "val_loss": _ok(c["runs"], "val_loss"), "best_val_loss": _ok(c["runs"], "best_val_loss")} for c in configs]}


def write_outputs(out: str, plan: dict, configs: list[dict], argv: list[str]) -> str:
    from wavejax.analysis.plots import plot_loss_curves
    from wavejax.runlog import read_metrics

    os.makedirs(out, exist_ok=True)
    ok = [r for c in configs for r in c["runs"] if "error" not in r]
    device = "n/a"
    if ok:
        r0 = ok[0]
        device = f"{r0['device_count']} x {r0['device_kind']} ({r0['backend']})"
    text = table(configs)
    failed = [f"- {c['label']} seed {r['seed']}: {r['error']} (log: {os.path.join(r['workdir'], LOG)})"
              for c in configs for r in c["runs"] if "error" in r]
    md = [
        "# Equal-token comparison", "",
        f"Every run trains on {plan['tokens']:,} tokens; seeds {', '.join(map(str, plan['seeds']))}; device {device}.",
        f"Command: `python -m experiments.reproductions.compare {' '.join(argv)}`", "",
        text, "",
        "val loss: at the final evaluation; best val loss: lowest evaluation in the run; both mean ± sample std "
        "over seeds (n = seeds that finished). Δ val: difference of means to the first config ± its standard error. "
        "tokens/s: training throughput from metrics.jsonl without the windows that include compilation "
        "(mean ± std over seeds). Wall time includes start-up, compilation, evaluation and checkpoints. "
        "Peak memory: device `peak_bytes_in_use`, max over seeds (n/a on CPU).",
    ]
    if failed:
        md += ["", "Failed runs:", *failed]
    md += ["", "![loss curves](loss_curves.png)", ""]
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(md))
    _write_json(os.path.join(out, "results.json"), {
        "tokens": plan["tokens"], "seeds": plan["seeds"], "device": device, "argv": argv, "configs": configs,
    })
    curves = {c["label"]: [read_metrics(r["workdir"]) for r in c["runs"] if "error" not in r] for c in configs}
    plot_loss_curves(curves, {c["label"]: c["tokens_per_step"] for c in configs}, os.path.join(out, "loss_curves.png"),
                     title=f"val loss at equal tokens ({plan['tokens']:,}); mean ± std over seeds, train loss faint")
    return text + ("\n\nFailed runs:\n" + "\n".join(failed) if failed else "")


# -- command line ------------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="baseline", help="comma-separated NAME or NAME:ARG (configs/NAME.py, preset ARG)")
    ap.add_argument("--seeds", default="3", help="a count N (seeds 0..N-1) or a list like 0,1,2")
    budget = ap.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, default=None, help="steps of the FIRST config; sets the token budget")
    budget.add_argument("--tokens", type=int, default=None, help="token budget of every run")
    ap.add_argument("--arg", default=None, help="preset for every config that does not name one (e.g. tiny)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="dotted override applied to every config, e.g. --set model.dtype=bfloat16 (repeatable)")
    ap.add_argument("--out", default="runs/compare", help="output folder (runs/, results.md, results.json, loss_curves.png)")
    C.add_results_arg(ap, "<name>")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.worker:
        return worker(args.worker)
    try:
        plan = make_plan(args)
    except WavejaxError as e:
        C.fail(str(e), e.exit_code)

    from tqdm.auto import tqdm

    jobs = [(e, r) for e in plan["entries"] for r in e["runs"]]
    print(f"compare: {len(plan['entries'])} configs x {len(plan['seeds'])} seeds, {plan['tokens']:,} tokens per run: "
          + ", ".join(f"{e['label']} {e['steps']:,} steps x {e['tokens_per_step']:,} tokens" for e in plan["entries"]),
          flush=True)
    outcomes = {}
    bar = tqdm(total=len(jobs), unit="run", desc="runs", dynamic_ncols=True, disable=None)  # None: off when not a TTY
    try:
        for e, r in jobs:
            out = launch(e, r, args.set, bar)
            outcomes[(e["label"], r["seed"])] = out
            if "error" in out:
                msg = f"{e['label']} seed {r['seed']}: FAILED: {out['error']}"
            else:
                msg = (f"{e['label']} seed {r['seed']}: val {out['val_loss']:.4f} (best {out['best_val_loss']:.4f}), "
                       f"{C.fmt_seconds(out['wall_s'])}" + (" (reused)" if out.get("reused") else ""))
            tqdm.write(msg)
            bar.update(1)
    except KeyboardInterrupt:
        bar.close()
        C.fail("interrupted; rerun the same command to reuse finished runs and resume the others.", 130)
    bar.close()
    configs = collect(plan, outcomes)
    text = write_outputs(args.out, plan, configs, argv)
    print()
    print(text)
    print(f"\nwrote {os.path.join(args.out, 'results.md')}, results.json, loss_curves.png")
    if not any("error" in r for c in configs for r in c["runs"]):
        C.write_results(args.results, "experiments.reproductions.compare", argv, summary(plan, configs))
    return 1 if any("error" in r for c in configs for r in c["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
