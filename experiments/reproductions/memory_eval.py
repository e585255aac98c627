"""The holographic memory's evaluation table on tinyshakespeare (char tokens), with baselines on the same queries.

    python -m experiments.reproductions.memory_eval --out runs/memory_eval              # L = 4, 16, 64; seeds 0, 1, 2
    python -m experiments.reproductions.memory_eval --lengths 8 --seeds 0 --max_chars 20000 --levels 3 --queries 200 \
        --calibration 100 --gpt_seconds 0 --ngram_orders 3 --out runs/memory_eval_tiny  # seconds (the tests)

For every seed the same queries serve every method (history of --history tokens before each target):
  seen     targets in the training split, every window of which was written (episodic cache off)
  heldout  the second half of the held-out 10% (the first half calibrates the memory's softmax temperature)
  changed  seen queries with one token of the last L replaced by another
Methods:
  memory L=.. (decoder)       configs/holographic.py with context L and --levels, Haar embeddings, hash routing;
                              the decoders cosine, vorticity, coherence read the same memory
  memory L=.., faithful       the original's table (numpy seed 42), level-digit routing, Grace + coherence decoder
  ... + episodic cache        exact match with the cache consulted first (seen queries: the original's "100%")
  unigram, n-gram             add-one unigram; Witten-Bell interpolated n-grams (numpy, exact counts)
  GPT, equal wall time        configs/baseline.py:--gpt trained with wavejax.train for as long as the memory at the
                              largest L took to learn (warm: jit compile excluded on both sides), its learning-rate
                              schedule fitted to the steps that fit; then scored on the queries' last block_size tokens
  GPT, --gpt_seconds          the same GPT trained for --gpt_seconds (0: no such row)
Cells are mean ± sample std over seeds (seeds change the embeddings, the queries and the GPT's initialisation).
Outputs OUT/results.md and OUT/results.json; --results PATH also writes the claims ledger's summary (per method and
condition, [mean, std] over seeds of exact / top_k / nll).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

from experiments import common as C
from wavejax.errors import WavejaxError


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", default="4,16,64")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--levels", type=int, default=6)
    p.add_argument("--queries", type=int, default=5000)
    p.add_argument("--calibration", type=int, default=1000)
    p.add_argument("--history", type=int, default=64, help="tokens before each target (>= every L and n-1)")
    p.add_argument("--ngram_orders", default="3,5,7")
    p.add_argument("--max_chars", type=int, default=0, help="0: the whole corpus")
    p.add_argument("--gpt", default="baseline:nanogpt_cpu", help="config[:preset] of the GPT baseline")
    p.add_argument("--gpt_seconds", type=float, default=120.0, help="an extra GPT row trained this long (0: none)")
    p.add_argument("--no_gpt", action="store_true", help="leave out every GPT row")
    p.add_argument("--top_k", type=int, default=5)
    p.add_argument("--out", default="runs/memory_eval")
    C.add_results_arg(p, "memory_eval")
    args = p.parse_args(argv)
    try:
        args.lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
        args.seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
        args.ngram_orders = [int(x) for x in args.ngram_orders.split(",") if x.strip()]
    except ValueError:
        C.fail("--lengths, --seeds and --ngram_orders are comma-separated integers.")
    if not args.lengths or not args.seeds or min(args.lengths) < 1:
        C.fail("--lengths and --seeds need at least one value (lengths >= 1).")
    if args.history < max(args.lengths + [n - 1 for n in args.ngram_orders]):
        C.fail(f"--history ({args.history}) must be at least every L and every n-gram order minus one.")
    for name in ("queries", "calibration", "top_k", "levels"):
        if getattr(args, name) < 1:
            C.fail(f"--{name} must be >= 1.")
    return args


def memory_config(length: int, seed: int, args, faithful: bool = False):
    arg = "faithful" if faithful else None
    c = C.load_config("holographic", arg)
    c.seed, c.data.max_chars = seed, args.max_chars
    c.memory.context_length, c.memory.levels = length, args.levels
    c.eval.queries, c.eval.calibration, c.eval.top_k = args.queries, args.calibration, args.top_k
    c.eval.ngram_orders = tuple(args.ngram_orders)
    c.eval.progress = False
    return c


def learn_warm(config, data):
    """Learns twice and keeps the second (warm: jit compiles excluded from the time)."""
    from wavejax.memory import task

    task.learn(config, data, progress=False)
    return task.learn(config, data, progress=False)


# -- the GPT baseline -------------------------------------------------------------------------------------------------

def gpt_config(args, seed: int, steps: int):
    name, _, preset = args.gpt.partition(":")
    c = C.load_config(name, preset or None)
    c.seed = seed
    c.data.max_chars = args.max_chars
    c.train.steps = max(1, steps)
    c.train.decay_steps = 0
    c.train.warmup_steps = min(c.train.warmup_steps, max(1, steps // 10))
    c.train.eval_every = c.train.checkpoint_every = 10**9  # no evaluation or checkpoint inside the budget
    c.train.log_every = 10**9
    c.train.sample_tokens = 0
    c.train.progress = False
    return c


def train_gpt(args, seed: int, seconds: float, workdir: str):
    """A GPT trained for `seconds` of stepping (compile excluded): a short calibration run measures the step time, the
    run's warmup and cosine decay are spread over the steps that should fit, and it steps until the time is up
    (past the schedule's end at the final learning rate, if the machine turns out faster)."""
    import jax

    from wavejax.train.loop import Trainer

    def trainer_for(steps: int, path: str):
        shutil.rmtree(path, ignore_errors=True)
        return Trainer(gpt_config(args, seed, steps), path)

    def step(t):
        t.state = t.train_step(t.state, *t.next_batch())[0]
        jax.block_until_ready(t.state)

    probe = trainer_for(20, workdir + "_probe")
    step(probe)  # compile
    t0 = time.perf_counter()
    for _ in range(5):
        step(probe)
    per_step = (time.perf_counter() - t0) / 5
    probe.close()
    shutil.rmtree(workdir + "_probe", ignore_errors=True)

    trainer = trainer_for(int(seconds / per_step), workdir)  # the schedule's length; the clock decides the steps
    step(trainer)  # compile (not counted), then the budget
    done, t0 = 1, time.perf_counter()
    while time.perf_counter() - t0 < seconds - per_step:
        step(trainer)
        done += 1
    trained = time.perf_counter() - t0
    trainer.close()
    return trainer, done, trained


def gpt_probs(trainer, histories, batch: int = 256):
    import jax
    import jax.numpy as jnp
    import numpy as np

    block = trainer.config.model.block_size
    apply = jax.jit(lambda params, x: jax.nn.softmax(trainer.model.apply({"params": params}, x, True)[:, -1], axis=-1))
    out = []
    for s in range(0, len(histories), batch):
        x = np.asarray(histories[s : s + batch, -block:], np.int32)
        pad = batch - len(x)
        x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]) if pad else x
        out.append(np.asarray(apply(trainer.state.params, jnp.asarray(x)))[: batch - pad])
    return np.concatenate(out)


# -- the table -----------------------------------------------------------------------------------------------------------

def summarise(rows: list[dict], conditions) -> str:
    """One markdown table per condition: mean ± std over seeds of exact, top-k, NLL, plus learn time."""
    parts = []
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for condition in conditions:
        lines = []
        for method in methods:
            sel = [r for r in rows if r["method"] == method and r["condition"] == condition]
            if not sel:
                continue
            cell = lambda key, fmt="{:.3f}": C.fmt_mean_std([r[key] for r in sel if r.get(key) is not None], fmt, show_n=False)  # noqa: E731
            lines.append([method, cell("exact"), cell("top_k"), cell("nll"), cell("learn_s", "{:.1f}"), len(sel)])
        parts.append(f"### {condition}\n\n" + C.markdown_table(
            ["method", "exact match", "top-5", "NLL (nats/token)", "learn / train s", "seeds"], lines))
    return "\n\n".join(parts)


def memory_rows(args, data, sets, seed: int, keys: dict) -> tuple[list[dict], dict]:
    """The memory's rows for one seed (every L, sound and faithful; each store learned warm) and {L: learn seconds of
    the sound store}; keys[method] = its place in the results file."""
    from wavejax.memory import eval as mem_eval
    from wavejax.memory import task

    rows, learn_s = [], {}
    for length in args.lengths:
        for faithful in (False, True):
            config = memory_config(length, seed, args, faithful)
            spec, memory, seconds, pairs = learn_warm(config, data)
            label = f"memory L={length}" + (", faithful" if faithful else "")
            decoders = ("coherence",) if faithful else ("cosine", "vorticity", "coherence")
            new = mem_eval.evaluate_memory(spec, memory, sets, decoders, args.top_k, label=label)
            new.append(mem_eval.cache_row(spec, memory, sets["seen"][1], decoders[0], label=label))
            load = task.store.slot_load(memory)
            for r in new:
                r.update(seed=seed, learn_s=seconds, pairs=pairs, slots_used=load["slots_used"])
            rows += new
            prefix = "faithful_" if faithful else ""
            for d in decoders:
                keys[f"{label} ({d})"] = ("memory", length, prefix + d)
            keys[f"{label} ({decoders[0]}) + episodic cache"] = ("memory", length, f"{prefix}{decoders[0]}_cache")
            if not faithful:
                learn_s[length] = seconds
            print(f"seed {seed}, L={length}{' faithful' if faithful else ''}: learned {pairs:,} pairs in "
                  f"{seconds:.2f} s; {load['slots_used']:,} slots used", flush=True)
            del memory
    return rows, learn_s


def baseline_rows(args, data, sets, seed: int, learn_s: dict, models: dict, keys: dict) -> list[dict]:
    """The unigram's, the n-grams' and (unless --no_gpt) the GPT's rows for one seed; models = {name: probs_fn} of
    the unigram and the n-grams."""
    from wavejax.memory import eval as mem_eval

    rows = []
    for name, probs in models.items():
        rows += mem_eval.evaluate_probabilities(name, probs, sets, args.top_k)
        keys[name] = ("baselines", "unigram" if name == "unigram" else f"ngram_{name.split('-')[0]}")
    if not args.no_gpt:
        budgets = [("equal wall time", learn_s[max(args.lengths)])] + ([("fixed", args.gpt_seconds)] if args.gpt_seconds > 0 else [])
        for kind, seconds in budgets:
            trainer, steps, trained = train_gpt(args, seed, seconds, os.path.join(args.out, f"gpt_s{seed}_{kind.replace(' ', '_')}"))
            if trainer.data.tokenizer.chars != data.tokenizer.chars:
                C.fail("the GPT's char vocabulary differs from the memory's; both must tokenize the same text.")
            label = f"GPT {args.gpt}, " + ("equal wall time" if kind != "fixed" else f"{args.gpt_seconds:g} s")
            new = mem_eval.evaluate_probabilities(label, lambda h: gpt_probs(trainer, h), sets, args.top_k)
            for r in new:
                r.update(learn_s=trained, steps=steps)
            rows += new
            keys[label] = ("gpt", "equal_wall_time" if kind != "fixed" else "fixed")
            print(f"seed {seed}: {label}: {steps} steps in {trained:.1f} s", flush=True)
    for r in rows:
        r["seed"] = seed
    return rows


def results_data(args, rows: list[dict], keys: dict, data) -> dict:
    """What the claims ledger reads: per method (keys) and condition, [mean, std] over seeds of exact, top_k, nll (and
    the cache's hits); per method its learn / train seconds (and the GPT's steps)."""
    from wavejax.memory import eval as mem_eval

    out: dict = {}
    for method, path in keys.items():
        node = out
        for part in path:
            node = node.setdefault(part, {})
        mine = [r for r in rows if r["method"] == method]
        for condition in mem_eval.CONDITIONS:
            sel = [r for r in mine if r["condition"] == condition]
            if sel:
                node[condition] = {m: C.mean_std([r.get(m) for r in sel])[:2] for m in ("exact", "top_k", "nll", "cache_hits")
                                   if any(r.get(m) is not None for r in sel)}
        firsts = [r for r in mine if r["condition"] == mine[0]["condition"]]  # one row per seed
        for m in ("learn_s", "steps", "pairs"):
            if any(r.get(m) is not None for r in firsts):
                node[m] = C.mean_std([r.get(m) for r in firsts])[:2]
    return {**out, "corpus": data.name, "vocab": data.tokenizer.vocab_size, "lengths": args.lengths, "seeds": args.seeds,
            "levels": args.levels, "queries": args.queries, "calibration": args.calibration, "history": args.history,
            "top_k": args.top_k, "max_chars": args.max_chars, "gpt_config": None if args.no_gpt else args.gpt,
            "gpt_seconds": args.gpt_seconds}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    import numpy as np

    from wavejax.memory import eval as mem_eval
    from wavejax.memory import task

    os.makedirs(args.out, exist_ok=True)
    rows: list[dict] = []
    try:
        base = memory_config(args.lengths[0], args.seeds[0], args)
        data = task.load_tokens(base)
    except WavejaxError as e:
        C.fail(str(e), e.exit_code)
    vocab = data.tokenizer.vocab_size
    print(f"{data.name}: {len(data.train):,} train / {len(data.heldout):,} held-out {base.data.tokenizer} tokens, "
          f"vocabulary {vocab}; load average {os.getloadavg()[0]:.2f}", flush=True)
    unigram = mem_eval.unigram_probs(data.train, vocab)
    models = {"unigram": lambda h: np.broadcast_to(unigram, (len(h), vocab))}
    models.update({f"{n}-gram (Witten-Bell)": mem_eval.NGramModel(data.train, vocab, n).probs for n in args.ngram_orders})

    keys: dict = {}  # method -> its place in the results file
    for seed in args.seeds:
        sets = mem_eval.query_sets(data.train, data.heldout, args.queries, args.calibration, args.history,
                                   min(args.lengths), vocab, seed)
        new, learn_s = memory_rows(args, data, sets, seed, keys)
        rows += new + baseline_rows(args, data, sets, seed, learn_s, models, keys)

    table = summarise(rows, mem_eval.CONDITIONS)
    with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as f:
        f.write(table + "\n")
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"args": vars(args), "rows": rows}, f, indent=1)
    print("\n" + table)
    C.write_results(args.results, "experiments.reproductions.memory_eval", argv, results_data(args, rows, keys, data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
