"""experiments/reproductions/memory_sleep.py end to end at --quick sizes: its three sections' tables, the results
file, the markdown file and a bad argument's one-line error."""

from __future__ import annotations

import json
import math

import pytest
from experiments_support import run_main
from experiments_support import table_rows as _rows

from experiments.reproductions import memory_sleep


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("memory_sleep")
    results, md = tmp / "sleep.json", tmp / "sleep.md"
    rc, out, err = run_main(memory_sleep.main, ["--quick", "--results", str(results), "--md", str(md)])
    return rc, out, err, results, md


def _number(cell: str) -> float:
    return float(cell.split(" ± ")[0].replace(",", ""))


@pytest.mark.slow
def test_quick_run_tables_and_files(quick):
    rc, out, err, results, md = quick
    assert rc == 0, out + err
    assert out.count("### ") == 3 and out.count("Verdict: ") == 3

    # section 1: one row per sleep for each mode, and the summary next to the original's claims
    sleeps = _rows(out, "1")
    assert len(sleeps) == 2 and all(r[2] in ("stability", "valve") for r in sleeps)
    claim = _rows(out, "schemas promoted per sleep (new)")
    assert claim and claim[0][1] == "68 per sleep"
    for r in _rows(out, "tower stability at the check") + _rows(out, "consolidation ratio"):
        assert all(math.isfinite(_number(c)) for c in r[2:])

    # sections 2 and 4: every method's row with finite exact / top-5 / NLL, over both quick seeds
    for method in ("memory, no sleep", "memory after sound sleep", "sound prototypes alone (predict_targets, k = 4)",
                   "memory after sound sleep + prototypes mixed (λ fitted)", "sound superposed prior alone (K = 8)",
                   "memory after sound sleep + prior mixed (λ fitted)", "unigram", "3-gram (Witten-Bell)"):
        rows = _rows(out, method)
        assert rows, method
        for r in rows:
            exact, top, nll = (_number(c) for c in r[1:4])
            assert 0.0 <= exact <= top <= 1.0 and math.isfinite(nll) and nll > 0, (method, r)
    assert all(r[-1] == "2" for r in _rows(out, "memory, no sleep"))

    data = json.loads(results.read_text())
    assert data["command"].startswith("python -m experiments.reproductions.memory_sleep --quick")
    assert {"setup", "section1", "section2", "section4"} <= set(data["data"])
    assert set(data["data"]["section2"]["rows"]["memory, no sleep"]) == {"heldout", "seen"}
    assert set(data["data"]["section4"]["rows"]["memory, no sleep"]) == {"heldout", "changed"}
    text = md.read_text()
    assert text.count("`python -m experiments.reproductions.memory_sleep --quick") == 3 and "Load average" in text


def test_bad_argument_one_error_line():
    rc, out, err = run_main(memory_sleep.main, ["--sections", "1,3"])
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --sections"), err
