"""Recall of the holographic slot memory against the number of pairs sharing a slot (all pairs seen; no cache).

    python -m experiments.reproductions.memory_capacity --out runs/memory_capacity/recall_vs_load.png
    python -m experiments.reproductions.memory_capacity --vocabs 65 --pairs 2000 --levels 2 --seeds 1 \
        --out /tmp/cap.png  # seconds

Random pairs (windows of --length uniform tokens, uniform targets) are written into stores of 16^levels slots at
several mean loads (--pairs per store); every pair is then read back through its own slot and decoded over the whole
vocabulary. A slot holding k pairs returns R = C^T M = phi^-1 (T + k-1 crosstalk terms C^T C_j T_j), so recall
falls with k; the table groups the read-backs by the k of their slot (exact, not the mean load), for each
vocabulary size and decoder, mean ± std over seeds. A second table repeats the spec's setting (section 6: levels 4,
L = 16, V = 10,000, 200 and 5,000 pairs) under both routings, next to the figures the spec reports for the original.
Writes the plot to --out.
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
    p.add_argument("--no_spec", action="store_true", help="skip the spec-setting table")
    p.add_argument("--out", default="runs/memory_capacity/recall_vs_load.png")
    args = p.parse_args(argv)
    try:
        args.vocabs = [int(x) for x in args.vocabs.split(",") if x.strip()]
        args.loads = [float(x) for x in args.loads.split(",") if x.strip()]
    except ValueError:
        C.fail("--vocabs and --loads are comma-separated numbers.")
    if not args.vocabs or min(args.vocabs) < 2 or args.length < 1 or args.seeds < 1 or not 1 <= args.levels <= 6:
        C.fail("need --vocabs >= 2, --length >= 1, --seeds >= 1 and --levels in 1..6.")
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


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np

    from wavejax.memory import so4, store

    decoders = store.DECODERS
    # per (vocab, decoder, bucket): per-seed recall
    recall: dict = {}
    for vocab in args.vocabs:
        for seed in range(args.seeds):
            table = so4.embedding_table("haar", vocab, seed)
            spec = store.StoreSpec(vocab_size=vocab, context_length=args.length, levels=args.levels)
            counts = [args.pairs] if args.pairs else [max(1, int(load * spec.n_slots)) for load in args.loads]
            ks, hits = [], {d: [] for d in decoders}
            for i, n in enumerate(counts):
                k, correct = read_back(spec, table, n, 1000 * seed + i, decoders, args.max_reads)
                ks.append(k)
                for d in decoders:
                    hits[d].append(correct[d])
            k = bucket_of(np.concatenate(ks))
            for d in decoders:
                h = np.concatenate(hits[d])
                for b in np.unique(k):
                    recall.setdefault((vocab, d, int(b)), []).append(float(h[k == b].mean()))
            print(f"V = {vocab}, seed {seed}: {sum(counts):,} pairs in {len(counts)} stores", flush=True)

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

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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

    if not args.no_spec:
        spec_rows = []
        table = so4.embedding_table("haar", 10000, 0)
        for routing in store.ROUTINGS:
            spec = store.StoreSpec(vocab_size=10000, context_length=16, levels=4, routing=routing)
            for n in (200, 5000):
                k, correct = read_back(spec, table, n, 7, ("cosine", "coherence"), n)
                for d in ("cosine", "coherence"):
                    spec_rows.append([routing, f"{n:,}", d, f"{correct[d].mean():.3f}", f"{np.mean(k):.2f}",
                                      SPEC_FIGURES.get((routing, n, d), "—")])
        print("\nThe spec's setting (section 6: levels 4 = 65,536 slots, L = 16, V = 10,000, all pairs read back; "
              "spec figures are the original's code with its biased table):\n")
        print(C.markdown_table(["routing", "pairs", "decoder", "recall", "mean k of a read pair", "spec (original)"], spec_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
