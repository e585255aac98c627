"""How often the original's wave diagnostics fire on structureless inputs (spec §10): the null rate of each test.

    python -m experiments.claims.wave_diagnostics_null              # 1000 trials per row
    python -m experiments.claims.wave_diagnostics_null --trials 20  # a smoke test
    python -m experiments.claims.wave_diagnostics_null --workdirs runs/wave_benchmark_cpu/fair/runs/wave-cpu_s0,...

Rows (numpy only, seeded; the definitions are wavejax/models/wave_diagnostics.py's, which follow the original):
- "harmonic" spectrum test on i.i.d. N(0,1) tables [V, d] (what the original analysed at init: PyTorch's N(0,1)
  `simple_embed`): the fraction of tables with at least one harmonic pair among the top-5 spectral peaks;
- fringe test on causal attention rows softmax(s * N(0,1) scores): the fraction of layers called "fringed";
- the "Lyapunov exponent" mean log |h_l - h_{l-1}| of a fixed residual stack [B, T, d] with B sequences:
  the Frobenius norm grows with B, so the exponent (and "stable" = < 0.1) depends on how many sequences you pass.
With --workdirs, the end-of-run report numbers of trained runs (metrics.jsonl, split "report") are listed too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from experiments import common as C
from wavejax.models import wave_diagnostics as D  # (numpy-only functions; jax is not touched)


def harmonic_rate(vocab: int, dim: int, trials: int, rng) -> float:
    return float(np.mean([len(D.spectrum_analysis(rng.standard_normal((vocab, dim)))["harmonic_pairs"]) > 0
                          for _ in range(trials)]))


def fringe_rate(heads: int, seq: int, scale: float, trials: int, rng) -> float:
    mask = np.tril(np.ones((seq, seq), bool))
    hits = []
    for _ in range(trials):
        s = np.where(mask, scale * rng.standard_normal((heads, seq, seq)), -np.inf)
        p = np.exp(s - s.max(-1, keepdims=True))
        hits.append(D.fringe_analysis(p / p.sum(-1, keepdims=True))["fringes"])
    return float(np.mean(hits))


def lognorm_by_batch(batches, seq: int, dim: int, layers: int, rng) -> list[float]:
    """The same per-sequence residual stack, passed with B copies of different sequences."""
    steps = 0.3 * rng.standard_normal((max(batches), layers, seq, dim))
    stack = np.cumsum(steps, axis=1)  # h_l = h_{l-1} + a small update
    return [D.lognorm_exponent([stack[:b, i] for i in range(layers)]) for b in batches]


def report_rows(workdirs) -> list[list[str]]:
    rows = []
    for w in workdirs:
        path = os.path.join(w, "metrics.jsonl")
        if not os.path.exists(path):
            C.fail(f"{w} has no metrics.jsonl; pass run directories of finished wave runs.")
        with open(path, encoding="utf-8") as f:
            report = [json.loads(line) for line in f if '"report"' in line]
        if not report:
            C.fail(f"{w} has no end-of-run report (split 'report'); was it a wave-family run that finished?")
        r = report[-1]
        fr = (f"{r['fringes/layers_with_fringes']:.0f} / {r['fringes/layers_checked']:.0f}"
              if "fringes/layers_checked" in r else "n/a")
        rows.append([os.path.basename(os.path.normpath(w)), f"{r.get('spectrum/table_harmonic_pairs', float('nan')):.0f}",
                     f"{r['spectrum/embedding_harmonic_pairs']:.0f}", fr, f"{r['trajectory/lognorm_exponent']:.2f}",
                     f"{r['trajectory/perturbation_exponent']:+.3f}"])
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdirs", default="", help="comma-separated finished wave runs whose report to list")
    C.add_results_arg(ap, "wave_diagnostics_null")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)
    if args.trials < 1:
        C.fail("--trials must be >= 1.")
    reports = report_rows([w for w in args.workdirs.split(",") if w.strip()])  # bad run folders fail before any work
    rng = np.random.default_rng(args.seed)
    rows, data = [], {"harmonic": {}, "fringes": {}}
    for vocab, dim in ((65, 64), (65, 128), (1024, 384)):
        trials = max(1, args.trials // (10 if vocab > 100 else 1))  # the big table is 10x fewer trials
        rate = data["harmonic"][f"{vocab}x{dim}"] = harmonic_rate(vocab, dim, trials, rng)
        rows.append([f"harmonic pair among top-5 peaks, N(0,1) table {vocab}×{dim}", f"{trials:,}", f"{rate:.1%}"])
    for scale in (0.1, 1.0, 3.0):
        rate = data["fringes"][str(scale)] = fringe_rate(4, 128, scale, args.trials, rng)
        rows.append([f"fringes, causal softmax(N(0,{scale}²) scores), 4 heads × T=128", f"{args.trials:,}", f"{rate:.1%}"])
    print(C.markdown_table(["test on structureless input", "trials", "fires"], rows, align="lrr"))
    batches = (1, 4, 16, 64)
    values = lognorm_by_batch(batches, 128, 128, 5, rng)
    print()
    print(C.markdown_table(["sequences passed (B)"] + [str(b) for b in batches],
                           [["'Lyapunov exponent' mean log ‖h_l − h_{l−1}‖"] + [f"{v:.2f}" for v in values],
                            ["'stable' (< 0.1)"] + ["yes" if v < 0.1 else "no" for v in values]]))
    C.write_results(args.results, "experiments.claims.wave_diagnostics_null", argv,
                    {**data, "trials": args.trials, "lognorm_by_batch": dict(zip(map(str, batches), values))})
    if reports:
        print()
        print(C.markdown_table(["run", "table harmonic pairs", "embedding harmonic pairs", "layers with fringes",
                                "lognorm exponent", "perturbation exponent"], reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
