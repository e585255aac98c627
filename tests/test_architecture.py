"""The house rules a machine can check: docs/ARCHITECTURE.md matches the code (each family's forward pass in at most
two files that exist, the layers as the import contract states them), and no file or function outgrows a reading."""

import ast
import re
import tomllib

from conftest import REPO

ARCHITECTURE = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
CODE_DIRS = ("wavejax", "pallas_kernels", "experiments", "tests", "configs")


def python_files():
    for folder in CODE_DIRS:
        yield from sorted((REPO / folder).rglob("*.py"))


def test_each_family_forward_pass_is_found_in_at_most_two_existing_files():
    section = ARCHITECTURE.split("## Where each family's forward pass lives", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    families = {cells[0].strip(): re.findall(r"`([^`]+\.py)`", cells[1]) for cells in rows[1:]}
    assert set(families) == {"baseline GPT", "Harmonic GPT", "PhaseGPT", "Wave-Native GPT", "holographic memory",
                             "oscillator field"}
    for family, files in families.items():
        assert 1 <= len(files) <= 2, (family, files)
        assert all((REPO / f).is_file() for f in files), (family, files)


def test_the_documented_layers_are_the_import_contract():
    contract = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    block = ARCHITECTURE.split("## The layers", 1)[1].split("```", 2)[1]
    documented = [re.split(r"\s{2,}", line.strip())[0] for line in block.strip().splitlines()
                  if line.strip() and not line.startswith(" ")]
    assert [layer.replace(" ", "") for layer in documented] == [layer.replace(" ", "") for layer in contract["layers"]]


def test_no_file_over_500_lines_and_no_function_over_80():
    long_files, long_functions = [], []
    for path in python_files():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 500:
            long_files.append(str(path.relative_to(REPO)))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80:
                long_functions.append(f"{path.relative_to(REPO)}:{node.name}")
    assert long_files == [] and long_functions == []


def test_no_path_hacks_and_no_path_regex_sharding_table():
    for path in python_files():
        text = path.read_text(encoding="utf-8")
        if path.parts[len(REPO.parts)] == "experiments":
            assert "sys.path.insert" not in text, path
        assert "PARAM_AXES" not in text or path.name == "test_architecture.py", path
