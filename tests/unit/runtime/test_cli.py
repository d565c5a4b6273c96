"""`baige run`'s command line: every way to start it wrong is refused before anything starts,
with a sentence that says what to change."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from baige.cli.run import CONTEXT_SETTINGS, run
from baige.runtime.__main__ import app
from baige.runtime.launch import RunConfig, UsageError, resolve

runner = CliRunner()
SCRIPT = Path(__file__).parents[3] / "examples" / "runtime" / "train_transformer.py"


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--", str(SCRIPT)], {"BAIGE_FAULT": "boom:rank=1"}, "unknown kind 'boom'"),
        (["--fault", "kill:rank=1", str(SCRIPT)], {}, "kill needs step=N"),
        (
            ["--nproc-per-node", "2", "--fault", "hang:rank=2:step=3", str(SCRIPT)],
            {},
            "names rank 2 but the job has 2 ranks (0..1)",
        ),
        (["--", "no/such/train.py"], {}, "script not found: no/such/train.py"),
        (["--", "no-such-command-xyz"], {}, "command not found: no-such-command-xyz"),
        (["--nnodes", "2", str(SCRIPT)], {}, "needs --rdzv-endpoint HOST:PORT"),
        (["--nnodes", "3:2", str(SCRIPT)], {}, "need 0 < MIN <= MAX"),
        (["--nproc-per-node", "0", str(SCRIPT)], {}, "--nproc-per-node must be >= 1"),
        (["--straggler-factor", "1", str(SCRIPT)], {}, "straggler factor must be > 1"),
    ],
)
def test_usage_errors_exit_2_with_the_reason(
    args: list[str], env: dict[str, str], expected: str, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["--run-dir", str(tmp_path / "run"), *args], env=env)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert not (tmp_path / "run").exists()  # nothing was started


def test_wired_into_a_multi_command_app_the_script_keeps_its_options(tmp_path: Path) -> None:
    """As src/baige/cli/main.py wires it: options after the script belong to the script."""
    baige = typer.Typer()
    baige.command(name="version")(lambda: None)
    baige.command(name="run", context_settings=CONTEXT_SETTINGS)(run)
    result = runner.invoke(
        baige,
        ["run", "--run-dir", str(tmp_path), "--fault", "kill:rank=0", str(SCRIPT), "--steps", "3"],
    )
    assert result.exit_code == 2
    assert "kill needs step=N" in result.output  # not "No such option: --steps"


def test_baige_run_is_a_command_of_baige() -> None:
    from baige.cli.main import app as baige  # noqa: PLC0415

    result = runner.invoke(baige, ["run", "--fault", "kill:rank=0", str(SCRIPT), "--steps", "3"])
    assert result.exit_code == 2
    assert "kill needs step=N" in result.output


def test_a_missing_command_is_a_usage_error() -> None:
    result = runner.invoke(app, [])
    assert result.exit_code == 2
    assert "Missing argument" in result.output


def test_a_bad_fault_string_fails_fast_from_the_shell(tmp_path: Path) -> None:
    env = {**os.environ, "BAIGE_FAULT": "kill:rank=1:step=ten"}
    out = subprocess.run(
        [sys.executable, "-m", "baige.runtime", "--run-dir", str(tmp_path), "--", str(SCRIPT)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert (
        "baige run: error: BAIGE_FAULT='kill:rank=1:step=ten': fault 'kill:rank=1:step=ten': "
        "step='ten' is not an integer" in out.stderr
    )


def test_started_by_the_control_plane_each_replica_is_a_node(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key, value in {
        "BAIGE_WORKLOAD_ID": "w-42",
        "RANK": "1",
        "WORLD_SIZE": "3",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29517",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("BAIGE_FAULT", raising=False)
    config = resolve(RunConfig(command=(str(SCRIPT),), nproc_per_node=2, run_dir=tmp_path))
    assert (config.rdzv_backend, config.rdzv_endpoint) == ("c10d", "127.0.0.1:29517")
    assert (config.nnodes, config.node_rank, config.run_id) == ("3:3", 1, "w-42")
    assert config.max_node_failures == 3


def test_standalone_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BAIGE_WORKLOAD_ID", raising=False)
    monkeypatch.delenv("BAIGE_FAULT", raising=False)
    config = resolve(RunConfig(command=(str(SCRIPT),), run_dir=tmp_path))
    assert (config.rdzv_backend, config.rdzv_endpoint, config.nnodes) == (
        "c10d",
        "localhost:0",
        "1:1",
    )
    assert config.max_node_failures == 0 and config.run_id
    with pytest.raises(UsageError, match="static rendezvous needs --node-rank"):
        resolve(RunConfig(command=(str(SCRIPT),), rdzv_backend="static", rdzv_endpoint="h:1"))
