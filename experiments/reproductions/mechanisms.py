"""Mechanism benchmarks: every family's sequence mixer on the synthetic tasks of wavejax/data/synthetic.py, swept
over one knob at a time (pairs, sequence length, width), several seeds, equal steps; accuracy on held-out batches.

    python -m experiments.reproductions.mechanisms --scale cpu --out runs/mechanisms
    python -m experiments.reproductions.mechanisms --scale gpu --out runs/mechanisms_gpu
    python -m experiments.reproductions.mechanisms --scale cpu --tasks mqar --models dense,phase --seeds 2

A scale fixes, per task, a base point and the values of each swept knob; every other point differs from the base in
one knob. Each (task, point, model, seed) trains `configs/synthetic.py:TASK+MODEL` for the scale's steps in
OUT/runs/TASK/MODEL/POINT_sSEED. Rerunning the same command reuses finished runs and resumes partial ones from their
last checkpoint; a run folder holding other settings (other --steps included) is an error. Knobs: pairs = MQAR key-value pairs, copied tokens
(copy) or items (binding); length = model.block_size; width = model.d_model (with init_std = 1/sqrt(width)).

The holographic memory (wavejax/memory/incontext.py) answers the MQAR points without training: a fresh store per
sequence binds each key to its value and each query reads it back; its rows use the same validation batches as the
trained models, and its seeds are those of its SO(4) token table.

Outputs: OUT/results.json (every run), OUT/results.md (one table per task and knob: final validation accuracy on the
answer positions, mean ± sample std over seeds), OUT/TASK.png (accuracy against each knob, Zoology's layout).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from experiments import common as C
from wavejax.errors import ConfigError, WavejaxError

TASKS = ("mqar", "copy", "induction", "binding")
MODELS = ("dense", "local", "linear", "harmonic", "harmonic_faithful", "phase", "wave")
MEMORY = "holographic"  # the untrained in-context baseline, on mqar
SUMMARY = "mechanisms_run.json"

# Per scale: training settings, then per task the base point and the swept values of each knob.
SCALES = {
    "tiny": {  # the tests' scale: a few steps, nothing learned
        "train": {"steps": 4, "batch_size": 8, "eval_every": 2, "eval_batches": 1, "log_every": 2,
                  "checkpoint_every": 4, "warmup_steps": 1},
        "tasks": {
            "mqar": {"base": {"pairs": 2, "length": 16, "width": 32}, "sweep": {"pairs": [1, 2], "width": [16, 32]}},
            "copy": {"base": {"pairs": 2, "length": 16, "width": 32}, "sweep": {"pairs": [2]}},
            "induction": {"base": {"length": 16, "width": 32}, "sweep": {"length": [16]}},
            "binding": {"base": {"pairs": 2, "length": 16, "width": 32}, "sweep": {"pairs": [2]}},
        },
    },
    "cpu": {  # about 50 min on 2 cores with --jobs 2
        "train": {"steps": 600, "batch_size": 32, "eval_every": 300, "eval_batches": 8, "log_every": 100,
                  "checkpoint_every": 600, "warmup_steps": 50},
        "tasks": {
            "mqar": {"base": {"pairs": 4, "length": 32, "width": 64},
                     "sweep": {"pairs": [2, 4, 8], "length": [16, 32], "width": [32, 64]}},
            "copy": {"base": {"pairs": 4, "length": 32, "width": 64}, "sweep": {"pairs": [4]}},
            "induction": {"base": {"length": 32, "width": 64}, "sweep": {"length": [32]}},
            "binding": {"base": {"pairs": 3, "length": 32, "width": 64}, "sweep": {"pairs": [3]}},
        },
    },
    "gpu": {
        "train": {"steps": 6000, "batch_size": 128, "eval_every": 500, "eval_batches": 8, "log_every": 100,
                  "checkpoint_every": 1000, "warmup_steps": 200},
        "tasks": {
            "mqar": {"base": {"pairs": 16, "length": 128, "width": 64, "vocab": 256},
                     "sweep": {"pairs": [4, 8, 16, 32], "length": [64, 128, 256, 512], "width": [32, 64, 128, 256]}},
            "copy": {"base": {"pairs": 16, "length": 256, "width": 64}, "sweep": {"pairs": [8, 16, 32]}},
            "induction": {"base": {"length": 128, "width": 64}, "sweep": {"length": [64, 128, 256]}},
            "binding": {"base": {"pairs": 8, "length": 128, "width": 64}, "sweep": {"pairs": [4, 8, 12]}},
        },
    },
}
KNOB_KEY = {  # knob -> config key, per task
    "pairs": {"mqar": "data.synthetic.pairs", "copy": "data.synthetic.copy_tokens", "binding": "data.synthetic.num_items"},
    "length": {task: "model.block_size" for task in TASKS},
    "width": {task: "model.d_model" for task in TASKS},
    "vocab": {"mqar": "data.synthetic.vocab"},
}
BINDING_ATTRIBUTES = 2  # binding at every scale: items x 2 attributes (3 tokens each) + 2 tokens per query


# -- the plan -----------------------------------------------------------------------------------------------------------

def point_name(point: dict) -> str:
    return "_".join(f"{k}{point[k]}" for k in sorted(point))


def task_points(spec: dict) -> list[dict]:
    """The base point and every one-knob variation of it, without repeats, in a fixed order."""
    points = [dict(spec["base"])]
    for knob, values in spec["sweep"].items():
        for v in values:
            p = {**spec["base"], knob: v}
            if p not in points:
                points.append(p)
    return points


def run_config(task: str, model: str, point: dict, seed: int, train: dict):
    """The exact config of one run."""
    config = C.load_config("synthetic", f"{task}+{model}")
    for knob, value in point.items():
        key = KNOB_KEY[knob].get(task)
        if key is None:
            raise ConfigError(f"knob {knob!r} does not apply to task {task!r}.")
        C.apply_overrides(config, [f"{key}={value}"])
    if task == "binding":
        config.data.synthetic.attributes = BINDING_ATTRIBUTES
    config.model.init_std = 1.0 / math.sqrt(config.model.d_model)
    for key, value in train.items():
        config.train[key] = value
    config.train.progress = False
    config.seed = int(seed)
    return config


def make_plan(args) -> list[dict]:
    scale = SCALES[args.scale]
    tasks = _choose(args.tasks, TASKS, TASKS, "--tasks")
    models = _choose(args.models, (*MODELS, "rope"), MODELS, "--models")
    seeds = list(range(args.seeds))
    if args.seeds < 1:
        raise ConfigError("--seeds must be at least 1.")
    train = {**scale["train"], **({"steps": args.steps} if args.steps else {})}

    from wavejax.config import validate  # imports flax; after the cheap checks

    plan = []
    for task in tasks:
        for point in task_points(scale["tasks"][task]):
            for model in models:
                for seed in seeds:
                    config = run_config(task, model, point, seed, train)
                    validate(config)
                    workdir = os.path.join(args.out, "runs", task, model, f"{point_name(point)}_s{seed}")
                    plan.append({"task": task, "model": model, "point": point, "seed": seed, "train": train,
                                 "workdir": workdir, "config": C.config_json(config)})
    for run in plan:  # a folder left by other settings would mix results: refuse before any work
        saved = _read_json(os.path.join(run["workdir"], "config.json"))
        diff = C.configs_differ(saved, run["config"]) if saved is not None else []
        if diff:
            raise ConfigError(f"{run['workdir']} holds a run with other settings ({', '.join(diff[:6])}); "
                              "use another --out or delete that folder.")
    return plan


def _choose(text: str | None, allowed: tuple, default: tuple, flag: str) -> list[str]:
    if not text:
        return list(default)
    chosen = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in chosen if t not in allowed]
    if bad or not chosen:
        raise ConfigError(f"{flag} takes names from {', '.join(allowed)}; got {text!r}.")
    return chosen


# -- running ------------------------------------------------------------------------------------------------------------

def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def train_one(run: dict) -> dict:
    """Trains one run in this process (or reuses its finished summary)."""
    path = os.path.join(run["workdir"], SUMMARY)
    done = _read_json(path)
    if done is not None and done.get("config") == run["config"]:
        return {**done, "reused": True}
    from wavejax.rundir import write_atomic
    from wavejax.train.loop import Trainer

    config = run_config(run["task"], run["model"], run["point"], run["seed"], run["train"])
    t0 = time.perf_counter()
    trainer = Trainer(config, run["workdir"])
    try:
        summary = trainer.run()
    finally:
        trainer.close()
    out = {"accuracy": summary["val_accuracy"], "val_loss": summary["val_loss"], "steps": summary["step"],
           "params": summary["params"], "wall_s": time.perf_counter() - t0, "config": run["config"]}
    write_atomic(path, json.dumps(out, indent=2))
    return {**out, "reused": False}


def _guarded(run: dict) -> dict:
    try:
        return train_one(run)
    except WavejaxError as e:
        return {"error": str(e)}


def _one_thread() -> None:
    """A pool worker: XLA's CPU client on one thread, so that --jobs processes share the cores instead of fighting."""
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()


def run_all(plan: list[dict], jobs: int):
    """Yields (run, result) for every run, `jobs` at a time in worker processes (in this one for jobs = 1)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(plan), unit="run", dynamic_ncols=True)
    try:
        if jobs == 1:
            for run in plan:
                bar.set_postfix_str(f"{run['task']} {run['model']} {point_name(run['point'])} s{run['seed']}", refresh=True)
                yield run, _guarded(run)
                bar.update(1)
            return
        import concurrent.futures
        import multiprocessing

        with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                                    initializer=_one_thread) as pool:
            futures = {pool.submit(_guarded, run): run for run in plan}
            for future in concurrent.futures.as_completed(futures):
                bar.update(1)
                yield futures[future], future.result()
    finally:
        bar.close()


def memory_rows(plan: list[dict]) -> list[dict]:
    """The holographic in-context store on every MQAR point (no training), on the trained runs' validation batches."""
    from wavejax.data import synthetic
    from wavejax.memory.incontext import mqar_accuracy

    rows, seen = [], set()
    for run in plan:
        key = (point_name(run["point"]), run["seed"])
        if run["task"] != "mqar" or key in seen:
            continue
        seen.add(key)
        c = run["config"]
        s, t = _section(c["data"]["synthetic"]), c["train"]
        per = t["batch_size"] // t["grad_accum"]
        batches = [synthetic.batch(s, c["seed"] + 1, "val", i, per, c["model"]["block_size"]) for i in range(t["eval_batches"])]
        hits = [mqar_accuracy(x, y, s.pairs, synthetic.vocab_size(s, x.shape[1]), seed=run["seed"]) for x, y in batches]
        rows.append({"task": "mqar", "model": MEMORY, "point": run["point"], "seed": run["seed"],
                     "accuracy": float(sum(hits) / len(hits)), "params": 0, "steps": 0})
    return rows


def _section(d: dict):
    import ml_collections

    return ml_collections.ConfigDict(d)


# -- results ------------------------------------------------------------------------------------------------------------

def cell(values: list[float]) -> str:
    m, s, n = C.mean_std(values)
    if m is None:
        return "n/a"
    return f"{m:.3f}" + (f" ± {s:.3f}" if s is not None else "") + ("" if n >= 3 else f" (n={n})")


def tables(rows: list[dict], scale: dict) -> str:
    """One markdown table per (task, swept knob): models down, knob values across."""
    out = []
    for task, spec in scale["tasks"].items():
        task_rows = [r for r in rows if r["task"] == task]
        if not task_rows:
            continue
        models = list(dict.fromkeys(r["model"] for r in task_rows))
        base = ", ".join(f"{k} {v}" for k, v in spec["base"].items())
        for knob, values in spec["sweep"].items():
            table_rows = []
            for model in models:
                cells = []
                for v in values:
                    point = {**spec["base"], knob: v}
                    cells.append(cell([r["accuracy"] for r in task_rows if r["model"] == model and r["point"] == point
                                       and r.get("accuracy") is not None]))
                if any(c != "n/a" for c in cells):
                    table_rows.append([model, *cells])
            out += [f"**{task}**: accuracy against {knob} (others at {base})", "",
                    C.markdown_table(["model", *[f"{knob} {v}" for v in values]], table_rows), ""]
    return "\n".join(out)


def plot_task(rows: list[dict], task: str, spec: dict, path: str) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    task_rows = [r for r in rows if r["task"] == task and r.get("accuracy") is not None]
    if not task_rows:
        return None
    knobs = list(spec["sweep"])
    fig, axes = plt.subplots(1, len(knobs), figsize=(4.2 * len(knobs), 3.6), dpi=120, squeeze=False)
    models = list(dict.fromkeys(r["model"] for r in task_rows))
    for ax, knob in zip(axes[0], knobs):
        for model in models:
            xs, means, stds = [], [], []
            for v in spec["sweep"][knob]:
                acc = [r["accuracy"] for r in task_rows if r["model"] == model and r["point"] == {**spec["base"], knob: v}]
                if acc:
                    xs.append(v)
                    means.append(np.mean(acc))
                    stds.append(np.std(acc, ddof=1) if len(acc) > 1 else 0.0)
            if xs:
                ax.errorbar(xs, means, yerr=stds, marker="o", markersize=3, capsize=2, label=model,
                            linestyle="--" if model == MEMORY else "-")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(knob)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(True, alpha=0.3)
        ax.set_title(f"{task}: accuracy vs {knob}")
    axes[0][0].set_ylabel("accuracy (mean ± std over seeds)")
    axes[0][-1].legend(frameon=False, fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_outputs(out: str, rows: list[dict], scale_name: str, argv: list[str], failed: list[str]) -> str:
    import jax

    scale = SCALES[scale_name]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"scale": scale_name, "train": scale["train"], "runs": rows}, f, indent=2)
    pictures = [p for task, spec in scale["tasks"].items()
                if (p := plot_task(rows, task, spec, os.path.join(out, f"{task}.png"))) is not None]
    t = scale["train"]
    md = ["# Mechanism benchmarks", "",
          f"Scale {scale_name}: {t['steps']} steps of {t['batch_size']} sequences per run, every model the same; "
          f"accuracy on {t['eval_batches']} held-out batches after the last step; device {jax.devices()[0].device_kind}.",
          f"Command: `python -m experiments.reproductions.mechanisms {' '.join(argv)}`", "", tables(rows, scale)]
    if failed:
        md += ["Failed runs:", *failed, ""]
    md += [f"![{os.path.basename(p)[:-4]}]({os.path.basename(p)})" for p in pictures]
    path = os.path.join(out, "results.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(md) + "\n")
    return path


# -- command line -------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    ap.add_argument("--out", default="runs/mechanisms")
    ap.add_argument("--tasks", default="", help=f"comma-separated, from {', '.join(TASKS)} (default: all)")
    ap.add_argument("--models", default="", help=f"comma-separated, from {', '.join(MODELS)}, rope (default: all but rope)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=0, help="train steps per run (default: the scale's)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="runs trained at once, each in its own process on one CPU thread (CPU: up to the core count)")
    args = ap.parse_args(argv)
    try:
        plan = make_plan(args)
    except WavejaxError as e:
        C.fail(str(e), e.exit_code)
    if args.jobs < 1:
        C.fail("--jobs must be at least 1.")
    rows, failed = [], []
    try:
        for run, result in run_all(plan, args.jobs):
            if "error" in result:
                failed.append(f"- {run['workdir']}: {result['error']}")
            else:
                rows.append({k: run[k] for k in ("task", "model", "point", "seed")}
                            | {k: v for k, v in result.items() if k != "config"})
    except KeyboardInterrupt:
        C.fail("interrupted; rerun the same command to resume (finished runs are kept).", 130)
    rows += memory_rows(plan)
    path = write_outputs(args.out, rows, args.scale, argv, failed)
    print(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
