"""Orbax checkpoints of the train state plus JSON metadata (sampler position, best val loss).

Two managers under `workdir/checkpoints/`: `last/` (every N steps, keeps a few) and `best/`
(lowest validation loss). Restores always go through an abstract target carrying the
shardings, so optax NamedTuples survive and arrays land on the current mesh.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

from wavejax.errors import CheckpointError


def _abstract(state):
    def leaf(x):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))

    return jax.tree.map(leaf, state)


class Checkpointer:
    def __init__(self, workdir: str, keep: int = 2):
        root = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.last = ocp.CheckpointManager(os.path.join(root, "last"), options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))
        self.best = ocp.CheckpointManager(os.path.join(root, "best"), options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))

    def save(self, step: int, state, meta: dict, best: bool = False) -> None:
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        manager = self.best if best else self.last
        if manager.latest_step() == step:
            return
        manager.save(step, args=args)

    def latest_step(self, which: str = "last") -> int | None:
        return self._manager(which).latest_step()

    def restore(self, like_state, which: str = "last", step: int | None = None):
        """Returns (state, meta) from the latest (or given) step, shaped and sharded like `like_state`."""
        manager = self._manager(which)
        step = manager.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no {which} checkpoint in {manager.directory}.")
        args = ocp.args.Composite(state=ocp.args.StandardRestore(_abstract(like_state)), meta=ocp.args.JsonRestore())
        try:
            out = manager.restore(step, args=args)
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"the checkpoint at step {step} in {manager.directory} does not fit this model ({str(e).splitlines()[0][:160]}); "
                "use a new --workdir or the run's original config."
            ) from None
        return out["state"], dict(out["meta"])

    def _manager(self, which: str):
        return {"last": self.last, "best": self.best}[which]

    def wait(self) -> None:
        self.last.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.last.close()
        self.best.close()
