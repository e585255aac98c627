"""Every family's tiny run through the command line, as a new user would start it: the baseline GPT, Harmonic GPT,
PhaseGPT, Wave-Native GPT, the holographic memory and the oscillator field. Part of the smoke set CI runs on the
newest JAX (conftest.SMOKE_FILES)."""

import re

import pytest

from conftest import run_module

SHORT = ["--config.train.steps=4", "--config.train.eval_every=4", "--config.train.eval_batches=1",
         "--config.train.sample_tokens=8", "--config.train.progress=False"]
FAMILIES = {
    "baseline": ("configs/baseline.py:tiny", SHORT),
    "harmonic": ("configs/harmonic.py:tiny", SHORT),
    "phase": ("configs/phase.py:tiny", SHORT),
    "wave": ("configs/wave.py:tiny", SHORT),
    "holographic": ("configs/holographic.py:tiny", []),
    "field": ("configs/field.py:tiny", []),
}


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_tiny_run_of_every_family(family, tmp_path):
    config, flags = FAMILIES[family]
    workdir = tmp_path / family
    proc = run_module("wavejax.main", f"--config={config}", f"--workdir={workdir}", *flags, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"^done: ", proc.stdout, re.M), proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr
    assert (workdir / "config.json").is_file() and (workdir / "run.lock").read_text() == ""
