"""How much of a model's validation loss depends on seeing the future: the loss as evaluated during training
(all positions of a window at once) against the loss at generation time (position i predicted from tokens <= i
only, one forward pass per prefix length).

For a causal model the two are equal; for the original non-causal phase layer (seed_faithful) the gap is what
the layer takes from tokens it will not have when it generates.

    python experiments/phase_leak.py --workdirs runs/a,runs/b [--batches 8] [--checkpoint best]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wavejax.data import BatchSampler, prepare_lm_data  # noqa: E402
from wavejax.sample import load_run  # noqa: E402
from wavejax.train.losses import cross_entropy  # noqa: E402


@functools.partial(jax.jit, static_argnames="model")
def _logits(model, params, x):
    return model.apply({"params": params}, x, True)  # compiled once per prefix length, shared by equal models


def window_and_prefix_losses(model, params, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(mean CE with the whole window visible, mean CE with position i seeing tokens <= i only)."""
    full = float(cross_entropy(_logits(model, params, x), y))
    prefix = [float(cross_entropy(_logits(model, params, x[:, : i + 1])[:, -1], y[:, i])) for i in range(x.shape[1])]
    return full, float(np.mean(prefix))


def measure(workdir: str, batches: int, which: str) -> dict:
    config, tokenizer, model, params = load_run(workdir, which)
    data = prepare_lm_data(config, tokenizer=tokenizer)
    micro = config.train.batch_size // config.train.grad_accum
    sampler = BatchSampler(data.val, micro, config.model.block_size, config.seed + 1, split="val")  # the run's val batches
    xs, ys = zip(*(sampler.batch_at(i) for i in range(batches)))  # one stacked batch: one forward per prefix length
    full, prefix = window_and_prefix_losses(model, params, np.concatenate(xs), np.concatenate(ys))
    return {"workdir": workdir, "causal_layers": _causal(config), "window_loss": float(full), "generation_loss": float(prefix)}


def _causal(config) -> str:
    if "phase" not in config.model or "phase" not in tuple(config.model.layer_attention):
        return "yes (no phase layer)"
    p = config.model.phase
    return "no (seed_faithful)" if p.seed_faithful else ("yes" if p.causal else "no")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdirs", required=True, help="comma-separated run directories")
    ap.add_argument("--batches", type=int, default=8, help="validation batches (the run's first ones)")
    ap.add_argument("--checkpoint", default="last", choices=["best", "last"])
    args = ap.parse_args()
    rows = [measure(w, args.batches, args.checkpoint) for w in args.workdirs.split(",")]
    print("| run | causal | val loss, whole window visible | val loss at generation (prefix only) | gap |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workdir']} | {r['causal_layers']} | {r['window_loss']:.4f} | {r['generation_loss']:.4f} | "
              f"{r['generation_loss'] - r['window_loss']:+.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
