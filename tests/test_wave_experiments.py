"""experiments.benchmarks.wave_memory and wave_optim_cost, experiments.claims.wave_diagnostics_null and
experiments.reproductions.wave_benchmark on small shapes: tables, exit codes, the published-protocol table and run plan
(its scoring is tested on a tiny run in test_wave_train.py)."""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest
from experiments_support import run_main

from experiments.benchmarks import wave_memory, wave_optim_cost
from experiments.claims import wave_diagnostics_null

# T=64: at T=32 the blockwise temp sits at the 4x line (3.9x), fixed buffers dominating a [B,H,T,4,W] block of 4 KB
MEMORY_ARGS = ["--batch", "2", "--seq", "64", "--d_model", "32", "--heads", "2", "--waves", "4", "--blocks", "4",
               "--long_seq", "64", "--long_batch", "1"]
COST_ARGS = ["--configs", "tiny", "--vocabs", "65", "--repeats", "1", "--openblas_threads", "1"]


def _rows(stdout: str, prefix: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in stdout.splitlines()
            if line.startswith("| " + prefix)]


@pytest.fixture(scope="module")
def runs():
    """The three scripts once, in this process (the null-rate script is numpy only)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OPENBLAS_NUM_THREADS", "1")  # what --openblas_threads 1 sets; put back afterwards
        cost = run_main(wave_optim_cost.main, COST_ARGS)
    return {"memory": run_main(wave_memory.main, MEMORY_ARGS), "cost": cost,
            "null": run_main(wave_diagnostics_null.main, ["--trials", "5"])}


@pytest.mark.slow
def test_wave_memory_table_and_verdict(runs):
    rc, out, err = runs["memory"]
    assert rc == 0, out + err
    blockwise = _rows(out, "interference, blockwise")
    assert [r[1] for r in blockwise] == ["4"]
    naive = _rows(out, "interference, naive")
    assert len(naive) == 1 and naive[0][1] == "64"
    assert len(_rows(out, "pure wave")) == 2 and len(_rows(out, "cosine")) == 1
    assert "PASS: blockwise (block 4)" in out


@pytest.mark.slow
def test_wave_optim_cost_table(runs):
    rc, out, err = runs["cost"]
    assert rc == 0, out + err
    row = _rows(out, "wave:tiny")
    assert len(row) == 1 and row[0][1] == "65" and row[0][3].endswith("(1.0×)")  # adamw against itself


@pytest.mark.slow
def test_wave_diagnostics_null_tables(runs):
    rc, out, err = runs["null"]
    assert rc == 0, out + err
    assert len(_rows(out, "harmonic pair")) == 3 and len(_rows(out, "fringes")) == 3
    lognorm = _rows(out, "'Lyapunov exponent'")[0][1:]
    values = [float(v) for v in lognorm]
    # the Frobenius norm of B stacked sequences: +log(4)/2 per 4x more sequences
    np.testing.assert_allclose(np.diff(values), np.log(4) / 2, atol=0.05)


@pytest.mark.parametrize("module,args,message", [
    ("experiments.claims.wave_diagnostics_null", ["--workdirs", "/nonexistent/run"], "has no metrics.jsonl"),
    ("experiments.benchmarks.wave_memory", ["--blocks", "a,b"], "--blocks takes comma-separated integers"),
    ("experiments.benchmarks.wave_optim_cost", ["--repeats", "0"], "--repeats must be >= 1"),
    ("experiments.reproductions.wave_benchmark", ["--classic_steps", "0", "--out", "/nonexistent/never"], "--classic_steps"),
    ("experiments.reproductions.wave_benchmark", ["--preset", "nope", "--out", "/nonexistent/never"], "unknown config argument 'nope'"),
])
def test_bad_arguments_exit_2_with_one_line(module, args, message):
    rc, out, err = run_main(importlib.import_module(module).main, args)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not os.path.exists("/nonexistent/never")


def test_published_table_and_run_plan(tmp_path):
    from experiments.reproductions import wave_benchmark as wb

    args = wb.parse_args(["--preset", "tiny", "--classic_steps", "7", "--out", str(tmp_path)])
    classic, wave = wb.published_runs(args)
    assert (classic["entry"]["steps"], wave["entry"]["steps"]) == (7, 21)  # 3x the steps for the wave model
    assert classic["config"].train.optimizer == "adamw" and wave["config"].train.optimizer == "resonant"
    assert wave["config"].train.loss == "qfe" and classic["config"].train.loss == "ce"
    # the published wave run is the fair protocol's seed-0 wave run: compare.py will find and reuse it
    assert wave["run"]["workdir"] == os.path.join(str(tmp_path), "fair", "runs", "wave-tiny_s0")
    score = {"one_batch": 1.25, "train_mean": 1.3, "train_std": 0.05, "val_mean": 1.5, "train_tokens": 1000}
    text = wb.published_table([{"label": "x", "params": 10, "steps": 7, "tokens": 500, "score": score}])
    row = [c.strip() for c in text.splitlines()[2].strip("|").split("|")]
    assert row[4:] == ["0.50", "**1.2500**", f"{np.exp(1.25):.2f}", "0.0500", "1.3000", "1.5000"]
