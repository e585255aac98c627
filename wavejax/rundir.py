"""The run directory: the contract every task (lm, memory, field) and `wavejax.sample` share.

A run directory holds `config.json` (the settings that made it), `run.lock` while a run holds it, and the task's own
records. A task calls, in this order:

  rd = RunDir(workdir, task, fixed_sections)
  rd.check(config)      nothing written: the path can be a folder, a saved config.json is readable and belongs to
                        the same task, and its fixed sections and seed equal the config's (else the run is refused)
  rd.acquire(config)    creates the folder, takes the lock and writes config.json (atomically, only when it changed)
  ...                   the task's work
  rd.release()

The lock is an flock on `run.lock` (the kernel drops it when the holder dies, so a lock left by a killed run on this
host is taken over, with a warning) whose content names the holder's pid and host: a second run on the same folder
refuses with one line naming them. In a multi-process run only process 0 takes the lock.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import socket
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from wavejax.errors import RunDirError, display_path, storage_error

CONFIG_FILE = "config.json"
LOCK_FILE = "run.lock"
_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
_HELD: dict[str, list] = {}  # realpath of a lock file -> [descriptor, holders] while this process holds it


_INTERRUPTED = False


def _interrupt(signum, frame) -> None:
    global _INTERRUPTED
    _INTERRUPTED = True
    raise KeyboardInterrupt


def handle_interrupts() -> None:
    """Ctrl-C raises KeyboardInterrupt and is remembered: when it lands in a callback that swallows exceptions (XLA's
    garbage-collection hook prints it as "Exception ignored"), the next `check_interrupted()` raises it again."""
    signal.signal(signal.SIGINT, _interrupt)


def check_interrupted() -> None:
    """Raises KeyboardInterrupt if Ctrl-C was pressed since `handle_interrupts()`; loops call it once per step."""
    if _INTERRUPTED:
        raise KeyboardInterrupt


def warn(message: str) -> None:
    """One `warning: ...` line on stderr: a fault was recovered from and the run goes on."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def write_atomic(path: str, text: str) -> bool:
    """Writes `text` to `path` through a temporary file and a rename; False (nothing written) when the file already
    holds exactly that text, so a finished run on a read-only disk can be rerun."""
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return False
    except (OSError, UnicodeDecodeError):
        pass
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise storage_error(e, display_path(path)) from None
    return True


def read_json(path: str, what: str):
    """The JSON in `path`, or None when it does not exist; a damaged file is one RunDirError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as e:
        raise RunDirError(f"{display_path(path)} is damaged ({str(e).splitlines()[0][:100]}); it holds {what}: "
                          "restore it, or start again with a new --workdir.") from None
    except IsADirectoryError:
        raise RunDirError(f"{display_path(path)} is a folder, not {what}; use a new --workdir.") from None


def check_folder_path(path: str, flag: str = "--workdir") -> None:
    """Refuses a path that is a file or lies under a file, before anything is written."""
    shown = display_path(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunDirError(f"{flag} {shown} is a file, not a folder; pass a folder (it is created if missing).")
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise RunDirError(f"{flag} {shown} cannot be created: {display_path(parent)} is a file.")


def _proc_start(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[19]  # field 22: start time in clock ticks since boot
    except (OSError, IndexError):
        return None


def _diff_keys(section: str, old: dict, new: dict) -> list[str]:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [section] if old != new else []
    return [f"{section}.{k}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def fingerprint(tree) -> list[list[float]]:
    """[sum, sum of |x|] of every leaf, stored beside a checkpoint: orbax keeps no checksum, so a restored array
    whose bytes were overwritten in place is only caught by comparing these. Reduced on device (a sharded array is
    summed where it lives); only the scalars reach the host."""
    return [[float(v) for v in pair] for pair in jax.device_get(_leaf_sums(jax.tree.leaves(tree)))]


@jax.jit
def _leaf_sums(leaves):
    return [jnp.stack([jnp.sum(x, dtype=jnp.float32), jnp.sum(jnp.abs(x), dtype=jnp.float32)]) for x in leaves]


def fingerprints_match(a, b, rtol: float = 1e-4) -> bool:
    """Equal up to the summation order of another mesh; overwritten bytes change a leaf's sums by far more."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or not np.all(np.isfinite(a)):
        return False
    return bool(np.all(np.abs(a - b) <= rtol * np.abs(b[:, 1:2]) + 1e-6))


class RunDir:
    """One run directory; see the module docstring for the order of calls."""

    def __init__(self, path: str, task: str, fixed_sections: tuple[str, ...] = ()):
        self.path = path
        self.task = task
        self.fixed_sections = fixed_sections
        self.read_only = False
        self._fd: int | None = None

    @property
    def shown(self) -> str:
        return display_path(self.path)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def saved_config(self) -> dict | None:
        """The run's config.json, or None for a new run directory."""
        saved = read_json(self.file(CONFIG_FILE), "the run's settings")
        if saved is not None and not isinstance(saved, dict):
            raise RunDirError(f"{display_path(self.file(CONFIG_FILE))} is damaged (not a JSON object); restore it, or "
                              "start again with a new --workdir.")
        return saved

    def check(self, config) -> bool:
        """Writes nothing; True when the folder already holds this run (to be resumed or reused)."""
        check_folder_path(self.path)
        saved = self.saved_config()
        if saved is None:
            return False
        if saved.get("task", "lm") != self.task:
            raise RunDirError(f"{self.shown} holds a {saved.get('task')!r} run, not a {self.task!r} one; "
                              "use a new --workdir.")
        current = json.loads(config.to_json())
        for section in self.fixed_sections:
            diff = _diff_keys(section, saved.get(section, {}), current.get(section, {}))
            if diff:
                raise RunDirError(f"{self.shown} holds a run with a different {section} config ({', '.join(diff[:6])}); "
                                  "use a new --workdir or the run's original settings.")
        if saved.get("seed") != current.get("seed"):
            raise RunDirError(f"{self.shown} holds a run with seed {saved.get('seed')}, not {current.get('seed')}; "
                              "use a new --workdir.")
        return True

    # -- the lock ----------------------------------------------------------------------------------------------------
    def acquire(self, config=None, process_index: int = 0) -> None:
        """Creates the folder, takes the lock and writes config.json. A read-only folder is opened read-only: the
        task may finish if it has nothing to write (`self.read_only` says so)."""
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as e:
            raise self._os_error(e, "cannot create the run directory") from None
        if process_index == 0:
            self._lock()
        if config is not None and process_index == 0 and not self.read_only:
            write_atomic(self.file(CONFIG_FILE), config.to_json(indent=2))

    def _os_error(self, e: OSError, what: str):
        if e.errno in _STORAGE_ERRNOS:
            return storage_error(e, self.shown)
        return RunDirError(f"{what} {self.shown} ({e.strerror}); pass a --workdir on an ordinary writable disk.")

    def _lock(self) -> None:
        path = os.path.realpath(self.file(LOCK_FILE))
        if path in _HELD:  # this process holds it already (an earlier object of this run)
            _HELD[path][1] += 1
            self._fd = _HELD[path][0]
            return
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            if e.errno == errno.EROFS:
                self.read_only = True
                return
            raise self._os_error(e, "cannot lock") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = self._holder(fd)
            os.close(fd)
            raise RunDirError(f"{self.shown} is in use by another run ({holder}); wait for it to finish or use "
                              "another --workdir.") from None
        previous = self._read_holder(fd)
        host = socket.gethostname()
        if previous and previous.get("host") not in (None, host):
            os.close(fd)
            raise RunDirError(f"{self.shown} is locked by process {previous.get('pid')} on host {previous.get('host')}; "
                              f"if no run is alive there, delete {display_path(path)} and rerun.")
        if previous:
            warn(f"{self.shown} was left locked by process {previous.get('pid')}, which is no longer running; "
                 "took the lock over.")
        record = {"pid": os.getpid(), "host": host, "start": _proc_start(os.getpid()),
                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
        except OSError as e:
            os.close(fd)
            raise storage_error(e, display_path(path)) from None
        self._fd = fd
        _HELD[path] = [fd, 1]

    @staticmethod
    def _read_holder(fd: int) -> dict | None:
        try:
            blob = os.pread(fd, 4096, 0)
            return json.loads(blob) if blob.strip() else None
        except (OSError, ValueError):
            return {"pid": "?", "host": None}

    def _holder(self, fd: int) -> str:
        h = self._read_holder(fd) or {}
        return f"process {h.get('pid', '?')} on {h.get('host', 'this host')}, since {h.get('since', '?')}"

    def release(self) -> None:
        """Empties and unlocks run.lock (the file stays: deleting a locked file races with the next run)."""
        if self._fd is None:
            return
        path = os.path.realpath(self.file(LOCK_FILE))
        held = _HELD.get(path)
        if held is not None and held[0] == self._fd:
            held[1] -= 1
            if held[1] == 0:
                del _HELD[path]
                try:
                    os.ftruncate(self._fd, 0)
                except OSError:
                    pass
                os.close(self._fd)
        self._fd = None
