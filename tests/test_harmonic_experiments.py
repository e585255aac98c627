"""The Harmonic GPT scripts at small sizes: experiments.benchmarks.bench_harmonic prints both tables with the ratios it
computed, experiments.reproductions.harmonic_quality builds the issue's grid, and the README's main command runs the
report-size config end to end."""

import json
import math
import re
import types

import pytest
from experiments_support import run_main

from experiments.benchmarks import bench_harmonic

from conftest import run_module


def _bench(*args):
    """bench_harmonic's main(args) in this process: its exit status, stdout and stderr, named as a finished process's."""
    code, out, err = run_main(bench_harmonic.main, args)
    return types.SimpleNamespace(returncode=code, stdout=out, stderr=err)


def _table(text: str, first_header: str) -> list[list[str]]:
    lines = text[text.index(f"| {first_header}"):].splitlines()
    table = lines[: next((i for i, line in enumerate(lines) if not line.startswith("|")), len(lines))]
    return [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]  # skip header and rule


@pytest.mark.slow  # compiles two tiny models and two attention ops (~20 s)
def test_bench_harmonic_prints_both_tables_with_consistent_ratios():
    proc = _bench("--configs", "harmonic:tiny+standard,harmonic:tiny", "--steps", "2", "--warmup", "1",
                  "--lengths", "64,96", "--reps", "2", "--window", "8")
    assert proc.returncode == 0, proc.stderr
    steps = _table(proc.stdout, "model")
    assert [r[0] for r in steps] == ["harmonic:tiny+standard", "harmonic:tiny"]
    base_fwd, base_train = float(steps[0][2]), float(steps[0][4])
    for r in steps:
        # the printed ratios come from unrounded times; the cells hold times rounded to 0.01 ms
        assert float(r[3].rstrip("×")) == pytest.approx(float(r[2]) / base_fwd, rel=0.03, abs=0.01)
        assert float(r[5].rstrip("×")) == pytest.approx(float(r[4]) / base_train, rel=0.03, abs=0.01)
    attention = _table(proc.stdout, "T")
    assert [int(r[0]) for r in attention] == [64, 96] and [int(r[1]) for r in attention] == [16, 24]
    for r in attention:
        t = int(r[0])
        assert float(r[6]) == pytest.approx(float(r[3]) / float(r[2]), rel=0.03, abs=0.01)
        assert float(r[8]) == pytest.approx(0.25 + 0.75 * 8 / (t / 2), abs=1e-3)


def test_bench_harmonic_rejects_bad_arguments():
    proc = _bench("--fraction", "0")
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: ") and "Traceback" not in proc.stderr


def test_quality_grid_is_the_issues_grid():
    from experiments.reproductions import harmonic_quality

    specs = harmonic_quality.grid("cpu")
    assert specs[0] == "harmonic:cpu+standard" and len(specs) == 1 + 6 + 2
    grid = {tuple(s.split("+")[1:]) for s in specs[1:7]}
    assert grid == {(f, w) for f in ("f0125", "f025", "f05") for w in ("w32", "w128")}
    assert harmonic_quality.grid("")[0] == "harmonic:standard"


@pytest.mark.slow  # compiles the report-size model (~20 s)
def test_readme_main_command_runs_the_report_size_model(tmp_path):
    """`python -m wavejax.main --config=configs/harmonic.py` with its defaults but 3 steps: the full-size config trains,
    evaluates, checkpoints and reports the wave fraction."""
    from wavejax.runlog import read_metrics

    workdir = tmp_path / "run"
    proc = run_module("wavejax.main", "--config=configs/harmonic.py", f"--workdir={workdir}", "--config.train.steps=3",
                      "--config.train.eval_batches=1", "--config.train.sample_tokens=8", "--config.train.progress=False")
    assert proc.returncode == 0, proc.stderr
    assert "3,571,210 parameters" in proc.stdout and re.search(r"^done: step 3, val loss", proc.stdout, re.M)
    config = json.loads((workdir / "config.json").read_text())
    assert (config["model"]["n_layer"], config["model"]["d_model"], config["model"]["block_size"]) == (4, 256, 256)
    val = [r for r in read_metrics(str(workdir)) if r["split"] == "val"][-1]
    assert abs(val["loss"] - math.log(65)) < 1.0
    assert 0 < val["seg0_0/selector/wave_fraction"] <= 0.25
    assert (workdir / "checkpoints" / "last").is_dir()
