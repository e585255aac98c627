"""mesh.cpu_devices (wavejax/parallel/mesh.py: set_cpu_devices): the cores shown as CPU devices for a data-parallel
mesh; the same training as one device to float rounding; bad values and a clash with XLA_FLAGS as one error line."""

from __future__ import annotations

import json
import os

import pytest

from wavejax.errors import ConfigError
from wavejax.parallel import mesh

from conftest import assert_one_error_line, run_module

TINY = ["--config=configs/baseline.py:tiny", "--config.train.steps=20"]


def _no_device_flag(monkeypatch):
    flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if mesh.FORCE_FLAG not in f)
    monkeypatch.setenv("XLA_FLAGS", flags)


def _losses(workdir) -> list[tuple[int, str, float]]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [(r["step"], r["split"], r["loss"]) for r in map(json.loads, f) if "loss" in r]


@pytest.mark.slow
def test_two_cpu_devices_train_data_parallel_as_one_device_does(tmp_path, monkeypatch):
    _no_device_flag(monkeypatch)
    one = run_module("wavejax.main", *TINY, f"--workdir={tmp_path / 'one'}")
    two = run_module("wavejax.main", *TINY, "--config.mesh.cpu_devices=2", f"--workdir={tmp_path / 'two'}")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert "mesh {'data': 1," in one.stdout and "mesh {'data': 2," in two.stdout
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert [r[:2] for r in a] == [r[:2] for r in b] and len(a) == 3
    assert all(x[2] == pytest.approx(y[2], rel=1e-5) for x, y in zip(a, b))  # the gradient sums' order only


@pytest.mark.parametrize("value", ["-1", "1.5", "True"])
def test_a_bad_cpu_device_count_is_one_error_line(tmp_path, value, monkeypatch):
    _no_device_flag(monkeypatch)
    proc = run_module("wavejax.main", *TINY, f"--config.mesh.cpu_devices={value}", f"--workdir={tmp_path / 'run'}")
    line = assert_one_error_line(proc, 2)
    assert "mesh.cpu_devices" in line or "--config.mesh.cpu_devices" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_cpu_devices_and_the_xla_flag_together_are_one_error_line(tmp_path, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", f"--{mesh.FORCE_FLAG}=4")
    proc = run_module("wavejax.main", *TINY, "--config.mesh.cpu_devices=2", f"--workdir={tmp_path / 'run'}")
    line = assert_one_error_line(proc, 2)
    assert "mesh.cpu_devices=2" in line and "XLA_FLAGS" in line


def test_set_cpu_devices_in_process():
    import jax

    jax.devices()  # this process's backends have started
    assert mesh.set_cpu_devices(1) == 1  # the default touches nothing
    with pytest.raises(ConfigError, match="before JAX has run anything"):
        mesh.set_cpu_devices(2, env={})
    with pytest.raises(ConfigError, match="integer >= 0"):
        mesh.set_cpu_devices(-1, env={})
    assert mesh.usable_cpus() >= 1


def test_a_cpu_device_count_that_came_too_late_is_one_warning_line(capsys):
    import jax
    import ml_collections

    config = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1, "cpu_devices": jax.device_count() + 1})
    built = mesh.make_mesh(config)
    assert built.devices.size == jax.device_count()  # the run goes on with the devices there are
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: mesh.cpu_devices=") and "set_cpu_devices" in err[0]
    config.cpu_devices = 1
    mesh.make_mesh(config)
    assert capsys.readouterr().err == ""
