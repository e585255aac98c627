"""Continual learning: corpus A, then corpus B; A's accuracy after B, for the holographic store with and without sleep,
its prototypes, a count model and the GPT baseline fine-tuned the same way (issue 21; spec: docs/specs/holographic.md
sections 4, 5.1, 7).

    python -m experiments.reproductions.memory_forgetting --results docs/results/memory_forgetting.json \
        --md docs/results/memory_forgetting.md                                 # L = 4, 16; seeds 0, 1, 2 (minutes)
    python -m experiments.reproductions.memory_forgetting --quick             # seconds (the tests)

Corpora: tinyshakespeare as characters (one vocabulary: the characters of the whole text). A = its first half, B = its
second half (no overlap); each is cut 90/10 into learned text and held-out text. Per seed the same queries serve every
method: A seen (targets in A's learned text), A held-out (the second half of A's held-out text; the first half fits
the memory's softmax temperature), and the same two for B (query history --history tokens).
Methods:
  memory L=.., no sleep     configs/holographic.py (Haar embeddings, hash routing, cosine decoder, no episodic cache)
                            with 16^--levels slots: store.learn_stream(A), evaluate, learn_stream(B) into the same store
  memory L=.., sleep        sleep.learn_with_sleep over A, then over B with the same sleep state: --checks checks per
                            corpus, the original's cadence scaled to it (every = pairs / checks; min_pairs, warm-up and
                            safety valve in the original's ratios 100k : 50k : 500k to its 409,600), --episodes windows
                            collected per check; the table says how many sleeps ran
  prototypes L=.. (sleep)   the sleeping run's prototypes alone: semantic.predict_targets(prototypes, C, k=1) (the
                            nearest prototype's target distribution; no schema boosts); no NLL (it gives most tokens probability 0)
  N-gram counts             Witten-Bell --ngram-gram counted on A, then on A + B (a count model cannot overwrite)
  GPT                       configs/baseline.py:tiny trained --gpt_steps steps on random windows of A, then --gpt_steps
                            more on B (same optimizer state; learning rate flat after the warm-up, so both phases learn at
                            the same rate), scored on the queries' last block_size tokens
"Drop" is A before B minus A after B, per seed. Cells are mean ± sample std over seeds (seeds change the embeddings, the
queries, the sleep keys and the GPT's initialisation and batches). The mechanism table says what B did to A's slots:
the share of A's seen queries whose slot B also wrote to, and the mean pairs in those slots before and after B.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import shutil
import sys
import time

from experiments import common as C
from experiments.reproductions.memory_forgetting_tables import MODULE, report, results_data
from wavejax.errors import WavejaxError

ORIGINAL_EVERY, ORIGINAL_MIN, ORIGINAL_WARMUP, ORIGINAL_VALVE = 409_600, 100_000, 50_000, 500_000  # spec 5.1
QUICK = {"lengths": "8", "levels": 3, "seeds": "0", "max_chars": 40000, "queries": 100, "calibration": 50,
         "checks": 1, "episodes": 200, "gpt_steps": 10, "ngram": 3}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", default="4,16", help="the memory's context lengths L")
    p.add_argument("--levels", type=int, default=5, help="16^levels slots (5: A fills about half of them)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--max_chars", type=int, default=0, help="0: the whole corpus")
    p.add_argument("--queries", type=int, default=2000, help="scored queries per corpus and condition")
    p.add_argument("--calibration", type=int, default=500, help="queries that fit the memory's temperature")
    p.add_argument("--history", type=int, default=64, help="tokens before each target (>= every L, n-1, block)")
    p.add_argument("--checks", type=int, default=3, help="sleep checks per corpus (the sleep cadence)")
    p.add_argument("--episodes", type=int, default=819, help="windows collected per check (the original: 819)")
    p.add_argument("--ngram", type=int, default=5, help="order of the count-model reference (0: none)")
    p.add_argument("--gpt", default="baseline:tiny", help="config[:preset] of the GPT baseline")
    p.add_argument("--gpt_steps", type=int, default=1500, help="GPT steps on A, and again on B")
    p.add_argument("--no_gpt", action="store_true", help="leave out the GPT rows")
    p.add_argument("--top_k", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="small settings for the tests (explicit flags still win)")
    p.add_argument("--out", default="runs/memory_forgetting", help="folder of the GPT runs and rows.json")
    p.add_argument("--md", default=None, metavar="PATH", help="also write the tables as markdown")
    C.add_results_arg(p, "memory_forgetting")
    args = p.parse_args(argv)
    if args.quick:
        p.set_defaults(**QUICK)
        args = p.parse_args(argv)
    try:
        args.lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
        args.seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        C.fail("--lengths and --seeds are comma-separated integers.")
    if not args.lengths or not args.seeds or min(args.lengths) < 1:
        C.fail("--lengths and --seeds need at least one value (lengths >= 1).")
    for name in ("queries", "calibration", "top_k", "levels", "checks", "episodes", "gpt_steps"):
        if getattr(args, name) < 1:
            C.fail(f"--{name} must be >= 1.")
    if args.ngram < 0 or args.max_chars < 0:
        C.fail("--ngram and --max_chars must be >= 0.")
    if args.history < max(args.lengths + [args.ngram - 1]):
        C.fail(f"--history ({args.history}) must be at least every L and --ngram minus one.")
    return args


# -- corpora ----------------------------------------------------------------------------------------------------------

def corpora(args):
    """(tokenizer, {"A": (learned, held-out), "B": (...)}, the memory's base config): the text's two halves, each cut
    90/10, in one char vocabulary."""
    import numpy as np

    from wavejax.memory import task

    config = memory_config(args.lengths[0], args.seeds[0], args)
    data = task.load_tokens(config)
    text = np.concatenate([data.train, data.heldout])  # load_tokens cut it 90/10; the whole text, in order
    half = len(text) // 2
    parts = {}
    for name, ids in (("A", text[:half]), ("B", text[half:])):
        cut = int(len(ids) * (1.0 - config.data.val_fraction))
        parts[name] = (ids[:cut], ids[cut:])
        if len(ids) - cut < 2 * (args.history + 2):
            C.fail(f"corpus {name}'s held-out text has {len(ids) - cut} tokens, fewer than the {2 * (args.history + 2)} "
                   "the queries need; raise --max_chars or lower --history.")
    return data.tokenizer, parts, data.name


def query_sets(parts, args, seed: int, vocab: int) -> dict:
    """{corpus: {"seen": (calibration, scored), "heldout": (...)}}."""
    from wavejax.memory import eval as mem_eval

    out = {}
    for i, (name, (learned, heldout)) in enumerate(parts.items()):
        sets = mem_eval.query_sets(learned, heldout, args.queries, args.calibration, args.history, min(args.lengths),
                                   vocab, 1000 * seed + i)
        out[name] = {c: sets[c] for c in ("seen", "heldout")}
    return out


# -- the memory -------------------------------------------------------------------------------------------------------

def memory_config(length: int, seed: int, args):
    c = C.load_config("holographic")
    c.seed, c.data.max_chars = seed, args.max_chars
    c.memory.context_length, c.memory.levels, c.memory.episodic = length, args.levels, False
    return c


def sleep_config(pairs: int, args):
    """The original's cadence scaled to a corpus of `pairs` pairs: --checks checks, the thresholds in its ratios."""
    from wavejax.memory import sleep

    every = -(-pairs // args.checks)
    scale = every / ORIGINAL_EVERY
    return sleep.SleepConfig(every=every, min_pairs=max(1, round(ORIGINAL_MIN * scale)),
                             warmup=max(1, round(ORIGINAL_WARMUP * scale)), valve=max(1, round(ORIGINAL_VALVE * scale)),
                             episodes=args.episodes)


PREDICT_BATCH = 1024  # queries per compiled prototype-prediction call


@functools.cache
def _predict_fn(vocab_size: int):
    import jax

    from wavejax.memory import semantic

    return jax.jit(lambda protos, q: semantic.predict_targets(protos, q, 1, vocab_size=vocab_size))


@functools.cache
def _route_fn():
    import jax

    from wavejax.memory import store

    return jax.jit(store.route, static_argnums=0)


def prototype_rows(spec, memory, state, sets: dict, label: str, top_k: int) -> list[dict]:
    """Exact / top-k of the prototypes' predictions on each condition: the nearest prototype's target distribution
    (k = 1). Without the schemas' boosts: semantic.retrieve forms a [queries, schemas, prototypes] array for them
    (68 GB for 1,024 queries at the default capacities)."""
    import numpy as np

    from wavejax.memory import eval as mem_eval

    predict = _predict_fn(spec.vocab_size)
    rows = []
    for condition, (_, test) in sets.items():
        contexts = np.asarray(mem_eval.memory_contexts(spec, memory, test))
        probs = []
        for s in range(0, len(contexts), PREDICT_BATCH):
            piece = contexts[s : s + PREDICT_BATCH]
            padded = np.concatenate([piece, np.repeat(piece[-1:], PREDICT_BATCH - len(piece), axis=0)])
            probs.append(np.asarray(predict(state.prototypes, padded))[: len(piece)])
        r = mem_eval.ranks(np.concatenate(probs), test.targets)
        rows.append({"method": label, "condition": condition, "n": len(test), "exact": float(np.mean(r == 0)),
                     "top_k": float(np.mean(r < top_k)), "nll": None})
    return rows


def slot_counts(spec, memory, sets: dict):
    """(slot index, pairs in it) of each scored A-seen query."""
    import numpy as np

    from wavejax.memory import eval as mem_eval

    contexts = mem_eval.memory_contexts(spec, memory, sets["seen"][1])
    slots = np.asarray(_route_fn()(spec, contexts))
    return slots, np.asarray(memory.counts)[slots]


def memory_runs(args, parts, sets, seed: int, vocab: int) -> tuple[list[dict], list[dict]]:
    """Rows (method, phase, condition, seed, metrics) and mechanism records of the store at every L, without and with
    sleep, for one seed."""
    import jax
    import numpy as np

    from wavejax.memory import eval as mem_eval
    from wavejax.memory import sleep, so4, store, task

    rows, mech = [], []
    (a_learned, _), (b_learned, _) = parts["A"], parts["B"]
    for length in args.lengths:
        config = memory_config(length, seed, args)
        spec = task.store_spec(config, vocab)
        table = so4.embedding_table(config.memory.embedding, vocab, seed, tokens=a_learned)
        for with_sleep in (False, True):
            label = f"memory L={length}, " + ("sleep" if with_sleep else "no sleep")
            memory, state, sleeps, t0 = store.init_memory(spec, table), None, {}, time.perf_counter()
            key = jax.random.fold_in(jax.random.PRNGKey(seed), length)
            phase_rows, before = [], None
            for corpus, learned in (("A", a_learned), ("B", b_learned)):
                if with_sleep:
                    cfg = sleep_config(len(a_learned) - length, args)  # one cadence for both corpora
                    memory, state, _, history = sleep.learn_with_sleep(
                        spec, memory, learned, cfg, jax.random.fold_in(key, ord(corpus)), state=state, use_cache=False)
                    sleeps[corpus] = len(history)
                else:
                    memory, _ = store.learn_stream(spec, memory, learned, use_cache=False)
                jax.block_until_ready(memory)
                targets = ("A",) if corpus == "A" else ("A", "B")
                for target in targets:
                    phase = "A before B" if corpus == "A" else f"{target} after B"
                    for r in mem_eval.evaluate_memory(spec, memory, sets[target], ("cosine",), args.top_k, label=label):
                        phase_rows.append({**r, "method": label, "phase": phase})
                    if with_sleep and bool(np.any(np.asarray(state.prototypes.valid))):
                        proto = f"prototypes L={length} (sleep)"
                        for r in prototype_rows(spec, memory, state, sets[target], proto, args.top_k):
                            phase_rows.append({**r, "phase": phase})
                if corpus == "A":
                    before = slot_counts(spec, memory, sets["A"])
            slots, after = slot_counts(spec, memory, sets["A"])
            rows += [{**r, "seed": seed} for r in phase_rows]
            mech.append({"method": label, "seed": seed, "length": length, "sleeps_A": sleeps.get("A", 0),
                         "sleeps_B": sleeps.get("B", 0), "seconds": time.perf_counter() - t0,
                         "prototypes": int(np.sum(np.asarray(state.prototypes.valid))) if state is not None else 0,
                         "schemas": int(np.sum(np.asarray(state.schemas.valid & state.schemas.promoted)))
                         if state is not None else 0,
                         "shared": float(np.mean(after > before[1])), "load_before": float(np.mean(before[1])),
                         "load_after": float(np.mean(after)), **{f"store_{k}": v for k, v in store.slot_load(memory).items()}})
            print(f"seed {seed}, {label}: {mech[-1]['seconds']:.1f} s, sleeps {sleeps or '-'}, "
                  f"A-seen slots shared with B {mech[-1]['shared']:.3f}", flush=True)
            del memory
    return rows, mech


def ngram_rows(args, parts, sets, seed: int, vocab: int) -> list[dict]:
    import numpy as np

    from wavejax.memory import eval as mem_eval

    if not args.ngram:
        return []
    label, rows = f"{args.ngram}-gram counts (Witten-Bell)", []
    (a_learned, _), (b_learned, _) = parts["A"], parts["B"]
    for phase, tokens, targets in (("A before B", a_learned, ("A",)), ("after B", np.concatenate([a_learned, b_learned]),
                                                                      ("A", "B"))):
        model = mem_eval.NGramModel(tokens, vocab, args.ngram)
        for target in targets:
            name = phase if phase == "A before B" else f"{target} {phase}"
            rows += [{**r, "phase": name, "seed": seed}
                     for r in mem_eval.evaluate_probabilities(label, model.probs, sets[target], args.top_k)]
    return rows


# -- the GPT baseline -------------------------------------------------------------------------------------------------

def gpt_config(args, seed: int):
    name, _, preset = args.gpt.partition(":")
    c = C.load_config(name, preset or None)
    c.seed, c.data.max_chars = seed, args.max_chars
    c.train.steps = 2 * args.gpt_steps
    c.train.warmup_steps = min(c.train.warmup_steps, max(1, args.gpt_steps // 10))
    c.train.min_lr = c.train.lr  # flat after the warm-up: A and B are learned at the same rate
    c.train.eval_every = c.train.checkpoint_every = c.train.log_every = 10**9
    c.train.sample_tokens = 0
    c.train.progress = False
    return c


def gpt_rows(args, parts, sets, seed: int, tokenizer) -> tuple[list[dict], dict]:
    """The GPT trained on A's learned text, then fine-tuned on B's, each for --gpt_steps steps: its rows, and
    {steps, seconds}. The Trainer is built on the whole corpus (the same char vocabulary as the memory); its train
    sampler is replaced by one over A's learned tokens, then B's (wavejax.data has no option for a given token array
    under a fixed vocabulary)."""
    import jax

    from wavejax.data.sampler import BatchSampler
    from wavejax.memory import eval as mem_eval
    from wavejax.train.loop import Trainer

    workdir = os.path.join(args.out, f"gpt_s{seed}")
    shutil.rmtree(workdir, ignore_errors=True)
    config = gpt_config(args, seed)
    trainer = Trainer(config, workdir)
    label = f"GPT {args.gpt}"
    rows, t0, probs = [], time.perf_counter(), gpt_probs_fn(trainer)
    try:
        if trainer.data.tokenizer.chars != tokenizer.chars:
            C.fail("the GPT's char vocabulary differs from the memory's; both must tokenize the same text.")
        for i, corpus in enumerate(("A", "B")):
            trainer.sampler = BatchSampler(parts[corpus][0], config.train.batch_size, config.model.block_size,
                                           config.seed + i)
            for _ in range(args.gpt_steps):
                trainer.state = trainer.train_step(trainer.state, *trainer.next_batch())[0]
            jax.block_until_ready(trainer.state)
            for target in (("A",) if corpus == "A" else ("A", "B")):
                phase = "A before B" if corpus == "A" else f"{target} after B"
                rows += [{**r, "phase": phase, "seed": seed} for r in
                         mem_eval.evaluate_probabilities(label, probs, sets[target], args.top_k)]
    finally:
        trainer.close()
    seconds = time.perf_counter() - t0
    print(f"seed {seed}: {label}: {args.gpt_steps} steps on A, {args.gpt_steps} on B "
          f"({args.gpt_steps * config.train.batch_size * config.model.block_size:,} tokens each), {seconds:.1f} s",
          flush=True)
    return rows, {"method": label, "seed": seed, "seconds": seconds, "steps": args.gpt_steps,
                  "tokens_per_phase": args.gpt_steps * config.train.batch_size * config.model.block_size}


def gpt_probs_fn(trainer, batch: int = 256):
    """histories [Q, H] -> the GPT's next-token probabilities [Q, V] from their last block_size tokens (one compiled
    program for every call; memory_eval.gpt_probs compiles anew at each call)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    block = trainer.config.model.block_size
    apply = jax.jit(lambda params, x: jax.nn.softmax(trainer.model.apply({"params": params}, x, True)[:, -1], axis=-1))

    def probs(histories):
        out = []
        for s in range(0, len(histories), batch):
            x = np.asarray(histories[s : s + batch, -block:], np.int32)
            n = len(x)
            x = np.concatenate([x, np.repeat(x[-1:], batch - n, axis=0)]) if n < batch else x
            out.append(np.asarray(apply(trainer.state.params, jnp.asarray(x)))[:n])
        return np.concatenate(out)

    return probs


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    gpt_note = ""
    if not args.no_gpt:
        try:
            g = gpt_config(args, 0)
        except WavejaxError as e:
            C.fail(str(e), e.exit_code)
        gpt_note = (f" GPT {args.gpt}: {args.gpt_steps:,} steps of {g.train.batch_size} x {g.model.block_size} tokens "
                    f"({args.gpt_steps * g.train.batch_size * g.model.block_size:,} tokens) on A, then as many on B; "
                    f"learning rate {g.train.lr:g}, flat after a {g.train.warmup_steps}-step warm-up.")
    try:
        tokenizer, parts, name = corpora(args)
    except WavejaxError as e:
        C.fail(str(e), e.exit_code)
    vocab = tokenizer.vocab_size
    sizes = {k: (len(v[0]), len(v[1])) for k, v in parts.items()}
    cad = sleep_config(sizes["A"][0] - min(args.lengths), args)
    note = (f"Corpora: {name} as characters (vocabulary {vocab}); A = the first half, B = the second half, each cut "
            f"90/10 into learned / held-out text: A {sizes['A'][0]:,} / {sizes['A'][1]:,} tokens, B {sizes['B'][0]:,} / "
            f"{sizes['B'][1]:,}. Store: 16^{args.levels} = {16 ** args.levels:,} slots, cosine decoder, no episodic "
            f"cache; sleep: {args.checks} check(s) per corpus (every {cad.every:,} pairs; min_pairs {cad.min_pairs:,}, "
            f"warm-up {cad.warmup:,}, valve {cad.valve:,}), {args.episodes} episodes per check. "
            f"{args.queries:,} scored queries per corpus and condition.{gpt_note}")
    print(note + f" Load average {os.getloadavg()[0]:.2f}.", flush=True)
    os.makedirs(args.out, exist_ok=True)
    rows: list[dict] = []
    mech: list[dict] = []
    for seed in args.seeds:
        sets = query_sets(parts, args, seed, vocab)
        new, m = memory_runs(args, parts, sets, seed, vocab)
        rows += new + ngram_rows(args, parts, sets, seed, vocab)
        mech += m
        if not args.no_gpt:
            try:
                new, m = gpt_rows(args, parts, sets, seed, tokenizer)
            except WavejaxError as e:
                C.fail(str(e), e.exit_code)
            rows += new
            mech.append(m)
    bad = [r for r in rows if not all(math.isfinite(r[k]) for k in ("exact", "nll") if r.get(k) is not None)]
    if bad:
        print(f"warning: {len(bad)} rows have non-finite metrics", file=sys.stderr)
    text = report(argv, args, rows, mech, note)
    print("\n" + text)
    with open(os.path.join(args.out, "rows.json"), "w", encoding="utf-8") as f:
        json.dump({"args": vars(args), "rows": rows, "mechanism": mech}, f, indent=1)
    C.write_md(args.md, text)
    C.write_results(args.results, MODULE, argv, results_data(args, rows, mech, note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
