"""User-facing errors: each carries one sentence saying what is wrong and how to fix it.

`main` and `sample` print the message as one `error: ...` line, without a traceback, and exit with `exit_code`:

  2  bad input: the config, the data, the run directory or a checkpoint
  3  the run diverged (NaN or Inf); the last good checkpoint is kept
  4  the environment refused a write or read: disk full, read-only filesystem, no permission, I/O error
  130  interrupted (Ctrl-C); the last checkpoint is kept
"""

from __future__ import annotations

import errno
import os

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_STORAGE = 4
EXIT_INTERRUPTED = 130


class WavejaxError(Exception):
    """A problem the user can fix (bad input, missing file, diverged run)."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(WavejaxError):
    """A config value that cannot work; raised before any work starts."""


class DataError(ConfigError):
    """A data source that is missing, unreachable or too small for the config."""


class CheckpointError(WavejaxError):
    """A checkpoint that cannot be restored into the current config, or none that is intact."""


class RunDirError(WavejaxError):
    """A run directory that cannot be used: not a folder, held by another run, or with damaged records."""


class TrainingDiverged(WavejaxError):
    """A step produced NaN or Inf; the last good checkpoint is kept."""

    exit_code = EXIT_DIVERGED


class StorageError(WavejaxError):
    """The filesystem refused an operation (full, read-only, permission, I/O)."""

    exit_code = EXIT_STORAGE


_ADVICE = {
    errno.ENOSPC: "the disk is full; free space and rerun the same command (a run resumes from its last checkpoint)",
    errno.EDQUOT: "the disk quota is used up; free space and rerun the same command (a run resumes from its last "
                  "checkpoint)",
    errno.EROFS: "the filesystem is read-only; pass a --workdir on a writable disk",
    errno.EACCES: "permission denied; pass a --workdir you may write to",
    errno.EPERM: "operation not permitted; pass a --workdir you may write to",
}
_MESSAGES = {"No space left": errno.ENOSPC, "RESOURCE_EXHAUSTED": errno.ENOSPC, "Read-only file system": errno.EROFS,
             "Disk quota exceeded": errno.EDQUOT, "Permission denied": errno.EACCES}


def os_errno(exc: BaseException) -> int | None:
    """The errno of an OSError, or the one named in the message of a wrapped one (orbax and tensorstore raise
    ValueError("RESOURCE_EXHAUSTED: ... No space left on device"))."""
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    text = str(exc)
    return next((code for marker, code in _MESSAGES.items() if marker in text), None)


def storage_error(exc: BaseException, path: str | None = None) -> StorageError:
    """One sentence for a failed filesystem operation on `path` (or the file the OSError names)."""
    code = os_errno(exc)
    where = path or getattr(exc, "filename", None) or "a file"
    if code in _ADVICE:
        return StorageError(f"cannot write {where}: {_ADVICE[code]}.")
    reason = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[0][:160] or exc.__class__.__name__
    return StorageError(f"cannot use {where} ({reason}); check the disk, then rerun the same command.")


def is_storage_failure(exc: BaseException) -> bool:
    """True for an OSError, or a wrapped one whose message names a full, read-only or forbidden filesystem."""
    return isinstance(exc, OSError) or os_errno(exc) is not None


def display_path(path: str) -> str:
    """A path as the user gave it when relative to the working folder, else absolute."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if not rel.startswith("..") else os.path.abspath(path)
