"""The oscillator-field tables of docs/RESULTS.md, condensed from the run directories the CLI wrote.

    python -m wavejax.main --config=configs/field.py:small        # ... and :small+random_ic, medium, large, xlarge,
    python -m wavejax.main --config=configs/field.py:scaling      #     scaling, hubs, coupling (runs/field-NAME)
    python -m experiments.claims.field_report --runs runs  # prints the markdown tables

Reads summary.json / results.csv / scaling.csv / hubs.csv / coupling.csv; computes nothing new beyond selecting rows
(hub removal at --fractions, the coupling sweep at --ks) and the per-type counts of results.csv. A missing run
directory is reported in one line and its table skipped.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys

from experiments import common as C

TYPES = ("gaussian", "plane", "spiral", "noise")


def _csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _f(x, spec=".2f"):
    x = float(x)
    return "n/a" if not math.isfinite(x) else format(x, spec)


def _pm(m, s, spec=".2f"):
    m, s = float(m), float(s)
    if not math.isfinite(m):
        return "n/a"
    return format(m, spec) if not math.isfinite(s) else f"{format(m, spec)} ± {format(s, spec)}"


def originals(runs: str) -> str:
    from wavejax.field.report import ORIGINAL_REPORTED

    rows = []
    for name in ("small", "medium", "large", "xlarge"):
        path = os.path.join(runs, f"field-{name}", "summary.json")
        if not os.path.isfile(path):
            print(f"(no {path}: run python -m wavejax.main --config=configs/field.py:{name})", file=sys.stderr)
            continue
        s = json.load(open(path, encoding="utf-8"))
        r = ORIGINAL_REPORTED.get(name)
        if r:
            rows.append([name, r["nodes"], r["modes"], r["timesteps"], r["trials"], "original, reported",
                         f"{100 * r['detection']:.1f}%", _pm(r["rotation_mean"], r["rotation_std"]),
                         f"{r['rotation_mean'] / r['timesteps']:.2f}",
                         f"{100 * r['rotation_std'] / r['rotation_mean']:.1f}%",
                         f"{r['wave_speed']:.2f}", f"{r['trials_per_s']:.1f}"])
        rows.append([name if not r else "", s["nodes"], s["modes"], s["timesteps"], s["trials"], "wavejax, faithful",
                     f"{100 * s['detection']:.1f}% ({s['detected']}/{s['trials']})",
                     _pm(s["rotation_mean"], s["rotation_std"]) + f" (n={s['rotation_n']})",
                     _f(s["rotation_per_step"]), f"{100 * s['cv']:.1f}%", _f(s["wave_speed"]),
                     f"{s['trials_per_s']:.1f}"])
    if not rows:
        return ""
    return C.markdown_table(["config", "nodes", "modes", "steps", "trials", "run", "wave detection",
                             "mean rotation (°)", "° per step", "CV", "wave speed", "trials/s"], rows)


def by_type(runs: str, names=("small", "small-random_ic")) -> str:
    rows = []
    for name in names:
        path = os.path.join(runs, f"field-{name}", "results.csv")
        if not os.path.isfile(path):
            continue
        res = _csv(path)
        counts = [sum(r["ic_type"] == t for r in res) for t in TYPES]
        det = [sum(r["ic_type"] == t and r["has_wave"] == "True" for r in res) for t in TYPES]
        s = json.load(open(os.path.join(runs, f"field-{name}", "summary.json"), encoding="utf-8"))
        rows.append([name, "/".join(map(str, counts)), f"{100 * s['detection']:.1f}%",
                     "/".join(f"{100 * d / c:.0f}%" if c else "-" for d, c in zip(det, counts)),
                     _pm(s["rotation_mean"], s["rotation_std"]), f"{100 * s['cv']:.1f}%"])
    if not rows:
        return ""
    return C.markdown_table(["run", "types (gaussian/plane/spiral/noise)", "wave detection", "detected by type",
                             "mean rotation (°)", "CV"], rows)


def scaling(runs: str) -> str:
    path = os.path.join(runs, "field-scaling", "table.md")
    return open(path, encoding="utf-8").read().strip() if os.path.isfile(path) else ""


def _selected(runs: str, name: str, column: str, values) -> list[dict]:
    """The rows of runs/field-NAME/NAME.csv whose `column` (rounded) is in `values`; [] when the run is absent."""
    path = os.path.join(runs, f"field-{name}", f"{name}.csv")
    return [r for r in _csv(path) if round(float(r[column]), 6) in values] if os.path.isfile(path) else []


def hubs(runs: str, fractions) -> str:
    selected = _selected(runs, "hubs", "fraction", fractions)
    if not selected:
        return ""
    rows = []
    for r in selected:
        rows.append([r["strategy"], f"{100 * float(r['fraction']):.0f}%", f"{100 * float(r['lcc_fraction']):.1f}%",
                     f"{100 * float(r['detection']):.0f}%", _pm(r["rotation_mean"], r["rotation_std"], ".0f"),
                     _pm(r["C_mean"], r["C_std"], ".3f"), f"{float(r['delta_C']):+.3f}",
                     _pm(r["R_mean"], r["R_std"], ".3f"), f"{float(r['delta_R']):+.3f}"])
    return C.markdown_table(["removal", "removed", "largest component", "wave detection", "rotation (°)", "C(t)",
                             "ΔC", "Kuramoto R", "ΔR"], rows)


def coupling(runs: str, ks) -> str:
    selected = _selected(runs, "coupling", "K", ks)
    if not selected:
        return ""
    rows = []
    for r in selected:
        lattice = r["graph"] == "lattice"
        rows.append([r["graph"], f"{float(r['K']):.1f}", _pm(r["R_mean"], r["R_sd_trials"], ".3f"),
                     _f(r["chi_N_varR"]), _pm(r["C_mean"], r["C_sd_trials"], ".3f"),
                     _pm(r["xi_mean"], r["xi_sd_trials"], ".2f") if lattice else "–",
                     _f(r["wave_score_mean"], ".3f") if lattice else "–",
                     f"{100 * float(r['wave_significant_fraction']):.0f}%" if lattice else "–",
                     f"{100 * float(r['wave_detected_fraction']):.0f}%" if lattice else "–"])
    table = C.markdown_table(["graph", "K", "R", "χ = N var(R)", "C(t)", "ξ", "best plane wave ρ²", "beats shuffle",
                              "plane waves (ρ² ≥ 0.5)"], rows)
    peaks = open(os.path.join(runs, "field-coupling", "table.md"), encoding="utf-8").read().split("\n\n")[1]
    return table + "\n\n" + peaks.strip()


def _summary(runs: str, name: str) -> dict | None:
    path = os.path.join(runs, f"field-{name}", "summary.json")
    return json.load(open(path, encoding="utf-8")) if os.path.isfile(path) else None


def results_data(runs: str) -> dict:
    """What the claims ledger reads from the field runs: the original configs (ours and the reported row), the
    random-type control, the scaling fits and points, the hub removal rows and, per graph of the coupling sweep, the K
    of the largest susceptibility and of the largest C(t). A missing run directory is left out."""
    from wavejax.field.report import ORIGINAL_REPORTED

    keep = ("nodes", "timesteps", "trials", "detection", "rotation_mean", "rotation_per_step", "cv", "wave_speed",
            "mean_distance", "wave_equals_finite")
    data: dict = {"originals": {}}
    for name in ("small", "medium", "large", "xlarge", "small-random_ic"):
        s = _summary(runs, name)
        if s is not None:
            data["originals"][name] = {k: s[k] for k in keep} | {"reported": ORIGINAL_REPORTED.get(name)}
    scaling_summary = _summary(runs, "scaling")
    if scaling_summary is not None:
        data["scaling"] = {"fits": scaling_summary["fits"], "points": [
            {k: p[k] for k in ("varied", "nodes", "timesteps", "detection", "wave_speed", "distance_over_20", "cv",
                               "rotation_per_step")} for p in scaling_summary["points"]]}
    path = os.path.join(runs, "field-hubs", "hubs.csv")
    if os.path.isfile(path):
        data["hubs"] = [{k: (r[k] if k == "strategy" else float(r[k])) for k in
                         ("nodes", "strategy", "fraction", "lcc_fraction", "detection", "C_mean", "delta_C", "R_mean",
                          "delta_R")} for r in _csv(path)]
    path = os.path.join(runs, "field-coupling", "coupling.csv")
    if os.path.isfile(path):
        rows = _csv(path)
        data["coupling"] = {}
        for graph in dict.fromkeys(r["graph"] for r in rows):
            g = [r for r in rows if r["graph"] == graph]
            top = {col: float(max(g, key=lambda r, col=col: float(r[col]))["K"]) for col in ("chi_N_varR", "C_mean")}
            data["coupling"][graph] = {"nodes": int(g[0]["nodes"]), "K_chi_peak": top["chi_N_varR"],
                                       "K_C_peak": top["C_mean"], "K_min": float(g[0]["K"]), "K_max": float(g[-1]["K"]),
                                       "R_at_K_max": float(g[-1]["R_mean"])}
    return data


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="runs", help="folder holding the field-NAME run directories")
    p.add_argument("--fractions", default="0,0.1,0.25", help="hub removal fractions to show")
    p.add_argument("--ks", default="0.1,0.5,0.8,1,1.2,1.5,2", help="coupling strengths to show")
    C.add_results_arg(p, "field")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    if not os.path.isdir(args.runs):
        C.fail(f"--runs {args.runs!r} is not a folder; run the field configs first (see this script's docstring).")
    try:
        fractions = {round(float(x), 6) for x in args.fractions.split(",")}
        ks = {round(float(x), 6) for x in args.ks.split(",")}
    except ValueError:
        C.fail("--fractions and --ks take comma-separated numbers, e.g. --ks 0.1,1,2.")
    for title, text in (("original configs", originals(args.runs)), ("by initial-condition type", by_type(args.runs)),
                        ("scaling", scaling(args.runs)), ("hubs", hubs(args.runs, fractions)),
                        ("coupling", coupling(args.runs, ks))):
        if text:
            print(f"### {title}\n\n{text}\n")
    C.write_results(args.results, "experiments.claims.field_report", argv, results_data(args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
