"""Checkpoint before a preemption: a job that declares ``checkpoint:`` is told so by the
control plane, and ``attach()`` turns the SIGTERM of a preemption into
``progress.stop_requested`` — the loop saves and leaves — with a grace after which the
process ends as SIGTERM would have ended it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from baige.api.loader import load_specs
from baige.control.snapshot import launch_record
from baige.store.tables import ReplicaRow, WorkloadRow

SCRIPT = """\
import sys, time
from baige.runtime import attach
progress = attach()
step = 0
print("ready", flush=True)
while not progress.stop_requested and step < 100000:
    time.sleep(0.01)
    step += 1
if progress.stop_requested:
    open(sys.argv[1], "w").write(f"saved at step {step}")
"""
STUBBORN = """\
import time
from baige.runtime import attach
attach()
print("ready", flush=True)
time.sleep(60)
"""


def _run(tmp_path: Path, script: str, env: dict[str, str]) -> subprocess.Popen[str]:
    path = tmp_path / "script.py"
    path.write_text(script)
    process = subprocess.Popen([sys.executable, str(path), str(tmp_path / "saved")],
                               stdout=subprocess.PIPE, text=True,
                               env={**os.environ, **env})  # fmt: skip
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def test_sigterm_asks_the_loop_to_save_and_leave(tmp_path: Path) -> None:
    process = _run(tmp_path, SCRIPT, {"BAIGE_SAVE_ON_STOP": "1"})
    time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGTERM)  # the agent passes the backend's signal on
    assert process.wait(timeout=10) == 0
    assert (tmp_path / "saved").read_text().startswith("saved at step ")


def test_without_the_declaration_sigterm_ends_it_at_once(tmp_path: Path) -> None:
    process = _run(tmp_path, SCRIPT, {"BAIGE_SAVE_ON_STOP": ""})
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == -signal.SIGTERM
    assert not (tmp_path / "saved").exists()


def test_a_script_that_does_not_look_is_ended_after_the_grace(tmp_path: Path) -> None:
    process = _run(tmp_path, STUBBORN, {"BAIGE_SAVE_ON_STOP": "1", "BAIGE_STOP_GRACE_S": "0.5"})
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 128 + signal.SIGTERM
    assert 0.4 < time.monotonic() - started < 5


def test_the_control_plane_tells_checkpointing_jobs() -> None:
    text = """\
kind: TrainingJob
name: j
queue: default
accelerators: {count: 1, types: [h100]}
command: [train]
"""
    for spec_text, expected in ((text, None), (text + "checkpoint: {interval: 5m}\n", "1")):
        (spec,) = load_specs(spec_text)
        workload = WorkloadRow(id="job-1", name="j", kind="TrainingJob", tenant=None,
                               spec=spec.model_dump(mode="json"), accel_type="h100",
                               placements=[{"node": "n0", "devices": [0], "milli": 1000}])  # fmt: skip
        replica = ReplicaRow(id="job-1-g1-r0-a0", workload_id="job-1", generation=1, index=0,
                             node="n0", devices=[0], milli=1000)  # fmt: skip
        env = launch_record(replica, workload, 1, 29500).env
        assert env.get("BAIGE_SAVE_ON_STOP") == expected
