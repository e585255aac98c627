"""Helpers shared by the tests of the experiment scripts (test_experiments, test_*_experiments): a script's main(argv)
run in this process, and the rows of the markdown tables it printed."""

from __future__ import annotations

import contextlib
import io


def run_main(main, argv) -> tuple[int, str, str]:
    """main(argv) of an experiment script, in this process: (exit status, stdout, stderr). A script that stops with a
    one-line error (SystemExit) gives its exit code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def table_rows(stdout: str, first_cell: str) -> list[list[str]]:
    """The cells of the markdown table rows whose first cell is `first_cell`."""
    rows = []
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            rows.append(cells)
    return rows
