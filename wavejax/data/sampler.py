"""Deterministic, checkpointable batch sampler over a token stream.

Batch number p of seed s is a pure function of (s, p): B random windows drawn with
numpy's generator seeded by (s, p). The sampler's whole state is therefore its position,
which the checkpoint stores; a resumed run draws exactly the batches an uninterrupted run would.
In a multi-process run every process computes the same global offsets and keeps its own rows.
"""

from __future__ import annotations

import numpy as np

from wavejax.errors import DataError


class PositionSampler:
    """A sampler whose batch p is a pure function of (seed, p): its whole state is the position. Subclasses define
    batch_at(position) -> (inputs, targets)."""

    seed: int
    position: int = 0

    def batch_at(self, position: int):
        raise NotImplementedError

    def __iter__(self):
        return self

    def __next__(self):
        batch = self.batch_at(self.position)
        self.position += 1
        return batch

    def state(self) -> dict:
        return {"seed": self.seed, "position": self.position}

    def restore(self, state: dict) -> None:
        if state["seed"] != self.seed:
            raise DataError(f"checkpoint sampler seed {state['seed']} differs from config seed {self.seed}; resume with the run's own seed.")
        self.position = int(state["position"])


class BatchSampler(PositionSampler):
    def __init__(self, tokens: np.ndarray, batch_size: int, block_size: int, seed: int, position: int = 0,
                 process_index: int = 0, process_count: int = 1, split: str = "train"):
        if len(tokens) < block_size + 2:
            raise DataError(
                f"the {split} split has {len(tokens)} tokens but model.block_size is {block_size}; "
                "use a larger corpus or a smaller --config.model.block_size."
            )
        if batch_size % process_count:
            raise DataError(f"batch size {batch_size} does not divide over {process_count} processes.")
        self.tokens = tokens
        self.batch_size = batch_size
        self.block_size = block_size
        self.seed = seed
        self.position = position
        self.process_index = process_index
        self.process_count = process_count
        self._window = np.arange(block_size + 1)

    def batch_at(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and next-token targets, each [local_batch, block_size] int32."""
        rng = np.random.default_rng((self.seed, position))
        offsets = rng.integers(0, len(self.tokens) - self.block_size, size=self.batch_size)  # window [o, o+T] fits
        per = self.batch_size // self.process_count
        offsets = offsets[self.process_index * per : (self.process_index + 1) * per]
        window = self.tokens[offsets[:, None] + self._window]
        return window[:, :-1].astype(np.int32), window[:, 1:].astype(np.int32)
