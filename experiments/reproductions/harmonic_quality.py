"""Harmonic GPT quality at equal tokens: the standard GPT against the wave-fraction × window grid, the original's
top-k selection and the full MoE, over seeds (experiments/reproductions/compare.py), then the future-leak probe on each selection.

    python -m experiments.reproductions.harmonic_quality  # CPU size (configs/harmonic.py:cpu), 3 seeds
    python -m experiments.reproductions.harmonic_quality --size "" --seeds 3 --out runs/harmonic_quality_gpu  # GPU size

Configs (each `harmonic:SIZE+...`): standard; every fraction in {0.125, 0.25, 0.5} × window in {32, 128} with the
sound (causal) selection; faithful (top-k over the window, hard mask) and moe (full MoE) at 0.25 / 32. Every run
trains on the same number of tokens (the size preset's train.steps × batch × block) and is scored on the held-out
split. The leak probe (experiments/claims/future_leak.py, padded mode: generation's fixed window with the future set to 0)
runs on seed 0 of the default and the faithful selection. Outputs: OUT/results.md (compare.py's table),
OUT/loss_curves.png, OUT/leak.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from experiments import common as C
from experiments.reproductions import compare

FRACTIONS = {"0.125": "f0125", "0.25": "f025", "0.5": "f05"}
WINDOWS = {"32": "w32", "128": "w128"}


def grid(size: str, which: str = "full") -> list[str]:
    """The configs of the grid: `full` (every fraction x window, faithful, moe) or `claims` (standard, the default
    0.25 / 32, its 128-window control and the original's selection: the rows the claims ledger reads)."""
    pre = f"{size}+" if size else ""
    specs = [f"harmonic:{pre}standard"]
    if which == "claims":
        return specs + [f"harmonic:{pre}f025+w32", f"harmonic:{pre}f025+w128", f"harmonic:{pre}faithful+f025+w32"]
    specs += [f"harmonic:{pre}{f}+{w}" for w in WINDOWS.values() for f in FRACTIONS.values()]
    specs += [f"harmonic:{pre}faithful+f025+w32", f"harmonic:{pre}moe+f025+w32"]
    return specs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="cpu", help="size preset of configs/harmonic.py ('' = the report's model)")
    ap.add_argument("--grid", default="full", choices=("full", "claims"),
                    help="full: every fraction x window, faithful, moe; claims: standard, f025+w32, f025+w128, faithful")
    ap.add_argument("--seeds", default="3")
    ap.add_argument("--out", default="runs/harmonic_quality")
    ap.add_argument("--leak_batches", type=int, default=4, help="validation batches for the leak probe (0 = skip)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every config")
    C.add_results_arg(ap, "harmonic_quality")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)
    specs = grid(args.size, args.grid)
    cmp_args = ["--configs", ",".join(specs), "--seeds", args.seeds, "--out", args.out]
    for s in args.set:
        cmp_args += ["--set", s]
    code = compare.main(cmp_args)
    if code:
        return code
    with open(os.path.join(args.out, "results.json"), encoding="utf-8") as f:
        done = json.load(f)
    data = {"size": args.size, "compare": compare.summary(done, done["configs"])}
    if args.leak_batches <= 0:
        C.write_results(args.results, "experiments.reproductions.harmonic_quality", argv, data)
        return 0
    from experiments.claims import future_leak

    seed0 = compare.parse_seeds(args.seeds)[0]
    pre = f"{args.size}+" if args.size else ""
    names = [f"{pre}f025+w32", f"{pre}faithful+f025+w32"]
    workdirs = [os.path.join(args.out, "runs", C.run_name("harmonic", n, seed0)) for n in names]
    rows = [future_leak.measure(w, args.leak_batches, "last", ("padded",)) for w in workdirs]
    text = future_leak.render(rows, ("padded",))
    with open(os.path.join(args.out, "leak.md"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    print("\n" + text)
    data["leak"] = [{**r, "run": os.path.basename(r["workdir"])} for r in rows]
    C.write_results(args.results, "experiments.reproductions.harmonic_quality", argv, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
