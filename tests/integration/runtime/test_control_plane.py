"""`baige run` started by the control plane reports to it: the job's events say what failed and
how fast it came back, its figures reach the API and /metrics, and a node the agent reports
for straggling is cordoned."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

from baige.api import load_specs
from baige.store.tables import WorkloadRow
from tests.integration.conftest import wait_for
from tests.integration.runtime.harness import EXAMPLE

pytestmark = pytest.mark.slow

STEPS = 60


def _job(tmp_path: Path) -> str:
    command = [
        sys.executable, "-m", "baige.runtime", "--nproc-per-node", "2",
        "--monitor-interval", "0.1", "--hang-timeout", "5", "--startup-timeout", "60",
        "--straggler-window", "1", "--straggler-report-after", "2", "--progress-every", "0.5",
        "--run-dir", str(tmp_path / "run"), "--",
        sys.executable, str(EXAMPLE), "--steps", str(STEPS), "--save-every", "4",
        "--log-every", "20", "--linger", "30", "--ckpt-dir", str(tmp_path / "ckpt"),
    ]  # fmt: skip
    return f"""\
kind: TrainingJob
name: reports
queue: default
accelerators: {{count: 2, types: [h100]}}
command: {json.dumps(command)}
env:
  BAIGE_FAULT: "kill:rank=1:step=10,slow:rank=0:step=25:factor=6"
"""


def test_faults_restarts_and_a_slow_node_reach_the_control_plane(
    make_platform, sqlite_url: str, tmp_path: Path
) -> None:
    running = make_platform(sqlite_url, nodes=1)
    client = running.client()
    (spec,) = load_specs(_job(tmp_path))
    job = client.submit(spec)
    done = wait_for(
        lambda: client.job(job.id).phase in ("succeeded", "failed"), timeout=240, interval=0.5
    )
    assert done
    view = client.job(job.id)
    log = (tmp_path / "run" / "events.jsonl").read_text()
    assert view.phase == "succeeded", (view.reason, log[-3000:])
    runtime = view.runtime
    assert runtime is not None, log[-2000:]
    assert runtime.state == "succeeded"
    assert runtime.faults.get("crash") == 1
    assert runtime.restarts == 1
    assert runtime.last_step == STEPS - 1
    assert runtime.max_detection_s is not None and runtime.max_detection_s < 5
    assert runtime.max_recovery_s is not None and runtime.max_recovery_s < 30
    assert runtime.restored_from == "memory"
    assert 0 <= runtime.lost_steps < 4
    assert runtime.stragglers >= 2
    assert runtime.reported_nodes == [n.name for n in client.nodes()]  # the replica's node
    assert runtime.ettr is not None and 0 < runtime.ettr <= 1

    types = [e.type for e in client.events(job.id)]
    for expected in ("RunStarted", "FaultDetected", "RunRestarting", "Restored", "Straggler",
                     "NodeReported", "RunFinished"):  # fmt: skip
        assert expected in types, types
    fault = next(e for e in client.events(job.id) if e.type == "FaultDetected")
    assert "crash of rank(s) 1" in fault.message

    reported = client.node(runtime.reported_nodes[0])
    assert reported.cordoned and job.id in reported.reason


@pytest.fixture
def pending_job(make_platform, sqlite_url: str):
    """A job that stays pending (no such cards here), for posting reports by hand."""
    running = make_platform(sqlite_url, nodes=1)
    client = running.client()
    (spec,) = load_specs(
        "kind: TrainingJob\nname: waits\nqueue: default\n"
        "accelerators: {count: 1, types: [a100-80g]}\ncommand: [python3, -c, '1']\n"
    )
    job = client.submit(spec)
    return running, client, job


def _post(running, job_id: str, token: str, body: object) -> httpx.Response:
    return httpx.post(
        f"{running.url}/v1/jobs/{job_id}/runtime-events",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    )


def test_reports_show_in_metrics_and_only_the_jobs_token_may_send_them(pending_job) -> None:
    running, client, job = pending_job
    with running.platform.db.session() as session:
        row = session.get(WorkloadRow, job.id)
        assert row is not None and row.report_token
        token = "baige_run_" + row.report_token
    events = [
        {"ts": 100.0, "event": "run_started", "ranks": 2},
        {"ts": 101.0, "event": "fault_detected", "kind": "hang", "ranks": [0], "detect_s": 7.5},
        {"ts": 101.5, "event": "restart", "attempt": 1, "restarts_left": 2, "reason": "hang"},
        {
            "ts": 103.0,
            "event": "restored",
            "step": 40,
            "lost_steps": 3,
            "recovery_s": 2.25,
            "source": "memory",
        },
        {
            "ts": 110.0,
            "event": "progress",
            "step": 80,
            "steps_per_s": 9.5,
            "median_step_s": 0.1,
            "loss": 1.25,
        },
        {"ts": 111.0, "event": "something_newer", "x": 1},
    ]
    answer = _post(running, job.id, token, {"replica_id": "r", "node": "n1", "events": events})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": 6}

    runtime = client.job(job.id).runtime
    assert runtime is not None
    assert runtime.faults == {"hang": 1} and runtime.restarts == 1 and runtime.lost_steps == 3
    assert runtime.max_detection_s == 7.5 and runtime.last_recovery_s == 2.25
    assert runtime.last_step == 80 and runtime.steps_per_s == 9.5 and runtime.loss == 1.25
    assert runtime.events == 6

    admin = {"Authorization": f"Bearer {client.token}"}
    metrics = httpx.get(f"{running.url}/metrics", headers=admin).text
    assert f'baige_job_runtime_restarts{{job="{job.id}",queue="default"}} 1.0' in metrics
    assert f'baige_job_runtime_lost_steps{{job="{job.id}",queue="default"}} 3.0' in metrics
    assert f'baige_job_runtime_faults{{job="{job.id}",kind="hang",queue="default"}} 1.0' in metrics

    wrong = _post(running, job.id, "baige_run_not-it", {"events": events})
    assert wrong.status_code == 401 and "report token" in wrong.json()["error"]
    other = client.submit(load_specs(
        "kind: TrainingJob\nname: other\nqueue: default\n"
        "accelerators: {count: 1, types: [a100-80g]}\ncommand: [python3, -c, '1']\n"
    )[0])  # fmt: skip
    stolen = _post(running, other.id, token, {"events": events})  # another job's token
    assert stolen.status_code == 401
    missing = _post(running, "job-nothere", token, {"events": events})
    assert missing.status_code == 401  # as for a wrong token: no telling which ids exist
    empty = _post(running, job.id, token, {"events": []})
    assert empty.status_code == 400 and "events" in empty.text
    assert client.job(job.id).runtime.events == 6  # refused batches changed nothing
