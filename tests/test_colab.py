"""The Colab notebooks run end to end on CPU (tiny), their Colab-only setup cells skipped."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "colab").glob("*.ipynb"))


def _code(notebook: pathlib.Path) -> str:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    cells = [c for c in nb["cells"] if c["cell_type"] == "code" and "colab-setup" not in c["metadata"].get("tags", [])]
    return "\n\n".join("".join(c["source"]) for c in cells)


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_on_cpu(notebook, tmp_path):
    workdir = tmp_path / "run"
    env = dict(os.environ, WAVEJAX_NOTEBOOK_STEPS="20", WAVEJAX_NOTEBOOK_WORKDIR=str(workdir), MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-c", _code(notebook)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "final validation loss" in proc.stdout
    assert (workdir / "loss.png").is_file() and any(p.is_dir() for p in workdir.glob("**/checkpoints/best"))
    assert "ROMEO:" in proc.stdout


def test_there_is_a_notebook():
    assert NOTEBOOKS, "colab/ should hold at least the quickstart notebook"
