"""Command line: `python -m wavejax.main --config=configs/NAME.py[:ARG] [--config.a.b=v] [--workdir=DIR]`.

Parses the config (ml_collections config flags), validates it, and dispatches on config.task.
Problems the user can fix print one sentence on stderr and exit non-zero (2 for bad input),
without a traceback.
"""

from __future__ import annotations

import os
import re
import sys

from wavejax.errors import WavejaxError


def _one_sentence(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    # absl wraps config-file errors as "flag --config=...: <reason>"; keep the reason's first line.
    text = text.splitlines()[0]
    # A bad `--config.a.b=v` override: name the flag, or "invalid literal for int()" says nothing useful.
    override = re.match(r"^flag (--config\.[\w.]+=[^:]*):\s*(.*)$", text)
    if override:
        return f"cannot parse {override.group(1)} ({override.group(2)}); give a value of the type that key has in the config."
    text = re.sub(r"^flag --[\w.]+=[^:]*:\s*", "", text)
    return text


def fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def precheck(argv) -> None:
    """Catches a missing config file and unknown `--config.a.b=` keys with a sentence naming them."""
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if spec is None:
        return
    from wavejax.config import load_config_file, parent_of

    path, _, arg = spec.partition(":")
    config = load_config_file(path, arg or None)
    for arg in argv:
        if arg.startswith("--config."):
            parent_of(config, arg[len("--config."):].split("=", 1)[0])


def parse_flags(argv):
    """Defines and parses the flags; every parse problem becomes one line and exit status 2."""
    from absl import flags
    from ml_collections import config_flags

    flags.DEFINE_string("workdir", None, "run directory (created; rerun with the same one to resume); "
                        "default runs/NAME[-ARG] after the config file")
    config_flag = config_flags.DEFINE_config_file("config", None, "config file, e.g. configs/baseline.py:tiny", lock_config=True)
    try:
        precheck(argv)
        rest = flags.FLAGS(argv)
        config = config_flag.value
    except WavejaxError as e:
        fail(str(e), e.exit_code)
    except flags.Error as e:
        cause = e.__cause__ or e.__context__
        if isinstance(cause, WavejaxError):
            fail(str(cause), cause.exit_code)
        fail(_one_sentence(e), 2)
    except (AttributeError, KeyError, TypeError, ValueError, OSError) as e:
        fail(f"bad config override: {_one_sentence(e)}", 2)
    if len(rest) > 1:
        fail(f"unexpected arguments {rest[1:]}; options look like --config.train.steps=100.", 2)
    if config is None:
        fail("--config is required, e.g. --config=configs/baseline.py:tiny.", 2)
    return config, flags.FLAGS.workdir or default_workdir(argv)


def default_workdir(argv) -> str:
    """runs/NAME or runs/NAME-ARG for --config=configs/NAME.py[:ARG] ("+" in ARG becomes "-")."""
    spec = next(a.split("=", 1)[1] for a in argv if a.startswith("--config="))
    path, _, arg = spec.partition(":")
    name = os.path.splitext(os.path.basename(path))[0]
    return os.path.join("runs", f"{name}-{arg.replace('+', '-')}" if arg else name)


def run(config, workdir: str) -> dict:
    """Validates the config, then runs its task (wavejax.config.TASKS names the module) and returns its summary."""
    import importlib

    from wavejax.config import TASKS, validate
    from wavejax.parallel.distributed import maybe_initialize

    maybe_initialize()  # multi-host jobs (SLURM, mpirun, JAX_COORDINATOR_ADDRESS) start JAX's runtime first
    validate(config)
    return importlib.import_module(TASKS[config.task]).run_task(config, workdir)


def main(argv=None) -> int:
    argv = list(sys.argv if argv is None else argv)
    config, workdir = parse_flags(argv)
    print(f"run directory: {workdir}", flush=True)
    try:
        summary = run(config, os.path.expanduser(workdir))
    except WavejaxError as e:
        fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        fail("interrupted; rerun the same command to resume from the last checkpoint.", 130)
    print(f"done: {summary['message']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
