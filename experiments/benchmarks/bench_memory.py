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
Reads: --queries seen windows decoded over the whole vocabulary (context, unbind, cosine with all V embeddings,
top-1). numpy: NumpyStore.read (the [B, V] cosine matrix) and argmax, as the original; jax: decode.decode_topk with
k = 1 and the table's decode.decode_index (built once per embedding table, not timed): a query whose unbound R lies
within half the least angle between two embeddings of the token its rounded direction looks up is answered without
a scan (certain: every other token is farther); the others (crowded or empty slots) are scanned in chunked
[B, 16] x [16, chunk] products keeping block maxima, the [B, V] matrix never formed. The same argmax as the full
scores (tests/test_memory_decode.py; "argmax_agree" in the results), batches of 2,048; "certified" in the results is
the fraction answered without a scan.
Cache: every (window, next token) pair of the stream inserted into the episodic cache. numpy: the original's dict
of window bytes (the last write wins), filled batch by batch; jax: store.stream_cache, the step learn_stream runs
after its writes (rolling 62-bit hashes of all windows and the device hash table's build, one program), timed on
its own. (Before the hash table this figure was learn_stream with the cache minus without.)
Writes are the median of --repeats timed runs after one untimed run (jit compile excluded). Reads and cache inserts
alternate: one untimed run of each, then numpy, jax, numpy, jax, ... --repeats pairs; a pair's ratio is its numpy
time over its jax time, and the tables give the median of each side and the median of the pair ratios.
"slots agree" is the fraction of slots whose pair count is the same in the numpy and jax stores (float32 rounding
of a different association order can move a context across a key boundary).

--results PATH also writes the tables' figures (writes/s, reads/s, inserts/s, ratios, the device) for the claims
ledger. Exit status 1 on CPU when, at L = 64, the jax stream writes are not at least --target (10x) faster than
numpy, or the reads or cache inserts not at least --read_target (5x) (the verdict line also gives the least ratio at
any L).
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
    p.add_argument("--read_target", type=float, default=5.0,
                   help="required speed-up of the jax reads and cache inserts at L=64 (median of the pair ratios)")
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
    and the stream path's store. Each timed run writes all pairs into an existing store (allocation is not a write);
    the stores accumulate."""
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


def alternating(numpy_fn, jax_fn, repeats: int) -> tuple[list[float], list[float]]:
    """(numpy seconds, jax seconds) of `repeats` alternating pairs (numpy, jax, numpy, jax, ...) after one untimed
    run of each; each fn waits for its own result."""
    import time

    numpy_fn(), jax_fn()
    t_np, t_jax = [], []
    for _ in range(repeats):
        for fn, out in ((numpy_fn, t_np), (jax_fn, t_jax)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return t_np, t_jax


def pair_figures(t_np: list[float], t_jax: list[float], n: int) -> dict:
    """Items per second (medians of each side) and the median of the per-pair ratios numpy time / jax time."""
    import statistics

    ratios = [a / max(b, 1e-9) for a, b in zip(t_np, t_jax)]
    return {"numpy": n / statistics.median(t_np), "jax": n / max(statistics.median(t_jax), 1e-9),
            "jax_vs_numpy": statistics.median(ratios), "ratios": ratios}


def bench_reads(args, spec, table, tokens, rng) -> tuple[list, dict]:
    """The reads row for one L (top-1 full-vocabulary decode of --queries seen windows; one copy of every pair
    written) and its figures for the results file."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from wavejax.memory import decode, store
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

    index = jax.block_until_ready(decode.decode_index(memory.embeddings))  # once per embedding table, not timed

    @jax.jit
    def read_step(memory, index, windows):
        contexts = store.window_contexts(spec, memory.table, windows)
        return decode.decode_topk(spec, memory, contexts, 1, "cosine", index=index)[1][:, 0]

    def jax_reads():
        out = [read_step(memory, index, jnp.asarray(q_windows[s : s + read_batch]))
               for s in range(0, len(q_windows), read_batch)]
        return np.concatenate([np.asarray(o) for o in out])

    def numpy_reads():
        return np.concatenate([ref.read(q_windows[s : s + read_batch]).argmax(1) for s in range(0, len(q_windows), read_batch)])

    figures = pair_figures(*alternating(numpy_reads, jax_reads, args.repeats), len(q_windows))
    jax_tokens = jax_reads()
    sure = jax.jit(lambda m, i, w: decode.certified(spec, m, store.window_contexts(spec, m.table, w), i))
    figures.update(recall=float(np.mean(jax_tokens == targets[q_rows])), queries=len(q_windows),
                   argmax_agree=float(np.mean(jax_tokens == numpy_reads())),
                   certified=float(np.mean(np.asarray(sure(memory, index, jnp.asarray(q_windows))))))
    row = [length, f"{figures['numpy']:,.0f}", f"{figures['jax']:,.0f}", f"{figures['jax_vs_numpy']:.1f}x",
           f"{figures['recall']:.3f}"]
    return row, figures


def bench_cache(args, spec, tokens) -> tuple[list, dict]:
    """The cache row for one L (every window of the stream: jax's store.stream_cache into an empty cache against the
    original's dict) and its figures for the results file."""
    import jax
    import numpy as np

    from wavejax.memory import store

    length = spec.context_length
    starts, targets = np.arange(args.pairs), tokens[length:]
    empty = store.empty_cache(0)

    def jax_cache():
        return jax.block_until_ready(store.stream_cache(spec, empty, tokens))

    def numpy_cache():
        cache = {}  # the original's dict: window bytes -> the last target written
        for s in range(0, args.pairs, args.numpy_batch):
            rows = starts[s : s + args.numpy_batch]
            for window, target in zip(tokens[rows[:, None] + np.arange(length)], targets[rows]):
                cache[window.tobytes()] = int(target)
        return cache

    figures = pair_figures(*alternating(numpy_cache, jax_cache, args.repeats), args.pairs)
    built = jax_cache()
    figures.update(distinct=int(built.size), slots=int(built.h1.shape[0]))
    if figures["distinct"] != len(numpy_cache()):
        raise AssertionError(f"the jax cache holds {figures['distinct']} windows, the dict {len(numpy_cache())}")
    row = [length, f"{figures['numpy']:,.0f}", f"{figures['jax']:,.0f}", f"{figures['jax_vs_numpy']:.1f}x"]
    return row, figures


def report(args, write_rows, read_rows, cache_rows, verdict) -> int:
    """Prints the three tables and the verdict; the exit status (1: a target missed on CPU)."""
    import jax

    print("\nWrites (pairs/s):\n")
    print(C.markdown_table(["L", "implementation", "writes/s", "vs numpy", "slots agree"], write_rows, align="llrrr"))
    print(f"\nFull-vocabulary reads (V = {args.vocab:,}, cosine decoder, top-1 of seen windows; median of "
          f"{args.repeats} alternating pairs):\n")
    print(C.markdown_table(["L", "numpy reads/s", "jax reads/s", "jax vs numpy", "recall"], read_rows))
    print(f"\nEpisodic cache of every window (inserts/s; median of {args.repeats} alternating pairs):\n")
    print(C.markdown_table(["L", "numpy dict", "jax hash table", "jax vs numpy"], cache_rows))
    on_cpu = jax.default_backend() == "cpu"
    if verdict["stream_vs_numpy"] is None:
        print("\n(no L = 64 in --lengths: no verdict)")
        return 0
    ok = verdict["pass"] and verdict["reads_pass"] and verdict["cache_pass"]
    print(f"\n{'PASS' if ok else 'FAIL'}: at L = 64 jax stream writes are {verdict['stream_vs_numpy']:.1f}x numpy's "
          f"(target >= {args.target:g}x), reads {verdict['reads_vs_numpy']:.1f}x and cache inserts "
          f"{verdict['cache_vs_numpy']:.1f}x (target >= {args.read_target:g}x)"
          f"{' on CPU' if on_cpu else '; the targets are set for CPU'}; the least at any L: reads "
          f"{verdict['reads_min_vs_numpy']:.1f}x, cache inserts {verdict['cache_min_vs_numpy']:.1f}x")
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
        rows, data["writes"][length], _ = bench_writes(args, spec, table, tokens)
        write_rows += rows
        if length == 64:
            verdict = data["writes"][length]["stream_vs_numpy"]
        for rows_of, key, (row, figures) in ((read_rows, "reads", bench_reads(args, spec, table, tokens, rng)),
                                             (cache_rows, "cache", bench_cache(args, spec, tokens))):
            rows_of.append(row)
            data[key][length] = figures
        print(f"L = {length}: done", flush=True)
    at64 = {key: data[key][64]["jax_vs_numpy"] if 64 in data[key] else None for key in ("reads", "cache")}
    verdict = {"length": 64, "stream_vs_numpy": verdict, "target": args.target,
               "pass": None if verdict is None else verdict >= args.target, "read_target": args.read_target,
               **{f"{key}_vs_numpy": r for key, r in at64.items()},
               **{f"{key}_pass": None if r is None else r >= args.read_target for key, r in at64.items()},
               **{f"{key}_min_vs_numpy": min(d["jax_vs_numpy"] for d in data[key].values()) for key in at64}}
    rc = report(args, write_rows, read_rows, cache_rows, verdict)
    end = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"load average at the end {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}")
    data.update(device={"backend": jax.default_backend(), "kind": device.device_kind, "cpus": os.cpu_count(),
                        "load_average": list(load), "load_average_end": list(end)},
                vocab=args.vocab, pairs=args.pairs, queries=args.queries, levels=args.levels, slots=16 ** args.levels,
                repeats=args.repeats, numpy_batch=args.numpy_batch, verdict=verdict)
    C.write_results(args.results, "experiments.benchmarks.bench_memory", argv, data)
    return rc


if __name__ == "__main__":
    sys.exit(main())
