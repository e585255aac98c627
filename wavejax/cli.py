"""Process plumbing of the command lines (wavejax.main, wavejax.sample): every failure a user can cause becomes one
`error: ...` line on stderr and the exit code `wavejax.errors` documents, with no traceback, and Ctrl-C ends the
process cleanly whatever it is doing."""

from __future__ import annotations

import os
import signal
import sys

from wavejax.errors import EXIT_INTERRUPTED, WavejaxError, is_storage_failure, storage_error

_EARLY_MESSAGE = ["interrupted before the run started."]


def interrupted_before_start(signum, frame) -> None:
    finish(_EARLY_MESSAGE[0], EXIT_INTERRUPTED)


def exit_on_early_interrupt(message: str = "interrupted before the run started.") -> None:
    """Ctrl-C while JAX and the libraries load ends the process at once with exit 130: unwinding a half-imported
    extension module can crash the interpreter. `run` hands Ctrl-C to `rundir.handle_interrupts` once they are
    loaded, before anything is written."""
    _EARLY_MESSAGE[0] = message
    signal.signal(signal.SIGINT, interrupted_before_start)


def finish(message: str | None, code: int) -> None:
    """Prints `error: message` and ends the process without the interpreter's teardown, in which the threads of
    orbax, TensorBoard and XLA may print tracebacks or crash after the one line has been written."""
    if message is not None:
        print(f"error: {message}", file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _drop_swallowed_noise(unraisable) -> None:
    # When a checkpoint write or read fails (a full disk, a damaged file), orbax abandons its sibling tasks: their
    # coroutines and tensorstore callbacks then report exceptions nobody can catch ("Event loop is closed", the same
    # read error again). The failure itself reaches the run as one line; other unraisable exceptions are printed.
    exc, tb = unraisable.exc_value, unraisable.exc_traceback
    from_orbax = False
    while tb is not None:
        from_orbax |= "orbax" in tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    if from_orbax or (isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"):
        return
    if isinstance(exc, KeyboardInterrupt):
        return  # Ctrl-C landed in a callback that swallows it (XLA's gc hook); rundir.check_interrupted raises it again
    sys.__unraisablehook__(unraisable)


def report_failures(body, interrupted: str) -> int:
    """Runs body() and turns every failure a user can cause into one `error:` line and its exit code."""
    import logging

    sys.unraisablehook = _drop_swallowed_noise
    # Orbax logs a failed write or read with its traceback (absl), and a failed read leaves its sibling read tasks'
    # exceptions unretrieved (asyncio); the failure itself reaches the run, which reports it as one line.
    for name in ("absl", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        return body()
    except WavejaxError as e:
        finish(str(e), e.exit_code)
    except KeyboardInterrupt:
        finish(interrupted, EXIT_INTERRUPTED)
    except Exception as e:
        if not is_storage_failure(e):
            raise
        err = storage_error(e)
        finish(str(err), err.exit_code)


