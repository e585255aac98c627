"""experiments/reproductions/memory_forgetting.py at --quick, in this process: the tables' rows, finite cells, the results
and markdown files, and one-line errors for bad arguments."""

from __future__ import annotations

import json
import math

import pytest
from experiments_support import run_main, table_rows

from experiments.reproductions import memory_forgetting

METHODS = ("memory L=8, no sleep", "memory L=8, sleep", "3-gram counts (Witten-Bell)", "GPT baseline:tiny")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("memory_forgetting")
    argv = ["--quick", "--out", str(tmp / "runs"), "--results", str(tmp / "r.json"), "--md", str(tmp / "r.md")]
    return run_main(memory_forgetting.main, argv), tmp


def _number(cell: str) -> float:
    return float(cell.split(" ± ")[0])


@pytest.mark.slow
def test_quick_tables_rows_and_files(quick):
    (rc, out, err), tmp = quick
    assert rc == 0, out + err
    for method in METHODS:
        exact, nll = table_rows(out, method)[:2]  # the exact-match table, then the NLL table
        for row in (exact, nll):
            assert len(row) == 10 and row[-1] == "1"
            assert all(math.isfinite(_number(c)) for c in row[1:9]), row
        assert all(0.0 <= _number(c) <= 1.0 for c in (exact[1], exact[2], exact[4], exact[5], exact[7], exact[8]))
        assert _number(exact[3]) == pytest.approx(_number(exact[1]) - _number(exact[2]), abs=2e-3)
    sleep = table_rows(out, "memory L=8, sleep")[-1]  # the mechanism table
    assert sleep[1] == "1 + 1" and 0.0 <= _number(sleep[3]) <= 1.0  # one check per corpus, each slept
    assert out.count("```\npython -m experiments.reproductions.memory_forgetting --quick") == 3
    assert [line for line in out.splitlines() if line.startswith("**Verdict.**")]

    payload = json.loads((tmp / "r.json").read_text())
    assert payload["command"].startswith("python -m experiments.reproductions.memory_forgetting --quick")
    data = payload["data"]
    assert set(METHODS) <= set(data["methods"]) and data["seeds"] == [0] and data["verdict"]
    mem = data["methods"]["memory L=8, no sleep"]
    assert set(mem) >= {"A before B", "A after B", "B after B", "drop"}
    assert all(math.isfinite(v) for v in mem["A after B"]["seen"]["exact"][:1] + mem["drop"]["seen"]["nll"][:1])
    assert data["methods"]["memory L=8, sleep"]["sleeps_B"][0] == 1
    md = (tmp / "r.md").read_text()
    assert md.count("```\npython -m") == 3 and "| memory L=8, sleep" in md
    assert (tmp / "runs" / "rows.json").exists()


@pytest.mark.parametrize("argv", [["--seeds", "a,b"], ["--checks", "0"], ["--quick", "--history", "2"]])
def test_bad_arguments_give_one_error_line(argv):
    rc, out, err = run_main(memory_forgetting.main, argv)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
