"""The local backend: a clean environment, no orphan after a killed shim, honest working_dirs."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from baige.api.workloads import TrainingJobSpec
from baige.backends.base import ReplicaLaunch, ReplicaState
from baige.backends.local import LocalBackend, replica_processes

ACCEL = {"count": 1, "types": ["h100"]}


def wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def launch(backend: LocalBackend, rid: str, code: str, **more: object) -> ReplicaLaunch:
    replica = ReplicaLaunch(
        id=rid, workload_id="job-1", node="n0", command=(sys.executable, "-c", code), **more
    )  # type: ignore[arg-type]
    backend.launch(replica)
    return replica


def ended(backend: LocalBackend, rid: str) -> ReplicaState:
    seen: list[ReplicaState] = []

    def done() -> bool:
        seen.append(backend.observe([rid])[rid].state)
        return seen[-1].ended

    assert wait_for(done)
    return seen[-1]


def test_a_replica_does_not_inherit_the_control_planes_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BAIGE_TEST_SECRET", "leaked")
    backend = LocalBackend(tmp_path / "runs")
    code = "import os; print(sorted(os.environ)); print(os.environ.get('BAIGE_TEST_SECRET'))"
    launch(backend, "r-env", code, env={"MINE": "1"}, working_dir=str(tmp_path))
    assert ended(backend, "r-env") is ReplicaState.SUCCEEDED
    out = backend.log_path("r-env").read_text()
    assert "leaked" not in out and "'MINE'" in out and "'PATH'" in out and "'HOME'" in out
    assert "'BAIGE_REPLICA_ID'" in out


def test_killing_the_shim_leaves_no_copy_running(tmp_path):
    """kill -9 of the shim: the command and a child that left its session are killed before
    the replica is reported lost, so a relaunch never runs next to the old generation."""
    backend = LocalBackend(tmp_path / "runs", launch_grace_s=0.5)
    pids = tmp_path / "pids"
    code = (
        "import os, subprocess, sys, time\n"
        f"open({str(pids)!r}, 'a').write(f'{{os.getpid()}}\\n')\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " start_new_session=True)\n"
        "time.sleep(60)\n"
    )
    launch(backend, "r-kill", code, working_dir=str(tmp_path))
    assert wait_for(lambda: len(replica_processes("r-kill")) >= 3)  # shim, command, escapee
    shim = int((backend.rundir("r-kill") / "pid").read_text())
    os.kill(shim, signal.SIGKILL)
    assert wait_for(lambda: backend.observe(["r-kill"])["r-kill"].state is ReplicaState.LOST)
    assert replica_processes("r-kill") == []


def test_stop_ends_every_process_of_the_replica(tmp_path):
    backend = LocalBackend(tmp_path / "runs")
    code = "import time; time.sleep(60)"
    launch(backend, "r-stop", code, working_dir=str(tmp_path))
    assert wait_for(lambda: len(replica_processes("r-stop")) >= 2)
    backend.stop("r-stop")
    assert ended(backend, "r-stop") is ReplicaState.STOPPED
    assert wait_for(lambda: replica_processes("r-stop") == [], timeout=5)


def test_a_working_dir_gone_by_launch_fails_the_replica_with_its_reason(tmp_path):
    backend = LocalBackend(tmp_path / "runs")
    gone = tmp_path / "gone"
    seen = launch(backend, "r-gone", "print('ran')", working_dir=str(gone))
    observed = backend.observe([seen.id])[seen.id]
    assert observed.state is ReplicaState.FAILED
    assert "working_dir" in observed.reason and str(gone) in observed.reason
    assert "ran" not in backend.log_path("r-gone").read_text()


@pytest.mark.parametrize(
    ("working_dir", "words"),
    [
        ("/nonexistent/dir", "does not exist"),
        ("/etc", "outside the allowed directories"),
        (None, None),
        ("ALLOWED", None),
    ],
)
def test_check_launchable_names_working_dir(tmp_path, working_dir, words):
    backend = LocalBackend(tmp_path / "runs", allowed_workdirs=[tmp_path])
    if working_dir == "ALLOWED":
        working_dir = str(tmp_path)
    spec = TrainingJobSpec(
        name="j", queue="default", accelerators=ACCEL, command=["true"], working_dir=working_dir
    )
    problems = backend.check_launchable(spec)
    if words is None:
        assert problems == []
    else:
        assert [p["field"] for p in problems] == ["working_dir"]
        assert words in str(problems[0]["message"])


def test_a_relative_working_dir_is_refused_by_the_spec():
    with pytest.raises(ValueError, match="must be an absolute path"):
        TrainingJobSpec(
            name="j", queue="default", accelerators=ACCEL, command=["true"], working_dir="../../.."
        )
