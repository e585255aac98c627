"""Task "memory": `python -m wavejax.main --config=configs/holographic.py --workdir=DIR` learns a corpus into the
holographic store, saves it with orbax, writes and prints the evaluation table, and samples text.

The run directory holds config.json, tokenizer.json, memory/ (orbax: the embeddings, the non-empty slots and the
episodic cache), memory_meta.json (pairs, learning time), eval.json and eval.md, and samples.txt. Rerunning with the
same directory restores the saved memory instead of learning it again; a different data or memory config (or seed)
is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from wavejax.data import sources, tokenizers
from wavejax.errors import CheckpointError, ConfigError, DataError, display_path, storage_error
from wavejax.memory import decode, sleep, so4, store
from wavejax.memory import eval as mem_eval
from wavejax.memory.clifford import PHI
from wavejax.rundir import RunDir, fingerprint, fingerprints_match, read_json, warn, write_atomic
from wavejax.runlog import MetricWriter, drop_metrics_after

MEMORY_DIR = "memory"
META_FILE = "memory_meta.json"
# The saved layout's version: 2 = the episodic cache as an open-addressing table keyed by rolling window hashes
# (wavejax/memory/episodic.py). A save of another version is moved aside and learned again, like a damaged one.
MEMORY_FORMAT = 2
FIXED_SECTIONS = ("data", "memory")  # what the saved memory depends on; eval.* may change between reruns


# -- config ---------------------------------------------------------------------------------------------------------------

def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def default_memory_config() -> ml_collections.ConfigDict:
    """config.memory: the store's sound defaults (configs/holographic.py adds the presets)."""
    m = ml_collections.ConfigDict()
    m.context_length = 64  # tokens per context (the original's production value, in words)
    m.levels = 6  # 16^levels slots (6: 16.8M slots, 1.07 GB of float32 on the device; saved sparsely)
    m.routing = "hash"  # hash (uniform over all 16 keys) | digits (the original's)
    m.embedding = "haar"  # haar | qr_faithful | original | ppmi | ppmi_faithful
    m.decoder = "cosine"  # used for sampling and the cache fallback: cosine | vorticity | coherence
    m.position_scales = 2  # the original's fractal position rotations (0 = none)
    m.key_power = 3  # keys: trunc(c_k s_k^n / res)
    m.key_resolution = PHI**-12
    m.learning_rate = 1 / PHI  # the binding weight
    m.episodic = True  # the exact-match cache (sampling and the "+ episodic cache" row)
    m.shard_writes = True  # split each chunk's writes over the local devices (the memory is replicated)
    m.write_batch = 65536  # windows per compiled write (rounded to a multiple of the context length)
    # The sleeping half (wavejax/memory/sleep.py): every `sleep_every` pairs, collect episodes and sleep when the
    # original's schedule says so (0 = never sleep: the store alone, as learned in one pass).
    m.sleep_every = 0  # pairs between sleep checks (the original: 409,600 = 50 batches of 8192)
    m.sleep_min_pairs = 100_000  # pairs since the last sleep before any trigger counts
    m.sleep_warmup = 50_000  # pairs before the stability trigger counts
    m.sleep_valve = 500_000  # pairs since the last sleep that force one
    m.sleep_episodes = 819  # windows collected per check (the original: 10% of a batch)
    m.sleep_buffer = 4096  # episode buffer capacity
    m.sleep_prototypes = 4096  # prototype table capacity
    m.sleep_schemas = 4096  # schema table capacity; a full table evicts, then drops (schemas_dropped in each sleep's log)
    m.sleep_faithful = False  # the original's exact clustering, merge similarity and survival test

    return m


def default_eval_config() -> ml_collections.ConfigDict:
    """config.eval: the evaluation table and the samples."""
    e = ml_collections.ConfigDict()
    e.queries = 5000  # scored queries per condition
    e.calibration = 1000  # further queries per condition that fit the softmax temperature
    e.top_k = 5
    e.decoders = ("cosine", "vorticity", "coherence")
    e.ngram_orders = (3, 5, 7)
    e.sample_tokens = 300
    e.sample_prompt = ""  # "": one prompt of training text and one of held-out text, each L tokens
    e.temperature = 1.0  # 0 = the top score
    e.progress = True
    return e


def validate_task(config) -> None:
    """One ConfigError sentence for the first impossible value of the data, memory and eval sections."""
    d, m, e = config.data, config.memory, config.eval
    sources.check_data_config(d)

    _require(1 <= m.context_length <= 4096, f"memory.context_length must be in 1..4096, got {m.context_length}.")
    _require(1 <= m.levels <= store.MAX_LEVELS,
             f"memory.levels must be in 1..{store.MAX_LEVELS} (16^levels slots of 68 bytes), got {m.levels}.")
    for key, allowed in (("routing", store.ROUTINGS), ("decoder", store.DECODERS), ("embedding", so4.EMBEDDINGS)):
        _require(m[key] in allowed, f"memory.{key} must be one of {allowed}, got {m[key]!r}.")
    _require(m.position_scales >= 0, f"memory.position_scales must be >= 0 (0 = no position rotations), got {m.position_scales}.")
    _require(m.key_power >= 0, f"memory.key_power must be >= 0, got {m.key_power}.")
    for key in ("key_resolution", "learning_rate"):
        _require(m[key] > 0, f"memory.{key} must be > 0, got {m[key]}.")
    _require(m.write_batch >= m.context_length,
             f"memory.write_batch ({m.write_batch}) must be at least memory.context_length ({m.context_length}).")
    _require(m.get("sleep_every", 0) >= 0, f"memory.sleep_every must be >= 0 (0 = never sleep), got {m.get('sleep_every')}.")
    for key in ("sleep_min_pairs", "sleep_warmup", "sleep_valve"):
        _require(m.get(key, 0) >= 0, f"memory.{key} must be >= 0, got {m.get(key)}.")
    for key in ("sleep_episodes", "sleep_buffer", "sleep_prototypes", "sleep_schemas"):
        _require(m.get(key, 1) >= 1, f"memory.{key} must be >= 1, got {m.get(key)}.")

    for key in ("queries", "calibration", "top_k"):
        _require(e[key] >= 1, f"eval.{key} must be >= 1, got {e[key]}.")
    _require(len(e.decoders) > 0 and all(x in store.DECODERS for x in e.decoders),
             f"eval.decoders must be a non-empty subset of {store.DECODERS}, got {tuple(e.decoders)}.")
    _require(all(int(n) >= 1 for n in e.ngram_orders), f"eval.ngram_orders must be >= 1, got {tuple(e.ngram_orders)}.")
    _require(e.sample_tokens >= 0, f"eval.sample_tokens must be >= 0, got {e.sample_tokens}.")
    _require(e.temperature >= 0, f"eval.temperature must be >= 0 (0 = the top score), got {e.temperature}.")


def store_spec(config, vocab_size: int) -> store.StoreSpec:
    m = config.memory
    return store.StoreSpec(vocab_size=vocab_size, context_length=m.context_length, levels=m.levels, routing=m.routing,
                           key_power=m.key_power, key_resolution=float(m.key_resolution),
                           position_scales=m.position_scales, learning_rate=float(m.learning_rate),
                           stream_chunk=m.write_batch)


def history_length(config) -> int:
    """Tokens before each query target: enough for the memory's window and the longest n-gram context."""
    return max([config.memory.context_length] + [int(n) - 1 for n in config.eval.ngram_orders])


# -- data -----------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class CorpusTokens:
    tokenizer: object
    train: np.ndarray
    heldout: np.ndarray
    name: str


def load_tokens(config, tokenizer=None) -> CorpusTokens:
    """The corpus split into train and held-out token arrays (wavejax.data sources and tokenizers; char: the
    vocabulary of the whole text, BPE: trained on the train split). Writes nothing."""
    corpus = sources.load_corpus(config.data)
    if tokenizer is None:
        text = corpus.train + corpus.val if config.data.tokenizer == "char" else corpus.train
        tokenizer = tokenizers.train_tokenizer(config.data, text)
    train = tokenizer.encode(corpus.train).astype(np.int32)
    heldout = tokenizer.encode(corpus.val).astype(np.int32)
    need = history_length(config) + 2
    for split, ids in (("train", train), ("held-out", heldout)):
        if len(ids) < 2 * need:
            raise DataError(f"the {split} split of {corpus.name} has {len(ids)} tokens, fewer than the {2 * need} the "
                            "evaluation needs; use a larger corpus or a shorter memory.context_length.")
    return CorpusTokens(tokenizer, train, heldout, corpus.name)


# -- learning, saving, restoring ------------------------------------------------------------------------------------------

def sleep_config(config) -> sleep.SleepConfig:
    m = config.memory
    return sleep.SleepConfig(every=int(m.sleep_every), min_pairs=int(m.sleep_min_pairs), warmup=int(m.sleep_warmup),
                             valve=int(m.sleep_valve), episodes=int(m.sleep_episodes), buffer=int(m.sleep_buffer),
                             prototypes=int(m.sleep_prototypes), schemas=int(m.sleep_schemas),
                             faithful=bool(m.sleep_faithful))


def learn(config, data: CorpusTokens, progress: bool = True):
    """(spec, memory, seconds, pairs): learn_with_state without the sleep state."""
    return learn_with_state(config, data, progress)[:4]


def learn_with_state(config, data: CorpusTokens, progress: bool = True, on_sleep=None):
    """(spec, memory, seconds, pairs, sleep state or None): the embedding table, then every (window, next token) pair
    of the train split; with memory.sleep_every > 0, in segments with the sleep schedule (on_sleep(pairs, metrics)
    after each sleep; the sleeps' key is the run's seed)."""
    t0 = time.perf_counter()
    spec = store_spec(config, data.tokenizer.vocab_size)
    table = so4.embedding_table(config.memory.embedding, spec.vocab_size, config.seed, tokens=data.train)
    memory = store.init_memory(spec, table)
    shard = config.memory.get("shard_writes", True)
    state = None
    if config.memory.get("sleep_every", 0) > 0:
        memory, state, pairs, _ = sleep.learn_with_sleep(spec, memory, data.train, sleep_config(config),
                                                         jax.random.key(config.seed), use_cache=config.memory.episodic,
                                                         on_sleep=on_sleep, shard=shard)
    else:
        memory, pairs = store.learn_stream(spec, memory, data.train, use_cache=config.memory.episodic, progress=progress,
                                           shard=shard)
    jax.block_until_ready(memory)
    return spec, memory, time.perf_counter() - t0, pairs, state


SLEEP_PREFIX = "sleep__"  # flat keys: orbax names files by them


def to_payload(memory: store.Memory, state: sleep.SleepState | None = None) -> dict:
    """The memory without its empty slots (at 16^6 slots the dense array is 1 GiB; a corpus fills a few percent), and
    the sleep state (prototypes, schemas, episode buffer, counters) under "sleep/..." keys when there is one."""
    counts = np.asarray(memory.counts)
    used = np.nonzero(counts)[0].astype(np.int32)
    c = memory.cache
    payload = {"embeddings": memory.embeddings, "slot_index": used, "slot_value": np.asarray(memory.slots)[used],
               "slot_count": counts[used], "cache_h1": c.h1, "cache_h2": c.h2, "cache_target": c.target,
               "cache_size": c.size}
    if state is not None:
        for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
            payload[SLEEP_PREFIX + jax.tree_util.keystr(path, simple=True, separator="__")] = leaf
    return payload


def sleep_state_from_payload(payload: dict, config) -> sleep.SleepState | None:
    """The sleep state saved with the memory, or None when the run did not sleep."""
    if not any(k.startswith(SLEEP_PREFIX) for k in payload):
        return None
    template = sleep.init_state(sleep_config(config))
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = [jnp.asarray(payload[SLEEP_PREFIX + jax.tree_util.keystr(p, simple=True, separator="__")]) for p, _ in paths]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def from_payload(spec: store.StoreSpec, payload: dict) -> store.Memory:
    idx = jnp.asarray(payload["slot_index"])
    slots = jnp.zeros((spec.n_slots, 4, 4), jnp.float32).at[idx].set(jnp.asarray(payload["slot_value"]))
    counts = jnp.zeros((spec.n_slots,), jnp.int32).at[idx].set(jnp.asarray(payload["slot_count"]))
    cache = store.EpisodicCache(h1=jnp.asarray(payload["cache_h1"]), h2=jnp.asarray(payload["cache_h2"]),
                                target=jnp.asarray(payload["cache_target"]), size=jnp.asarray(payload["cache_size"]))
    embeddings = jnp.asarray(payload["embeddings"])
    return store.Memory(embeddings=embeddings, table=jnp.asarray(store.context_table(spec, embeddings)), slots=slots,
                        counts=counts, cache=cache)


def save_memory(workdir: str, memory: store.Memory, meta: dict, state: sleep.SleepState | None = None) -> None:
    """Saves the memory with orbax, then its meta file (with the payload's fingerprint): the meta file's presence
    marks a complete save."""
    import orbax.checkpoint as ocp

    path = os.path.join(os.path.abspath(workdir), MEMORY_DIR)
    shutil.rmtree(path, ignore_errors=True)  # left by an interrupted save (no meta file was written after it)
    payload = to_payload(memory, state)
    try:
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(path, payload)
        checkpointer.wait_until_finished()
    except Exception as e:  # orbax reports a failed write (a full disk) as ValueError or OSError
        raise storage_error(e, display_path(path)) from None
    write_atomic(os.path.join(workdir, META_FILE),
                 json.dumps({**meta, "format": MEMORY_FORMAT, "fingerprint": fingerprint(payload)}, indent=2))


def restore_memory(workdir: str, spec: store.StoreSpec, config=None):
    """(memory, meta, sleep state or None): the saved memory, restored into abstract targets built from the
    checkpoint's own metadata (the sleep state needs the run's config for its shapes); a damaged save is a
    CheckpointError."""
    import orbax.checkpoint as ocp

    path = os.path.join(os.path.abspath(workdir), MEMORY_DIR)
    meta = read_json(os.path.join(workdir, META_FILE), "the saved memory's description")
    if meta.get("format", 1) != MEMORY_FORMAT:
        raise CheckpointError(f"the memory saved in {display_path(path)} has format {meta.get('format', 1)} (an older "
                              f"wavejax), this one reads format {MEMORY_FORMAT}")
    checkpointer = ocp.StandardCheckpointer()
    try:
        tree = checkpointer.metadata(path).item_metadata.tree
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # the memory is replicated when used
        target = {k: jax.ShapeDtypeStruct(tuple(v.shape), v.dtype, sharding=device) for k, v in tree.items()}
        payload = checkpointer.restore(path, target)
    except Exception as e:
        reason = str(e).splitlines()[0][:120] if str(e).strip() else e.__class__.__name__
        raise CheckpointError(f"the memory saved in {display_path(path)} cannot be read ({reason})") from None
    if tuple(payload["embeddings"].shape) != (spec.vocab_size, 4, 4):
        raise CheckpointError(f"the memory saved in {display_path(path)} has another vocabulary")
    if "fingerprint" in meta and not fingerprints_match(fingerprint(payload), meta["fingerprint"]):
        raise CheckpointError(f"the memory saved in {display_path(path)} differs from the one that was saved")
    state = sleep_state_from_payload(payload, config) if config is not None else None
    return from_payload(spec, payload), meta, state


def _restore_or_relearn(workdir: str, spec: store.StoreSpec, config):
    """(memory, meta, sleep state), or None when the saved memory is damaged or of another format: it is moved aside
    (never deleted) to be learned again, which gives the same memory (learning is a deterministic function of the data
    and the config)."""
    try:
        return restore_memory(workdir, spec, config)
    except CheckpointError as e:
        src = os.path.join(workdir, MEMORY_DIR)
        dest, i = src + ".damaged", 1
        while os.path.exists(dest):
            dest, i = f"{src}.damaged.{i}", i + 1
        try:
            if os.path.exists(src):
                os.replace(src, dest)
            os.remove(os.path.join(workdir, META_FILE))
        except OSError as err:
            raise storage_error(err, display_path(src)) from None
        warn(f"{e}; moved it to {display_path(dest)} and learning the memory again.")
        return None


# -- evaluation and sampling ------------------------------------------------------------------------------------------------

def evaluate(config, spec, memory, data: CorpusTokens) -> list[dict]:
    """The evaluation table's rows: the memory under each decoder, the cache's exact match on seen pairs, and the
    unigram and n-gram baselines, all on the same queries."""
    e = config.eval
    sets = mem_eval.query_sets(data.train, data.heldout, e.queries, e.calibration, history_length(config),
                               spec.context_length, spec.vocab_size, config.seed)
    rows = mem_eval.evaluate_memory(spec, memory, sets, tuple(e.decoders), e.top_k)
    if config.memory.episodic:
        rows.append(mem_eval.cache_row(spec, memory, sets["seen"][1], config.memory.decoder))
    unigram = mem_eval.unigram_probs(data.train, spec.vocab_size)
    rows += mem_eval.evaluate_probabilities("unigram", lambda h: np.broadcast_to(unigram, (len(h), len(unigram))),
                                            sets, e.top_k)
    for order in e.ngram_orders:
        model = mem_eval.NGramModel(data.train, spec.vocab_size, int(order))
        rows += mem_eval.evaluate_probabilities(f"{int(order)}-gram (Witten-Bell)", model.probs, sets, e.top_k)
    return rows


def samples(config, spec, memory, data: CorpusTokens, tau: float) -> dict[str, str]:
    """{prompt label: prompt + generated text}. Without eval.sample_prompt: one prompt of seen text (the first L
    training tokens: the cache, if on, continues it from memory) and one of held-out text."""
    e = config.eval
    if e.sample_prompt:
        prompts = {"prompt": data.tokenizer.encode(e.sample_prompt)}
    else:
        prompts = {"training text": data.train[: spec.context_length], "held-out text": data.heldout[: spec.context_length]}
    out = {}
    for label, prompt in prompts.items():
        ids = decode.generate(spec, memory, prompt, e.sample_tokens, jax.random.PRNGKey(config.seed),
                             decoder=config.memory.decoder, temperature=e.temperature, tau=tau,
                             use_cache=config.memory.episodic)
        out[label] = data.tokenizer.decode(np.concatenate([prompt, ids]))
    return out


def _check_sample_prompt(config, tokenizer) -> None:
    e = config.eval
    if e.sample_tokens and e.sample_prompt:
        try:
            tokenizer.encode(e.sample_prompt)
        except DataError:
            raise ConfigError(f"eval.sample_prompt {e.sample_prompt!r} has characters that are not in the corpus's "
                              "vocabulary; use text from the corpus, or --config.eval.sample_tokens=0.") from None


def run_task(config, workdir: str) -> dict:
    """Learns (or restores), evaluates and samples; returns the summary whose "message" the CLI prints."""
    rundir = RunDir(workdir, "memory", FIXED_SECTIONS)
    reuse = rundir.check(config) and os.path.exists(os.path.join(workdir, META_FILE))
    saved_tokenizer = tokenizers.load_tokenizer(workdir) if reuse else None
    data = load_tokens(config, saved_tokenizer)
    _check_sample_prompt(config, data.tokenizer)
    rundir.acquire(config, jax.process_index())  # config and data passed every check: now the folder may be written
    try:
        return _run(config, workdir, data, reuse)
    finally:
        rundir.release()


def _sleep_logger(workdir: str):
    """on_sleep for learn_with_state: each sleep's metrics to metrics.jsonl and TensorBoard (split "sleep", step =
    pairs written) and one printed line. A memory learned again starts its records afresh."""
    drop_metrics_after(workdir, 0)
    writer = MetricWriter(workdir)

    def on_sleep(pairs: int, metrics: dict) -> None:
        writer.write(pairs, "sleep", metrics)
        print(f"sleep {int(metrics['sleeps'])} at {pairs:,} pairs: {int(metrics['prototypes'])} prototypes, "
              f"{int(metrics['schemas_promoted'])} schemas, consolidation ratio {metrics['consolidation_ratio']:.3f}, "
              f"stability {metrics['stability_before']:.3f} -> {metrics['stability_after']:.3f}", flush=True)

    return on_sleep


def _run(config, workdir: str, data: CorpusTokens, reuse: bool) -> dict:
    if not reuse:
        tokenizers.save_tokenizer(data.tokenizer, workdir)
    spec = store_spec(config, data.tokenizer.vocab_size)
    restored = _restore_or_relearn(workdir, spec, config) if reuse else None
    if restored is not None:
        memory, meta, _ = restored
        print(f"restored the memory saved in {workdir} ({meta['pairs']:,} pairs, learned in {meta['learn_seconds']:.1f} s)")
    else:
        print(f"learning {len(data.train) - spec.context_length:,} pairs of {data.name} ({config.data.tokenizer} tokens, "
              f"vocabulary {spec.vocab_size}, context {spec.context_length}, {spec.n_slots:,} slots)", flush=True)
        spec, memory, seconds, pairs, state = learn_with_state(config, data, progress=config.eval.progress,
                                                               on_sleep=_sleep_logger(workdir))
        meta = {"pairs": pairs, "learn_seconds": seconds, "writes_per_s": pairs / seconds, **store.slot_load(memory),
                "cache_size": int(memory.cache.size), "backend": jax.default_backend()}
        if state is not None:
            meta.update(sleeps=int(state.sleeps), prototypes=int(state.prototypes.valid.sum()),
                        schemas_promoted=int(state.schemas.promoted.sum()))
        save_memory(workdir, memory, meta, state)
        print(f"learned {pairs:,} pairs in {seconds:.1f} s; saved to {os.path.join(workdir, MEMORY_DIR)}")

    rows = evaluate(config, spec, memory, data)
    table = mem_eval.results_table(rows, config.eval.top_k)
    meta = {k: v for k, v in meta.items() if k != "fingerprint"}
    write_atomic(os.path.join(workdir, "eval.json"), json.dumps({"rows": rows, "meta": meta}, indent=2))
    write_atomic(os.path.join(workdir, "eval.md"), table + "\n")
    print(table)

    decoder = config.memory.decoder
    tau = next((r["tau"] for r in rows if r["method"] == f"memory ({decoder})" and r["condition"] == "heldout"), 1.0)
    texts = samples(config, spec, memory, data, tau) if config.eval.sample_tokens else {}
    # Rewritten, not appended: a rerun evaluates and samples the same memory again (the same text, unless eval.*
    # changed), so the file holds the latest evaluation's samples once.
    write_atomic(os.path.join(workdir, "samples.txt"), "".join(
        f"=== {label}; decoder {decoder}, temperature {config.eval.temperature} ===\n{text}\n\n"
        for label, text in texts.items()))
    for label, text in texts.items():
        print(f"sample ({label}):\n{text}\n")

    def pick(method, condition):
        return next((r["exact"] for r in rows if r["method"] == method and r["condition"] == condition), float("nan"))

    best_ngram = max((pick(f"{int(n)}-gram (Witten-Bell)", "heldout") for n in config.eval.ngram_orders), default=float("nan"))
    message = (f"{meta['pairs']:,} pairs ({meta['writes_per_s']:,.0f} writes/s); exact match with {decoder}: seen "
               f"{pick(f'memory ({decoder})', 'seen'):.3f}, held-out {pick(f'memory ({decoder})', 'heldout'):.3f} "
               f"(best n-gram {best_ngram:.3f}); table in {os.path.join(workdir, 'eval.md')}")
    return {"message": message, "rows": rows, "meta": meta, "samples": texts, "workdir": workdir}
