"""The sleep schedule of the original's production loop (spec: docs/specs/holographic.md section 5.1) over the sleeping
half's phases: learning a stream in segments, collecting episodes, deciding when to sleep, and the five phases of an
integrated sleep.

    every check (config.every pairs written; the original: 50 batches of 8192)
        episodes   `episodes` windows of the segment just written, drawn uniformly (keyed), join the buffer
        decide     should_dream: >= min_pairs since the last sleep AND (tower stability < phi^-2 after `warmup`
                   pairs, OR an error rate > phi^-1 where the caller measures one, OR >= valve pairs since the last)
    integrated sleep (dreaming/integration.py, five phases in this order)
        1 systems NREM   consolidation.consolidate: episodes -> prototypes (the buffer is emptied)
        2 tower NREM     tower.non_rem, rho = phi^-2: the witness of every active slot pulled toward the grand master
        3 systems REM    recombination.recombine: prototype pairs -> schemas
        4 tower REM      tower.rem, scale phi^-3: keyed jitter kept where a slot's coherence rises
        5 pruning        consolidation.prune

Faithful (`SleepConfig.faithful`): the original's exact basin-key clustering, merge similarity and survival test.
Default: clusters of similar contexts and a survival test that can fail (consolidation.py and recombination.py say
why). The original's error-rate trigger needs its evaluate_semantic on 20 pairs of each batch; learn_with_sleep does
not measure it (error_rate=None), so its sleeps come from the stability and valve triggers.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from wavejax.memory import consolidation, recombination, store, tower
from wavejax.memory.clifford import PHI
from wavejax.memory.prototypes import Episodes, Prototypes, Schemas, empty_episodes, empty_prototypes, empty_schemas

STABILITY_TRIGGER = PHI**-2
ERROR_TRIGGER = 1.0 / PHI


@dataclasses.dataclass(frozen=True)
class SleepConfig:
    every: int = 409_600  # pairs between checks (the original: every 50 batches of 8192)
    min_pairs: int = 100_000  # pairs since the last sleep before any trigger counts
    warmup: int = 50_000  # pairs before the stability trigger counts
    valve: int = 500_000  # pairs since the last sleep that force one
    episodes: int = 819  # windows collected per check (the original: 10% of a batch of 8192)
    buffer: int = 4096  # episode buffer capacity (a full buffer keeps the newest)
    prototypes: int = 4096  # prototype table capacity
    schemas: int = 4096  # schema table capacity (full: evictions, then drops, counted as schemas_dropped per sleep)
    targets: int = 16  # targets kept per prototype
    faithful: bool = False  # the original's clustering, merge similarity and survival test
    cluster: str = ""  # "" = similar (exact when faithful); or similar | exact | key
    survival: str = ""  # "" = sound (faithful when faithful); or sound | faithful

    @property
    def cluster_mode(self) -> str:
        return self.cluster or ("exact" if self.faithful else "similar")

    @property
    def survival_mode(self) -> str:
        return self.survival or ("faithful" if self.faithful else "sound")


class SleepState(flax.struct.PyTreeNode):
    episodes: Episodes
    prototypes: Prototypes
    schemas: Schemas
    pairs: jnp.ndarray  # [] int32: pairs written
    since: jnp.ndarray  # [] pairs since the last sleep
    sleeps: jnp.ndarray  # [] sleeps so far


def init_state(config: SleepConfig) -> SleepState:
    zero = jnp.zeros((), jnp.int32)
    return SleepState(episodes=empty_episodes(config.buffer), prototypes=empty_prototypes(config.prototypes, config.targets),
                      schemas=empty_schemas(config.schemas), pairs=zero, since=zero, sleeps=zero)


def should_dream(pairs_since: int, pairs_total: int, stability: float, config: SleepConfig,
                 error_rate: float | None = None) -> bool:
    """The original's should_dream: enough pairs since the last sleep, and one of the stability, error-rate or
    safety-valve triggers."""
    if pairs_since < config.min_pairs:
        return False
    unstable = pairs_total >= config.warmup and stability < STABILITY_TRIGGER
    erring = error_rate is not None and error_rate > ERROR_TRIGGER
    return bool(unstable or erring or pairs_since >= config.valve)


@jax.jit
def _stability(memory: store.Memory):
    return tower.tower_stability(memory.slots, memory.counts)


@functools.lru_cache(maxsize=16)
def _sleep_fn(config: SleepConfig):
    """The jitted integrated sleep for one SleepConfig (frozen, hashable): compiled once per config, not per call."""
    cluster, survival, faithful = config.cluster_mode, config.survival_mode, config.faithful

    @jax.jit
    def sleep(slots, counts, state: SleepState, key):
        k_sys, k_rem, k_tower = jax.random.split(key, 3)
        before = tower.tower_stability(slots, counts)
        protos, episodes, m_sys = consolidation.consolidate(state.episodes, state.prototypes, k_sys,
                                                            schemas=state.schemas, cluster=cluster, faithful=faithful)
        slots = tower.non_rem(slots, counts)
        schemas, m_rem = recombination.recombine(protos, state.schemas, k_rem, survival=survival)
        slots, accepted = tower.rem(slots, counts, k_tower)
        protos, pruned = consolidation.prune(protos)
        active = jnp.maximum(jnp.sum(counts > 0), 1)
        metrics = {"stability_before": before, "stability_after": tower.tower_stability(slots, counts),
                   "rem_accept_fraction": jnp.sum(accepted) / active,
                   "prototypes": jnp.sum(protos.valid), "schemas_promoted": m_rem["promoted"],
                   "schemas_new": m_rem["promoted_new"], "schemas_dropped": m_rem["dropped"],
                   "recombined": m_rem["pairs"], "survived": m_rem["survived"],
                   "consolidation_ratio": m_sys["consolidation_ratio"], "episodes": m_sys["episodes"],
                   "formed": m_sys["formed"], "merged": m_sys["merged"], "pruned": m_sys["pruned"] + pruned,
                   "target_entropy": jnp.sum(jnp.where(protos.valid, consolidation.target_entropy(protos), 0.0))
                   / jnp.maximum(jnp.sum(protos.valid), 1)}
        return slots, state.replace(prototypes=protos, schemas=schemas, episodes=episodes, since=jnp.zeros_like(state.since),
                                    sleeps=state.sleeps + 1), metrics

    return sleep


def integrated_sleep(memory: store.Memory, state: SleepState, key, config: SleepConfig):
    """One integrated sleep (the five phases above): (memory with the dreamed slots, state, metrics as floats)."""
    slots, state, metrics = _sleep_fn(config)(memory.slots, memory.counts, state, key)
    return memory.replace(slots=slots), state, {k: float(v) for k, v in metrics.items()}


def collect_episodes(spec: store.StoreSpec, memory: store.Memory, state: SleepState, tokens: np.ndarray, start: int,
                     stop: int, key, config: SleepConfig) -> SleepState:
    """Adds `config.episodes` windows starting in [start, stop) (drawn uniformly without replacement, keyed) to the
    buffer, with their contexts computed from scratch (store.window_contexts) and their next tokens."""
    n = min(config.episodes, stop - start)
    k_pick, k_add = jax.random.split(key)
    pos = start + np.asarray(jax.random.permutation(k_pick, stop - start)[:n])
    windows = jnp.asarray(tokens[pos[:, None] + np.arange(spec.context_length)])
    contexts = store.window_contexts(spec, memory.table, windows)
    episodes = consolidation.add_episodes(state.episodes, contexts, jnp.asarray(tokens[pos + spec.context_length]), k_add,
                                          fraction=1.0)
    return state.replace(episodes=episodes)


def learn_with_sleep(spec: store.StoreSpec, memory: store.Memory, tokens: np.ndarray, config: SleepConfig, key,
                     state: SleepState | None = None, use_cache: bool = True, on_sleep=None, shard: bool = True):
    """Writes every (window, next token) pair of a stream as store.learn_stream does, in segments of config.every
    pairs; after each segment collects episodes and sleeps when should_dream says so. on_sleep(pairs, metrics) is
    called after each sleep. Check i uses fold_in(key, i), so a run is a function of its key. Returns
    (memory, state, pairs, list of sleep metrics). The memory passed in is donated to the writes (store.learn_stream):
    use the one returned."""
    tokens = np.asarray(tokens, np.int32)
    length = spec.context_length
    n_pairs = len(tokens) - length
    if n_pairs <= 0:
        raise ValueError(f"a stream of {len(tokens)} tokens has no window of {length} with a next token")
    if config.every < 1:
        raise ValueError(f"SleepConfig.every must be >= 1, got {config.every}")
    state = init_state(config) if state is None else state
    history = []
    for i, start in enumerate(range(0, n_pairs, config.every)):
        stop = min(start + config.every, n_pairs)
        memory, _ = store.learn_stream(spec, memory, tokens[start : stop + length], use_cache=False, shard=shard)
        k_collect, k_sleep = jax.random.split(jax.random.fold_in(key, i))
        state = collect_episodes(spec, memory, state, tokens, start, stop, k_collect, config)
        state = state.replace(pairs=state.pairs + (stop - start), since=state.since + (stop - start))
        if should_dream(int(state.since), int(state.pairs), float(_stability(memory)), config):
            memory, state, metrics = integrated_sleep(memory, state, k_sleep, config)
            metrics.update(pairs=int(state.pairs), sleeps=int(state.sleeps))
            history.append(metrics)
            if on_sleep is not None:
                on_sleep(int(state.pairs), metrics)
    if use_cache:
        memory = memory.replace(cache=store.stream_cache(spec, memory.cache, tokens))
    return memory, state, n_pairs, history
