"""The memory experiment scripts end to end on small settings: tables, verdicts, files and exit codes."""

from __future__ import annotations

import json

import pytest
from experiments_support import run_main
from experiments_support import table_rows as _rows

from experiments.benchmarks import bench_memory
from experiments.claims import memory_claims
from experiments.reproductions import memory_capacity, memory_eval

BENCH_ARGS = ["--vocab", "200", "--lengths", "64", "--pairs", "4096", "--queries", "256", "--repeats", "1", "--levels", "4"]
CAPACITY_ARGS = ["--vocabs", "65", "--loads", "0.25,8", "--levels", "2", "--seeds", "2", "--no_spec"]
CLAIMS_ARGS = ["--vocab", "500", "--pairs", "100", "--long_length", "64", "--single_pairs", "300", "--semantic_pairs", "500",
               "--table_tokens", "2000", "--levels", "3", "--no_corpus"]
EVAL_ARGS = ["--lengths", "8", "--seeds", "0", "--max_chars", "20000", "--levels", "3", "--queries", "100",
             "--calibration", "50", "--history", "8", "--ngram_orders", "3", "--gpt", "baseline:tiny", "--gpt_seconds", "0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The four scripts once, in this process; the tests read their exit status, tables and files."""
    tmp = tmp_path_factory.mktemp("memory_experiments")
    return {"bench": run_main(bench_memory.main, BENCH_ARGS),
            "eval": run_main(memory_eval.main, [*EVAL_ARGS, "--out", str(tmp / "eval")]),
            "capacity": run_main(memory_capacity.main, [*CAPACITY_ARGS, "--out", str(tmp / "cap.png")]),
            "claims": run_main(memory_claims.main, CLAIMS_ARGS), "tmp": tmp}


@pytest.mark.slow
def test_bench_memory_table_and_verdict(runs):
    rc, out, err = runs["bench"]
    for length in ("64",):
        writes = [r for r in _rows(out, length) if len(r) == 5 and not r[1][0].isdigit()]
        assert [r[1] for r in writes] == ["numpy (from scratch)", "jax, stream (sliding windows)", "jax, windows (from scratch)"]
        assert writes[0][3] == "1.0x" and all(int(r[2].replace(",", "")) > 0 for r in writes)
        assert float(writes[1][4]) > 0.99  # the numpy and jax stores put (nearly) every pair in the same slot
        reads = [r for r in _rows(out, length) if len(r) == 5 and r[1][0].isdigit()]
        assert len(reads) == 1 and float(reads[0][4]) > 0.9  # 4,096 pairs in 65,536 slots: recall of seen windows
    verdict = [line for line in out.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert len(verdict) == 1, out + err
    assert rc == (0 if verdict[0].startswith("PASS") else 1), out + err


@pytest.mark.slow
def test_memory_eval_tables(runs):
    rc, out, err = runs["eval"]
    assert rc == 0, out + err
    results = (runs["tmp"] / "eval" / "results.md").read_text()
    assert [line for line in results.splitlines() if line.startswith("### ")] == ["### seen", "### heldout", "### changed"]
    rows = json.loads((runs["tmp"] / "eval" / "results.json").read_text())["rows"]
    by = {(r["method"], r["condition"]): r for r in rows}
    assert by[("memory L=8 (cosine) + episodic cache", "seen")]["cache_hits"] == 1.0
    assert by[("memory L=8, faithful (coherence)", "heldout")]["n"] == 100
    gpt = by[("GPT baseline:tiny, equal wall time", "heldout")]
    assert 0.0 <= gpt["exact"] <= 1.0 and gpt["nll"] > 0 and gpt["steps"] >= 1
    for condition in ("seen", "heldout", "changed"):
        assert {"unigram", "3-gram (Witten-Bell)", "memory L=8 (vorticity)"} <= {m for m, c in by if c == condition}
    assert by[("memory L=8 (cosine)", "seen")]["exact"] > by[("memory L=8 (cosine)", "changed")]["exact"]


@pytest.mark.slow
def test_memory_capacity_table_and_plot(runs):
    rc, out, err = runs["capacity"]
    assert rc == 0, out + err
    alone = _rows(out, "1")
    assert len(alone) == 1 and alone[0][1] == "1.000 ± 0.000"  # cosine: a pair alone in its slot unbinds exactly
    more = _rows(out, "8-9") or _rows(out, "10-11")
    assert more and float(more[0][1].split()[0]) < 0.5
    assert (runs["tmp"] / "cap.png").stat().st_size > 1000


@pytest.mark.slow
def test_memory_claims_sections(runs):
    rc, out, err = runs["claims"]
    assert rc == 0, out + err
    assert _rows(out, "episodic cache first (retrieve_deterministic)")[0][1] == "1.000"
    cosine = _rows(out, "cosine (C^T M, sound store)")
    assert len(cosine) == 3 and cosine[1][1] == "1.000" and float(cosine[2][1]) < 0.05  # B: alone; C: one token changed
    assert _rows(out, "episodic cache (hits)")[0][1] == "0.000"
    biased = _rows(out, "the original's numpy table (seed 42)")[0]
    assert float(biased[2]) > 0.3 and float(_rows(out, "Haar (default)")[0][2]) < 0.07  # 2,000 tokens: std 0.011 per entry
    closure = _rows(out, "Haar, QR in float64 then rounded (default)")[0]
    assert float(closure[2]) < 1e-5 and float(closure[3]) < 1e-5
    assert len(_rows(out, "true targets")) == 1 and len(_rows(out, "random targets")) == 1
