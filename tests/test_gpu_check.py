"""experiments/gpu_check.py, the one-shot GPU check: its plan fits six minutes, it runs end to end on CPU within a
budget and writes both files, a section that fails or hangs costs that section only, and a short budget cuts the
sections that no longer fit while keeping the finished ones."""

import json
import sys

import pytest

from experiments import gpu_check as G

from conftest import run_module


def test_dry_run_lists_the_gpu_plan_within_six_minutes():
    proc = run_module("experiments.gpu_check", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    plan = G.sections(True, "/tmp/x", None)
    assert [s["name"] for s in plan] == ["env", "kernels", "kernel_speed", "models", "throughput"]
    assert sum(s["budget_s"] for s in plan) <= 360 and all(s["steps"] for s in plan)
    assert f"budgets sum to {sum(s['budget_s'] for s in plan)} s" in proc.stdout
    for s in plan:
        assert s["name"] in proc.stdout


def test_a_failing_or_hanging_step_costs_its_section_only(tmp_path):
    plan = [{"name": "boom", "budget_s": 5, "steps": [("exit 3", [sys.executable, "-c", "import sys; sys.exit(3)"])]},
            {"name": "hang", "budget_s": 2, "steps": [("sleep", [sys.executable, "-c", "import time; time.sleep(30)"])]},
            {"name": "fine", "budget_s": 5, "steps": [("echo", [sys.executable, "-c", "print('done here')"])]},
            {"name": "late", "budget_s": 50, "steps": [("echo", [sys.executable, "-c", "print(1)"])]}]
    records = G.run_all(plan, str(tmp_path), budget_s=20)
    assert [r["status"] for r in records[:3]] == ["partial", "partial", "ok"]
    assert records[0]["steps"][0]["status"] == "failed" and records[1]["steps"][0]["status"] == "timeout"
    assert records[3]["status"].startswith("cut: 50 s budget")
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [s["name"] for s in data["sections"]] == ["boom", "hang", "fine", "late"]
    md = (tmp_path / "gpu_check.md").read_text()
    assert "done here" in md and "## hang: partial" in md


@pytest.mark.slow
def test_the_cpu_sections_run_end_to_end_within_their_budget(tmp_path):
    proc = run_module("experiments.gpu_check", "--budget_s", "120", "--out", str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    status = {s["name"]: s["status"] for s in data["sections"]}
    assert status == {"env": "ok", "kernels": "ok", "kernel_speed": "skipped (needs a GPU)", "models": "ok",
                      "throughput": "ok"}, status
    env = json.loads(data["sections"][0]["steps"][0]["output_tail"])
    assert env["backend"] == "cpu" and env["jax"] and env["matmul_tflops_measured"] > 0
    assert "## kernels: ok" in (tmp_path / "gpu_check.md").read_text()
    assert sum(s["wall_s"] for s in data["sections"]) < 120
