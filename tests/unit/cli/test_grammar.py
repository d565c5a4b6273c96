"""One CLI grammar: every command but ``up`` and ``run`` takes ``--json``; errors under it are
``{"error", "status", "problems"}`` on stdout with a non-zero exit; nothing a user or server
wrote is taken for rich markup; IDs never wrap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from baige.cli import control
from baige.cli.main import app
from baige.cli.output import error_json, print_table
from baige.client import BaigeError

runner = CliRunner()

# `up` serves until stopped and prints a log; `run` hands its output to the training command.
NO_JSON = {"up", "run"}


def _commands() -> dict[str, object]:
    root = get_command(app)
    found: dict[str, object] = {}

    def walk(command: object, prefix: str) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            found[prefix] = command
            return
        for name, sub in subcommands.items():
            walk(sub, f"{prefix} {name}".strip())

    walk(root, "")
    return found


def test_every_command_but_up_and_run_takes_json() -> None:
    commands = _commands()
    assert {"logs", "scale", "cancel", "cordon", "drain", "uncordon", "token"} <= set(commands)
    missing = [
        name
        for name, command in commands.items()
        if name not in NO_JSON
        and not any("--json" in p.opts for p in getattr(command, "params", []))
    ]
    assert missing == []


@pytest.mark.parametrize(
    "args",
    [
        ["jobs"],
        ["job", "job-x"],
        ["logs", "job-x"],
        ["cancel", "job-x"],
        ["scale", "svc-x", "2"],
        ["cordon", "n"],
        ["uncordon", "n"],
        ["drain", "n"],
        ["token", "bob", "--tenant", "t"],
        ["nodes"],
        ["queues"],
        ["services"],
    ],
)
def test_errors_are_json_under_json(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    monkeypatch.setenv("BAIGE_URL", "http://127.0.0.1:9")  # nothing listens there
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert set(data) == {"error", "status", "problems"}
    assert "cannot reach Baige" in data["error"] and data["status"] is None


def test_submit_spec_errors_are_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Queue\nname: q\nweight: 0\n")
    result = runner.invoke(app, ["submit", str(bad), "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["problems"][0]["line"] == 3 and data["status"] is None


def test_error_shape_is_the_api_body_plus_status() -> None:
    assert error_json("x", 404, [{"field": "f"}]) == {
        "error": "x",
        "status": 404,
        "problems": [{"field": "f"}],
    }


def test_a_401_says_where_the_token_came_from(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BAIGE_TOKEN", "wrong")
    with pytest.raises(typer.Exit):
        control._fail(BaigeError("invalid token", 401), json_output=True)
    message = json.loads(capsys.readouterr().out)["error"]
    assert "BAIGE_TOKEN variable" in message and "admin-token" in message
    monkeypatch.delenv("BAIGE_TOKEN")
    monkeypatch.setenv("BAIGE_HOME", str(tmp_path))
    with pytest.raises(typer.Exit):
        control._fail(BaigeError("invalid token", 401), json_output=True)
    assert "there is no" in json.loads(capsys.readouterr().out)["error"]
    (tmp_path / "admin-token").write_text("stale")
    with pytest.raises(typer.Exit):
        control._fail(BaigeError("invalid token", 401), json_output=True)
    assert str(tmp_path / "admin-token") in json.loads(capsys.readouterr().out)["error"]


def test_brackets_in_messages_are_printed(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "kind: TrainingJob\nname: x\nqueue: q\ncommand: python train.py\n"
        "accelerators: {types: [h100]}\n"
    )
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "such as [python, train.py], not a shell string" in result.output


def test_ids_do_not_wrap_at_80_columns(capsys: pytest.CaptureFixture[str]) -> None:
    from baige.cli import output  # noqa: PLC0415

    output.console.width = 80  # what COLUMNS=80 gives
    try:
        long_id = "svc-0123456789abcdef0123"
        print_table(
            "Services",
            ["ID", "NAME", "REASON"],
            [(long_id, "a-long-service-name", "admitted: 2 replica(s) on h100 " * 4)],
        )
    finally:
        output.console.width = None  # type: ignore[assignment]
    out = capsys.readouterr().out
    assert long_id in out
    assert all(len(line) <= 80 for line in out.splitlines())


def test_log_lines_as_json_records() -> None:
    lines = control._LogLines()
    assert lines.feed(b"[r0] step 1\n[r1] st") == [{"replica": "r0", "line": "step 1"}]
    assert lines.feed(b"ep 2\nplain [x]\n") == [
        {"replica": "r1", "line": "step 2"},
        {"replica": None, "line": "plain [x]"},
    ]
    assert lines.feed(b"tail") == [] and lines.flush() == [{"replica": None, "line": "tail"}]


def test_version_and_catalog_json() -> None:
    assert json.loads(runner.invoke(app, ["version", "--json"]).stdout)["version"]
    table = runner.invoke(app, ["catalog"]).output
    assert "Sources:" in table and "datasheet" in table


@pytest.mark.parametrize(
    "argv",
    [["submit", "--json"], ["jobs", "--bogus", "--json"], ["scale", "svc-1", "--json"]],
)
def test_usage_errors_are_json_too(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A usage error (a missing argument, an unknown option) under --json is the same JSON
    error shape on stdout, exit 2, as every other error."""
    from baige.cli.main import main  # noqa: PLC0415

    with pytest.raises(SystemExit) as ended:
        main(argv)
    assert ended.value.code == 2
    body = json.loads(capsys.readouterr().out)
    assert set(body) == {"error", "status", "problems"} and body["error"]
