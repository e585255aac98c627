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


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _shapes(tree) -> dict:
    """{"params.embed.wte.embedding": shape, ...} for arrays, abstract arrays or orbax metadata."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {".".join(_key_name(k) for k in path): tuple(leaf.shape) for path, leaf in flat}


def _manager(path: str, keep: int) -> ocp.CheckpointManager:
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}  # lets us read metadata
    # Orbax names its cross-process barriers after the step; the prefix keeps `last` and `best` saves of one step apart.
    multiprocessing = ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=os.path.basename(path))
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, multiprocessing_options=multiprocessing)
    return ocp.CheckpointManager(path, options=options, item_handlers=handlers)


class Checkpointer:
    def __init__(self, workdir: str, keep: int = 2):
        root = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.last = _manager(os.path.join(root, "last"), keep)
        self.best = _manager(os.path.join(root, "best"), 1)

    def save(self, step: int, state, meta: dict, best: bool = False) -> None:
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        manager, other = (self.best, self.last) if best else (self.last, self.best)
        if manager.latest_step() == step:
            return
        # One asynchronous save at a time, so that in a multi-process run no two saves' barriers are ever in flight
        # together (process 0 must not finalize a step before the others have written their part).
        other.wait_until_finished()
        manager.save(step, args=args)

    def latest_step(self, which: str = "last") -> int | None:
        return self._manager(which).latest_step()

    def restore(self, like_state, which: str = "last", step: int | None = None):
        """Returns (state, meta) from the latest (or given) step, shaped and sharded like `like_state`."""
        manager = self._manager(which)
        step = manager.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no {which} checkpoint in {manager.directory}.")
        self._check_shapes(manager, step, like_state)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(_abstract(like_state)), meta=ocp.args.JsonRestore())
        try:
            out = manager.restore(step, args=args)
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"the checkpoint at step {step} in {manager.directory} does not fit this model ({str(e).splitlines()[0][:160]}); "
                "use a new --workdir or the run's original config."
            ) from None
        return out["state"], dict(out["meta"])

    @staticmethod
    def _check_shapes(manager, step: int, like_state) -> None:
        """Compares array names and shapes from the checkpoint's metadata with the target before any
        read, so a mismatch is one clear sentence instead of a failed asynchronous restore."""
        saved = _shapes(manager.item_metadata(step)["state"])
        want = _shapes(like_state)
        missing, extra = sorted(set(want) - set(saved)), sorted(set(saved) - set(want))
        wrong = sorted(k for k in set(want) & set(saved) if want[k] != saved[k])
        problem = (f"{wrong[0]} has shape {saved[wrong[0]]} there but {want[wrong[0]]} here" if wrong else
                   f"it lacks {missing[0]}" if missing else f"it has {extra[0]}, which this model lacks" if extra else None)
        if problem:
            raise CheckpointError(
                f"the checkpoint at step {step} in {manager.directory} does not fit this model ({problem}); "
                "use a new --workdir or the run's original config."
            )

    def _manager(self, which: str):
        return {"last": self.last, "best": self.best}[which]

    def wait(self) -> None:
        self.last.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.last.close()
        self.best.close()
