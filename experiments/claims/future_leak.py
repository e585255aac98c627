"""How much of a model's validation loss depends on seeing the future: the loss as evaluated during training (all
positions of a window at once) against the loss position i gets when it can see tokens <= i only.

    python -m experiments.claims.future_leak --workdirs runs/a,runs/b [--batches 8] [--checkpoint best] \
        [--modes prefix,padded]

Two ways to hide the future, one column each:
  prefix  position i predicted from the window cut after i (one forward pass per prefix length; one compile each)
  padded  position i predicted from the full-length window with every token after i set to 0, as wavejax.sample
          generates (one compile; this is what a model meets at generation time)
For a causal model all columns are equal. For the original non-causal phase layer (phase seed_faithful) and the
original top-k wave selection (harmonic seed_faithful) the gap is what the model takes from tokens it will not have
when it generates.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import jax
import numpy as np

from experiments import common as C
from wavejax.data import BatchSampler, prepare_lm_data
from wavejax.nn.objectives import cross_entropy
from wavejax.sample import load_run

MODES = ("prefix", "padded")


@functools.partial(jax.jit, static_argnames="model")
def _logits(model, params, x):
    return model.apply({"params": params}, x, True)  # compiled once per shape, shared by equal models


def window_loss(model, params, x: np.ndarray, y: np.ndarray) -> float:
    return float(cross_entropy(_logits(model, params, x), y))


def prefix_loss(model, params, x: np.ndarray, y: np.ndarray) -> float:
    """Mean CE with position i seeing the window cut after i."""
    return float(np.mean([float(cross_entropy(_logits(model, params, x[:, : i + 1])[:, -1], y[:, i]))
                          for i in range(x.shape[1])]))


def padded_loss(model, params, x: np.ndarray, y: np.ndarray) -> float:
    """Mean CE with position i seeing the whole-length window whose tokens after i are 0 (generation's padding)."""
    losses = []
    for i in range(x.shape[1]):
        xi = x.copy()
        xi[:, i + 1:] = 0
        losses.append(float(cross_entropy(_logits(model, params, xi)[:, i], y[:, i])))
    return float(np.mean(losses))


def causality(config) -> str:
    m = config.model
    if "phase" in tuple(m.layer_attention) or m.attention == "phase":
        p = m.phase
        return "no (phase seed_faithful)" if p.seed_faithful else ("yes" if p.causal else "no (phase causal=False)")
    if m.selector == "wave_detector":
        from wavejax.models.harmonic import resolved

        return "no (top-k wave selection)" if resolved(m.harmonic)["selection"] == "topk" else "yes"
    return "yes"


def measure(workdir: str, batches: int, which: str, modes=MODES) -> dict:
    config, tokenizer, model, params = load_run(workdir, which)
    data = prepare_lm_data(config, tokenizer=tokenizer)
    micro = config.train.batch_size // config.train.grad_accum
    sampler = BatchSampler(data.val, micro, config.model.block_size, config.seed + 1, split="val")  # the run's val batches
    xs, ys = zip(*(sampler.batch_at(i) for i in range(batches)))  # one stacked batch
    x, y = np.concatenate(xs), np.concatenate(ys)
    row = {"workdir": workdir, "causal": causality(config), "window_loss": window_loss(model, params, x, y)}
    for mode in modes:
        row[f"{mode}_loss"] = {"prefix": prefix_loss, "padded": padded_loss}[mode](model, params, x, y)
    return row


def render(rows: list[dict], modes) -> str:
    head = "| run | causal | val loss, whole window visible | " + " | ".join(
        f"val loss, {m} (gap)" for m in modes) + " |"
    lines = [head, "|---|---|---|" + "---|" * len(modes)]
    for r in rows:
        cells = [f"{r[f'{m}_loss']:.4f} ({r[f'{m}_loss'] - r['window_loss']:+.4f})" for m in modes]
        lines.append(f"| {r['workdir']} | {r['causal']} | {r['window_loss']:.4f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdirs", required=True, help="comma-separated run directories")
    ap.add_argument("--batches", type=int, default=8, help="validation batches (the run's first ones)")
    ap.add_argument("--checkpoint", default="last", choices=["best", "last"])
    ap.add_argument("--modes", default="prefix,padded", help=f"comma-separated, from {MODES}")
    C.add_results_arg(ap, "<name>_leak")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        print(f"error: --modes takes a comma-separated subset of {MODES}, got {args.modes!r}.", file=sys.stderr)
        return 2
    rows = [measure(w, args.batches, args.checkpoint, modes) for w in args.workdirs.split(",")]
    print(render(rows, modes))
    C.write_results(args.results, "experiments.claims.future_leak", argv,
                    {"batches": args.batches, "checkpoint": args.checkpoint,
                     "runs": [{**r, "run": os.path.basename(r["workdir"].rstrip("/"))} for r in rows]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
