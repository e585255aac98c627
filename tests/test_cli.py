"""`python -m wavejax.main` end to end: the run directory, resuming, refusing another model's
workdir, and a diverging run."""

import json
import re
import shutil

import pytest

from wavejax.runlog import read_metrics

from conftest import DIVERGE_OVERRIDES, TRAIN_OVERRIDES, assert_one_error_line, override_flags, run_module

pytestmark = pytest.mark.slow  # each test starts a training process (the first one compiles the train step)


def _steps(workdir, split):
    return [r["step"] for r in read_metrics(str(workdir)) if r["split"] == split]


def _checkpoint_steps(workdir, which):
    return sorted(int(p.name) for p in (workdir / "checkpoints" / which).iterdir() if p.name.isdigit())


def test_tiny_run_writes_a_complete_run_directory(cli_run):
    workdir, proc = cli_run
    assert "Traceback" not in proc.stderr
    assert re.search(r"^done: step 8, val loss \d+\.\d+ \(best \d+\.\d+\)", proc.stdout, re.M), proc.stdout
    assert "106,880 parameters, vocab 65" in proc.stdout

    config = json.loads((workdir / "config.json").read_text())
    assert config["model"]["d_model"] == 64 and config["train"]["steps"] == 8 and config["train"]["grad_accum"] == 2
    tokenizer = json.loads((workdir / "tokenizer.json").read_text())
    assert tokenizer["kind"] == "char" and len(tokenizer["chars"]) == 65

    records = read_metrics(str(workdir))
    assert _steps(workdir, "train") == list(range(1, 9))
    assert _steps(workdir, "val") == [4, 8]
    assert all({"loss", "grad_norm", "lr", "tokens_per_s"} <= set(r) for r in records if r["split"] == "train")
    assert all(0 < r["loss"] < 5 for r in records)

    assert any(p.name.startswith("events.out.tfevents") for p in (workdir / "tb").iterdir())
    assert _checkpoint_steps(workdir, "last") == [4, 8]
    assert len(_checkpoint_steps(workdir, "best")) == 1
    samples = (workdir / "samples.txt").read_text()
    assert "=== step 4 ===" in samples and "=== step 8 ===" in samples
    assert not list(workdir.glob("*.tmp"))


def test_rerun_with_more_steps_resumes(cli_run, tmp_path):
    source, _ = cli_run
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)
    flags = override_flags({**TRAIN_OVERRIDES, "train.steps": 12})
    proc = run_module("wavejax.main", "--config=configs/baseline.py:tiny", f"--workdir={workdir}", *flags)
    assert proc.returncode == 0, proc.stderr
    assert f"resumed from step 8 in {workdir}" in proc.stdout
    assert "done: step 12" in proc.stdout
    assert _steps(workdir, "train") == list(range(1, 13))  # appended, nothing repeated
    assert _steps(workdir, "val") == [4, 8, 12]
    assert _checkpoint_steps(workdir, "last") == [8, 12]
    assert json.loads((workdir / "config.json").read_text())["train"]["steps"] == 12


def test_resuming_with_another_model_config_is_refused(cli_run):
    workdir, _ = cli_run
    before = {p.name: p.stat().st_mtime_ns for p in workdir.iterdir()}
    flags = override_flags({**TRAIN_OVERRIDES, "model.n_layer": 3})
    proc = run_module("wavejax.main", "--config=configs/baseline.py:tiny", f"--workdir={workdir}", *flags)
    line = assert_one_error_line(proc, 2)
    assert "different model config (model.n_layer)" in line and "new --workdir" in line
    assert {p.name: p.stat().st_mtime_ns for p in workdir.iterdir()} == before  # nothing touched


def test_diverging_run_exits_3_and_names_the_step(tmp_path):
    workdir = tmp_path / "run"
    flags = override_flags({**TRAIN_OVERRIDES, **DIVERGE_OVERRIDES})
    proc = run_module("wavejax.main", "--config=configs/baseline.py:tiny", f"--workdir={workdir}", *flags)
    line = assert_one_error_line(proc, 3)
    match = re.match(r"error: step (\d+): .*not finite.*the last good checkpoint \(step (\d+)\) is kept", line)
    assert match, line
    assert int(match.group(2)) == int(match.group(1)) - 1
    assert _checkpoint_steps(workdir, "last")[-1] == int(match.group(2))
