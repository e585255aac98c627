"""The sleeping half's shared state (spec: docs/specs/holographic.md section 4): semantic prototypes, schemas and the
episode buffer, as fixed-capacity pytrees so that every sleep phase is a jitted function of them.

    Prototypes  matrix [P, 4, 4] (Frobenius norm 1), the target distribution as its top `k` targets (ids, probs;
                id -1 = unused), radius, support (member count), salience, and `valid` (unused rows are False)
    Schemas     matrix [S, 4, 4], its canonical hash, sightings, source prototype ids [S, 2] and `valid`
    Episodes    context [E, 4, 4], target [E] and `valid` (salience and stability are recomputed from the context)

Capacities are static (shapes), counts are the number of valid rows; a full table drops the lowest-priority rows
(the functions that insert say which).
"""

from __future__ import annotations

import flax.struct
import jax.numpy as jnp


class Prototypes(flax.struct.PyTreeNode):
    matrix: jnp.ndarray  # [P, 4, 4] float32, Frobenius-normalised
    target_ids: jnp.ndarray  # [P, K] int32, -1 = unused
    target_probs: jnp.ndarray  # [P, K] float32, sums to 1 over the used entries of a valid row
    radius: jnp.ndarray  # [P] float32: the largest cosine distance of a member to the centroid
    support: jnp.ndarray  # [P] int32: members
    salience: jnp.ndarray  # [P] float32
    valid: jnp.ndarray  # [P] bool

    @property
    def capacity(self) -> int:
        return self.matrix.shape[0]

    @property
    def count(self):
        return jnp.sum(self.valid)


def empty_prototypes(capacity: int, k: int = 16) -> Prototypes:
    return Prototypes(matrix=jnp.zeros((capacity, 4, 4), jnp.float32), target_ids=jnp.full((capacity, k), -1, jnp.int32),
                      target_probs=jnp.zeros((capacity, k), jnp.float32), radius=jnp.zeros((capacity,), jnp.float32),
                      support=jnp.zeros((capacity,), jnp.int32), salience=jnp.zeros((capacity,), jnp.float32),
                      valid=jnp.zeros((capacity,), bool))


class Schemas(flax.struct.PyTreeNode):
    matrix: jnp.ndarray  # [S, 4, 4] float32, the canonical (normalised) form
    key: jnp.ndarray  # [S, 2] uint32: hash of the form rounded to 2 decimals
    sightings: jnp.ndarray  # [S] int32
    sources: jnp.ndarray  # [S, 2] int32: the prototype ids it was recombined from
    promoted: jnp.ndarray  # [S] bool: seen >= 3 times
    valid: jnp.ndarray  # [S] bool

    @property
    def capacity(self) -> int:
        return self.matrix.shape[0]


def empty_schemas(capacity: int) -> Schemas:
    return Schemas(matrix=jnp.zeros((capacity, 4, 4), jnp.float32), key=jnp.zeros((capacity, 2), jnp.uint32),
                   sightings=jnp.zeros((capacity,), jnp.int32), sources=jnp.full((capacity, 2), -1, jnp.int32),
                   promoted=jnp.zeros((capacity,), bool), valid=jnp.zeros((capacity,), bool))


class Episodes(flax.struct.PyTreeNode):
    context: jnp.ndarray  # [E, 4, 4] float32: the tower context matrix C
    target: jnp.ndarray  # [E] int32
    valid: jnp.ndarray  # [E] bool

    @property
    def capacity(self) -> int:
        return self.context.shape[0]


def empty_episodes(capacity: int) -> Episodes:
    return Episodes(context=jnp.zeros((capacity, 4, 4), jnp.float32), target=jnp.zeros((capacity,), jnp.int32),
                    valid=jnp.zeros((capacity,), bool))
