"""What the original's "100%" and related figures measure (spec sections 5-7), reproduced with wavejax.memory.

    python -m experiments.claims.memory_claims
    python -m experiments.claims.memory_claims --results docs/results/memory_claims.json  # the claims ledger's file
    python -m experiments.claims.memory_claims --vocab 500 --pairs 100 --long_lengths 64 --no_corpus  # seconds

A  "100% at 64/512/1024 tokens" (tests/test_modal_long_context.py): learn each pair, then retrieve the same context.
   The original's retrieve_deterministic answers from the episodic dict first, so the figure is a dict lookup; below,
   the same seen pairs through each path: the cache, the cosine decoder (sound store), and the original's paths on
   the faithful store (its table, digit routing): retrieve_parallel (Grace(C^T M) + coherence) and tower.retrieve
   (unbinding with Grace(C), which is not orthogonal). Random tokens, --pairs pairs of each of --long_lengths
   (comma-separated; --long_length is the same option), 16^4 slots, a column per length.
   The SO(4) checks that test prints (||C||_F = 2, det 1, C^T C = I) hold by group closure for any length.
B  one pair per slot (spec 6, last paragraph): pairs alone in their slot (L = 8, 16^--levels slots), through the
   same paths.
C  one token changed: the seen contexts of B with their last token replaced; every path, and the cache.
D  the embedding tables: mean matrix (Haar vs the original's QR), mean pairwise Frobenius cosine, and the grounded
   (PPMI of tinyshakespeare characters -> PCA-6 -> so(4) scale 0.3) tables, sound and faithful.
E  group closure in float32 after 1024 factors, for tables built three ways.
F  the training loop's logged "semantic_sim" (evaluate_semantic: routed by Grace(C), i.e. Grace^4 keys while
   learning used Grace^3) on seen pairs with the true target and with random targets; the logged "perplexity" is
   V^(1 - semantic_sim). L = 64, 16^--levels slots, faithful store.
--results PATH writes A, B, C, F (and D's and E's figures) as the claims ledger reads them.
"""

from __future__ import annotations

import argparse
import sys

from experiments import common as C


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=10000)
    p.add_argument("--pairs", type=int, default=500, help="pairs of section A")
    p.add_argument("--long_lengths", "--long_length", dest="long_lengths", default="64,512,1024",
                   help="context lengths of section A, comma-separated")
    p.add_argument("--single_pairs", type=int, default=2000, help="pairs written in section B (those alone are read)")
    p.add_argument("--semantic_pairs", type=int, default=20000, help="pairs of section F")
    p.add_argument("--levels", type=int, default=6, help="16^levels slots in sections B and F")
    p.add_argument("--table_tokens", type=int, default=20000, help="tokens of the tables in section D")
    p.add_argument("--no_corpus", action="store_true", help="skip the grounded tables (they read tinyshakespeare)")
    p.add_argument("--seed", type=int, default=0)
    C.add_results_arg(p, "memory_claims")
    args = p.parse_args(argv)
    try:
        args.long_lengths = [int(x) for x in str(args.long_lengths).split(",") if x.strip()]
    except ValueError:
        C.fail(f"--long_lengths must be comma-separated integers, got {args.long_lengths!r}.")
    if not args.long_lengths or min(args.long_lengths) < 1:
        C.fail("--long_lengths needs at least one length >= 1.")
    for name in ("vocab", "pairs", "single_pairs", "semantic_pairs", "table_tokens", "levels"):
        if getattr(args, name) < 1:
            C.fail(f"--{name} must be >= 1.")
    return args


def paths(spec, memory, contexts, targets):
    """{path: correct [B]} for the decoders of wavejax.memory.store and the original's tower.retrieve."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from wavejax.memory import clifford as cl
    from wavejax.memory import store

    @jax.jit
    def tower_retrieve(memory, contexts):
        g = cl.grace(contexts)
        slot = store.route(spec, contexts)
        m = memory.slots[slot]
        occupied = (memory.counts[slot] > 0)[:, None, None]
        state = jnp.where(occupied, cl.grace(cl.mm(cl.transpose(g), m)), g)
        return jnp.argmax(cl.coherence_scores(state, memory.embeddings), axis=-1)

    scores = jax.jit(store.scores, static_argnums=(0, 3))
    out = {d: np.asarray(jnp.argmax(scores(spec, memory, contexts, d), -1)) == targets for d in store.DECODERS}
    out["tower.retrieve"] = np.asarray(tower_retrieve(memory, contexts)) == targets
    return out


def build(spec, table, windows, targets):
    import jax
    import jax.numpy as jnp

    from wavejax.memory import store

    memory = store.init_memory(spec, table)
    contexts = jax.jit(store.window_contexts, static_argnums=0)(spec, memory.table, jnp.asarray(windows))
    memory = jax.jit(store.write, static_argnums=0)(spec, memory, contexts, jnp.asarray(targets))
    return memory, contexts


def cache_hits(memory_windows, memory_targets, query_windows):
    import jax
    import jax.numpy as jnp

    from wavejax.memory import store

    w = jnp.asarray(memory_windows)
    cache, _ = store.cache_insert(store.empty_cache(len(memory_windows)), *store.window_hashes(w), jnp.asarray(memory_targets))
    hit, target = jax.jit(lambda c, q: store.cache_lookup(c, *store.window_hashes(q)))(cache, jnp.asarray(query_windows))
    return hit, target


def so4_errors(contexts):
    import numpy as np

    c = np.asarray(contexts, np.float64)
    orth = np.abs(np.swapaxes(c, -1, -2) @ c - np.eye(4)).max()
    return np.linalg.norm(c, axis=(-1, -2)).mean(), np.abs(np.linalg.det(c) - 1).max(), orth


STORES = {"sound": dict(routing="hash"), "faithful": dict(routing="digits")}  # each table's store settings
PATHS = (("sound", ("cosine",)), ("faithful", ("coherence", "tower.retrieve")))  # the read paths of each store
PATH_NAMES = {"cosine": "cosine (C^T M, sound store)", "coherence": "retrieve_parallel: Grace(C^T M) + coherence",
              "tower.retrieve": "tower.retrieve: Grace(C)^T M + Grace + coherence"}
RESULT_KEYS = {"cosine": "cosine", "coherence": "retrieve_parallel", "tower.retrieve": "tower_retrieve"}  # --results


def path_rows(results_by_store) -> list[list[str]]:
    """One [path, exact match] row per read path of the sound and the faithful store."""
    return [[PATH_NAMES[name] + ("" if kind == "sound" else " (faithful store)"), f"{mean:.3f}"]
            for (kind, name), mean in path_means(results_by_store).items()]


def path_means(results_by_store) -> dict:
    """{(store, path): exact match} over the read paths of the sound and the faithful store, in PATHS order."""
    return {(kind, name): float(results_by_store[kind][name].mean()) for kind, names in PATHS for name in names}


def path_data(results_by_store) -> dict:
    """{cosine, retrieve_parallel, tower_retrieve: exact match}: the paths as the results file names them."""
    return {RESULT_KEYS[name]: mean for (_, name), mean in path_means(results_by_store).items()}


def long_context(args, rng, tables, length: int) -> tuple[dict, dict]:
    """A at one length: ({cache, cosine, retrieve_parallel, tower_retrieve: exact match}, {store: SO(4) errors})."""
    import numpy as np

    from wavejax.memory import store

    v = args.vocab
    windows = rng.integers(0, v, (args.pairs, length)).astype(np.int32)
    targets = rng.integers(0, v, args.pairs).astype(np.int32)
    results, norms = {}, {}
    for kind in ("sound", "faithful"):
        spec = store.StoreSpec(vocab_size=v, context_length=length, levels=4, **STORES[kind])
        memory, contexts = build(spec, tables[kind], windows, targets)
        results[kind] = paths(spec, memory, contexts, targets)
        norms[kind] = so4_errors(contexts)
    hit, cached = cache_hits(windows, targets, windows)
    cache = float(np.mean(np.where(np.asarray(hit), np.asarray(cached) == targets, False)))
    return {"cache": cache, **path_data(results)}, norms


def section_a(args, rng, tables) -> tuple[dict, dict]:
    """A: the long-context test at each length: learn each pair, then retrieve the same contexts through every path.
    Returns ({length: {cache, cosine, retrieve_parallel, tower_retrieve: exact match}},
    {length: {store: {norm_f, det_err, orth_err}}})."""
    out, norms = {}, {}
    for length in args.long_lengths:
        out[length], norms[length] = long_context(args, rng, tables, length)
    labels = ["episodic cache first (retrieve_deterministic)"] + [
        PATH_NAMES[name] + ("" if kind == "sound" else " (faithful store)") for kind, ps in PATHS for name in ps]
    keys = ["cache"] + [RESULT_KEYS[name] for _, ps in PATHS for name in ps]
    rows = [[name] + [f"{out[length][key]:.3f}" for length in args.long_lengths] for name, key in zip(labels, keys)]
    lengths = "/".join(f"{length}" for length in args.long_lengths)
    print(f"A. Learn {args.pairs} random pairs of {lengths} tokens (V = {args.vocab:,}, 65,536 slots), then retrieve "
          "the same contexts:\n")
    print(C.markdown_table(["path"] + [f"exact match, L = {length}" for length in args.long_lengths], rows))
    for length in args.long_lengths:
        for kind, (norm, det, orth) in norms[length].items():
            print(f"   L = {length}, {kind} store: mean ||C||_F = {norm:.6f}, max abs(det C - 1) = {det:.1e}, "
                  f"max abs(C^T C - I) = {orth:.1e}")
    so4 = {length: {kind: dict(zip(("norm_f", "det_err", "orth_err"), e)) for kind, e in norms[length].items()}
           for length in args.long_lengths}
    return out, so4


def sections_b_c(args, rng, tables) -> tuple[dict, dict]:
    """B: pairs alone in their slot, through every path; C: the same seen contexts with their last token replaced.
    Returns ({n, pairs, path: exact match}, {cache_hits, path: exact match})."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from wavejax.memory import store

    v = args.vocab
    windows = rng.integers(0, v, (args.single_pairs, 8)).astype(np.int32)
    targets = rng.integers(0, v, args.single_pairs).astype(np.int32)
    changed = windows.copy()
    changed[:, -1] = (changed[:, -1] + rng.integers(1, v, len(changed))) % v
    alone_n, results_b, results_c = 0, {}, {}
    for kind in ("sound", "faithful"):
        spec = store.StoreSpec(vocab_size=v, context_length=8, levels=args.levels, **STORES[kind])
        memory, contexts = build(spec, tables[kind], windows, targets)
        alone = np.asarray(memory.counts)[np.asarray(store.route(spec, contexts))] == 1
        alone_n = int(alone.sum()) if kind == "sound" else alone_n
        results_b[kind] = paths(spec, memory, contexts[alone], targets[alone])
        changed_contexts = jax.jit(store.window_contexts, static_argnums=0)(spec, memory.table, jnp.asarray(changed))
        results_c[kind] = paths(spec, memory, changed_contexts, targets)
    rows_b = path_rows(results_b)
    hit, _ = cache_hits(windows, targets, changed)
    rows_c = [["episodic cache (hits)", f"{np.asarray(hit).mean():.3f}"]] + path_rows(results_c)
    print(f"\nB. Pairs alone in their slot ({alone_n:,} of {args.single_pairs:,} random pairs of 8 tokens in 16^{args.levels} "
          "slots):\n")
    print(C.markdown_table(["path", "exact match"], rows_b))
    print(f"\nC. The same {args.single_pairs:,} seen contexts with their last token replaced:\n")
    print(C.markdown_table(["path", "exact match"], rows_c))
    return ({"n": alone_n, "pairs": args.single_pairs, **path_data(results_b)},
            {"cache_hits": float(np.asarray(hit).mean()), "pairs": args.single_pairs, **path_data(results_c)})


def table_stats(name: str, t, out: dict | None = None, key: str = "") -> list[str]:
    """A row of section D: the mean matrix and the pairwise Frobenius cosines of a table's first 1,000 tokens (and
    out[key] = {max_abs_mean, cos_mean, cos_std} when out is given)."""
    import numpy as np

    t = np.asarray(t, np.float64)
    sub = t[: min(1000, len(t))].reshape(-1, 16) / 2.0  # ||E||_F = 2
    cos = sub @ sub.T
    off = cos[~np.eye(len(sub), dtype=bool)]
    mean = t.mean(0)
    if out is not None:
        out[key] = {"max_abs_mean": np.abs(mean).max(), "cos_mean": off.mean(), "cos_std": off.std()}
    return [name, f"{len(t):,}", f"{np.abs(mean).max():.3f}", f"{np.round(np.diag(mean), 2).tolist()}",
            f"{off.mean():.3f} ± {off.std():.3f}", f"{off.min():.2f} .. {off.max():.2f}"]


def section_d(args) -> dict:
    """D: the embedding tables (Haar, uncorrected QR, the original's, and the grounded ones unless --no_corpus).
    Returns {table: {max_abs_mean, cos_mean, cos_std}}."""
    from wavejax.memory import so4

    big, out = args.table_tokens, {}
    rows_d = [table_stats("Haar (default)", so4.embedding_table("haar", big, args.seed), out, "haar"),
              table_stats("uncorrected QR in JAX (qr_faithful)", so4.embedding_table("qr_faithful", big, args.seed),
                          out, "qr_faithful"),
              table_stats("the original's numpy table (seed 42)", so4.original_embeddings(big), out, "original")]
    if not args.no_corpus:
        from wavejax.errors import WavejaxError
        from wavejax.memory import task

        try:
            data = task.load_tokens(C.load_config("holographic"))
        except WavejaxError as e:
            C.fail(str(e), e.exit_code)
        for kind in ("ppmi", "ppmi_faithful"):
            rows_d.append(table_stats(f"grounded: PPMI of tinyshakespeare chars ({kind})",
                                      so4.embedding_table(kind, data.tokenizer.vocab_size, tokens=data.train),
                                      out, f"grounded_{kind}"))
    print("\nD. Embedding tables (cosines over the first 1,000 tokens):\n")
    print(C.markdown_table(["table", "tokens", "largest mean entry (abs)", "diagonal of the mean", "pairwise cos_F", "range"], rows_d,
                           align="lrrlrr"))
    return out


def section_e(args, rng) -> dict:
    """E: group closure in float32 after 1024 factors, for tables built three ways. Returns {table: errors}."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from wavejax.memory import so4, store

    seqs = rng.integers(0, 256, (8, 1024)).astype(np.int32)
    spec = store.StoreSpec(vocab_size=256, context_length=1024)
    rows_e, out = [], {}
    for key, name, t in (("haar", "Haar, QR in float64 then rounded (default)", so4.embedding_table("haar", 256, args.seed)),
                         ("haar_float32", "Haar, QR in float32",
                          np.asarray(so4.random_so4(jax.random.PRNGKey(args.seed), (256,)))),
                         ("original", "the original's numpy table", so4.original_embeddings(256))):
        memory = store.init_memory(spec, t)
        ctx = jax.jit(store.window_contexts, static_argnums=0)(spec, memory.table, jnp.asarray(seqs))
        norm, det, orth = so4_errors(ctx)
        factor_orth = so4_errors(t)[2]
        rows_e.append([name, f"{factor_orth:.1e}", f"{orth:.1e}", f"{det:.1e}", f"{abs(norm - 2):.1e}"])
        out[key] = {"factor_orth_err": factor_orth, "orth_err": orth, "det_err": det, "norm_err": abs(norm - 2)}
    print("\nE. Products of 1024 factors in float32 (8 sequences, with the position rotations):\n")
    print(C.markdown_table(["table", "factor: max abs(E^T E - I)", "max abs(C^T C - I)", "max abs(det C - 1)",
                            "abs(mean Frobenius norm - 2)"], rows_e))
    return out


def section_f(args, rng, faithful_table) -> dict:
    """F: the training loop's logged "semantic_sim" on seen pairs, with the true and with random targets.
    Returns {true, random, chance, same_slot, pairs}."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from wavejax.memory import clifford as cl
    from wavejax.memory import store

    v, n, length = args.vocab, args.semantic_pairs, 64
    windows = rng.integers(0, v, (n, length)).astype(np.int32)
    targets = rng.integers(0, v, n).astype(np.int32)
    spec = store.StoreSpec(vocab_size=v, context_length=length, levels=args.levels, routing="digits")
    memory, contexts = build(spec, faithful_table, windows, targets)

    @jax.jit
    def semantic_sim(memory, contexts, target_ids):
        g = cl.grace(contexts)
        slot = store.route(spec, g)  # the metric routes Grace(C): Grace^4 keys, while learning used Grace^3
        occupied = (memory.counts[slot] > 0)[:, None, None]
        state = jnp.where(occupied, cl.grace(cl.mm(cl.transpose(g), memory.slots[slot])), g)
        return cl.coherence(state, memory.embeddings[target_ids]), slot == store.route(spec, contexts)

    true_sim, same_slot = semantic_sim(memory, contexts, jnp.asarray(targets))
    random_sim, _ = semantic_sim(memory, contexts, jnp.asarray(rng.integers(0, v, n).astype(np.int32)))
    rows_f = [["true targets", f"{float(true_sim.mean()):.4f}", f"{v ** (1 - float(true_sim.mean())):,.0f}"],
              ["random targets", f"{float(random_sim.mean()):.4f}", f"{v ** (1 - float(random_sim.mean())):,.0f}"],
              ["chance (2/16)", "0.1250", f"{v ** (1 - 0.125):,.0f}"]]
    print(f"\nF. The logged semantic_sim on {n:,} seen pairs (L = 64, V = {v:,}, 16^{args.levels} slots, faithful store; "
          "the query reaches the "
          f"slot it was written to for {float(same_slot.mean()):.1%} of them):\n")
    print(C.markdown_table(["targets scored", "semantic_sim", "logged 'perplexity' V^(1 - sim)"], rows_f))
    return {"true": float(true_sim.mean()), "random": float(random_sim.mean()), "chance": 0.125,
            "same_slot": float(same_slot.mean()), "pairs": n}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    import numpy as np

    from wavejax.memory import so4

    rng = np.random.default_rng(args.seed)  # one stream, drawn by the sections in order
    tables = {"sound": so4.embedding_table("haar", args.vocab, args.seed), "faithful": so4.original_embeddings(args.vocab)}
    long, so4_errors_a = section_a(args, rng, tables)
    alone, changed = sections_b_c(args, rng, tables)
    tables_d = section_d(args)
    closure = section_e(args, rng)
    semantic = section_f(args, rng, tables["faithful"])
    C.write_results(args.results, "experiments.claims.memory_claims", argv, {
        "long": long, "long_so4": so4_errors_a, "alone": alone, "changed": changed, "semantic": semantic, "tables": tables_d, "closure": closure,
        "pairs": args.pairs, "vocab": args.vocab, "levels": args.levels, "long_levels": 4, "seed": args.seed})
    return 0


if __name__ == "__main__":
    sys.exit(main())
