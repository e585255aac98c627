"""The README's promises that a machine can check: its first three commands, and CI runs its test command."""

import pathlib
import re
import shlex

REPO = pathlib.Path(__file__).resolve().parents[1]


def _opening_commands():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.strip().splitlines()]


def test_readme_opens_with_install_run_and_test():
    install, run, test = _opening_commands()
    assert install == 'pip install -e ".[dev]"'
    assert run.startswith("python -m wavejax.main --config=")
    assert test == "pytest -q"
    config_file = shlex.split(run)[3].split("=", 1)[1].split(":")[0]
    assert (REPO / config_file).is_file(), config_file


def test_ci_installs_and_tests_as_the_readme_says():
    install, _, test = _opening_commands()
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    lines = [line.strip() for line in ci.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert any(line.endswith('install -q "$@" -e ".[dev]")') for line in lines), "CI must use the README's install"
    assert test in lines and "pytest -q -m smoke" in lines
    assert "WAVEJAX_DATA_DIR" not in ci and "shared" not in ci


def test_docs_link_only_to_files_in_the_repository():
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        assert "../shared" not in text, doc
        for target in re.findall(r"\]\(([^)#\s]+)", text):
            if "://" in target:
                continue
            assert (doc.parent / target).exists(), f"{doc.name} links to {target}, which is not in the repository"


def test_results_commands_name_existing_scripts():
    text = (REPO / "docs" / "RESULTS.md").read_text(encoding="utf-8")
    scripts = set(re.findall(r"experiments/[\w]+\.py", text))
    assert scripts, "docs/RESULTS.md must name the experiments/ scripts behind its numbers"
    for script in scripts:
        assert (REPO / script).is_file(), script
