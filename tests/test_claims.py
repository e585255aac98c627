"""The claims ledger (experiments/claims/ledger.py): docs/CLAIMS.md and the README's headline rows are what the
results files in docs/results/ give, every claim has a verdict and a command, and a missing results file is one
`error:` line that names it and the command that writes it."""

import json
import math
import re
import shutil
import subprocess
import sys

import pytest

from experiments import common as C
from experiments.claims import ledger, rows
from experiments.claims.verdicts import FAILS, HOLDS, UNTESTED, delta, significant

from conftest import REPO

RESULTS = REPO / "docs" / "results"
VERDICT = re.compile(rf"\*\*({HOLDS}|{FAILS}|{UNTESTED}|artefact of [^*]+)\*\*")


def run_ledger(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "experiments.claims", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_committed_page_and_readme_are_what_the_results_files_give():
    """CI's check: rebuilt from docs/results/, docs/CLAIMS.md and the README block are unchanged."""
    page, block = ledger.build(str(RESULTS), rows.CLAIMS, rows.FAMILIES, rows.COMMANDS)
    assert (REPO / "docs" / "CLAIMS.md").read_text(encoding="utf-8") == page, "run python -m experiments.claims"
    assert block in (REPO / "README.md").read_text(encoding="utf-8"), "run python -m experiments.claims"


def test_every_claim_of_the_issue_has_a_row_with_a_verdict_and_a_command():
    ids = [c.id for c in rows.CLAIMS]
    assert len(ids) == len(set(ids))
    for family, count in {"F": 6, "H": 2, "P": 5, "M": 4, "W": 3}.items():
        assert sum(i.startswith(family) for i in ids) >= count, (family, ids)
    page = (REPO / "docs" / "CLAIMS.md").read_text(encoding="utf-8")
    for c in rows.CLAIMS:
        line = next(x for x in page.splitlines() if x.startswith(f"| {c.id} | ") and x.count(" | ") >= 6)
        assert VERDICT.search(line), line
        assert "`python -m " in line.rsplit(" | ", 1)[-1], line
    assert len(re.findall(r"^\| [A-Z]\d+ \| ", page, flags=re.M)) == 2 * len(ids)  # summary + family tables


def test_results_files_are_small_and_record_their_command():
    files = sorted(RESULTS.glob("*.json"))
    assert {p.stem for c in rows.CLAIMS for p in map(lambda n: RESULTS / f"{n}.json", c.needs)} <= {p.stem for p in files}
    for path in files:
        payload = json.loads(path.read_text(encoding="utf-8"))
        assert payload["command"].startswith("python -m experiments."), path
        assert "--results docs/results/" + path.name in payload["command"], path
        assert path.stat().st_size < 64_000, path


def test_a_missing_results_file_is_one_error_line_naming_it_and_its_command(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    (results / "phase_dynamics.json").unlink()
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    p = run_ledger("--results_dir", str(results), "--claims_md", str(tmp_path / "CLAIMS.md"),
                   "--readme", str(tmp_path / "README.md"))
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "phase_dynamics.json is missing" in lines[0], p.stderr
    assert "python -m experiments.claims.phase_dynamics" in lines[0]
    assert not (tmp_path / "CLAIMS.md").exists()

    (results / "phase_dynamics.json").write_text("{not json", encoding="utf-8")
    p = run_ledger("--results_dir", str(results), "--claims_md", str(tmp_path / "CLAIMS.md"),
                   "--readme", str(tmp_path / "README.md"))
    assert p.returncode == 2 and "cannot be read" in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_check_fails_on_a_stale_page_and_the_rebuild_fixes_it(tmp_path):
    page, readme = tmp_path / "CLAIMS.md", tmp_path / "README.md"
    shutil.copy(REPO / "docs" / "CLAIMS.md", page)
    shutil.copy(REPO / "README.md", readme)
    page.write_text(page.read_text(encoding="utf-8").replace("holds", "HOLDS", 1), encoding="utf-8")
    args = ("--claims_md", str(page), "--readme", str(readme))
    p = run_ledger("--check", *args)
    assert p.returncode == 1 and p.stderr.startswith("error: ") and "CLAIMS.md" in p.stderr, p.stderr
    assert run_ledger(*args).returncode == 0
    assert run_ledger("--check", *args).returncode == 0
    assert page.read_text(encoding="utf-8") == (REPO / "docs" / "CLAIMS.md").read_text(encoding="utf-8")


def test_write_results_keeps_six_digits_and_writes_nan_as_null(tmp_path):
    path = tmp_path / "x.json"
    C.write_results(str(path), "experiments.x", ["--results", str(path)],
                    {"a": math.pi, "b": float("nan"), "c": (1, 2.5), "d": {3: True}})
    payload = json.loads(path.read_text(encoding="utf-8"))
    assert payload["command"] == f"python -m experiments.x --results {path}"
    assert payload["data"] == {"a": 3.14159, "b": None, "c": [1, 2.5], "d": {"3": True}}


def test_significance_is_two_standard_errors():
    a, b = [1.0, 1.1, 0.9], [2.0, 2.1, 1.9]
    d, se = delta(a, b)
    assert d == pytest.approx(-1.0) and se == pytest.approx(math.sqrt(2 * 0.01 / 3))
    assert significant(a, b) == -1 and significant(b, a) == 1 and significant(a, [1.05, 0.95, 1.0]) == 0
