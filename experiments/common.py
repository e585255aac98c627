"""Helpers shared by the experiment scripts: config specs, overrides, token budgets, timing, tables.

Nothing here imports jax at import time: the scripts resolve and check every config (and fail with one line)
before any device is touched; the timing helpers import it when called.
"""

from __future__ import annotations

import ast
import json
import math
import os
import statistics
import sys
from collections.abc import Mapping, Sequence

from wavejax.config import load_config_file, parent_of
from wavejax.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, "configs")


def fail(message: str, code: int = 2) -> None:
    """One line on stderr and exit; for problems the user can fix."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


# -- config specs ------------------------------------------------------------------------------

def int_list(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated positive integers ("1,2,4")."""
    import argparse

    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def available_configs() -> list[str]:
    return sorted(f[:-3] for f in os.listdir(CONFIG_DIR) if f.endswith(".py") and not f.startswith("_"))


def parse_specs(text: str, default_arg: str | None = None) -> list[tuple[str, str | None]]:
    """"baseline:tiny,phase" -> [("baseline", "tiny"), ("phase", default_arg)]."""
    specs = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        name, sep, arg = item.partition(":")
        name = name.strip()
        if name.endswith(".py"):  # accept configs/baseline.py:tiny as well
            name = os.path.basename(name)[:-3]
        specs.append((name, arg.strip() if sep else default_arg))
    if not specs:
        raise ConfigError("no configs given; pass e.g. --configs baseline:tiny,phase:tiny.")
    return specs


def label(name: str, arg: str | None) -> str:
    return f"{name}:{arg}" if arg else name


def run_name(name: str, arg: str | None, seed: int) -> str:
    """Run folder name: NAME_sSEED, or NAME-ARG_sSEED when a preset is named."""
    return f"{name}-{arg}_s{seed}" if arg else f"{name}_s{seed}"


def load_config(name: str, arg: str | None = None):
    """get_config(arg) of configs/NAME.py, or a one-line ConfigError naming the configs there are."""
    path = os.path.join(CONFIG_DIR, f"{name}.py")
    if not os.path.isfile(path):
        raise ConfigError(f"unknown config {name!r}: there is no configs/{name}.py; choose one of: {', '.join(available_configs())}.")
    return load_config_file(path, arg)


# -- --set overrides (typed like ml_collections' --config.x=y) ---------------------------------

def _parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "t", "yes", "y"):
        return True
    if t in ("0", "false", "f", "no", "n"):
        return False
    raise ValueError(f"{text!r} is not a boolean")


def _parse_literal(text: str):
    try:
        return ast.literal_eval(text)
    except (SyntaxError, ValueError):
        return text


def _parse_tuple(text: str) -> tuple:
    value = _parse_literal(text)
    if isinstance(value, (tuple, list)):
        return tuple(value)
    if isinstance(value, str):  # "a,b" or a single name
        return tuple(_parse_literal(p.strip()) for p in value.split(",") if p.strip())
    return (value,)


def coerce(text: str, current):
    """Parses `text` to the type of the field's current value (bool, int, float, str, tuple; else a literal)."""
    if isinstance(current, bool):
        return _parse_bool(text)
    if isinstance(current, int):
        return int(text)
    if isinstance(current, float):
        return float(text)
    if isinstance(current, str):
        return text
    if isinstance(current, (tuple, list)):
        return _parse_tuple(text)
    return _parse_literal(text)


def apply_overrides(config, sets: Sequence[str], forbidden: Mapping[str, str] | None = None):
    """Applies ["train.lr=3e-4", ...] in order; unknown keys and bad values raise one-line ConfigErrors."""
    forbidden = forbidden or {}
    for item in sets:
        key, sep, text = item.partition("=")
        key = key.strip()
        if key.startswith("config."):
            key = key[len("config."):]
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE (e.g. --set train.lr=3e-4), got {item!r}.")
        if key in forbidden:
            raise ConfigError(f"--set {key} is not allowed here: {forbidden[key]}")
        node, leaf = parent_of(config, key)
        try:
            node[leaf] = coerce(text, node[leaf])
        except (TypeError, ValueError) as e:
            raise ConfigError(f"bad value for {key}: {text!r} ({e}).") from None
    return config


# -- equal-token budgets -----------------------------------------------------------------------

def tokens_per_step(config) -> int:
    """Tokens one optimizer step consumes: global batch (all micro-batches) x block size."""
    return int(config.train.batch_size) * int(config.model.block_size)


def token_budget(first_tokens_per_step: int, *, steps: int | None = None, tokens: int | None = None,
                 default_steps: int | None = None) -> int:
    """The comparison's token budget: --tokens, or --steps (else default_steps) of the first config."""
    if steps is not None and tokens is not None:
        raise ConfigError("pass either --steps or --tokens, not both.")
    if tokens is not None:
        budget = int(tokens)
    else:
        budget = int(steps if steps is not None else default_steps) * int(first_tokens_per_step)
    if budget <= 0:
        raise ConfigError(f"the token budget must be > 0, got {budget}.")
    return budget


def steps_for_tokens(tokens: int, per_step: Mapping[str, int]) -> dict[str, int]:
    """Steps that make each config consume exactly `tokens`; raises ConfigError unless every one divides."""
    out, bad = {}, []
    for name, n in per_step.items():
        if n <= 0:
            raise ConfigError(f"{name} consumes {n} tokens per step; batch_size and block_size must be > 0.")
        if tokens % n:
            bad.append(f"{name} ({n:,} tokens per step)")
        out[name] = tokens // n
    if bad:
        lcm = math.lcm(*per_step.values())
        raise ConfigError(
            f"the token budget {tokens:,} is not a whole number of steps of {', '.join(bad)}, where a step is "
            f"batch_size x block_size tokens; use --tokens with a multiple of {lcm:,}."
        )
    return out


def configs_differ(saved: Mapping, current: Mapping, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts (as loaded from JSON)."""
    diff = []
    for k in sorted(set(saved) | set(current)):
        a, b = saved.get(k), current.get(k)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            diff += configs_differ(a, b, f"{prefix}{k}.")
        elif a != b:
            diff.append(f"{prefix}{k}")
    return diff


def config_json(config) -> dict:
    return json.loads(config.to_json())


# -- statistics and tables ---------------------------------------------------------------------

def mean_std(values: Sequence[float]) -> tuple[float | None, float | None, int]:
    """(mean, sample std or None when n < 2, n)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None, None, 0
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None), len(vals)


def fmt_mean_std(values: Sequence[float], fmt: str = "{:.4f}", show_n: bool = True) -> str:
    m, s, n = mean_std(values)
    if m is None:
        return "n/a"
    text = fmt.format(m) if s is None else f"{fmt.format(m)} ± {fmt.format(s)}"
    return f"{text} (n={n})" if show_n else text


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


GB = 1e9  # the memory scripts' unit, as in the specs


def fmt_gb(n: float | None) -> str:
    """Bytes in GB (10^9), or in MB below 0.1 GB."""
    if n is None:
        return "n/a"
    if n >= 0.1 * GB:
        return f"{n / GB:,.2f} GB"
    return f"{n / 1e6:,.1f} MB"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "n/a"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """A padded markdown table; `align` has one of "l"/"r" per column (default: first left, rest right)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def line(row):
        return "| " + " | ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else (":" + "-" * (w + 1)) for w, a in zip(widths, align)) + "|"
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


# -- timing ------------------------------------------------------------------------------------------------------

def time_calls(fn, reps: int, warmup: int = 1) -> list[float]:
    """Wall seconds of `reps` calls of fn() after `warmup` untimed ones; fn must wait for its own result
    (e.g. end in jax.block_until_ready)."""
    import time

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median_seconds(fn, reps: int, warmup: int = 1) -> float:
    """Median wall seconds of `reps` calls of fn() after `warmup` untimed ones (fn waits for its own result)."""
    return statistics.median(time_calls(fn, reps, warmup))


def compile_and_time(fn, args, reps: int, warmup: int):
    """(median ms, temp bytes or None, output) of the jitted fn(*args)."""
    import jax

    compiled = jax.jit(fn).lower(*args).compile()
    mem = compiled.memory_analysis()
    temp = getattr(mem, "temp_size_in_bytes", None) if mem is not None else None
    out = compiled(*args)
    times = time_calls(lambda: jax.block_until_ready(compiled(*args)), reps, warmup)
    return 1e3 * statistics.median(times), temp, out


def matmul_peak_flops(dtype: str, gpu: bool, reps: int) -> float:
    """FLOP/s of one square matmul (8192 on GPU, 512 on CPU) in `dtype`, measured now: a '% of peak' base."""
    import jax.numpy as jnp
    import numpy as np

    n = 8192 if gpu else 512
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.dtype(dtype))
    ms, _, _ = compile_and_time(lambda x, y: x @ y, (a, a), max(reps, 3), 1)
    return 2 * n**3 / (ms / 1e3)


def copy_bandwidth(on_gpu: bool, reps: int) -> float:
    """Bytes/s of y = 2x over a large float32 array (one read + one write per element), this device's peak proxy."""
    import jax
    import jax.numpy as jnp

    x = jnp.ones((2**26 if on_gpu else 2**22,), jnp.float32)
    double = jax.jit(lambda v: v * 2)
    seconds = median_seconds(lambda: jax.block_until_ready(double(x)), reps)
    return 2 * x.size * 4 / seconds


# -- results files: what the claims ledger reads ----------------------------------------------

RESULTS_DIR = os.path.join(REPO, "docs", "results")


def add_results_arg(ap, name: str) -> None:
    """Adds --results PATH: the small JSON summary the claims ledger (python -m experiments.claims) reads."""
    ap.add_argument("--results", default=None, metavar="PATH",
                    help=f"also write the summary the claims ledger reads (docs/results/{name}.json)")


def _plain(x):
    """JSON-ready copy of x: floats to 6 significant digits, NaN/inf to None, tuples to lists, keys to str."""
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "tolist"):  # numpy / jax scalars and arrays
        return _plain(x.tolist())
    if isinstance(x, int):
        return x
    x = float(x)
    return float(f"{x:.6g}") if math.isfinite(x) else None


def write_results(path: str | None, module: str, argv: Sequence[str], data: Mapping) -> None:
    """Writes `data` with the command that produced it (`python -m MODULE ARGV`) to `path` (nothing when None), as
    the claims ledger reads it: {"command": ..., "data": ...}; floats kept to 6 significant digits."""
    if not path:
        return
    import shlex

    from wavejax.rundir import write_atomic

    payload = {"command": f"python -m {module} {shlex.join(list(argv))}".strip(), "data": _plain(data)}
    text = json.dumps(payload, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        write_atomic(path, text)
    except OSError as e:
        fail(f"cannot write the results file {path}: {e.strerror or e}; choose another --results path.", 4)
    print(f"wrote {path}")


def write_md(path: str | None, text: str) -> None:
    """Writes a report's markdown to `path` (nothing when None), atomically; an unwritable path is one error line."""
    if not path:
        return
    from wavejax.rundir import write_atomic

    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        write_atomic(path, text)
    except OSError as e:
        fail(f"cannot write {path}: {e.strerror or e}; choose another --md path.", 4)
    print(f"wrote {path}")
