"""Throughput of the holographic store: writes/s and full-vocabulary reads/s on the current backend, against a
straightforward numpy implementation of the same store (wavejax/memory/numpy_store.py) measured in the same run.

    python -m experiments.benchmarks.bench_memory  # V = 10,000, L = 4, 16, 64, 2^18 pairs, 16^5 slots
    python -m experiments.benchmarks.bench_memory --lengths 64 --pairs 65536 --repeats 2

Writes: every (window, next token) pair of a random token stream goes into a store of 16^levels slots (contexts,
keys, routing, scatter-add of phi^-1 C T; no episodic cache).
  numpy              each window from scratch as the original: gather E, conjugate by R(i), pairwise np.matmul tree,
                     keys, the same uint32 routing hash, np.add.at; batches of --numpy_batch windows
  jax, stream        store.learn_stream: all windows of the stream by the sliding-window products (associative_scan
                     within blocks of L), chunks of 65,536 windows
  jax, windows       the same windows as independent [B, L] rows (window_contexts: a product from scratch per window)
Reads: --queries windows decoded over the whole vocabulary (context, unbind, cosine with all V embeddings, argmax).
Cache: building the episodic cache of all windows (jax: 64-bit hashes, sort, dedupe; numpy: the original's dict of
window bytes). Each figure is the median of --repeats timed runs after one untimed run (jit compile excluded).
"slots agree" is the fraction of slots whose pair count is the same in the numpy and jax stores (float32 rounding
of a different association order can move a context across a key boundary).

--results PATH also writes the tables' figures (writes/s, reads/s, inserts/s, ratios, the device) for the claims
ledger. Exit status 1 when the jax stream writes are not at least --target (10x) faster than numpy at L = 64 on CPU.
"""

from __future__ import annotations

import argparse
import os
import sys

from experiments import common as C


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=10000)
    p.add_argument("--lengths", default="4,16,64", help="context lengths, comma-separated")
    p.add_argument("--pairs", type=int, default=1 << 18, help="pairs written per timed run")
    p.add_argument("--queries", type=int, default=8192, help="full-vocabulary reads per timed run")
    p.add_argument("--levels", type=int, default=5, help="16^levels slots (5: 0.25 pairs per slot at 2^18 pairs)")
    p.add_argument("--numpy_batch", type=int, default=8192, help="windows per numpy batch (the original used 8192)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--target", type=float, default=10.0, help="required write speed-up of the jax stream path at L=64")
    p.add_argument("--seed", type=int, default=0)
    C.add_results_arg(p, "bench_memory")
    args = p.parse_args(argv)
    try:
        args.lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
    except ValueError:
        C.fail(f"--lengths must be comma-separated integers, got {args.lengths!r}.")
    if not args.lengths or min(args.lengths) < 1:
        C.fail("--lengths needs at least one length >= 1.")
    for name in ("vocab", "pairs", "queries", "numpy_batch", "repeats"):
        if getattr(args, name) < 1:
            C.fail(f"--{name} must be >= 1, got {getattr(args, name)}.")
    if not 1 <= args.levels <= 7:
        C.fail(f"--levels must be in 1..7, got {args.levels}.")
    return args


def bench_writes(args, spec, table, tokens):
    """Rows of the writes table for one L, its figures for the results file (writes/s, ratios to numpy, slots agree),
    and the stream path's store (reused by the cache timing). Each timed run writes all pairs into an existing store (allocation is not a write); the stores
    accumulate."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from wavejax.memory import store
    from wavejax.memory.numpy_store import NumpyStore

    length = spec.context_length
    starts, targets = np.arange(args.pairs), tokens[length:]
    ref_store, jax_store = NumpyStore(spec, table), [store.init_memory(spec, table)]

    def numpy_writes():
        for s in range(0, args.pairs, args.numpy_batch):
            rows = starts[s : s + args.numpy_batch]
            ref_store.write(tokens[rows[:, None] + np.arange(length)], targets[rows])
        return ref_store

    def jax_stream_writes():
        jax_store[0], _ = store.learn_stream(spec, jax_store[0], tokens, use_cache=False)
        return jax.block_until_ready(jax_store[0])

    @jax.jit
    def windows_step(memory, stream, first):
        rows = first + jnp.arange(chunk)
        windows = stream[rows[:, None] + jnp.arange(length)]
        contexts = store.window_contexts(spec, memory.table, windows)
        return store.write(spec, memory, contexts, stream[rows + length], rows < args.pairs)

    chunk = store.stream_chunk(spec, len(tokens))  # the stream path's batch, for the independent windows too
    stream_dev = jnp.asarray(np.concatenate([tokens, np.zeros(chunk, np.int32)]))

    window_store = [store.init_memory(spec, table)]

    def jax_window_writes():
        for first in range(0, args.pairs, chunk):
            window_store[0] = windows_step(window_store[0], stream_dev, jnp.int32(first))
        return jax.block_until_ready(window_store[0])

    t_np = C.median_seconds(numpy_writes, args.repeats)
    t_stream = C.median_seconds(jax_stream_writes, args.repeats)
    t_win = C.median_seconds(jax_window_writes, args.repeats)
    agree = float(np.mean(np.asarray(jax_store[0].counts) == ref_store.counts))  # both hold repeats + 1 copies
    rows = []
    for name, t in (("numpy (from scratch)", t_np), ("jax, stream (sliding windows)", t_stream),
                    ("jax, windows (from scratch)", t_win)):
        rows.append([length, name, f"{args.pairs / t:,.0f}", f"{t_np / t:.1f}x", f"{agree:.4f}" if "stream" in name else ""])
    data = {"numpy": args.pairs / t_np, "jax_stream": args.pairs / t_stream, "jax_windows": args.pairs / t_win,
            "stream_vs_numpy": t_np / t_stream, "windows_vs_numpy": t_np / t_win, "slots_agree": agree}
    return rows, data, jax_store


def bench_reads(args, spec, table, tokens, rng) -> tuple[list, dict]:
    """The reads row for one L (full-vocabulary decode of --queries seen windows; one copy of every pair written) and
    its figures for the results file."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from wavejax.memory import store
    from wavejax.memory.numpy_store import NumpyStore

    length = spec.context_length
    starts, targets = np.arange(args.pairs), tokens[length:]
    memory, _ = store.learn_stream(spec, store.init_memory(spec, table), tokens, use_cache=False)
    ref = NumpyStore(spec, table)
    for s in range(0, args.pairs, args.numpy_batch):
        rows = starts[s : s + args.numpy_batch]
        ref.write(tokens[rows[:, None] + np.arange(length)], targets[rows])
    q_rows = rng.choice(args.pairs, size=min(args.queries, args.pairs), replace=False)
    q_windows = tokens[q_rows[:, None] + np.arange(length)]
    read_batch = 2048

    @jax.jit
    def read_step(memory, windows):
        contexts = store.window_contexts(spec, memory.table, windows)
        return jnp.argmax(store.scores(spec, memory, contexts, "cosine"), axis=-1)

    def jax_reads():
        out = [read_step(memory, jnp.asarray(q_windows[s : s + read_batch])) for s in range(0, len(q_windows), read_batch)]
        return np.concatenate([np.asarray(o) for o in out])

    def numpy_reads():
        return np.concatenate([ref.read(q_windows[s : s + read_batch]).argmax(1) for s in range(0, len(q_windows), read_batch)])

    r_np, r_jax = C.median_seconds(numpy_reads, args.repeats), C.median_seconds(jax_reads, args.repeats)
    recall = float(np.mean(jax_reads() == targets[q_rows]))
    row = [length, f"{len(q_windows) / r_np:,.0f}", f"{len(q_windows) / r_jax:,.0f}", f"{r_np / r_jax:.1f}x", f"{recall:.3f}"]
    return row, {"numpy": len(q_windows) / r_np, "jax": len(q_windows) / r_jax, "jax_vs_numpy": r_np / r_jax,
                 "recall": recall, "queries": len(q_windows)}


def bench_cache(args, spec, tokens, jax_store, t_stream) -> tuple[list, dict]:
    """The cache row for one L (the episodic cache of every window, jax's (learn_stream with the cache, minus the same
    writes without) against the original's dict) and its figures for the results file."""
    import jax
    import numpy as np

    from wavejax.memory import store

    length = spec.context_length
    starts, targets = np.arange(args.pairs), tokens[length:]

    def jax_cache():
        jax_store[0] = jax_store[0].replace(cache=store.empty_cache(0))
        jax_store[0], _ = store.learn_stream(spec, jax_store[0], tokens, use_cache=True)
        return jax.block_until_ready(jax_store[0])

    def numpy_cache():
        cache = {}  # the original's dict: window bytes -> the last target written
        for s in range(0, args.pairs, args.numpy_batch):
            rows = starts[s : s + args.numpy_batch]
            for window, target in zip(tokens[rows[:, None] + np.arange(length)], targets[rows]):
                cache[window.tobytes()] = int(target)
        return cache

    c_jax = C.median_seconds(jax_cache, args.repeats) - t_stream  # learn_stream with the cache, minus without
    c_np = C.median_seconds(numpy_cache, 1)
    row = [length, f"{args.pairs / c_np:,.0f}", f"{args.pairs / max(c_jax, 1e-9):,.0f}", f"{c_np / max(c_jax, 1e-9):.1f}x"]
    return row, {"numpy": args.pairs / c_np, "jax": args.pairs / max(c_jax, 1e-9), "jax_vs_numpy": c_np / max(c_jax, 1e-9)}


def report(args, write_rows, read_rows, cache_rows, verdict) -> int:
    """Prints the three tables and the verdict at L = 64; the exit status (1: the target missed on CPU)."""
    import jax

    print("\nWrites (pairs/s):\n")
    print(C.markdown_table(["L", "implementation", "writes/s", "vs numpy", "slots agree"], write_rows, align="llrrr"))
    print(f"\nFull-vocabulary reads (V = {args.vocab:,}, cosine decoder, seen windows):\n")
    print(C.markdown_table(["L", "numpy reads/s", "jax reads/s", "jax vs numpy", "recall"], read_rows))
    print("\nEpisodic cache of every window (inserts/s; jax: learn_stream with the cache minus without):\n")
    print(C.markdown_table(["L", "numpy dict", "jax sorted hashes", "jax vs numpy"], cache_rows))
    if verdict is None:
        print("\n(no L = 64 in --lengths: no verdict)")
        return 0
    on_cpu = jax.default_backend() == "cpu"
    ok = verdict >= args.target
    print(f"\n{'PASS' if ok else 'FAIL'}: jax stream writes at L = 64 are {verdict:.1f}x numpy's "
          f"(target >= {args.target:g}x{' on CPU' if on_cpu else '; the target is set for CPU'})")
    return 0 if ok or not on_cpu else 1


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    import jax
    import numpy as np

    from wavejax.memory import so4, store

    rng = np.random.default_rng(args.seed)
    table = so4.embedding_table("haar", args.vocab, args.seed)
    device = jax.devices()[0]
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"backend {jax.default_backend()} ({device.device_kind}), {os.cpu_count()} CPUs, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; V = {args.vocab:,}, {16 ** args.levels:,} slots, "
          f"{args.pairs:,} pairs per run, median of {args.repeats}")

    write_rows, read_rows, cache_rows, verdict = [], [], [], None
    data = {"writes": {}, "reads": {}, "cache": {}}
    for length in args.lengths:
        spec = store.StoreSpec(vocab_size=args.vocab, context_length=length, levels=args.levels)
        tokens = rng.integers(0, args.vocab, args.pairs + length).astype(np.int32)
        rows, data["writes"][length], jax_store = bench_writes(args, spec, table, tokens)
        write_rows += rows
        if length == 64:
            verdict = data["writes"][length]["stream_vs_numpy"]
        t_stream = args.pairs / data["writes"][length]["jax_stream"]
        for rows_of, key, (row, figures) in ((read_rows, "reads", bench_reads(args, spec, table, tokens, rng)),
                                             (cache_rows, "cache", bench_cache(args, spec, tokens, jax_store, t_stream))):
            rows_of.append(row)
            data[key][length] = figures
        print(f"L = {length}: done", flush=True)
    rc = report(args, write_rows, read_rows, cache_rows, verdict)
    data.update(device={"backend": jax.default_backend(), "kind": device.device_kind, "cpus": os.cpu_count(),
                        "load_average": list(load)},
                vocab=args.vocab, pairs=args.pairs, queries=args.queries, levels=args.levels, slots=16 ** args.levels,
                repeats=args.repeats, numpy_batch=args.numpy_batch,
                verdict={"length": 64, "stream_vs_numpy": verdict, "target": args.target,
                         "pass": None if verdict is None else verdict >= args.target})
    C.write_results(args.results, "experiments.benchmarks.bench_memory", argv, data)
    return rc


if __name__ == "__main__":
    sys.exit(main())
