"""Scripts that go wrong in ways a restart cannot fix get a message that says what to change,
and no restart; a failing script is restarted until --max-restarts; a node with repeated faults
leaves the job."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.runtime.harness import TOY, run_baige

FAST = ["--monitor-interval", "0.1", "--max-restarts", "3"]


@pytest.mark.parametrize(
    ("mode", "says"),
    [
        ("no-attach", "rank 0 did not call baige.runtime.attach() within 3 s of starting"),
        ("no-step", "rank 0 called attach() but reported no step within 3 s of starting"),
    ],
)
def test_a_script_that_never_reports_progress(tmp_path: Path, mode: str, says: str) -> None:
    run = run_baige(tmp_path, [*FAST, "--startup-timeout", "3", "--", str(TOY), "--mode", mode])
    assert run.returncode == 1
    assert says in run.stderr
    assert "progress.step(step)" in run.stderr and "Not restarting" in run.stderr
    [fault] = run.named("fault_detected")
    assert fault["kind"] == "no_progress" and fault["ranks"] == [0]
    assert not run.named("restart")
    assert run.named("run_finished")[0]["state"] == "failed"


def test_a_script_that_exits_0_before_finishing(tmp_path: Path) -> None:
    run = run_baige(tmp_path, [*FAST, "--", str(TOY), "--mode", "early-exit", "--steps", "10"])
    assert run.returncode == 1
    assert "rank 0 exited with code 0 after step 2 of 10 (attach(total_steps=10))" in run.stderr
    assert "stopped before its training finished" in run.stderr
    [fault] = run.named("fault_detected")
    assert fault["kind"] == "early_exit"
    assert not run.named("restart")


def test_a_script_that_finishes_succeeds(tmp_path: Path) -> None:
    run = run_baige(tmp_path, [*FAST, "--", str(TOY), "--steps", "5"])
    assert run.returncode == 0, run.stderr
    assert "finished at step 4 after 0 restarts" in run.stderr


def test_a_crashing_script_is_restarted_until_max_restarts(tmp_path: Path) -> None:
    run = run_baige(
        tmp_path,
        ["--monitor-interval", "0.1", "--max-restarts", "1", "--", str(TOY), "--crash-at", "2"],
    )
    assert run.returncode == 1
    assert "gave up after 1 restart (--max-restarts 1)" in run.stderr
    faults = run.named("fault_detected")
    assert len(faults) == 2 and all(f["kind"] == "crash" for f in faults)
    assert "exited with code 1 after step 1" in faults[0]["message"]
    assert "toy crash at step 2" in faults[0]["stderr_tail"]["0"]
    assert len(run.named("restart")) == 1


def test_repeated_faults_on_a_node_exclude_it(tmp_path: Path) -> None:
    run = run_baige(
        tmp_path,
        [*FAST, "--max-node-failures", "1", "--", str(TOY), "--steps", "20"],
        env={"BAIGE_FAULT": "kill:rank=0:step=3"},
    )
    assert run.returncode == 3
    assert "left the job after 1 faults on it" in run.stderr
    [excluded] = run.named("node_excluded")
    assert excluded["failures"] == 1
    assert not run.named("restart")
