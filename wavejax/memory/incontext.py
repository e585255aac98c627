"""The holographic memory as an in-context learner of MQAR (wavejax/data/synthetic.py): for each sequence a fresh
store binds every key to its value (context length 1: the key's own SO(4) factor), then each query key reads its
value back, with no gradient step. This is the seeds' claim of associative recall, put on the task built to test it.

A prediction is the decoder's best-scoring token over the whole vocabulary (keys included), as a trained model's is.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from wavejax.memory import so4, store


def mqar_spec(vocab_size: int, levels: int = 3) -> store.StoreSpec:
    return store.StoreSpec(vocab_size=vocab_size, context_length=1, levels=levels)


@functools.partial(jax.jit, static_argnames=("spec", "pairs", "decoder"))
def _predict(spec: store.StoreSpec, empty: store.Memory, x, *, pairs: int, decoder: str):
    def one(row):
        memory = empty
        keys, values = row[0 : 2 * pairs : 2], row[1 : 2 * pairs : 2]
        memory = store.write(spec, memory, store.window_contexts(spec, memory.table, keys[:, None]), values)
        queries = store.window_contexts(spec, memory.table, row[:, None])
        return jnp.argmax(store.scores(spec, memory, queries, decoder), axis=-1)

    return jax.vmap(one)(x)


def mqar_accuracy(x: np.ndarray, y: np.ndarray, pairs: int, vocab_size: int, seed: int = 0, levels: int = 3,
                  decoder: str = "cosine") -> float:
    """The fraction of MQAR queries (y >= 0) the in-context store answers right; x, y [B, T] from synthetic.batch."""
    spec = mqar_spec(vocab_size, levels)
    empty = store.init_memory(spec, so4.embedding_table("haar", vocab_size, seed))
    predicted = np.asarray(_predict(spec, empty, jnp.asarray(x), pairs=pairs, decoder=decoder))
    scored = y >= 0
    return float(np.mean(predicted[scored] == y[scored]))
