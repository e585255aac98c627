"""The Colab notebooks run end to end on CPU (tiny sizes) in a real Jupyter kernel (nbclient + ipykernel), their
Colab-only setup cells (tag "colab-setup") left out; the committed notebooks carry no outputs.

The contract every notebook keeps (colab/README.md): a first code cell that detects the GPU and sets sizes (tiny on a
CPU; `WAVEJAX_NOTEBOOK_STEPS` caps training steps and `WAVEJAX_NOTEBOOK_WORKDIR` is where it writes), at least one
plot shown inline and saved as a PNG under the work folder, and a closing cell that prints one line starting with
"Finding:" that states the result with the numbers the notebook measured."""

import json
import os
import pathlib

import pytest

from conftest import REPO

NOTEBOOKS = sorted((REPO / "colab").glob("*.ipynb"))


def execute(notebook: pathlib.Path, env: dict, timeout: int = 600):
    """Runs the notebook's cells, setup cells removed, in a fresh kernel with `env` in its environment; returns the
    executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(str(notebook), as_version=4)
    nb.cells = [c for c in nb.cells if "colab-setup" not in c.get("metadata", {}).get("tags", [])]
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel process inherits this process's environment
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def text_output(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")


def images(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


# What a notebook prints beyond its "Finding:" line (the training notebooks also sample).
EXTRA_OUTPUT = {"quickstart.ipynb": ("final validation loss", "ROMEO:"),
                "harmonic_vs_standard.ipynb": ("final validation loss", "ROMEO:")}


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_a_kernel_on_cpu(notebook, tmp_path):
    workdir = tmp_path / "run"
    nb = execute(notebook, {"WAVEJAX_NOTEBOOK_STEPS": "20", "WAVEJAX_NOTEBOOK_WORKDIR": str(workdir),
                            "MPLBACKEND": "module://matplotlib_inline.backend_inline"})
    out = text_output(nb)
    findings = [line for line in out.splitlines() if line.startswith("Finding:")]
    assert findings and any(ch.isdigit() for ch in findings[-1]), out[-2000:]
    assert all(marker in out for marker in EXTRA_OUTPUT.get(notebook.name, ())), out[-2000:]
    assert images(nb) >= 1, "each notebook shows at least one plot"
    assert list(workdir.glob("**/*.png")), "each notebook saves its plots under WAVEJAX_NOTEBOOK_WORKDIR"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_has_no_outputs_and_a_tagged_setup_cell(notebook):
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in code), "strip outputs before committing"
    setup = [c for c in code if "colab-setup" in c["metadata"].get("tags", [])]
    assert len(setup) == 1 and 'WAVEJAX_REPO_URL = ""' in "".join(setup[0]["source"])
    assert all("sys.path" not in "".join(c["source"]) for c in code)


def test_there_is_a_notebook_per_family():
    names = {p.name for p in NOTEBOOKS}
    assert len(names) >= 6, names
