"""Orbax checkpoints of the train state plus JSON metadata (sampler position, best val loss, the log window).

Two managers under `workdir/checkpoints/`: `last/` (every N steps, keeps a few) and `best/` (lowest validation
loss). Restores go through an abstract target carrying the shardings, so optax NamedTuples survive and arrays land on
the current mesh (or, for `sample`, on one local device).

A damaged step (unreadable metadata, a truncated or garbage data file, a missing `state/`) is skipped with a warning
for the newest intact one of either manager; a resuming run moves it to `checkpoints/damaged/` (it is never deleted)
so that the step can be saved again. A checkpoint that does not fit the model is not damage: it is refused.
"""

from __future__ import annotations

import errno
import os
import shutil

import jax
import orbax.checkpoint as ocp

from wavejax.errors import CheckpointError, StorageError, display_path, storage_error
from wavejax.rundir import fingerprint, fingerprints_match, warn

DAMAGED_DIR = "damaged"


def _abstract(state, sharding=None):
    def leaf(x):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding or getattr(x, "sharding", None))

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


def _manager(path: str, keep: int, read_only: bool) -> ocp.CheckpointManager:
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}  # lets us read metadata
    # Orbax names its cross-process barriers after the step; the prefix keeps `last` and `best` saves of one step apart.
    multiprocessing = ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=os.path.basename(path))
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only, read_only=read_only,
                                           multiprocessing_options=multiprocessing)
    return ocp.CheckpointManager(path, options=options, item_handlers=handlers)


class _Damaged(Exception):
    pass


class Checkpointer:
    """read_only (sampling): creates nothing, moves nothing; damaged steps are only skipped."""

    def __init__(self, workdir: str, keep: int = 2, read_only: bool = False):
        self.root = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.keep, self.read_only = keep, read_only
        self._open()

    def _open(self) -> None:
        self.last = self.best = None
        try:
            if self.read_only and not os.path.isdir(self.root):
                return
            self.last = _manager(os.path.join(self.root, "last"), self.keep, self.read_only)
            self.best = _manager(os.path.join(self.root, "best"), 1, self.read_only)
        except OSError as e:
            raise storage_error(e, display_path(self.root)) from None

    # -- saving ------------------------------------------------------------------------------------------------------
    def save(self, step: int, state, meta: dict, best: bool = False) -> None:
        meta = {**meta, "fingerprint": fingerprint(state)}
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        manager = self.best if best else self.last
        if manager.latest_step() == step:
            return
        try:
            # One asynchronous save at a time, so that in a multi-process run no two saves' barriers are ever in
            # flight together (process 0 must not finalize a step before the others have written their part); and
            # the free space is measured with no write in flight.
            self.wait()
            self._check_free_space(state)
            manager.save(step, args=args)
        except StorageError:
            raise
        except Exception as e:  # orbax re-raises a failed background write at the next save or wait
            raise self._save_error(e) from None

    def _check_free_space(self, state) -> None:
        """Refuses a save the disk cannot hold before orbax starts it (a write that fails half-way leaves orbax's
        background threads to clean up). The older steps are deleted only after the new one is complete."""
        need = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state)) + (1 << 20)
        try:
            free = shutil.disk_usage(self.root).free
        except OSError:
            return
        if free < need:
            raise self._save_error(OSError(errno.ENOSPC, "No space left on device"))

    def _save_error(self, e: Exception) -> StorageError:
        err = storage_error(e, display_path(self.root))
        kept = self._complete_steps()
        return StorageError(f"{err}".rstrip(".") + (f"; the last complete checkpoint (step {max(kept)}) is kept." if kept
                                                   else "; no checkpoint had been completed."))

    def _complete_steps(self) -> list[int]:
        """Steps whose folder orbax finalized (renamed from its temporary name), read from the disk."""
        steps = []
        for which in ("last", "best"):
            try:
                steps += [int(n) for n in os.listdir(os.path.join(self.root, which)) if n.isdigit()]
            except OSError:
                pass
        return steps

    def wait(self) -> None:
        try:
            for m in (self.last, self.best):
                if m is not None:
                    m.wait_until_finished()
        except Exception as e:
            raise self._save_error(e) from None

    # -- restoring ---------------------------------------------------------------------------------------------------
    def latest_step(self, which: str = "last") -> int | None:
        m = self._manager(which)
        try:
            return None if m is None else m.latest_step()
        except Exception:
            return None

    def steps(self, which: str = "last") -> list[int]:
        m = self._manager(which)
        try:
            return [] if m is None else sorted(m.all_steps(), reverse=True)
        except Exception:
            return []

    def _candidates(self, prefer: str | None) -> list[tuple[str, int]]:
        """(manager, step), newest first; `prefer` puts one manager's steps before the other's."""
        both = [("last", s) for s in self.steps("last")] + [("best", s) for s in self.steps("best")]
        if prefer is None:
            return sorted(both, key=lambda c: (-c[1], c[0] != "last"))
        return sorted(both, key=lambda c: (c[0] != prefer, -c[1]))

    def restore(self, like_state, which: str | None = None, sharding=None):
        """(state, meta, step) of the newest intact checkpoint (of `which` first, else of both), shaped like
        `like_state` and placed by its shardings (or all on `sharding`)."""
        candidates = self._candidates(which)
        if not candidates:
            raise CheckpointError(f"no checkpoint in {display_path(self.root)}; train first (wavejax.main).")
        damaged = []
        for name, step in candidates:
            manager = self._manager(name)
            try:
                state, meta = self._restore_step(manager, step, like_state, sharding)
            except _Damaged as e:
                damaged.append((name, step, str(e)))
                continue
            for d_name, d_step, why in damaged:
                self._report_damage(d_name, d_step, why)
            if damaged:
                self._reopen_after_quarantine(damaged)
                warn(f"using checkpoint step {step} from {display_path(os.path.join(self.root, name))} instead.")
            return state, meta, step
        where = ", ".join(f"{n}/{s}" for n, s, _ in damaged)
        raise CheckpointError(f"every checkpoint in {display_path(self.root)} is damaged ({where}; the first: "
                              f"{damaged[0][2]}); move them away to start again, or use a new --workdir.")

    def _restore_step(self, manager, step: int, like_state, sharding):
        try:
            saved = _shapes(manager.item_metadata(step)["state"])
        except Exception as e:
            raise _Damaged(f"its metadata cannot be read: {_first_line(e)}") from None
        self._check_shapes(manager, step, saved, like_state)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(_abstract(like_state, sharding)),
                                  meta=ocp.args.JsonRestore())
        try:
            out = manager.restore(step, args=args)
            state, meta = out["state"], dict(out["meta"])
        except Exception as e:
            raise _Damaged(f"its data cannot be read: {_first_line(e)}") from None
        stored = meta.pop("fingerprint", None)
        if stored is not None and not fingerprints_match(fingerprint(state), stored):
            raise _Damaged("its arrays differ from the ones that were saved") from None
        return state, meta

    @staticmethod
    def _check_shapes(manager, step: int, saved: dict, like_state) -> None:
        """Compares array names and shapes from the checkpoint's metadata with the target before any read, so a
        checkpoint of another model is one clear sentence instead of a failed asynchronous restore."""
        want = _shapes(like_state)
        missing, extra = sorted(set(want) - set(saved)), sorted(set(saved) - set(want))
        wrong = sorted(k for k in set(want) & set(saved) if want[k] != saved[k])
        problem = (f"{wrong[0]} has shape {saved[wrong[0]]} there but {want[wrong[0]]} here" if wrong else
                   f"it lacks {missing[0]}" if missing else f"it has {extra[0]}, which this model lacks" if extra else None)
        if problem:
            raise CheckpointError(
                f"the checkpoint at step {step} in {display_path(str(manager.directory))} does not fit this model "
                f"({problem}); use a new --workdir or the run's original config."
            )

    def _report_damage(self, name: str, step: int, why: str) -> None:
        src = os.path.join(self.root, name, str(step))
        if self.read_only:
            warn(f"checkpoint step {step} in {display_path(os.path.dirname(src))} is damaged ({why}); skipped.")
            return
        dest_dir = os.path.join(self.root, DAMAGED_DIR)
        dest, i = os.path.join(dest_dir, f"{name}-{step}"), 1
        while os.path.exists(dest):
            dest, i = os.path.join(dest_dir, f"{name}-{step}.{i}"), i + 1
        try:
            os.makedirs(dest_dir, exist_ok=True)
            os.replace(src, dest)
        except OSError as e:
            raise storage_error(e, display_path(src)) from None
        warn(f"checkpoint step {step} in {display_path(os.path.dirname(src))} is damaged ({why}); moved it to "
             f"{display_path(dest)}.")

    def _reopen_after_quarantine(self, damaged) -> None:
        if not self.read_only:
            self.close()
            self._open()  # the managers list the steps left after the move

    def _manager(self, which: str):
        return {"last": self.last, "best": self.best}[which]

    def close(self) -> None:
        for m in (self.last, self.best):
            if m is not None:
                m.close()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else e.__class__.__name__)[:140]
