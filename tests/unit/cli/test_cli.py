"""The command line, run as a user runs it (a real subprocess for the entry point)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from baige.cli.main import app

runner = CliRunner()
EXAMPLES = Path(__file__).parents[3] / "examples" / "specs"


def test_help_lists_the_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "baige.cli.main", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for command in ("validate", "catalog", "sim", "version"):
        assert command in out


def test_validate_examples() -> None:
    result = runner.invoke(app, ["validate", *map(str, sorted(EXAMPLES.glob("*.yaml")))])
    assert result.exit_code == 0, result.output
    assert "TrainingJob llama3-8b-pretrain" in result.output


def test_validate_reports_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "kind: TrainingJob\nname: x\nqueue: q\nreplicas: 0\ncommand: [a]\n"
        "accelerators: {types: [h100]}\n"
    )
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:4: replicas:" in result.output
    assert "Traceback" not in result.output


def test_validate_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Queue\nname: q\nweight: 0\n")
    result = runner.invoke(app, ["validate", "--json", str(bad), str(EXAMPLES / "queues.yaml")])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data[0]["ok"] is False and data[0]["problems"][0]["line"] == 3
    assert data[1]["ok"] is True and len(data[1]["specs"]) == 4


def test_catalog_json_lists_known_chips() -> None:
    result = runner.invoke(app, ["catalog", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["h100"]["bf16_dense_tflops"] == 989
    assert data["ascend-910b"]["visibility_env"] == "ASCEND_RT_VISIBLE_DEVICES"


def test_sim_demo_json_small() -> None:
    result = runner.invoke(app, ["sim", "demo", "--jobs", "200", "--hours", "1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["profile"] for r in data] == ["baige", "fifo"]
    assert all(r["jobs_submitted"] > 0 for r in data)


def test_sim_demo_unknown_profile_is_a_clear_error() -> None:
    result = runner.invoke(app, ["sim", "demo", "--profile", "nope", "--jobs", "10"])
    assert result.exit_code == 2
    assert "unknown profile 'nope'" in result.output
