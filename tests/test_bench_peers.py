"""experiments/benchmarks/bench_peers.py: the --quick run finishes with its three tables and a results file; with the
peers installed their correctness rows agree within the script's tolerances, and a peer that does not import gives
the "not installed" note in its rows (no traceback) while the wavejax rows still run."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest

from experiments.benchmarks.bench_peers import FEATURES, NOT_INSTALLED, PEERS

from conftest import REPO, assert_one_error_line, run_module

MODULE = "experiments.benchmarks.bench_peers"


def _imports(name: str) -> bool:
    try:
        importlib.import_module(name)
        return True
    except ImportError:
        return False


INSTALLED = {name: _imports(name) for name in PEERS}


def _mentions(row, name: str) -> bool:
    """Whether a correctness row is about peer `name` ("kuramoto" is not matched inside "jaxkuramoto")."""
    return name in row["comparison"].replace("jaxkuramoto", "jax" if name == "kuramoto" else "jaxkuramoto")


@pytest.mark.slow
def test_quick_run_tables_results_and_agreement(tmp_path):
    out = tmp_path / "peers.json"
    proc = run_module(MODULE, "--quick", "--results", str(out), timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr
    for title in ("A. correctness", "B. speed", "C. features"):
        assert title in proc.stdout
    data = json.loads(out.read_text())["data"]
    rows = {r["comparison"].split(",")[0]: r for r in data["correctness"]}
    for name in ("wavejax rk4 (dt 0.010101) vs DOP853 1e-12", "wavejax dopri5 (rtol = atol = 1e-10) vs DOP853 1e-12"):
        assert rows[name]["ok"] is True, rows[name]
    checked = [r for r in data["correctness"] if r["tol"] is not None]
    assert all(r["ok"] for r in checked), checked
    for name in PEERS:
        prs = [r for r in data["correctness"] if _mentions(r, name)]
        assert prs, name
        if INSTALLED[name]:  # numbers, within the stated tolerances
            assert all(r["max_dtheta_T"] is not None and r["note"] != NOT_INSTALLED for r in prs), prs
            assert sum(r["ok"] is True for r in prs) >= 2, prs
        else:
            assert all(r["note"] == NOT_INSTALLED for r in prs), prs
    for r in data["speed"]:
        assert r["wavejax_s"] > 0
        assert (r["ratio"] is not None) == INSTALLED["kuramoto" if "ER" in r["workload"] else "jaxkuramoto"], r
    features = data["features"]
    assert set(features) == set(FEATURES)  # (the results file sorts its keys)
    # every wavejax cell is a check that ran, and every one passes
    assert all(v["wavejax"] for v in features.values()), features
    assert all(set(v["notes"]) == {"kuramoto", "jaxkuramoto", "wavejax"} for v in features.values())


@pytest.mark.slow
def test_missing_peers_give_the_not_installed_note_and_wavejax_rows_still_run(tmp_path):
    shadow = tmp_path / "shadow"  # modules named like the peers, first on the path, that fail to import
    shadow.mkdir()
    for name in PEERS:
        (shadow / f"{name}.py").write_text("raise ImportError('hidden for the test')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(shadow), str(REPO)]))
    proc = subprocess.run([sys.executable, "-m", MODULE, "--quick", "--parts", "correctness,speed", "--repeats", "1"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert f"kuramoto {NOT_INSTALLED}" in proc.stdout and f"jaxkuramoto {NOT_INSTALLED}" in proc.stdout
    lines = proc.stdout.splitlines()
    assert sum(NOT_INSTALLED in line for line in lines) >= 4  # the correctness and speed rows of both peers
    assert any(line.startswith("| wavejax rk4 (dt") and "| yes" in line for line in lines)
    assert any("rk4 float32, runs batched" in line for line in lines)


def test_bad_parts_is_one_error_line():
    assert "--parts" in assert_one_error_line(run_module(MODULE, "--parts", "nope"), 2)
