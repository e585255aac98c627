"""The tables, verdict and results file of experiments/reproductions/memory_forgetting.py (its docstring says what each
method and column is)."""

from __future__ import annotations

import shlex

from experiments import common as C

MODULE = "experiments.reproductions.memory_forgetting"
PHASES = ("A before B", "A after B", "B after B")


def values(rows, method, phase, condition, metric):
    return {r["seed"]: r[metric] for r in rows if r["method"] == method and r["phase"] == phase
            and r["condition"] == condition and r.get(metric) is not None}


def drops(rows, method, condition, metric):
    before, after = values(rows, method, "A before B", condition, metric), values(rows, method, "A after B", condition,
                                                                                  metric)
    sign = -1.0 if metric == "nll" else 1.0  # a drop in accuracy, a rise in NLL: positive = forgetting
    return [sign * (before[s] - after[s]) for s in before if s in after]


def table(rows, metric: str, fmt: str) -> str:
    lines = []
    for method in dict.fromkeys(r["method"] for r in rows):
        cell = lambda phase, cond: C.fmt_mean_std(list(values(rows, method, phase, cond, metric).values()), fmt,  # noqa: E731
                                                   show_n=False)
        if cell("A before B", "seen") == "n/a":
            continue
        cells = [method]
        for cond in ("seen", "heldout"):
            cells += [cell("A before B", cond), cell("A after B", cond),
                      C.fmt_mean_std(drops(rows, method, cond, metric), fmt, show_n=False)]
        cells += [cell("B after B", "seen"), cell("B after B", "heldout"),
                  len(values(rows, method, "A before B", "seen", metric))]
        lines.append(cells)
    what = "exact match" if metric == "exact" else "NLL (nats/token)"
    drop = "drop" if metric == "exact" else "rise"
    return C.markdown_table([f"method ({what})", "A seen, before B", "A seen, after B", drop, "A held-out, before B",
                             "A held-out, after B", drop, "B seen, after B", "B held-out, after B", "seeds"], lines)


def mechanism_table(mech: list[dict]) -> str:
    lines = []
    for method in dict.fromkeys(m["method"] for m in mech):
        sel = [m for m in mech if m["method"] == method]
        cell = lambda key, fmt: C.fmt_mean_std([m[key] for m in sel], fmt, show_n=False)  # noqa: E731
        if method.startswith("GPT"):
            lines.append([method, "—", "—", "—", "—", "—", cell("seconds", "{:.1f}")])
            continue
        per_seed = lambda key: ",".join(str(m[key]) for m in sel)  # noqa: E731
        lines.append([method, f"{per_seed('sleeps_A')} + {per_seed('sleeps_B')}",
                      f"{cell('prototypes', '{:.0f}')} / {cell('schemas', '{:.0f}')}", cell("shared", "{:.3f}"),
                      f"{cell('load_before', '{:.2f}')} → {cell('load_after', '{:.2f}')}",
                      cell("store_slots_used", "{:,.0f}"), cell("seconds", "{:.1f}")])
    return C.markdown_table(["method", "sleeps (A + B; per seed)", "prototypes / promoted schemas", "A-seen slots B wrote to",
                             "pairs in those slots, after A → after B", "slots used after B", "seconds (learn + evaluate)"], lines)


def verdict(rows, args) -> str:
    parts = []
    for length in args.lengths:
        no, yes = f"memory L={length}, no sleep", f"memory L={length}, sleep"
        d_no, d_yes = (C.mean_std(drops(rows, m, "seen", "exact"))[0] for m in (no, yes))
        b_no, b_yes = (C.mean_std(list(values(rows, m, "A before B", "seen", "exact").values()))[0] for m in (no, yes))
        a_no, a_yes = (C.mean_std(list(values(rows, m, "A after B", "seen", "exact").values()))[0] for m in (no, yes))
        if None in (d_no, d_yes, b_no, b_yes, a_no, a_yes):
            continue
        parts.append(f"L={length}: A-seen exact match {b_no:.3f} -> {a_no:.3f} (drop {d_no:.3f}) without sleep, "
                     f"{b_yes:.3f} -> {a_yes:.3f} (drop {d_yes:.3f}) with it")
    if not parts:
        return "No sleep/no-sleep pair to compare."
    better = all(
        C.mean_std(list(values(rows, f"memory L={n}, sleep", "A after B", "seen", "exact").values()))[0]
        > C.mean_std(list(values(rows, f"memory L={n}, no sleep", "A after B", "seen", "exact").values()))[0]
        for n in args.lengths)
    head = ("Sleep leaves A better remembered after B" if better else
            "Sleep does not prevent forgetting: A is remembered no better after B with sleep than without")
    return head + " (" + "; ".join(parts) + ")."


def command(argv) -> str:
    return f"python -m {MODULE} {shlex.join(list(argv))}".strip()


def report(argv, args, rows, mech, corpus_note: str) -> str:
    cmd = f"```\n{command(argv)}\n```"
    return "\n\n".join([
        "## Continual learning: A, then B (issue 21)",
        corpus_note,
        f"{cmd}\n\n### Exact match (top-1 next character)\n\n" + table(rows, "exact", "{:.3f}"),
        f"{cmd}\n\n### NLL (nats/token; the prototypes' predictions have none)\n\n" + table(rows, "nll", "{:.3f}"),
        f"{cmd}\n\n### What B did to the store\n\n" + mechanism_table(mech),
        "**Verdict.** " + verdict(rows, args)]) + "\n"


def results_data(args, rows, mech, note) -> dict:
    out: dict = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        node = out.setdefault(method, {})
        for phase in PHASES:
            for cond in ("seen", "heldout"):
                cell = {m: C.mean_std(list(values(rows, method, phase, cond, m).values()))[:2] for m in ("exact", "nll")
                        if values(rows, method, phase, cond, m)}
                if cell:
                    node.setdefault(phase, {})[cond] = cell
        for cond in ("seen", "heldout"):
            node.setdefault("drop", {})[cond] = {m: C.mean_std(drops(rows, method, cond, m))[:2] for m in ("exact", "nll")
                                                 if drops(rows, method, cond, m)}
        sel = [m for m in mech if m["method"] == method]
        for key in ("sleeps_A", "sleeps_B", "prototypes", "schemas", "shared", "load_before", "load_after", "seconds",
                    "tokens_per_phase"):
            if sel and key in sel[0]:
                node[key] = C.mean_std([m[key] for m in sel])[:2]
    return {"methods": out, "verdict": verdict(rows, args), "corpora": note,
            **{k: getattr(args, k) for k in ("lengths", "levels", "seeds", "max_chars", "queries", "calibration",
                                              "history", "checks", "episodes", "ngram", "top_k")},
            "gpt_config": None if args.no_gpt else args.gpt, "gpt_steps": None if args.no_gpt else args.gpt_steps}
