"""Synthetic sequence tasks that isolate one ability of a sequence mixer, as pure functions of (seed, step).

Every task returns inputs x and targets y, both [batch, T] int32, where y = IGNORE (-1) at positions that are not
scored: the loss and the accuracy count only answer positions. Token 0 is the filler of every task.

mqar (multi-query associative recall, Zoology: Arora et al., 2023). Keys come from [1, V/2), values from [V/2, V).
    The sequence opens with N key-value pairs k_1 v_1 ... k_N v_N (distinct keys); the remaining positions hold Q of
    those keys, in a random order, at random positions, with filler 0 between them. At a query key the target is its
    value (the next token); nothing else is scored. With min_pairs > 0 each training sequence draws its own N from
    min_pairs..pairs (Zoology trains on such a mixture: the short ones teach the lookup); validation always has N pairs.
selective_copy (Gu & Dao, 2023). Data tokens come from [2, V); 0 is noise, 1 is the "copy" marker. The first T - K
    positions hold K data tokens at random positions among noise; the last K positions hold the marker, and their
    targets are the K data tokens in the order they appeared.
induction (induction heads). A random sequence P of n = T/2 distinct tokens from [1, V) is followed by P rotated by a
    random shift s (P[s:] + P[:s]), so that the distance between a token's two occurrences varies: only the content
    of the earlier occurrence, not a fixed offset, tells what comes next. In the second half every token has
    occurred once before; where its first occurrence was followed by another token of P (all but P's last token),
    the target is that token, and it is scored (the second half's last position is not).
binding (variable binding, the task phase synchrony is claimed to solve). M items each carry A attributes; attribute a
    takes values from its own block of V_a tokens, and within an attribute the M items have distinct values. Every
    item also has an identity token. The sequence states each (item, attribute) as a triple
        ID_i  TYPE_a  VALUE_{i,a}
    (the M·A triples in a random order: an item's attributes are spread over the sequence), then asks Q queries
        VALUE_{i,a}  TYPE_b   -> target VALUE_{i,b}     (a != b)
    naming one attribute's value of an item and asking for another of the same item; the target sits at the TYPE_b
    position. No triple links the two values directly: the answer needs the item's identity, bound to both.

A batch at step p of seed s is drawn from numpy's generator seeded by (s, split, p): identical on every device count
and process layout (a process keeps its rows of the global batch).
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from wavejax.data.sampler import PositionSampler
from wavejax.errors import DataError

IGNORE = -1
TASKS = ("mqar", "selective_copy", "induction", "binding")
_SPLITS = {"train": 0, "val": 1}


def default_synthetic_config() -> ml_collections.ConfigDict:
    """config.data.synthetic: the task and its knobs (the sequence length is model.block_size)."""
    s = ml_collections.ConfigDict()
    s.task = "mqar"  # mqar | selective_copy | induction | binding
    s.vocab = 256  # mqar, selective_copy, induction: token ids 0..vocab-1 (binding sizes its own vocabulary)
    s.pairs = 16  # mqar: key-value pairs N
    s.queries = 0  # mqar: queries Q (0 = all N keys); binding: queries Q (0 = M)
    s.min_pairs = 0  # mqar: > 0 draws each training sequence's N from min_pairs..pairs (Zoology's mixture); val: pairs
    s.copy_tokens = 16  # selective_copy: data tokens K
    s.num_items = 8  # binding: items M
    s.attributes = 3  # binding: attributes A per item
    s.attribute_values = 16  # binding: values per attribute V_a (>= items)
    return s


def vocab_size(s, seq_len: int) -> int:
    """The task's number of token ids."""
    if s.task == "binding":
        return 1 + s.num_items + s.attributes + s.attributes * s.attribute_values
    return int(s.vocab)


def check(s, seq_len: int) -> None:
    """One DataError sentence for a task that cannot be built at this sequence length."""
    def need(ok, message):
        if not ok:
            raise DataError(message)

    need(s.task in TASKS, f"data.synthetic.task must be one of {TASKS}, got {s.task!r}.")
    if s.task == "mqar":
        q = s.queries or s.pairs
        need(s.pairs >= 1 and 1 <= q <= s.pairs, f"data.synthetic.queries ({s.queries}) must be in 0..pairs ({s.pairs}).")
        need(0 <= s.min_pairs <= s.pairs, f"data.synthetic.min_pairs ({s.min_pairs}) must be in 0..pairs ({s.pairs}).")
        need(s.vocab // 2 - 1 >= s.pairs, f"mqar needs at least pairs + 1 = {s.pairs + 1} key ids below vocab/2; "
                                         f"raise data.synthetic.vocab (now {s.vocab}).")
        need(2 * s.pairs + q <= seq_len, f"mqar needs 2 * pairs + queries = {2 * s.pairs + q} positions; "
                                         f"model.block_size is {seq_len}.")
    elif s.task == "selective_copy":
        need(s.vocab >= 3 and s.copy_tokens >= 1, "selective_copy needs data.synthetic.vocab >= 3 and copy_tokens >= 1.")
        need(2 * s.copy_tokens <= seq_len, f"selective_copy needs 2 * copy_tokens = {2 * s.copy_tokens} positions; "
                                           f"model.block_size is {seq_len}.")
    elif s.task == "induction":
        need(seq_len % 2 == 0 and seq_len // 2 <= s.vocab - 1,
             f"induction needs an even model.block_size and vocab - 1 >= block_size / 2 distinct tokens; got "
             f"block_size {seq_len}, vocab {s.vocab}.")
    else:
        q = s.queries or s.num_items
        need(s.num_items >= 1 and s.attributes >= 2 and s.attribute_values >= s.num_items,
             "binding needs num_items >= 1, attributes >= 2 and attribute_values >= num_items.")
        need(3 * s.num_items * s.attributes + 2 * q <= seq_len,
             f"binding needs 3 * num_items * attributes + 2 * queries = {3 * s.num_items * s.attributes + 2 * q} positions; "
             f"model.block_size is {seq_len}.")


def _mqar(rng, b: int, t: int, s, split: str):
    half = s.vocab // 2
    x = np.zeros((b, t), np.int32)
    y = np.full((b, t), IGNORE, np.int32)
    for r in range(b):
        n = int(rng.integers(s.min_pairs, s.pairs + 1)) if s.min_pairs and split == "train" else s.pairs
        q = min(s.queries, n) if s.queries else n
        keys = rng.choice(np.arange(1, half), size=n, replace=False)
        values = rng.integers(half, s.vocab, size=n)
        x[r, : 2 * n : 2], x[r, 1 : 2 * n : 2] = keys, values
        asked = rng.permutation(n)[:q]
        where = np.sort(rng.choice(np.arange(2 * n, t), size=q, replace=False))
        x[r, where], y[r, where] = keys[asked], values[asked]
    return x, y


def _selective_copy(rng, b: int, t: int, s, split: str):
    k = s.copy_tokens
    x = np.zeros((b, t), np.int32)
    y = np.full((b, t), IGNORE, np.int32)
    data = rng.integers(2, s.vocab, size=(b, k))
    for r in range(b):
        where = np.sort(rng.choice(t - k, size=k, replace=False))
        x[r, where] = data[r]
    x[:, t - k :], y[:, t - k :] = 1, data
    return x, y


def _induction(rng, b: int, t: int, s, split: str):
    n = t // 2
    x = np.zeros((b, t), np.int32)
    y = np.full((b, t), IGNORE, np.int32)
    for r in range(b):
        prefix = rng.choice(np.arange(1, s.vocab), size=n, replace=False).astype(np.int32)
        shift = int(rng.integers(0, n))
        index = (np.arange(n) + shift) % n  # the second half's positions in P
        x[r, :n], x[r, n:] = prefix, prefix[index]
        follows = index < n - 1  # P[j] was followed by P[j + 1]
        y[r, n:][follows] = prefix[np.minimum(index + 1, n - 1)][follows]
        y[r, t - 1] = IGNORE
    return x, y


def _binding(rng, b: int, t: int, s, split: str):
    m, a, v = s.num_items, s.attributes, s.attribute_values
    q = s.queries or m
    ids, types, value0 = 1, 1 + m, 1 + m + a  # token blocks: identities, attribute types, values (a-major)
    x = np.zeros((b, t), np.int32)
    y = np.full((b, t), IGNORE, np.int32)
    for r in range(b):
        vals = np.stack([rng.choice(v, size=m, replace=False) for _ in range(a)], axis=1)  # [M, A], distinct per a
        tokens = value0 + np.arange(a)[None, :] * v + vals
        triples = [(ids + i, types + j, tokens[i, j]) for i in range(m) for j in range(a)]
        order = rng.permutation(len(triples))
        x[r, : 3 * len(triples)] = np.asarray([triples[o] for o in order]).reshape(-1)
        items = rng.choice(m, size=q, replace=q > m)
        pos = 3 * len(triples)
        for i in items:
            src, dst = rng.choice(a, size=2, replace=False)
            x[r, pos], x[r, pos + 1], y[r, pos + 1] = tokens[i, src], types + dst, tokens[i, dst]
            pos += 2
    return x, y


_GENERATORS = {"mqar": _mqar, "selective_copy": _selective_copy, "induction": _induction, "binding": _binding}


def batch(s, seed: int, split: str, step: int, batch_size: int, seq_len: int):
    """(x, y) of one global batch, a pure function of (seed, split, step)."""
    rng = np.random.default_rng((seed, _SPLITS[split], step))
    return _GENERATORS[s.task](rng, batch_size, seq_len, s, split)


class SyntheticSampler(PositionSampler):
    """The sampler of a synthetic task (the PositionSampler interface, as text's BatchSampler)."""

    def __init__(self, s, batch_size: int, block_size: int, seed: int, process_index: int = 0,
                 process_count: int = 1, split: str = "train"):
        if batch_size % process_count:
            raise DataError(f"batch size {batch_size} does not divide over {process_count} processes.")
        self.s, self.batch_size, self.block_size, self.seed, self.split = s, batch_size, block_size, seed, split
        self.per, self.process_index = batch_size // process_count, process_index
        self.position = 0

    def batch_at(self, position: int):
        x, y = batch(self.s, self.seed, self.split, position, self.batch_size, self.block_size)
        rows = slice(self.process_index * self.per, (self.process_index + 1) * self.per)
        return x[rows], y[rows]


class IdTokenizer:
    """The identity tokenizer of a synthetic task: ids are tokens ("12 7 130")."""

    kind = "ids"

    def __init__(self, vocab_size: int):
        self.vocab_size = int(vocab_size)

    def encode(self, text: str) -> np.ndarray:
        try:
            ids = np.asarray([int(w) for w in text.split()], np.int32)
        except ValueError:
            raise DataError("a synthetic task's prompt is token ids separated by spaces, e.g. --prompt='3 130 5'.") from None
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise DataError(f"token ids must be in 0..{self.vocab_size - 1}.")
        return ids

    def decode(self, ids) -> str:
        return " ".join(str(int(i)) for i in ids)

    def to_json(self) -> dict:
        return {"kind": "ids", "vocab_size": self.vocab_size}


@dataclasses.dataclass
class SyntheticData:
    """What the train loop needs of a data source: a tokenizer, its vocabulary, and a sampler per split."""

    tokenizer: IdTokenizer
    config: object  # config.data.synthetic
    name: str

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def describe(self) -> str:
        return f"synthetic task {self.name}"

    def sampler(self, batch_size: int, block_size: int, seed: int, process_index: int, process_count: int,
                split: str) -> SyntheticSampler:
        return SyntheticSampler(self.config, batch_size, block_size, seed, process_index, process_count, split)


def prepare_synthetic_data(config) -> SyntheticData:
    """The task's data; its config was checked by wavejax.config.validate (`check`), as a corpus's is."""
    s = config.data.synthetic
    return SyntheticData(IdTokenizer(vocab_size(s, config.model.block_size)), s, s.task)
