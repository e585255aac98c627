"""Helpers shared by test_memory_algebra, test_memory_store."""

from __future__ import annotations

import functools

import jax
import numpy as np

from wavejax.memory import clifford as cl
from wavejax.memory import so4, store

from conftest import configs

holographic = configs("holographic")

PHI = (1 + 5**0.5) / 2
B = cl.BASIS
E1, E2, E3, E4 = cl.GAMMA
G5 = cl.GAMMA5


# Store functions under jit: one compile each, instead of one per primitive in eager mode.
window_contexts = jax.jit(store.window_contexts, static_argnums=0)
stream_contexts = jax.jit(store.stream_contexts, static_argnums=0)
scores = jax.jit(store.scores, static_argnums=(0, 3))
write = jax.jit(store.write, static_argnums=0)
unbind = jax.jit(store.unbind, static_argnums=0)
cache_insert = jax.jit(store.cache_insert)
cache_lookup = jax.jit(store.cache_lookup)


def rand(seed: int, shape, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def blade(*names: int) -> np.ndarray:
    """Product of gammas by 1-based index, e.g. blade(1, 2) = e1 e2."""
    out = np.eye(4)
    for i in names:
        out = out @ cl.GAMMA[i - 1]
    return out


@functools.lru_cache(maxsize=None)
def _haar_rows(seed: int) -> np.ndarray:
    return so4.embedding_table("haar", 4096, seed)  # one shape: the float64 QR compiles once for every seed


def haar_table(n: int, seed: int = 0) -> np.ndarray:
    return _haar_rows(seed)[:n]
