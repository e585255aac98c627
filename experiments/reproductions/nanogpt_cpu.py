"""Reproduces nanoGPT's CPU shakespeare-char figure (val loss 1.88) with the baseline trunk.

nanoGPT README settings: 4 layers, 4 heads, width 128, block 64, batch 12, 2000 iterations,
dropout 0, lr 1e-3 decayed over 2000 iterations to 1e-4 (warmup 100, beta2 0.99, weight decay 0.1,
clip 1.0). Config: configs/baseline.py:nanogpt_cpu. We evaluate on 200 fixed validation batches
(nanoGPT used 20 random ones).

    python -m experiments.reproductions.nanogpt_cpu --seeds 0,1,2 --out runs/nanogpt_cpu
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from experiments import common as C
from wavejax.config import config_module
from wavejax.runlog import read_metrics
from wavejax.train.loop import Trainer

TARGET = 1.88  # nanoGPT README, CPU settings
baseline = config_module(os.path.join(C.CONFIG_DIR, "baseline.py"))


def train_seconds(workdir: str, tokens_per_step: int) -> float:
    """Time in train steps (compilation included; evaluation, sampling, checkpoints excluded), from metrics.jsonl."""
    train = sorted((r for r in read_metrics(workdir) if r["split"] == "train"), key=lambda r: r["step"])
    total, prev = 0.0, 0
    for r in train:
        total += (r["step"] - prev) * tokens_per_step / r["tokens_per_s"]
        prev = r["step"]
    return total


def eval_batch_std(trainer) -> float:
    """Std of the loss of one validation batch at the final parameters: the noise of an estimate
    that averages few batches (nanoGPT's README run averaged 20)."""
    return float(trainer.eval_losses().std(ddof=1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--out", default="runs/nanogpt_cpu")
    ap.add_argument("--steps", type=int, default=0, help="override train.steps (0 = the preset's 2000)")
    args = ap.parse_args(argv)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        config = baseline.get_config("nanogpt_cpu")
        config.seed = seed
        config.train.sample_tokens = 0
        if args.steps:
            config.train.steps = config.train.decay_steps = args.steps
        workdir = os.path.join(args.out, f"s{seed}")
        t0 = time.perf_counter()
        trainer = Trainer(config, workdir)
        resumed = trainer.start_step
        summary = trainer.run()
        batch_sd = eval_batch_std(trainer)
        trainer.close()
        wall = time.perf_counter() - t0
        train_s = train_seconds(workdir, config.train.batch_size * config.model.block_size)
        rows.append({"seed": seed, "val_loss": summary["val_loss"], "best_val_loss": summary["best_val_loss"],
                     "params": summary["params"], "wall_s": wall, "train_s": train_s, "resumed_from": resumed,
                     "val_batch_std": batch_sd, "std_of_20_batch_mean": batch_sd / 20 ** 0.5})
        print(json.dumps(rows[-1]))
    vals = [r["val_loss"] for r in rows]
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    walls = [r["wall_s"] for r in rows if r["resumed_from"] == 0]  # a resumed run's wall time is partial
    wall_text = f"{statistics.mean(walls):.0f}" if walls else "n/a (resumed)"
    print()
    sd20 = statistics.mean(r["std_of_20_batch_mean"] for r in rows)
    print("| seeds | params | steps | final val loss (mean ± std) | std of a 20-batch estimate | nanoGPT README | "
          "train time per run (s) | wall time per run (s) |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {len(rows)} | {rows[0]['params']:,} | {config.train.steps} | {statistics.mean(vals):.4f} ± {sd:.4f} | {sd20:.4f} | "
          f"{TARGET} | {statistics.mean(r['train_s'] for r in rows):.0f} | {wall_text} |")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=2)
    return 0 if max(vals) <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
