"""Honest evaluation of the holographic memory (spec section 8.6), with the unigram and n-gram baselines.

Every method is scored on the same queries, a query being the tokens before a target and the target:
  seen     targets in the training stream (every window there was written), episodic cache off
  heldout  targets in held-out text (the second half; the first half calibrates)
  changed  seen queries with one token of the memory's window replaced by another (uniformly drawn) token
Metrics: exact match (top-1), top-k and NLL in nats per token. The memory's scores are normalised by
softmax(score / tau), tau fitted on calibration queries of the same condition, disjoint from the scored ones
(optimistic for the memory). Ranks are pessimistic: a tie with the target counts against it, so an empty slot,
whose scores are all equal, predicts nothing.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp

from wavejax.memory import store

CONDITIONS = ("seen", "heldout", "changed")
TAU_GRID = np.geomspace(1e-3, 1e2, 101)
SCORE_BATCH = 2048  # queries per compiled scoring call (one compile per decoder)


@dataclasses.dataclass
class Queries:
    condition: str
    history: np.ndarray  # [Q, H] the H tokens before each target (for "changed": with the change applied)
    targets: np.ndarray  # [Q]
    positions: np.ndarray | None  # [Q] the targets' positions in `stream`; None for "changed"
    stream: np.ndarray | None

    def __len__(self) -> int:
        return len(self.targets)

    def windows(self, length: int) -> np.ndarray:
        return self.history[:, -length:]

    def take(self, rows) -> Queries:
        positions = None if self.positions is None else self.positions[rows]
        return Queries(self.condition, self.history[rows], self.targets[rows], positions, self.stream)


def make_queries(condition: str, stream: np.ndarray, count: int, history: int, change_window: int, vocab_size: int,
                 rng: np.random.Generator) -> Queries:
    """`count` distinct target positions t >= history of `stream` (fewer if it is short), with their histories;
    "changed" replaces one of the last `change_window` history tokens by another token."""
    stream = np.asarray(stream, np.int32)
    available = len(stream) - history
    if available <= 0:
        raise ValueError(f"a stream of {len(stream)} tokens has no target after a history of {history}")
    t = history + np.sort(rng.choice(available, size=min(count, available), replace=False))
    hist = stream[t[:, None] - history + np.arange(history)]
    if condition != "changed":
        return Queries(condition, hist, stream[t], t, stream)
    rows = np.arange(len(t))
    where = rng.integers(history - change_window, history, size=len(t))  # inside the memory's window
    hist[rows, where] = (hist[rows, where] + rng.integers(1, vocab_size, size=len(t))) % vocab_size
    return Queries(condition, hist, stream[t], None, None)


def query_sets(train: np.ndarray, heldout: np.ndarray, count: int, calibration: int, history: int,
               change_window: int, vocab_size: int, seed: int) -> dict[str, tuple[Queries, Queries]]:
    """{condition: (calibration queries, scored queries)}. Held-out text is cut in two: the first half calibrates,
    the second half is scored; seen and changed queries draw disjoint calibration and scored targets from train.
    change_window: the changed token is one of the last change_window (at most the memory's context length)."""
    rng = np.random.default_rng(seed)
    out = {}
    for condition in ("seen", "changed"):
        q = make_queries(condition, train, count + calibration, history, change_window, vocab_size, rng)
        order = rng.permutation(len(q))
        out[condition] = (q.take(np.sort(order[:calibration])), q.take(np.sort(order[calibration:])))
    half = len(heldout) // 2
    out["heldout"] = (make_queries("heldout", heldout[:half], calibration, history, change_window, vocab_size, rng),
                      make_queries("heldout", heldout[half:], count, history, change_window, vocab_size, rng))
    return out


# -- metrics ------------------------------------------------------------------------------------------------------------

def ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Pessimistic rank of each target (0 = best): tokens scoring higher or equal, other than the target itself."""
    s_t = scores[np.arange(len(targets)), targets][:, None]
    return np.sum(scores >= s_t, axis=1) - 1


def softmax_nll(scores: np.ndarray, targets: np.ndarray, tau: float) -> np.ndarray:
    """-log softmax(scores / tau)[target] per query."""
    z = np.asarray(scores, np.float64) / tau
    return logsumexp(z, axis=1) - z[np.arange(len(targets)), targets]


def fit_temperature(scores: np.ndarray, targets: np.ndarray) -> float:
    """The tau of TAU_GRID with the lowest mean softmax NLL."""
    nll = [softmax_nll(scores, targets, tau).mean() for tau in TAU_GRID]
    return float(TAU_GRID[int(np.argmin(nll))])


def metric_row(method: str, condition: str, nll: np.ndarray, rank: np.ndarray, top_k: int, **extra) -> dict:
    return {"method": method, "condition": condition, "n": int(len(rank)), "exact": float(np.mean(rank == 0)),
            "top_k": float(np.mean(rank < top_k)), "nll": float(np.mean(nll)), **extra}


# -- the memory ---------------------------------------------------------------------------------------------------------

@functools.partial(jax.jit, static_argnums=(0, 3))
def _scores(spec, memory, contexts, decoder):
    return store.scores(spec, memory, contexts, decoder)


_window_contexts = jax.jit(store.window_contexts, static_argnums=0)
_cache_lookup = jax.jit(lambda cache, windows: store.cache_lookup(cache, *store.window_hashes(windows)))


def _batched(fn, n: int, *arrays):
    """fn over fixed-size batches of the leading axis (the last one padded), concatenated as numpy."""
    out = []
    for start in range(0, n, SCORE_BATCH):
        parts = []
        for a in arrays:
            piece = a[start : start + SCORE_BATCH]
            pad = SCORE_BATCH - len(piece)
            parts.append(np.concatenate([piece, np.repeat(piece[-1:], pad, axis=0)]) if pad else piece)
        out.append(np.asarray(fn(*parts))[: min(SCORE_BATCH, n - start)])
    return np.concatenate(out)


def memory_contexts(spec, memory, queries: Queries) -> np.ndarray:
    """Contexts of the queries' windows: from their stream by the learning path where there is one (bit-identical
    to what was written), else by the independent-window path."""
    if queries.positions is not None:
        starts = queries.positions - spec.context_length
        return np.asarray(store.contexts_at(spec, memory.table, queries.stream, starts))
    windows = queries.windows(spec.context_length)
    return _batched(lambda w: _window_contexts(spec, memory.table, jnp.asarray(w)), len(windows), windows)


def memory_scores(spec, memory, contexts: np.ndarray, decoder: str) -> np.ndarray:
    return _batched(lambda c: _scores(spec, memory, jnp.asarray(c), decoder), len(contexts), contexts)


def evaluate_memory(spec, memory, sets: dict, decoders, top_k: int = 5, label: str = "memory") -> list[dict]:
    """One row per decoder and condition (the episodic cache is not consulted)."""
    rows = []
    for condition, (calib, test) in sets.items():
        ctx_calib, ctx_test = memory_contexts(spec, memory, calib), memory_contexts(spec, memory, test)
        for decoder in decoders:
            tau = fit_temperature(memory_scores(spec, memory, ctx_calib, decoder), calib.targets)
            s = memory_scores(spec, memory, ctx_test, decoder)
            rows.append(metric_row(f"{label} ({decoder})", condition, softmax_nll(s, test.targets, tau),
                                   ranks(s, test.targets), top_k, tau=tau))
    return rows


def cache_row(spec, memory, queries: Queries, decoder: str, label: str = "memory") -> dict:
    """Exact match with the episodic cache consulted first (the original's retrieve_deterministic): a hit returns
    the last target written for that exact window, a miss falls back to the decoder's top score."""
    windows = queries.windows(spec.context_length)
    hit, cached = (np.asarray(x) for x in _cache_lookup(memory.cache, jnp.asarray(windows)))
    s = memory_scores(spec, memory, memory_contexts(spec, memory, queries), decoder)
    fallback_right = ranks(s, queries.targets) == 0
    right = np.where(hit, cached == queries.targets, fallback_right)
    return {"method": f"{label} ({decoder}) + episodic cache", "condition": queries.condition, "n": len(queries),
            "exact": float(right.mean()), "top_k": None, "nll": None, "cache_hits": float(hit.mean())}


# -- baselines ----------------------------------------------------------------------------------------------------------

def unigram_probs(tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """Add-one unigram distribution [V]."""
    counts = np.bincount(np.asarray(tokens, np.int64), minlength=vocab_size).astype(np.float64)
    return (counts + 1.0) / (counts.sum() + vocab_size)


class NGramModel:
    """Witten-Bell interpolated n-gram: P_k(w|h) = (c(h,w) + T(h) P_{k-1}(w|h')) / (c(h) + T(h)), where h' drops the
    oldest token, T(h) is the number of distinct tokens seen after h, and a context never seen backs off to
    P_{k-1}; P_0 is the add-one unigram. Counts are exact (contexts coded base V in int64)."""

    def __init__(self, tokens: np.ndarray, vocab_size: int, order: int):
        if vocab_size ** order >= 2**62:
            raise ValueError(f"an order-{order} n-gram over {vocab_size} tokens does not fit int64 codes")
        tokens = np.asarray(tokens, np.int64)
        self.vocab_size, self.order = vocab_size, order
        self.unigram = unigram_probs(tokens, vocab_size)
        self.tables = []
        for k in range(1, order):
            code = np.zeros(len(tokens) - k, np.int64)
            for j in range(k + 1):
                code = code * vocab_size + tokens[j : len(tokens) - k + j]
            hw, hw_counts = np.unique(code, return_counts=True)
            h, first, types = np.unique(hw // vocab_size, return_index=True, return_counts=True)
            self.tables.append((hw, hw_counts, h, np.add.reduceat(hw_counts, first), types))

    def probs(self, history: np.ndarray) -> np.ndarray:
        """P(w | the last order-1 tokens of each history row): [Q, V]."""
        v = self.vocab_size
        p = np.broadcast_to(self.unigram, (len(history), v)).copy()
        for k, (hw, hw_counts, h, h_total, h_types) in enumerate(self.tables, start=1):
            code = np.zeros(len(history), np.int64)
            for j in range(k):
                code = code * v + history[:, -k + j]
            i = np.clip(np.searchsorted(h, code), 0, len(h) - 1)
            found = h[i] == code
            c_h, t_h = np.where(found, h_total[i], 0)[:, None], np.where(found, h_types[i], 0)[:, None]
            code_w = code[:, None] * v + np.arange(v)
            j = np.clip(np.searchsorted(hw, code_w), 0, len(hw) - 1)
            c_hw = np.where(hw[j] == code_w, hw_counts[j], 0)
            p = np.where(c_h > 0, (c_hw + t_h * p) / np.maximum(c_h + t_h, 1), p)
        return p


def evaluate_probabilities(method: str, probs_fn, sets: dict, top_k: int = 5) -> list[dict]:
    """Rows for a normalised model: probs_fn(history [Q, H]) -> [Q, V] probabilities."""
    rows = []
    for condition, (_, test) in sets.items():
        p = np.asarray(probs_fn(test.history), np.float64)
        nll = -np.log(np.maximum(p[np.arange(len(test)), test.targets], 1e-300))
        rows.append(metric_row(method, condition, nll, ranks(p, test.targets), top_k))
    return rows


# -- reporting ----------------------------------------------------------------------------------------------------------

def _cell(row: dict | None, key: str, fmt: str) -> str:
    if row is None or row.get(key) is None:
        return "—"
    return fmt.format(row[key])


def results_table(rows: list[dict], top_k: int = 5) -> str:
    """Markdown: one line per method, exact / top-k / NLL per condition."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    conditions = [c for c in CONDITIONS if any(r["condition"] == c for r in rows)]
    header = ["method"] + [f"{c} {m}" for c in conditions for m in ("exact", f"top-{top_k}", "NLL")]
    lines = ["| " + " | ".join(header) + " |", "|:--" + "|--:" * (len(header) - 1) + "|"]
    for method in methods:
        cells = [method]
        for c in conditions:
            row = next((r for r in rows if r["method"] == method and r["condition"] == c), None)
            cells += [_cell(row, "exact", "{:.3f}"), _cell(row, "top_k", "{:.3f}"), _cell(row, "nll", "{:.3f}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
