"""Command line: `python -m wavejax.main --config=configs/NAME.py[:ARG] [--config.a.b=v] [--workdir=DIR]`.

Loads the config file by path, applies the `--config.a.b=v` overrides (ml_collections config flags), validates it,
and dispatches on config.task. Every failure a user can cause prints one `error: ...` line on stderr, without a
traceback, and exits with the code `wavejax.errors` documents (2 bad input, 3 diverged, 4 disk or filesystem,
130 interrupted).
"""

from __future__ import annotations

import os
import re
import signal
import sys

from wavejax.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, WavejaxError, is_storage_failure, storage_error


_EARLY_MESSAGE = ["interrupted before the run started."]


def _interrupted_before_start(signum, frame) -> None:
    finish(_EARLY_MESSAGE[0], EXIT_INTERRUPTED)


def exit_on_early_interrupt(message: str = "interrupted before the run started.") -> None:
    """Ctrl-C while JAX and the libraries load ends the process at once with exit 130: unwinding a half-imported
    extension module can crash the interpreter. `run` hands Ctrl-C to `rundir.handle_interrupts` once they are
    loaded, before anything is written."""
    _EARLY_MESSAGE[0] = message
    signal.signal(signal.SIGINT, _interrupted_before_start)


if __name__ == "__main__":
    exit_on_early_interrupt()


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


def fail(message: str, code: int) -> None:
    finish(message, code)


def _one_sentence(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    text = text.splitlines()[0]
    # A bad `--config.a.b=v` override: name the flag, or "invalid literal for int()" says nothing useful.
    override = re.match(r"^flag (--config\.[\w.]+=[^:]*):\s*(.*)$", text)
    if override:
        return f"cannot parse {override.group(1)} ({override.group(2)}); give a value of the type that key has in the config."
    text = re.sub(r"^flag --[\w.]+=[^:]*:\s*", "", text)
    return text


def _config_spec(argv) -> tuple[str | None, list[str]]:
    """(the value of --config, argv without it); `--config X` is accepted as `--config=X`."""
    rest, spec, i = [argv[0]], None, 1
    while i < len(argv):
        a = argv[i]
        if a.startswith("--config="):
            spec = a.split("=", 1)[1]
        elif a == "--config" and i + 1 < len(argv):
            spec, i = argv[i + 1], i + 1
        else:
            rest.append(a)
        i += 1
    return spec, rest


def parse_flags(argv):
    """Loads the config file, then parses --workdir and the overrides; every problem is one line and exit 2."""
    from absl import flags
    from ml_collections import config_flags

    from wavejax.config import load_config_file, parent_of

    spec, rest = _config_spec(argv)
    if not spec:
        fail("--config is required, e.g. --config=configs/baseline.py:tiny.", EXIT_BAD_INPUT)
    path, _, arg = spec.partition(":")
    try:
        config = load_config_file(path, arg or None)
        for a in rest:
            if a.startswith("--config."):
                parent_of(config, a[len("--config."):].split("=", 1)[0])
    except WavejaxError as e:
        fail(str(e), e.exit_code)
    flags.DEFINE_string("workdir", None, "run directory (created; rerun with the same one to resume); "
                        "default runs/NAME[-ARG] after the config file")
    holder = config_flags.DEFINE_config_dict("config", config, "the config file's get_config(ARG)", lock_config=True,
                                           sys_argv=rest)
    try:
        leftover = flags.FLAGS(rest)
        config = holder.value
    except flags.Error as e:
        cause = e.__cause__ or e.__context__
        if isinstance(cause, WavejaxError):
            fail(str(cause), cause.exit_code)
        fail(_one_sentence(e), EXIT_BAD_INPUT)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        fail(f"bad config override: {_one_sentence(e)}", EXIT_BAD_INPUT)
    if len(leftover) > 1:
        fail(f"unexpected arguments {leftover[1:]}; options look like --config.train.steps=100.", EXIT_BAD_INPUT)
    return config, flags.FLAGS.workdir or default_workdir(argv)


def default_workdir(argv) -> str:
    """runs/NAME or runs/NAME-ARG for --config=configs/NAME.py[:ARG] ("+" in ARG becomes "-")."""
    spec = _config_spec(list(argv))[0] or ""
    path, _, arg = spec.partition(":")
    name = os.path.splitext(os.path.basename(path))[0]
    return os.path.join("runs", f"{name}-{arg.replace('+', '-')}" if arg else name)


def run(config, workdir: str) -> dict:
    """Validates the config, then runs its task (wavejax.config.TASKS names the module) and returns its summary."""
    import importlib

    from wavejax.config import TASKS, validate
    from wavejax.parallel.distributed import maybe_initialize

    from wavejax.rundir import handle_interrupts

    maybe_initialize()  # multi-host jobs (SLURM, mpirun, JAX_COORDINATOR_ADDRESS) start JAX's runtime first
    validate(config)
    task = importlib.import_module(TASKS[config.task])
    if signal.getsignal(signal.SIGINT) is _interrupted_before_start:
        handle_interrupts()  # the libraries are loaded: from here on Ctrl-C lets a checkpoint being written finish
    return task.run_task(config, workdir)


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


def main(argv=None) -> int:
    argv = list(sys.argv if argv is None else argv)
    config, workdir = parse_flags(argv)
    print(f"run directory: {workdir}", flush=True)

    def body() -> int:
        summary = run(config, os.path.expanduser(workdir))
        print(f"done: {summary['message']}", flush=True)
        return 0

    return report_failures(body, "interrupted; rerun the same command to resume from the last checkpoint.")


if __name__ == "__main__":
    sys.exit(main())
