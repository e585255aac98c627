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
    """Every experiment command in docs/RESULTS.md and the README runs a module of the package experiments that exists
    and has a command line (`python -m experiments.<kind>.<name>`), and every script file they name exists; no command runs
    a script by its path."""
    kinds = "|".join(p.parent.name for p in (REPO / "experiments").glob("*/__init__.py"))
    named = set()
    for doc in (REPO / "docs" / "RESULTS.md", REPO / "README.md", REPO / "docs" / "CLAIMS.md"):
        text = doc.read_text(encoding="utf-8")
        old = re.findall(r"python3? experiments/\S+", text)
        assert not old, f"{doc.name} runs scripts by path; use python -m experiments.<kind>.<name>: {old}"
        for module in set(re.findall(r"python -m (experiments(?:\.\w+)+)", text)):
            script = REPO / (module.replace(".", "/") + ".py")
            if not script.is_file():  # a package run as python -m PACKAGE
                script = REPO / module.replace(".", "/") / "__main__.py"
            assert script.is_file(), f"{doc.name}: {module} is not a module of experiments/"
            assert 'if __name__ == "__main__":' in script.read_text(encoding="utf-8"), f"{module} has no command line"
            named.add(module)
        for path in set(re.findall(rf"experiments/(?:{kinds})/[\w/]+\.py", text)):
            assert (REPO / path).is_file(), f"{doc.name} names {path}, which is not in the repository"
    assert len(named) > 10, "docs/RESULTS.md must name the experiments/ scripts behind its numbers"
