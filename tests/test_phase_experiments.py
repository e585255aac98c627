"""experiments.benchmarks.phase_memory and experiments.claims.phase_dynamics end to end on small shapes: tables, files,
exit codes."""

import csv

import pytest
from experiments_support import run_main
from experiments_support import table_rows as _rows

from experiments.benchmarks import phase_memory
from experiments.claims import phase_dynamics

MEMORY_ARGS = ["--batch", "2", "--seq", "32", "--d_model", "64", "--heads", "4", "--osc", "8", "--naive_batch", "1"]
DYNAMICS_ARGS = ["--batch", "1", "--heads", "4", "--seq", "32", "--osc", "8", "--seeds", "3", "--k_step", "1",
                 "--trials", "20", "--interp_seq", "64", "--tanh_sigmas", "1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both scripts once, in this process; the tests read their exit status, tables and files."""
    out = tmp_path_factory.mktemp("phase_dynamics") / "coherence.png"
    yield {"memory": run_main(phase_memory.main, MEMORY_ARGS),
           "dynamics": run_main(phase_dynamics.main, [*DYNAMICS_ARGS, "--out", str(out)]), "out": out}


def test_phase_memory_prints_the_table_and_passes(runs):
    rc, out, err = runs["memory"]
    assert rc == 0, out + err
    mean_field = _rows(out, "mean-field")
    assert len(mean_field) == 3, out
    assert [r[1] for r in mean_field] == ["no", "no", "yes"]
    assert len(_rows(out, "mean-field, no remat")) == 1, out
    naive = _rows(out, "naive pairwise")
    assert len(naive) == 2 and all("(compiled at B=1)" in r[4] for r in naive), out
    assert "phase_diff [B,H,S,S,O] = [2,4,32,32,8]" in out  # the analytic table at the compiled shape
    assert "PASS: largest mean-field temp" in out


def test_phase_memory_fails_over_the_limit(runs):
    """The same programs (served by the compile cache) against a tiny limit: exit 1, the tables still printed."""
    assert runs["memory"][0] == 0
    rc, out, err = run_main(phase_memory.main, [*MEMORY_ARGS, "--no_naive", "--limit_gb", "1e-6"])
    assert rc == 1, out + err
    assert len(_rows(out, "mean-field")) == 3 and not _rows(out, "naive pairwise")
    assert "FAIL: largest mean-field temp" in out and "3 of 3 layer variants" in out


def test_phase_memory_refuses_a_batch_it_cannot_scale():
    rc, out, err = run_main(phase_memory.main, ["--batch", "3", "--naive_batch", "2"])
    assert rc == 2 and err.strip().startswith("error: --naive_batch must divide --batch"), err


def test_phase_dynamics_tables_plot_and_csv(runs):
    rc, out, err = runs["dynamics"]
    assert rc == 0, out + err
    assert len(_rows(out, "t = 0 (any K)")) == 1
    assert [r[0] for r in _rows(out, "-2.00") + _rows(out, "+0.00") + _rows(out, "+2.00")] == ["-2.00", "+0.00", "+2.00"]
    assert len(_rows(out, "Uniform(-π, π) (unsynchronised)")) == 1 and "0.8837" in out
    png = runs["out"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(png.with_suffix(".csv").open()))
    assert len(rows) == 4 * 5  # sign x causal x K in -2..2 step 1
    r = {(x["sign"], x["causal"], float(x["K"])): x for x in rows}
    r0 = float(rows[0]["R_tokens_0_mean"])
    for causal in ("False", "True"):  # the original's sign with K > 0 lowers the coherence across tokens; textbook raises it
        assert float(r[("repulsive", causal, 2.0)]["R_tokens_T_mean"]) < r0 < float(r[("attractive", causal, 2.0)]["R_tokens_T_mean"])
        # the dynamics depend on sign * K only
        assert float(r[("repulsive", causal, -1.0)]["R_tokens_T_mean"]) == pytest.approx(
            float(r[("attractive", causal, 1.0)]["R_tokens_T_mean"]), abs=1e-5)


def test_phase_dynamics_interpret_r_of_noise_is_near_088(runs):
    rc, out, _ = runs["dynamics"]
    assert rc == 0
    row = _rows(out, "Uniform(-π, π) (unsynchronised)")[0]
    mean = float(row[2].split("±")[0])
    assert 0.86 < mean < 0.89, row  # H=12, O=32 as the original: about 0.876 whatever S
