"""The holographic memory's sleeping half on tinyshakespeare: the original's dreaming metrics, whether sleep helps
prediction, and what the superposed prior adds (issue 21; spec: docs/specs/holographic.md sections 4, 5.1, 6, 7).

    python -m experiments.reproductions.memory_sleep --results docs/results/memory_sleep.json \
        --md docs/results/memory_sleep.md                                 # ~5-10 minutes on a 2-core CPU
    python -m experiments.reproductions.memory_sleep --quick              # seconds (the tests)

What stands in for the original's production loop (spec 5.1):
  corpus    tinyshakespeare as characters (wavejax.data's char tokenizer, V = 65, 90/10 split) for OpenWebText words
            (V = 200k); the train split is trimmed to a whole number of write chunks, so every pass over it is cut,
            hence rounded, the same way (a window's context, key and slot are the same in every pass)
  pairs     every (window, next char) pair of the train split, --passes times over, as one stream (the original:
            500,000 cached pairs wrapped around, 2 passes by default and 200 in its main); the windows that straddle
            two passes (L - 1 per pass) are written too
  context   --length characters (the original: 64 words)
  store     in every run the sound store: the seed's Haar SO(4) table, hash routing, 16^--levels slots, the cosine
            decoder; only the sleep differs
  cadence   the original's counts scaled by r = train pairs / 500,000: a check every 409,600 r pairs (50 batches of
            8,192 r), >= 100,000 r pairs since the last sleep, the stability trigger after 50,000 r pairs, the valve at
            500,000 r, 10% of a batch (819 r windows of the segment just written) as episodes per check
  sleep     wavejax.memory.sleep.learn_with_sleep with SleepConfig(faithful=True) (the original's exact basin-key
            clustering, merge similarity and never-failing survival test) or SleepConfig() (sound: clusters of similar
            contexts, an energy-retention survival test); the error-rate trigger is not measured (sleep.py says why)
  seed      the embedding table and the sleep key (jax.random.key(seed)); the queries are the same for every seed

Sections (--sections, comma-separated):
  1  the per-sleep metrics of one run (the first seed) and their mean ± std over the sleeps of every seed, next to the
     original's claims ("68 schemas per sleep", "consolidates when sigma < phi^-2")
  2  next-character prediction at equal pairs, without and with sleep, on seen and held-out queries: the memory's
     cosine decoder without sleep and after each sleep (the dreamed slots), the prototypes' semantic prediction
     (semantic.predict_targets, --proto_k best prototypes, schema boosts), the prototypes where the memory's slot is
     empty, and a mixture (1 - lam) p_memory + lam p_prototypes; the unigram and n-gram baselines on the same queries
  4  the heldout and changed (one of the last L characters replaced) conditions: the memory after sleep alone, mixed
     with the superposed prior (prior.superposed_prior, K = 8) as (1 - lam) p_memory + lam p_prior, the prior where the
     slot is empty, and the prior alone
Probabilities: the memory's softmax(score / tau), tau fitted on calibration queries of the same condition (as
memory_eval); the prototypes' and the prior's sparse distributions floored as (1 - eps) p + eps unigram, eps fitted on
the calibration queries; lam fitted on them too (grid 0, 0.05, ..., 1); the "fitted" column gives tau, eps, lam and
the unfloored sparse distribution's own exact match. Ranks are pessimistic (ties count against the target). Cells are
mean ± sample std over seeds. --results PATH writes the figures, --md PATH the tables (each
with the command that made it).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time

from experiments import common as C
from experiments.reproductions import memory_sleep_eval as E

ORIGINAL_PAIRS = 500_000  # the original's cached pairs (spec 5.1)
ORIGINAL_BATCH = 8192
ORIGINAL = {"every": 50 * ORIGINAL_BATCH, "min_pairs": 100_000, "warmup": 50_000, "valve": 500_000}
CLAIMED_SCHEMAS = 68
MD_HEADER = ("## The holographic memory's sleeping half (issue 21)\n\n"
             "Written by `experiments/reproductions/memory_sleep.py` (its docstring says what stands in for the "
             "original's production loop and how each probability is formed).\n\n")
SECTIONS = (1, 2, 4)
DEFAULTS = {"length": 8, "levels": 5, "passes": 10, "seeds": "0,1,2", "queries": 2000, "calibration": 1000,
            "ngram_orders": "3,5,7", "max_chars": 0, "buffer": 4096, "prototypes": 4096, "schemas": 16384}
QUICK = {"length": 8, "levels": 4, "passes": 3, "seeds": "0,1", "queries": 120, "calibration": 60,
         "ngram_orders": "3", "max_chars": 60000, "buffer": 512, "prototypes": 512, "schemas": 512}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sections", default="1,2,4", help="comma-separated subset of 1,2,4")
    p.add_argument("--quick", action="store_true",
                   help="small sizes (seconds): " + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    p.add_argument("--length", type=int, default=None, help=f"context length in characters ({DEFAULTS['length']})")
    p.add_argument("--levels", type=int, default=None, help=f"16^levels slots ({DEFAULTS['levels']})")
    p.add_argument("--passes", type=int, default=None, help=f"passes over the train split ({DEFAULTS['passes']})")
    p.add_argument("--seeds", default=None, help=f"comma-separated ({DEFAULTS['seeds']})")
    p.add_argument("--queries", type=int, default=None, help=f"scored queries per condition ({DEFAULTS['queries']})")
    p.add_argument("--calibration", type=int, default=None, help=f"calibration queries ({DEFAULTS['calibration']})")
    p.add_argument("--ngram_orders", default=None, help=f"({DEFAULTS['ngram_orders']})")
    p.add_argument("--max_chars", type=int, default=None, help="0: the whole corpus")
    p.add_argument("--buffer", type=int, default=None, help=f"episode buffer capacity ({DEFAULTS['buffer']})")
    p.add_argument("--prototypes", type=int, default=None, help=f"prototype capacity ({DEFAULTS['prototypes']})")
    p.add_argument("--schemas", type=int, default=None,
                   help=f"schema table rows ({DEFAULTS['schemas']}: more than the <= 1,000 forms a sleep adds over the "
                        "default run's sleeps, so no sighted form is evicted, as in the original's unbounded dict)")
    p.add_argument("--proto_k", type=int, default=4,
                   help="prototypes mixed by predict_targets (the original's config K)")
    p.add_argument("--prior_k", type=int, default=8, help="neighbours of the superposed prior")
    p.add_argument("--top_k", type=int, default=5)
    p.add_argument("--md", default=None, metavar="PATH", help="also write the tables as markdown")
    C.add_results_arg(p, "memory_sleep")
    args = p.parse_args(argv)
    base = QUICK if args.quick else DEFAULTS
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    try:
        args.sections = sorted({int(x) for x in str(args.sections).split(",") if x.strip()})
        args.seeds = [int(x) for x in str(args.seeds).split(",") if x.strip()]
        args.ngram_orders = [int(x) for x in str(args.ngram_orders).split(",") if x.strip()]
    except ValueError:
        C.fail("--sections, --seeds and --ngram_orders are comma-separated integers.")
    if not args.sections or not set(args.sections) <= set(SECTIONS):
        C.fail(f"--sections must be a comma-separated subset of {','.join(map(str, SECTIONS))}, got {args.sections}.")
    if not args.seeds or len(set(args.seeds)) != len(args.seeds):
        C.fail("--seeds needs at least one seed, each once.")
    if not args.ngram_orders or min(args.ngram_orders) < 1:
        C.fail("--ngram_orders needs orders >= 1.")
    if not 1 <= args.levels <= 6:
        C.fail(f"--levels must be in 1..6, got {args.levels}.")
    for name in ("length", "passes", "queries", "calibration", "buffer", "prototypes", "schemas", "proto_k", "prior_k",
                 "top_k"):
        if getattr(args, name) < 1:
            C.fail(f"--{name} must be >= 1, got {getattr(args, name)}.")
    if args.max_chars < 0:
        C.fail(f"--max_chars must be >= 0 (0 = the whole corpus), got {args.max_chars}.")
    args.history = max([args.length] + [n - 1 for n in args.ngram_orders])
    return args


# -- setup ------------------------------------------------------------------------------------------------------------

def setup(args):
    """The corpus (train trimmed to whole chunks), the store's spec, the stream of --passes passes and the scaled
    cadence: a dict the sections share."""
    import dataclasses

    import numpy as np

    from wavejax.errors import WavejaxError
    from wavejax.memory import task

    config = C.load_config("holographic", None)
    config.data.max_chars = args.max_chars
    config.memory.context_length, config.memory.levels = args.length, args.levels
    config.eval.ngram_orders = tuple(args.ngram_orders)
    try:
        data = task.load_tokens(config)
    except WavejaxError as e:
        C.fail(str(e), e.exit_code)
    spec = task.store_spec(config, data.tokenizer.vocab_size)
    chunk = min(spec.stream_chunk, 1 << int(math.log2(max(len(data.train) // 4, args.length))))
    spec = dataclasses.replace(spec, stream_chunk=max(args.length, chunk // args.length * args.length))
    train = data.train[: len(data.train) // spec.chunk * spec.chunk]
    if len(train) < 4 * (args.history + 2):
        C.fail(f"the train split has {len(train)} usable tokens; use a larger --max_chars.")
    ratio = len(train) / ORIGINAL_PAIRS
    cadence = {k: max(1, round(v * ratio)) for k, v in ORIGINAL.items()}
    cadence["episodes"] = max(1, int(0.1 * ORIGINAL_BATCH * ratio))
    return {"data": data, "train": train, "spec": spec, "stream": np.tile(train, args.passes), "ratio": ratio,
            "cadence": cadence}


def sleep_config(args, ctx, faithful: bool):
    from wavejax.memory import sleep

    c = ctx["cadence"]
    return sleep.SleepConfig(every=c["every"], min_pairs=c["min_pairs"], warmup=c["warmup"], valve=c["valve"],
                             episodes=c["episodes"], buffer=args.buffer, prototypes=args.prototypes,
                             schemas=args.schemas, faithful=faithful)


def run_seed(args, ctx, seed: int, no_sleep: bool) -> dict:
    """{"table": embeddings, "none": memory without sleep (if no_sleep), mode: {"memory", "state", "history", "config",
    "seconds"}} for the seed: every run writes the same stream into a fresh store."""
    import jax

    from wavejax.memory import sleep, so4, store

    spec, stream = ctx["spec"], ctx["stream"]
    table = so4.embedding_table("haar", spec.vocab_size, seed)
    out = {"table": table}
    if no_sleep:
        t0 = time.perf_counter()
        memory, pairs = store.learn_stream(spec, store.init_memory(spec, table), stream, use_cache=False)
        out["none"] = jax.block_until_ready(memory)
        print(f"seed {seed}, no sleep: {pairs:,} pairs in {time.perf_counter() - t0:.1f} s; "
              f"{store.slot_load(memory)['slots_used']:,} slots used", flush=True)
    for mode in E.MODES:
        config = sleep_config(args, ctx, mode == "faithful")
        t0 = time.perf_counter()

        def report(pairs, m, mode=mode, t0=t0):
            print(f"seed {seed}, {mode}: sleep {int(m['sleeps'])} at {pairs:,} pairs "
                  f"({time.perf_counter() - t0:.0f} s): "
                  f"{int(m['prototypes'])} prototypes, {int(m['schemas_new'])} new schemas, stability "
                  f"{m['stability_before']:.3f} -> {m['stability_after']:.3f}", flush=True)

        memory, state, pairs, history = sleep.learn_with_sleep(spec, store.init_memory(spec, table), stream, config,
                                                               jax.random.key(seed), use_cache=False, on_sleep=report)
        out[mode] = {"memory": jax.block_until_ready(memory), "state": state, "history": history, "config": config,
                     "seconds": time.perf_counter() - t0, "pairs": pairs}
        print(f"seed {seed}, {mode}: {len(history)} sleeps in {out[mode]['seconds']:.0f} s; table rows used: "
              f"{int(state.prototypes.count)} / {config.prototypes} prototypes, {int(state.schemas.valid.sum())} / "
              f"{config.schemas} schemas (sighted forms)", flush=True)
    return out


# -- section 1: the dreaming metrics ---------------------------------------------------------------------------------

PER_SLEEP = (("prototypes", "prototypes", "{:.0f}"), ("formed", "formed", "{:.0f}"), ("merged", "merged", "{:.0f}"),
             ("schemas_new", "schemas promoted (new)", "{:.0f}"), ("schemas_promoted", "schemas (total)", "{:.0f}"),
             ("consolidation_ratio", "consolidation ratio", "{:.3f}"),
             ("target_entropy", "target entropy (nats)", "{:.3f}"),
             ("stability_before", "stability before", "{:.3f}"), ("stability_after", "stability after", "{:.3f}"),
             ("rem_accept_fraction", "REM kept", "{:.3f}"), ("survived", "survived / recombined", None))


def trigger(m: dict, config) -> str:
    from wavejax.memory.sleep import STABILITY_TRIGGER

    if m["pairs"] >= config.warmup and m["stability_before"] < STABILITY_TRIGGER:
        return "stability"
    return "valve"


def check_counts(run) -> tuple[int, int]:
    """(checks, checks that came >= min_pairs after the last sleep, i.e. where a trigger could fire) of one run."""
    config, total = run["config"], run["pairs"]
    slept = {int(m["pairs"]) for m in run["history"]}
    last, eligible, n = 0, 0, 0
    for start in range(0, total, config.every):
        n += 1
        at = min(start + config.every, total)
        eligible += at - last >= config.min_pairs
        if at in slept:
            last = at
    return n, eligible


def per_sleep_table(history: list[dict], config) -> str:
    headers = ["sleep", "pairs", "trigger"] + [label for _, label, _ in PER_SLEEP]
    rows = []
    for i, m in enumerate(history, 1):
        cells = [i, f"{int(m['pairs']):,}", trigger(m, config)]
        for key, _, fmt in PER_SLEEP:
            cells.append(f"{int(m['survived'])} / {int(m['recombined'])}" if fmt is None else fmt.format(m[key]))
        rows.append(cells)
    return C.markdown_table(headers, rows)


def episode_stability(ctx, table, n: int = 4096) -> float:
    """The fraction of training windows whose context has grace_stability < phi^-2 (the per-episode selection rule)."""
    import jax.numpy as jnp
    import numpy as np

    from wavejax.memory import clifford as cl
    from wavejax.memory import store

    spec, train = ctx["spec"], ctx["train"]
    pos = np.random.default_rng(0).choice(len(train) - spec.context_length, size=min(n, len(train) // 2), replace=False)
    windows = train[pos[:, None] + np.arange(spec.context_length)]
    factors = jnp.asarray(store.context_table(spec, jnp.asarray(table)))
    contexts = store.window_contexts(spec, factors, jnp.asarray(windows))
    return float(np.mean(np.asarray(cl.grace_stability(contexts)) < cl.PHI**-2))


def summary_rows(args, ctx, runs: dict):
    """The summary table's rows over every seed's sleeps, the figures by mode, and the episode-stability shares."""
    import numpy as np

    checks = {mode: [check_counts(runs[s][mode]) for s in args.seeds] for mode in E.MODES}  # (checks, eligible)
    selected = [episode_stability(ctx, runs[s]["table"]) for s in args.seeds]

    def over(mode, key, final=False):
        values = []
        for s in args.seeds:
            history = runs[s][mode]["history"]
            values += ([history[-1][key]] if history else []) if final else [m[key] for m in history]
        return values

    rows, summary = [], {}
    spec_rows = [
        ("schemas promoted per sleep (new)", "68 per sleep", "schemas_new", False, "{:.1f}"),
        ("schemas after the last sleep", "—", "schemas_promoted", True, "{:.1f}"),
        ("prototypes after the last sleep", "—", "prototypes", True, "{:.1f}"),
        ("prototypes formed per sleep", "—", "formed", False, "{:.1f}"),
        ("consolidation ratio", "—", "consolidation_ratio", False, "{:.3f}"),
        ("target entropy (nats)", "—", "target_entropy", False, "{:.3f}"),
        ("tower stability at the check", "sleeps when σ < φ⁻² = 0.382", "stability_before", False, "{:.3f}"),
        ("tower stability after the sleep", "—", "stability_after", False, "{:.3f}"),
        ("REM proposals kept", "—", "rem_accept_fraction", False, "{:.3f}"),
    ]
    for label, claim, key, final, fmt in spec_rows:
        cells = [label, claim]
        for mode in E.MODES:
            values = over(mode, key, final)
            cells.append(C.fmt_mean_std(values, fmt, show_n=False))
            summary.setdefault(mode, {})[key + ("_final" if final else "")] = C.mean_std(values)[:2]
        rows.append(cells)
    trig_cells = ["sleeps by the stability trigger / checks ≥ min_pairs after the last sleep (/ all checks)", "σ < φ⁻²"]
    for mode in E.MODES:
        hist = [(m, runs[s][mode]["config"]) for s in args.seeds for m in runs[s][mode]["history"]]
        n_stab = sum(trigger(m, c) == "stability" for m, c in hist)
        n_all, n_eligible = (sum(c[i] for c in checks[mode]) for i in (0, 1))
        trig_cells.append(f"{n_stab} / {n_eligible} ({n_all})")
        summary[mode].update(sleeps=len(hist), checks=n_all, eligible_checks=n_eligible, stability_sleeps=n_stab,
                             seconds=C.mean_std([runs[s][mode]["seconds"] for s in args.seeds])[:2])
    rows.append(trig_cells)
    rows.append(["windows with grace_stability < φ⁻² (episode selection)", "consolidated if σ < φ⁻²",
                 C.fmt_mean_std(selected, "{:.3f}", show_n=False), "(same)"])
    radius_cells = ["prototype radius after the last sleep (1 − cos to the farthest member)", "—"]
    table_cells = ["schema table rows used after the last sleep (sighted forms) / capacity", "unbounded"]
    for mode in E.MODES:
        radii, used = [], []
        for s in args.seeds:
            protos, schemas = runs[s][mode]["state"].prototypes, runs[s][mode]["state"].schemas
            valid = np.asarray(protos.valid)
            if valid.any():
                radii.append(float(np.asarray(protos.radius)[valid].mean()))
            used.append(int(np.asarray(schemas.valid).sum()))
        radius_cells.append(C.fmt_mean_std(radii, "{:.3f}", show_n=False))
        table_cells.append(f"{C.fmt_mean_std(used, '{:.0f}', show_n=False)} / {args.schemas}")
        summary[mode].update(radius=C.mean_std(radii)[:2], schema_rows=C.mean_std(used)[:2])
    rows += [radius_cells, table_cells]
    return rows, summary, selected


def section1_verdict(summary: dict) -> str:
    from wavejax.memory.clifford import PHI

    f_new, s_new = (summary[m]["schemas_new"][0] or 0.0 for m in E.MODES)
    st = summary["faithful"]
    n_checks = sum(summary[m]["eligible_checks"] for m in E.MODES)
    n_stab = summary["faithful"]["stability_sleeps"] + summary["sound"]["stability_sleeps"]
    ratio = f_new / CLAIMED_SCHEMAS
    order = "of the order of" if 0.5 <= ratio <= 2 else ("below" if ratio < 0.5 else "above")
    verdict = (f"Verdict: the faithful sleep promotes {f_new:.1f} schemas per sleep ({s_new:.1f} sound), {order} the "
               f"claimed {CLAIMED_SCHEMAS} — a count of rounded, Grace-converged canonical forms sighted a third time, "
               f"which the faithful survival test never filters — and the stability trigger fired at {n_stab} of "
               f"{n_checks} checks where a trigger could count (>= min_pairs after the last sleep) because the tower's "
               "stability stays near the witness share of a random store "
               f"({st['stability_before'][0]:.3f} at the checks vs φ⁻² = {PHI**-2:.3f}) and each sleep lowers it "
               f"further (to {st['stability_after'][0]:.3f}), so \"consolidates when σ < φ⁻²\" holds trivially: it "
               "means \"sleeps at every check\".")
    return verdict


def section1(args, ctx, runs: dict) -> tuple[list[str], dict]:
    """Tables (per sleep of the first seed, faithful and sound; the summary over seeds) and the figures."""
    first = args.seeds[0]
    parts, data = [], {"per_sleep": {}, "summary": {}}
    for mode in E.MODES:
        run = runs[first][mode]
        parts.append(f"**{mode} sleep, seed {first}** ({len(run['history'])} sleeps in {run['pairs']:,} pairs, "
                     f"{run['seconds']:.0f} s)\n\n" + per_sleep_table(run["history"], run["config"]))
        data["per_sleep"][mode] = [{**m, "trigger": trigger(m, run["config"])} for m in run["history"]]
    rows, summary, selected = summary_rows(args, ctx, runs)
    data["summary"] = summary
    data["episodes_below_stability_trigger"] = C.mean_std(selected)[:2]
    parts.append(f"**Summary: mean ± std over the sleeps of seeds {','.join(map(str, args.seeds))}**\n\n"
                 + C.markdown_table(["metric", "the original's claim", "faithful sleep", "sound sleep"], rows))
    verdict = section1_verdict(summary)
    data["verdict"] = verdict
    return parts + [verdict], data


def prediction_sections(args, ctx, runs: dict, emit, results: dict) -> None:
    """Sections 2 and 4 (those of args.sections): their tables through emit(title, parts), figures into results."""
    import numpy as np

    from wavejax.memory import eval as mem_eval

    spec, data = ctx["spec"], ctx["data"]
    sets = mem_eval.query_sets(ctx["train"], data.heldout, args.queries, args.calibration, args.history,
                               spec.context_length, spec.vocab_size, 0)
    unigram = mem_eval.unigram_probs(ctx["train"], spec.vocab_size)
    ev = E.Evaluator(args, ctx, sets, unigram)
    if 2 in args.sections:
        conditions = ("heldout", "seen")
        rows = [r for seed in args.seeds for r in E.prediction_rows(args, ev, runs, seed, conditions, "proto")]
        rows += E.baseline_rows(args, ctx, sets, conditions, unigram)
        verdict = E.section2_verdict(rows, args)
        same = all(np.array_equal(np.asarray(runs[s]["faithful"]["memory"].slots),
                                  np.asarray(runs[s]["sound"]["memory"].slots)) for s in args.seeds)
        note = ("The dreamed slots of the faithful and the sound run are " + ("identical" if same else "different")
                + " (the tower's NREM and REM do not depend on SleepConfig.faithful and both runs use the seed's "
                "key): the two runs differ in their prototypes and schemas.")
        emit("2. Does sleep help prediction?", [f"**{c}** ({len(sets[c][1]):,} queries, {len(sets[c][0]):,} "
                                                f"calibration)\n\n" + E.summary_table(rows, c, args.top_k)
                                                for c in conditions] + [note, verdict])
        results["section2"] = {"rows": E.figures(rows), "verdict": verdict}
    if 4 in args.sections:
        conditions = ("heldout", "changed")
        rows = [r for seed in args.seeds for r in E.prediction_rows(args, ev, runs, seed, conditions, "prior")]
        rows += E.baseline_rows(args, ctx, sets, conditions, unigram)
        verdict = E.section4_verdict(rows, args)
        emit("4. What the superposed prior adds on unseen and perturbed contexts",
             [f"**{c}** ({len(sets[c][1]):,} queries, {len(sets[c][0]):,} calibration)\n\n"
              + E.summary_table(rows, c, args.top_k) for c in conditions] + [verdict])
        results["section4"] = {"rows": E.figures(rows), "verdict": verdict}


# -- main -------------------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    load = os.getloadavg()[0]
    t_start = time.perf_counter()
    ctx = setup(args)
    spec, data = ctx["spec"], ctx["data"]
    cad = ctx["cadence"]
    print(f"{data.name}: {len(ctx['train']):,} train (trimmed to {len(ctx['train']) // spec.chunk} chunks of "
          f"{spec.chunk:,}) / {len(data.heldout):,} held-out characters, vocabulary {spec.vocab_size}; context "
          f"{spec.context_length}, {spec.n_slots:,} slots, {args.passes} passes; load average {load:.2f}", flush=True)
    print(f"cadence (r = {ctx['ratio']:.3f}): check every {cad['every']:,} pairs, >= {cad['min_pairs']:,} since the "
          f"last sleep, stability trigger after {cad['warmup']:,}, valve {cad['valve']:,}, {cad['episodes']:,} "
          "episodes per check", flush=True)

    need_eval = bool({2, 4} & set(args.sections))
    runs = {seed: run_seed(args, ctx, seed, no_sleep=need_eval) for seed in args.seeds}

    command = "python -m experiments.reproductions.memory_sleep " + shlex.join(argv)
    md = [f"Load average at the start: {load:.2f}. Corpus: {data.name}, characters (V = {spec.vocab_size}); "
          f"{len(ctx['train']):,} train characters (the split trimmed to {len(ctx['train']) // spec.chunk} write "
          f"chunks of {spec.chunk:,}) × {args.passes} passes = {len(ctx['stream']) - spec.context_length:,} pairs per "
          f"run; context {spec.context_length}; {spec.n_slots:,} slots; the seen / heldout / changed queries drawn "
          f"once (seed 0) for every seed; cadence scaled by r = {ctx['ratio']:.3f}: a check every {cad['every']:,} "
          f"pairs, >= {cad['min_pairs']:,} since the last sleep, stability trigger after {cad['warmup']:,}, valve "
          f"{cad['valve']:,}, {cad['episodes']:,} episodes per check; seeds {','.join(map(str, args.seeds))}."]
    results: dict = {"setup": {"corpus": data.name, "vocab": spec.vocab_size, "train_chars": len(ctx["train"]),
                               "heldout_chars": len(data.heldout), "passes": args.passes,
                               "context": spec.context_length,
                               "slots": spec.n_slots, "ratio": ctx["ratio"], "cadence": cad, "seeds": args.seeds,
                               "queries": args.queries, "calibration": args.calibration, "proto_k": args.proto_k,
                               "prior_k": args.prior_k, "load_average": load}}

    def emit(title, parts):
        text = f"### {title}\n\n`{command}`\n\n" + "\n\n".join(parts)
        print("\n" + text, flush=True)
        md.append(text)

    if 1 in args.sections:
        parts, results["section1"] = section1(args, ctx, runs)
        emit("1. The original's dreaming metrics (per sleep)", parts)

    if need_eval:
        prediction_sections(args, ctx, runs, emit, results)

    seconds = time.perf_counter() - t_start
    results["setup"]["seconds"] = seconds
    print(f"\ndone in {seconds:.0f} s", flush=True)
    C.write_md(args.md, MD_HEADER + "\n\n".join(md) + f"\n\nTotal time {seconds:.0f} s.\n")
    C.write_results(args.results, "experiments.reproductions.memory_sleep", argv, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
