"""experiments/reproductions/mechanisms.py at its tiny scale: the plan, the tables, the plot, the holographic rows,
reuse of finished runs, and a run folder holding other settings refused in one line."""

import json

import pytest

from experiments.reproductions import mechanisms as M


def test_points_vary_one_knob_from_the_base_without_repeats():
    spec = {"base": {"pairs": 4, "length": 32}, "sweep": {"pairs": [2, 4, 8], "length": [32, 64]}}
    assert M.task_points(spec) == [{"pairs": 4, "length": 32}, {"pairs": 2, "length": 32}, {"pairs": 8, "length": 32},
                                   {"pairs": 4, "length": 64}]


def test_run_config_sets_the_knobs_seed_and_steps():
    c = M.run_config("binding", "phase", {"pairs": 3, "length": 32, "width": 16}, 2, {"steps": 7})
    assert (c.data.synthetic.num_items, c.data.synthetic.attributes, c.model.block_size, c.model.d_model) == (3, 2, 32, 16)
    assert c.model.attention == "phase" and c.seed == 2 and c.train.steps == 7 and c.model.init_std == 0.25


@pytest.mark.slow  # 12 tiny runs in this process (~1 min)
def test_tiny_sweep_writes_tables_plots_and_reuses_finished_runs(tmp_path, capsys):
    out = tmp_path / "mech"
    args = ["--scale", "tiny", "--out", str(out), "--tasks", "mqar,binding", "--models", "dense,linear", "--seeds", "2"]
    assert M.main(args) == 0
    result = json.loads((out / "results.json").read_text())
    runs = result["runs"]
    trained = [r for r in runs if r["model"] != M.MEMORY]
    assert len(trained) == (3 + 1) * 2 * 2 and not any(r["reused"] for r in trained)
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["steps"] == 4 for r in runs if r["model"] != M.MEMORY)
    memory = [r for r in runs if r["model"] == M.MEMORY]
    assert len(memory) == 3 * 2 and all(r["task"] == "mqar" for r in memory)
    md = (out / "results.md").read_text()
    assert "**mqar**: accuracy against pairs" in md and "**binding**: accuracy against pairs" in md
    assert "| holographic" in md and "| dense" in md
    assert (out / "mqar.png").stat().st_size > 0 and (out / "binding.png").stat().st_size > 0
    assert M.main(args) == 0  # everything reused, same table
    again = json.loads((out / "results.json").read_text())["runs"]
    assert all(r["reused"] for r in again if r["model"] != M.MEMORY)
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in runs]


def test_a_run_folder_with_other_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "mech"
    args = ["--scale", "tiny", "--out", str(out), "--tasks", "induction", "--models", "dense", "--seeds", "1"]
    assert M.main(args) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        M.main(args + ["--steps", "6"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "holds a run with other settings (train.steps)" in err[0]
