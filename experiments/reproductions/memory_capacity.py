"""Recall of the holographic slot memory against the number of pairs sharing a slot (all pairs seen; no cache).

    python -m experiments.reproductions.memory_capacity --out runs/memory_capacity/recall_vs_load.png
    python -m experiments.reproductions.memory_capacity --out runs/memory_capacity/recall_vs_load.png \
        --results docs/results/memory_capacity.json  # the claims ledger's file
    python -m experiments.reproductions.memory_capacity --vocabs 65 --pairs 2000 --levels 2 --seeds 1 \
        --out /tmp/cap.png  # seconds

Random pairs (windows of --length uniform tokens, uniform targets) are written into stores of 16^levels slots at
several mean loads (--pairs per store); every pair is then read back through its own slot and decoded over the whole
vocabulary. A slot holding k pairs returns R = C^T M = phi^-1 (T + k-1 crosstalk terms C^T C_j T_j), so recall
falls with k; the table groups the read-backs by the k of their slot (exact, not the mean load), for each
vocabulary size and decoder, mean ± std over seeds. A second table repeats the spec's setting (section 6: levels 4,
L = 16, V = 10,000, 200 and 5,000 pairs) under both routings, next to the figures the spec reports for the original.
Writes the plot to --out. A third table is the original's "95-97% at 200K patterns, levels 6": --patterns pairs
(200,000) in 16^--patterns_levels slots (16^6: a 1 GiB slot array), in the sound and the faithful store, read by
cosine and by Grace + coherence (mean ± std over --seeds); --no_spec skips the second and third tables.
--results PATH writes the tables' figures (mean, std over seeds) as the claims ledger reads them.
"""

from __future__ import annotations

import argparse
import os
import sys

from experiments import common as C

K_BUCKETS = [1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32]
SPEC_FIGURES = {("digits", 200, "cosine"): "97.5%", ("digits", 5000, "cosine"): "62.5%",
                ("digits", 200, "coherence"): "31.5%", ("digits", 5000, "coherence"): "18.5%"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocabs", default="65,10000")
    p.add_argument("--length", type=int, default=16)
    p.add_argument("--levels", type=int, default=3, help="16^levels slots per store")
    p.add_argument("--loads", default="0.25,1,2,4,8,16", help="mean pairs per slot of the stores written")
    p.add_argument("--pairs", type=int, default=0, help="pairs per store instead of --loads x slots (for quick runs)")
    p.add_argument("--max_reads", type=int, default=20000, help="read-backs per store (a random subset)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--no_spec", action="store_true",
                   help="skip the spec-setting table and the --patterns table")
    p.add_argument("--patterns", default="200000",
                   help="pairs per store of the patterns table (the original's 200K at levels 6), comma-separated")
    p.add_argument("--patterns_levels", type=int, default=6, help="16^levels slots of the patterns table")
    p.add_argument("--patterns_vocab", type=int, default=10000, help="vocabulary of the patterns table")
    p.add_argument("--out", default="runs/memory_capacity/recall_vs_load.png")
    C.add_results_arg(p, "memory_capacity")
    args = p.parse_args(argv)
    try:
        args.vocabs = [int(x) for x in args.vocabs.split(",") if x.strip()]
        args.loads = [float(x) for x in args.loads.split(",") if x.strip()]
        args.patterns = [int(x) for x in args.patterns.split(",") if x.strip()]
    except ValueError:
        C.fail("--vocabs, --loads and --patterns are comma-separated numbers.")
    if not args.vocabs or min(args.vocabs) < 2 or args.length < 1 or args.seeds < 1 or not 1 <= args.levels <= 6:
        C.fail("need --vocabs >= 2, --length >= 1, --seeds >= 1 and --levels in 1..6.")
    if min(args.patterns, default=1) < 1 or args.patterns_vocab < 2 or not 1 <= args.patterns_levels <= 6:
        C.fail("need --patterns >= 1, --patterns_vocab >= 2 and --patterns_levels in 1..6.")
    return args


def read_back(spec, table, n_pairs: int, seed: int, decoders, max_reads: int):
    """(k of each read pair's slot, {decoder: correct [n]}) for n_pairs random pairs written into one store."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from wavejax.memory import store

    rng = np.random.default_rng(seed)
    windows = rng.integers(0, spec.vocab_size, (n_pairs, spec.context_length)).astype(np.int32)
    targets = rng.integers(0, spec.vocab_size, n_pairs).astype(np.int32)
    memory = store.init_memory(spec, table)
    contexts = jax.jit(store.window_contexts, static_argnums=0)(spec, memory.table, jnp.asarray(windows))
    memory = jax.jit(store.write, static_argnums=0)(spec, memory, contexts, jnp.asarray(targets))
    rows = np.sort(rng.choice(n_pairs, size=min(max_reads, n_pairs), replace=False))
    slot = np.asarray(store.route(spec, contexts[rows]))
    k = np.asarray(memory.counts)[slot]
    scores = jax.jit(store.scores, static_argnums=(0, 3))
    correct = {}
    for decoder in decoders:
        hits = []
        for s in range(0, len(rows), 4096):
            sc = scores(spec, memory, contexts[rows[s : s + 4096]], decoder)
            hits.append(np.asarray(jnp.argmax(sc, axis=-1)) == targets[rows[s : s + 4096]])
        correct[decoder] = np.concatenate(hits)
    return k, correct


def bucket_of(k):
    import numpy as np

    idx = np.searchsorted(K_BUCKETS, k, side="right") - 1
    return np.asarray(K_BUCKETS)[np.clip(idx, 0, len(K_BUCKETS) - 1)]


def load_sweep(args, decoders):
    """The stores of the load table: ({(vocab, decoder, k bucket): per-seed recall},
    {(vocab, decoder, pairs): per-seed recall of the whole store}, {(vocab, pairs): per-seed mean k of a read pair})."""
    import numpy as np

    from wavejax.memory import so4, store

    recall: dict = {}
    by_pairs: dict = {}
    mean_k: dict = {}
    for vocab in args.vocabs:
        for seed in range(args.seeds):
            table = so4.embedding_table("haar", vocab, seed)
            spec = store.StoreSpec(vocab_size=vocab, context_length=args.length, levels=args.levels)
            counts = [args.pairs] if args.pairs else [max(1, int(load * spec.n_slots)) for load in args.loads]
            ks, hits = [], {d: [] for d in decoders}
            for i, n in enumerate(counts):
                k, correct = read_back(spec, table, n, 1000 * seed + i, decoders, args.max_reads)
                ks.append(k)
                mean_k.setdefault((vocab, n), []).append(float(np.mean(k)))
                for d in decoders:
                    hits[d].append(correct[d])
                    by_pairs.setdefault((vocab, d, n), []).append(float(correct[d].mean()))
            k = bucket_of(np.concatenate(ks))
            for d in decoders:
                h = np.concatenate(hits[d])
                for b in np.unique(k):
                    recall.setdefault((vocab, d, int(b)), []).append(float(h[k == b].mean()))
            print(f"V = {vocab}, seed {seed}: {sum(counts):,} pairs in {len(counts)} stores", flush=True)
    return recall, by_pairs, mean_k


def print_load_table(args, decoders, recall) -> None:
    buckets = sorted({b for (_, _, b) in recall})
    headers = ["pairs in the slot (k)"] + [f"V={v} {d}" for v in args.vocabs for d in decoders]
    rows = []
    for b in buckets:
        i = K_BUCKETS.index(b)
        nxt = K_BUCKETS[i + 1] if i + 1 < len(K_BUCKETS) else None
        label = f">= {b}" if nxt is None else (str(b) if nxt == b + 1 else f"{b}-{nxt - 1}")
        rows.append([label] + [C.fmt_mean_std(recall.get((v, d, b), []), "{:.3f}", show_n=False)
                               for v in args.vocabs for d in decoders])
    print(f"\nRecall of seen pairs by the number of pairs k in their slot (L = {args.length}, {16 ** args.levels:,} "
          f"slots, Haar embeddings, hash routing; mean ± std over {args.seeds} seeds):\n")
    print(C.markdown_table(headers, rows))


def plot(args, decoders, recall) -> None:
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    buckets = sorted({b for (_, _, b) in recall})
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for v in args.vocabs:
        for d, style in zip(decoders, ("-", "--", ":")):
            xs = [b for b in buckets if (v, d, b) in recall]
            ax.plot(xs, [np.mean(recall[(v, d, b)]) for b in xs], style, marker="o", ms=3, label=f"V={v:,}, {d}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("pairs sharing the slot (k)")
    ax.set_ylabel("recall (exact match)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"\nplot: {args.out}")


def spec_table(args) -> dict:
    """The spec's setting (levels 4, L = 16, V = 10,000, 200 and 5,000 pairs, one store each, seed 7), both routings:
    prints the table; returns {routing: {pairs: {decoder: recall, mean_k, original}}}."""
    import numpy as np

    from wavejax.memory import so4, store

    spec_rows, out = [], {}
    table = so4.embedding_table("haar", 10000, 0)
    for routing in store.ROUTINGS:
        spec = store.StoreSpec(vocab_size=10000, context_length=16, levels=4, routing=routing)
        for n in (200, 5000):
            k, correct = read_back(spec, table, n, 7, ("cosine", "coherence"), n)
            for d in ("cosine", "coherence"):
                reported = SPEC_FIGURES.get((routing, n, d))
                spec_rows.append([routing, f"{n:,}", d, f"{correct[d].mean():.3f}", f"{np.mean(k):.2f}", reported or "—"])
                out.setdefault(routing, {}).setdefault(n, {})[d] = {
                    "recall": correct[d].mean(), "mean_k": np.mean(k),
                    "original": float(reported.rstrip("%")) / 100 if reported else None}
    print("\nThe spec's setting (section 6: levels 4 = 65,536 slots, L = 16, V = 10,000, all pairs read back; "
          "spec figures are the original's code with its biased table):\n")
    print(C.markdown_table(["routing", "pairs", "decoder", "recall", "mean k of a read pair", "spec (original)"], spec_rows))
    return out


def patterns_table(args) -> dict:
    """The original's "95-97% at 200K patterns, levels 6": --patterns random pairs (L = --length,
    V = --patterns_vocab) in 16^--patterns_levels slots, in the sound store (Haar, hash) and the faithful one (the
    original's table, digits), each read by cosine and by Grace + coherence (the original's retrieve_parallel) on a
    random --max_reads of the pairs; mean ± std over --seeds. Returns {pairs: {store: {decoder: [mean, std], ...}}}."""
    import numpy as np

    from wavejax.memory import so4, store

    v, rows, out = args.patterns_vocab, [], {}
    for n in args.patterns:
        for kind, routing in (("sound", "hash"), ("faithful", "digits")):
            spec = store.StoreSpec(vocab_size=v, context_length=args.length, levels=args.patterns_levels, routing=routing)
            cells: dict = {}
            for seed in range(args.seeds):
                table = so4.embedding_table("haar", v, seed) if kind == "sound" else so4.original_embeddings(v)
                k, correct = read_back(spec, table, n, 5000 + seed, ("cosine", "coherence"), args.max_reads)
                for key, value in (("cosine", correct["cosine"].mean()), ("coherence", correct["coherence"].mean()),
                                   ("mean_k", np.mean(k)), ("alone", np.mean(k == 1))):
                    cells.setdefault(key, []).append(float(value))
                print(f"{n:,} patterns, {kind} store, seed {seed}: done", flush=True)
            out.setdefault(n, {})[kind] = {key: C.mean_std(vals)[:2] for key, vals in cells.items()}
            rows.append([f"{n:,}", f"{kind} ({routing})"] + [C.fmt_mean_std(cells[key], "{:.3f}", show_n=False)
                                                              for key in ("cosine", "coherence", "alone", "mean_k")])
    print(f"\nThe original's \"95-97% at 200K patterns, levels 6\": pairs in {16 ** args.patterns_levels:,} slots "
          f"(L = {args.length}, V = {v:,}; recall of {args.max_reads:,} random read-backs per store; sound: Haar + hash, "
          f"faithful: the original's table + digits; mean ± std over {args.seeds} seeds):\n")
    print(C.markdown_table(["pairs", "store", "cosine", "Grace + coherence (retrieve_parallel)", "read pair alone in its slot",
                            "mean k of a read pair"], rows))
    return out


def results_data(args, decoders, recall, by_pairs, mean_k, spec, patterns) -> dict:
    """What the claims ledger reads (mean, std over seeds)."""
    n_slots = 16 ** args.levels
    return {
        "by_k": {v: {d: {b: C.mean_std(r)[:2] for (v2, d2, b), r in sorted(recall.items()) if (v2, d2) == (v, d)}
                     for d in decoders} for v in args.vocabs},
        "by_pairs": {v: {n: {"load": n / n_slots, "mean_k": C.mean_std(mean_k[(v, n)])[:2],
                             **{d: C.mean_std(by_pairs[(v, d, n)])[:2] for d in decoders}}
                         for (v2, n) in mean_k if v2 == v} for v in args.vocabs},
        "vocabs": args.vocabs, "length": args.length, "levels": args.levels, "slots": n_slots, "seeds": args.seeds,
        "max_reads": args.max_reads, "spec": spec, "patterns": patterns, "patterns_levels": args.patterns_levels,
        "patterns_slots": 16 ** args.patterns_levels, "patterns_vocab": args.patterns_vocab}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    from wavejax.memory import store

    decoders = store.DECODERS
    recall, by_pairs, mean_k = load_sweep(args, decoders)
    print_load_table(args, decoders, recall)
    plot(args, decoders, recall)
    spec, patterns = ({}, {}) if args.no_spec else (spec_table(args), patterns_table(args))
    C.write_results(args.results, "experiments.reproductions.memory_capacity", argv,
                    results_data(args, decoders, recall, by_pairs, mean_k, spec, patterns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
