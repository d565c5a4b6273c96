"""``baige sim run`` / ``compare`` as a user runs them: outputs, JSON, and clean errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from baige.cli.main import app
from tests.unit.sim.helpers import INFLATION, SMALL, write

runner = CliRunner()

SHORT = SMALL.replace("duration: 12h", "duration: 3h").replace("jobs: 400", "jobs: 120")


def test_run_writes_summary_and_timeline(tmp_path: Path) -> None:
    scenario = write(tmp_path, "s.yaml", SHORT)
    out = tmp_path / "out"
    result = runner.invoke(app, ["sim", "run", str(scenario), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["accelerators"] == 96 and summary["policy"] == "baige"
    written = json.loads((out / "summary.json").read_text())
    assert written["jobs_submitted"] == summary["jobs_submitted"]
    assert (out / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    header = (out / "timeline.csv").read_text().splitlines()[0]
    assert header.startswith("hour,available,allocated_training")


def test_run_prints_a_table(tmp_path: Path) -> None:
    scenario = write(tmp_path, "s.yaml", SHORT)
    result = runner.invoke(app, ["sim", "run", str(scenario), "--policy", "fifo"])
    assert result.exit_code == 0, result.output
    assert "allocation rate" in result.output and "fifo" in result.output


def test_compare_runs_one_scenario_under_two_policies(tmp_path: Path) -> None:
    scenario = write(tmp_path, "s.yaml", SHORT)
    result = runner.invoke(
        app, ["sim", "compare", str(scenario), "-p", "fifo", "-p", "baige", "--json"]
    )
    assert result.exit_code == 0, result.output
    fifo, baige = json.loads(result.stdout)
    assert (fifo["policy"], baige["policy"]) == ("fifo", "baige")
    assert fifo["jobs_submitted"] == baige["jobs_submitted"]


def test_compare_two_files(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", SHORT.replace("policy: baige", "policy: fifo"))
    b = write(tmp_path, "b.yaml", SHORT)
    result = runner.invoke(app, ["sim", "compare", str(a), str(b)])
    assert result.exit_code == 0, result.output
    assert "fifo" in result.output and "baige" in result.output


def test_inflation_run(tmp_path: Path) -> None:
    scenario = write(tmp_path, "i.yaml", INFLATION)
    out = tmp_path / "out"
    result = runner.invoke(app, ["sim", "run", str(scenario), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "fgd" in result.output and "random" in result.output
    data = json.loads((out / "summary.json").read_text())
    assert set(data["policies"]) == {"random", "fgd"}
    assert (out / "inflation.png").exists()


def test_bad_scenario_is_a_clear_error(tmp_path: Path) -> None:
    scenario = write(tmp_path, "s.yaml", SHORT.replace("jobs: 120", "jobs: -1"))
    result = runner.invoke(app, ["sim", "run", str(scenario)])
    assert result.exit_code == 2
    assert f"{scenario}:17: workloads.synthetic.jobs:" in result.output
    assert "Traceback" not in result.output


def test_bad_input_as_json(tmp_path: Path) -> None:
    scenario = write(tmp_path, "s.yaml", SHORT.replace("policy: baige", "policy: nope"))
    result = runner.invoke(app, ["sim", "run", str(scenario), "--json"])
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["problems"][0]["line"] == 5 and data["problems"][0]["field"] == "policy"


def test_missing_scenario_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["sim", "run", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml: file not found" in result.output


def test_unknown_policy_option(tmp_path: Path) -> None:
    scenario = write(tmp_path, "s.yaml", SHORT)
    result = runner.invoke(app, ["sim", "run", str(scenario), "--policy", "nope"])
    assert result.exit_code == 2
    assert "--policy: unknown profile 'nope'" in result.output


def test_examples_are_valid() -> None:
    from baige.sim.scenario import load_scenario  # noqa: PLC0415

    examples = sorted((Path(__file__).parents[3] / "examples" / "sim").glob("*.yaml"))
    assert len(examples) >= 7
    for path in examples:
        assert load_scenario(path).scenario.name
