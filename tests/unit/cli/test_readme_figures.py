"""The ``baige sim demo`` figures quoted in README.md are what ``baige sim demo`` prints.

The README quotes rows of the demo's table for its default invocation (seed 1). The demo is
deterministic per seed except for its wall time, so the test runs the command as a user
does (a subprocess, about 10 s) and compares every quoted row, cell by cell, exactly.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

from baige.cli import sim as sim_cli

README = Path(__file__).parents[3] / "README.md"
MARKER = "tests/unit/cli/test_readme_figures.py"


def _quoted_rows() -> dict[str, list[str]]:
    """The rows of the first fenced block after the paragraph naming this test."""
    text = README.read_text()
    after = text[text.index(MARKER) :]
    block = after[after.index("```") + 3 :]
    block = block[block.index("\n") + 1 : block.index("```")]
    lines = block.strip("\n").splitlines()
    rows: dict[str, list[str]] = {}
    for line in lines[1:]:  # the first line names the profiles
        label, *cells = re.split(r"\s{2,}", line.strip())
        rows[label] = cells
    return rows


def _printed_rows(args: list[str]) -> dict[str, list[str]]:
    env = {**os.environ, "COLUMNS": "200"}
    out = subprocess.run(
        [sys.executable, "-m", "baige.cli.main", *args],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=120,
    ).stdout
    rows: dict[str, list[str]] = {}
    for line in out.splitlines():
        if line.startswith("│"):
            label, *cells = (cell.strip() for cell in line.strip("│").split("│"))
            rows[label] = cells
    return rows


def test_readme_quotes_what_sim_demo_prints() -> None:
    quoted = _quoted_rows()
    assert len(quoted) >= 5, quoted
    command = README.read_text().split("```sh\nbaige sim demo", 1)[1].split("#", 1)[0].split()
    printed = _printed_rows(["sim", "demo", *command])
    for label, cells in quoted.items():
        assert printed.get(label) == cells, f"README row {label!r}: {cells} != {printed.get(label)}"


def test_readme_headline_matches_the_demo_defaults() -> None:
    """The comment next to `baige sim demo` in README.md states the defaults it runs with."""
    line = next(ln for ln in README.read_text().splitlines() if ln.startswith("baige sim demo"))
    assert "12 simulated hours, 6,000 arrivals, 1,024 accelerators" in line
    defaults = inspect.signature(sim_cli.demo).parameters
    assert defaults["jobs"].default == 6000 and defaults["hours"].default == 12.0
    assert "synthetic day" not in (sim_cli.demo.__doc__ or "")
