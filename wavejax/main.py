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

from wavejax.cli import exit_on_early_interrupt, finish, interrupted_before_start, report_failures
from wavejax.errors import EXIT_BAD_INPUT, WavejaxError

if __name__ == "__main__":
    exit_on_early_interrupt()


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
    # Imports in the functions below are late on purpose: the Ctrl-C handler above is installed before anything that
    # takes time to load, and JAX itself loads only once the config has passed its checks.
    from absl import flags
    from ml_collections import config_flags

    from wavejax.config import load_config_file, parent_of

    spec, rest = _config_spec(argv)
    if not spec:
        finish("--config is required, e.g. --config=configs/baseline.py:tiny.", EXIT_BAD_INPUT)
    path, _, arg = spec.partition(":")
    try:
        config = load_config_file(path, arg or None)
        for a in rest:
            if a.startswith("--config."):
                parent_of(config, a[len("--config."):].split("=", 1)[0])
    except WavejaxError as e:
        finish(str(e), e.exit_code)
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
            finish(str(cause), cause.exit_code)
        finish(_one_sentence(e), EXIT_BAD_INPUT)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        finish(f"bad config override: {_one_sentence(e)}", EXIT_BAD_INPUT)
    if len(leftover) > 1:
        finish(f"unexpected arguments {leftover[1:]}; options look like --config.train.steps=100.", EXIT_BAD_INPUT)
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
    from wavejax.parallel.mesh import set_cpu_devices
    from wavejax.rundir import handle_interrupts

    set_cpu_devices(config.mesh.get("cpu_devices", 1))  # before anything starts JAX's backends
    maybe_initialize()  # multi-host jobs (SLURM, mpirun, JAX_COORDINATOR_ADDRESS) start JAX's runtime first
    validate(config)
    task = importlib.import_module(TASKS[config.task])
    if signal.getsignal(signal.SIGINT) is interrupted_before_start:
        handle_interrupts()  # the libraries are loaded: from here on Ctrl-C lets a checkpoint being written finish
    return task.run_task(config, workdir)


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
