"""Test environment: CPU only, no network, caches in a temp folder; the corpus is the one shipped inside the
package. Set before jax is imported anywhere. Nothing here reads outside the repo, the package and temp folders."""

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

_REPO = pathlib.Path(__file__).resolve().parents[1]

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
_TMP = tempfile.mkdtemp(prefix="wavejax-tests-")
os.environ.setdefault("HF_HOME", os.path.join(_TMP, "hf"))
os.environ.setdefault("MPLCONFIGDIR", os.path.join(_TMP, "mpl"))
os.environ.setdefault("XDG_CACHE_HOME", os.path.join(_TMP, "cache"))
# A persistent compile cache shared by this process and the CLI subprocesses it starts: tests that
# build the same model and step reuse one XLA compile (a cold train-step compile is ~6 s on 2 cores).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(_TMP, "jax-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import pytest  # noqa: E402

REPO = _REPO


def configs(name: str):
    """configs/NAME.py as a module, loaded by path (configs/ is never put on sys.path: configs/wave.py must not
    shadow the standard library's wave)."""
    from wavejax.config import config_module

    return config_module(str(REPO / "configs" / f"{name}.py"))

# The training settings shared by the in-process Trainer tests and the CLI runs. Keeping the model,
# batch, accumulation, dropout and schedule identical everywhere makes the train step compile once
# per session (the persistent cache serves every later Trainer and subprocess). train.steps and the
# eval/checkpoint cadence are not part of the compiled step, so tests may change them freely.
TRAIN_OVERRIDES = {
    "model.dropout": 0.1,
    "train.batch_size": 16,
    "train.grad_accum": 2,
    "train.warmup_steps": 2,
    "train.decay_steps": 60,
    "train.log_every": 1,
    "train.eval_every": 4,
    "train.checkpoint_every": 4,
    "train.eval_batches": 2,
    "train.sample_tokens": 0,
    "train.progress": False,
    "train.steps": 8,
}

# A run that diverges at step 3: lr 1e6 without clipping or warmup.
DIVERGE_OVERRIDES = {
    "train.lr": 1e6,
    "train.min_lr": 0.0,
    "train.grad_clip": 0.0,
    "train.warmup_steps": 0,
    "train.checkpoint_every": 1,
    "train.eval_every": 100,
    "train.steps": 20,
}


def apply_overrides(config, overrides: dict):
    from wavejax.config import set_value

    for key, value in overrides.items():
        set_value(config, key, value)
    return config


def override_flags(overrides: dict) -> list[str]:
    return [f"--config.{k}={v}" for k, v in overrides.items()]


def run_module(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS` from the repo root, as a user would run it."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


EIGHT = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8 --xla_cpu_collective_call_terminate_timeout_seconds=60",
         "JAX_PLATFORMS": "cpu"}  # 8 fake CPU devices for the scripts in tests/multidevice


def run_with_8_devices(script: str, timeout: float = 600) -> dict:
    """Runs tests/multidevice/<script> in a process with 8 CPU devices; returns its last stdout line as JSON."""
    import json

    env = dict(os.environ, **EIGHT)
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "multidevice" / script)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_one_error_line(proc: subprocess.CompletedProcess, code: int) -> str:
    """The CLI contract for user errors: exit `code`, stderr is one `error: ...` line, no traceback."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, f"exit {proc.returncode}, stderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_TMP, ignore_errors=True)  # caches and compiled programs of this session


@pytest.fixture
def tiny_config():
    """configs/baseline.py:tiny shrunk further so a test trains in a second or two."""
    c = configs("baseline").get_config("tiny")
    c.train.steps = 8
    c.train.log_every = 1
    c.train.eval_every = 4
    c.train.checkpoint_every = 4
    c.train.eval_batches = 2
    c.train.sample_tokens = 0
    c.train.progress = False
    return c


@pytest.fixture
def train_config():
    """The tiny config with the shared training settings (dropout, grad_accum=2); see TRAIN_OVERRIDES."""
    return apply_overrides(configs("baseline").get_config("tiny"), TRAIN_OVERRIDES)


@pytest.fixture(scope="session")
def cli_run(tmp_path_factory):
    """One tiny training run through the CLI, shared by the run-directory and sampling tests.
    Tests must not modify it (copy it first)."""
    workdir = tmp_path_factory.mktemp("cli") / "run"
    overrides = dict(TRAIN_OVERRIDES, **{"train.sample_tokens": 16})
    proc = run_module("wavejax.main", "--config=configs/baseline.py:tiny", f"--workdir={workdir}", *override_flags(overrides))
    assert proc.returncode == 0, f"the tiny CLI run failed:\n{proc.stdout}\n{proc.stderr}"
    return workdir, proc


# The smoke set CI runs in its second environment (the newest JAX and Python): every family's tiny run, every kernel's
# interpret-mode tests, the multi-device (8 CPU devices, two processes) tests, and the simulator's (diffrax's adaptive and
# SDE solvers on the newest JAX).
SMOKE_FILES = ("test_families.py", "test_parallel.py", "test_kernels_selective.py", "test_kernels_interference.py",
               "test_kernels_phase.py", "test_kernels_kuramoto.py", "test_field_simulate.py")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SMOKE_FILES:
            item.add_marker(pytest.mark.smoke)
