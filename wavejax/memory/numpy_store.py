"""A straightforward numpy implementation of the same store, as the original computes it (the reference for the tests
and the baseline of experiments/benchmarks/bench_memory.py).

Each window's context is computed from scratch: every token is conjugated by its position rotation,
R(i) E R(i)^T, and the window is multiplied out by a pairwise tree with np.matmul (the original's
geometric_product_batch_multi). Keys, routing and the scatter-add (np.add.at) follow wavejax.memory.store, and the
routing hash is the same uint32 arithmetic, so both stores put every pair in the same slot. The episodic cache is a
Python dict keyed by the window's bytes, as in the original. `retrieve_parallel` is the original's Grace + coherence
read, token by token, with its max(x, eps) denominator.
"""

from __future__ import annotations

import numpy as np

from wavejax.memory import clifford as cl
from wavejax.memory.episodic import _HASH_MULTIPLIERS, _HASH_SEEDS, _P, _ROLL_MULTIPLIERS
from wavejax.memory.so4 import position_rotation_factors
from wavejax.memory.store import StoreSpec


def fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def fold_hash(columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two uint32 hashes of the rows of [B, n] (wavejax.memory.episodic._fold_hash in numpy)."""
    hs = [np.full(columns.shape[0], s, np.uint32) for s in _HASH_SEEDS]
    with np.errstate(over="ignore"):
        for i in range(columns.shape[1]):
            x = columns[:, i].astype(np.uint32) + np.uint32(1)
            hs = [fmix32(h * np.uint32(m) + x) for h, m in zip(hs, _HASH_MULTIPLIERS)]
    return hs[0], hs[1]


def window_hashes(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The episodic cache's keys of the rows of [B, L] (wavejax.memory.episodic.window_hashes), from the definition:
    fmix32(sum_i (x_i + 1) m^(L - i) mod (2^31 - 1) + seed), in Python integers."""
    out = []
    for m, seed in zip(_ROLL_MULTIPLIERS, _HASH_SEEDS):
        polys = [sum((int(x) + 1) * pow(m, len(w) - 1 - i, _P) for i, x in enumerate(w)) % _P for w in windows]
        with np.errstate(over="ignore"):
            out.append(fmix32(np.asarray(polys, np.uint32) + np.uint32(seed)))
    return out[0], out[1]


def tree_product(mats: np.ndarray) -> np.ndarray:
    """Ordered product over axis -3 by a pairwise tree, an odd leftover carried to the next level (the original)."""
    while mats.shape[-3] > 1:
        paired = np.matmul(mats[..., 0:-1:2, :, :], mats[..., 1::2, :, :])
        if mats.shape[-3] % 2:
            paired = np.concatenate([paired, mats[..., -1:, :, :]], axis=-3)
        mats = paired
    return mats[..., 0, :, :]


class NumpyStore:
    def __init__(self, spec: StoreSpec, embeddings: np.ndarray, dtype=np.float32):
        self.spec = spec
        self.dtype = dtype
        self.embeddings = np.asarray(embeddings, dtype)
        self.rotations = np.stack([position_rotation_factors(i, spec.position_scales)
                                   for i in range(spec.context_length)]).astype(dtype)
        self.basis = (cl.BASIS.reshape(16, 16).T / 4.0).astype(dtype)
        self.key_scale = (cl.GRACE_SCALES**spec.key_power / spec.key_resolution).astype(dtype)
        self.slots = np.zeros((spec.n_slots, 4, 4), dtype)
        self.counts = np.zeros(spec.n_slots, np.int64)
        self.cache: dict[bytes, int] = {}

    def contexts(self, windows: np.ndarray) -> np.ndarray:
        """[B, L] token ids -> [B, 4, 4]: prod_i R(i) E_{t_i} R(i)^T."""
        e = self.embeddings[windows]  # [B, L, 4, 4]
        r = self.rotations[: windows.shape[1]]
        conjugated = np.matmul(np.matmul(r, e), np.swapaxes(r, -1, -2))
        return tree_product(conjugated)

    def route(self, contexts: np.ndarray) -> np.ndarray:
        coeffs = contexts.reshape(-1, 16) @ self.basis
        keys = np.trunc(coeffs * self.key_scale).astype(np.int32)
        if self.spec.routing == "digits":
            flat = np.zeros(len(keys), np.int64)
            for level in range(self.spec.levels):
                flat += np.mod(4 * keys[:, 14 - 2 * level] + keys[:, 15 - 2 * level], 16) * 16**level
            return flat
        h1, _ = fold_hash(keys)
        return (h1 & np.uint32(self.spec.n_slots - 1)).astype(np.int64)

    def write(self, windows: np.ndarray, targets: np.ndarray, use_cache: bool = False) -> None:
        contexts = self.contexts(windows)
        slot = self.route(contexts)
        np.add.at(self.slots, slot, self.dtype(self.spec.learning_rate) * np.matmul(contexts, self.embeddings[targets]))
        np.add.at(self.counts, slot, 1)
        if use_cache:
            for window, target in zip(windows, targets):
                self.cache[window.astype(np.int32).tobytes()] = int(target)

    def read(self, windows: np.ndarray) -> np.ndarray:
        """Cosine scores of every token for each window: [B, V]."""
        contexts = self.contexts(windows)
        unbound = np.matmul(np.swapaxes(contexts, -1, -2), self.slots[self.route(contexts)])
        rf, ef = unbound.reshape(-1, 16), self.embeddings.reshape(-1, 16)
        norms = np.linalg.norm(rf, axis=1, keepdims=True) * np.linalg.norm(ef, axis=1)
        return (rf @ ef.T) / (norms + cl.EPS)

    def retrieve_parallel(self, windows: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """The original's retrieve_parallel (spec 3.6.2) for each window: (token [B], confidence [B]). R = C^T M[slot];
        if ||R||_F > eps, every token scores coherence = (c_0(X)^2 + c_15(X)^2) / max(sum_k c_k(X)^2, eps) with
        X = Grace(R) E_v^T, decomposed token by token; the token is the argmax and the confidence its coherence.
        Otherwise (an empty slot) the original returns no token: -1 and confidence 0."""
        contexts = self.contexts(windows)
        unbound = np.matmul(np.swapaxes(contexts, -1, -2), self.slots[self.route(contexts)])
        basis = cl.BASIS.astype(self.dtype)
        scales = cl.GRACE_SCALES.astype(self.dtype)
        e_t = np.swapaxes(self.embeddings, -1, -2)
        token = np.full(len(windows), -1, np.int64)
        confidence = np.zeros(len(windows), self.dtype)
        for start in range(0, len(windows), batch):
            r = unbound[start : start + batch]
            graced = np.einsum("bk,kij->bij", np.einsum("kij,bij->bk", basis, r) / 4 * scales, basis)
            x = np.einsum("kij,bvij->bvk", basis, np.matmul(graced[:, None], e_t[None])) / 4
            coherence = (x[..., 0] ** 2 + x[..., 15] ** 2) / np.maximum(np.sum(x**2, axis=-1), cl.EPS)
            full = np.linalg.norm(r.reshape(len(r), 16), axis=1) > cl.EPS
            rows = np.arange(start, start + len(r))[full]
            token[rows] = coherence[full].argmax(1)
            confidence[rows] = coherence[full].max(1)
        return token, confidence
