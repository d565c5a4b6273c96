"""Who may read /metrics (an admin or a metrics token; it names every tenant's queues and
jobs) and who may post a job's runtime events (only the job's own report token: nobody else
may forge the figures /metrics and the console show). The app on a SQLite file, no server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from baige.control.auth import ensure_admin_token
from baige.control.runtime_figures import REPORT_TOKEN_PREFIX
from baige.control.service import ControlService
from baige.server.app import create_app
from baige.store.db import Database
from baige.store.tables import WorkloadRow

JOB = """\
kind: TrainingJob
name: secret-job
queue: team-a
accelerators: {count: 1, types: [h100]}
command: [python3, -c, '1']
"""


class Api:
    def __init__(self, home: Path) -> None:
        self.db = Database(f"sqlite:///{home / 'baige.db'}")
        admin = ensure_admin_token(self.db, home / "admin-token")
        assert admin is not None
        self.http = TestClient(create_app(self.db, ControlService(self.db)))
        self.admin = admin
        queue = "kind: Queue\nname: team-a\ntenant: team-a\n"
        answer = self.post("/v1/queues", admin, content=queue, content_type="application/yaml")
        assert answer.status_code == 201, answer.text
        self.tenant = self.token({"name": "alice", "tenant": "team-a"})
        self.metrics = self.token({"name": "prometheus", "metrics": True})
        answer = self.post("/v1/jobs", self.tenant, content=JOB, content_type="application/yaml")
        assert answer.status_code == 201, answer.text
        self.job: str = answer.json()["id"]

    def token(self, body: dict[str, object]) -> str:
        answer = self.post("/v1/tokens", self.admin, json=body)
        assert answer.status_code == 201, answer.text
        token: str = answer.json()["token"]
        return token

    def get(self, path: str, token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        answer: httpx.Response = self.http.get(path, headers=headers)
        return answer

    def post(
        self, path: str, token: str | None, *, content_type: str = "", **kwargs: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if content_type:
            headers["Content-Type"] = content_type
        answer: httpx.Response = self.http.post(path, headers=headers, **kwargs)
        return answer

    def report_token(self) -> str:
        with self.db.session() as session:
            row = session.get(WorkloadRow, self.job)
            assert row is not None and row.report_token
            return REPORT_TOKEN_PREFIX + row.report_token


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    made = Api(tmp_path)
    yield made
    made.http.close()
    made.db.dispose()


@pytest.mark.parametrize(
    ("who", "status"),
    [("nobody", 401), ("a wrong token", 401), ("a tenant", 403), ("the admin", 200),
     ("a metrics token", 200)],
)  # fmt: skip
def test_metrics_need_an_admin_or_a_metrics_token(api: Api, who: str, status: int) -> None:
    token = {"nobody": None, "a wrong token": "baige_nope", "a tenant": api.tenant,
             "the admin": api.admin, "a metrics token": api.metrics}[who]  # fmt: skip
    answer = api.get("/metrics", token)
    assert answer.status_code == status, answer.text
    if status == 200:
        assert 'baige_queue_pending{queue="team-a"} 1.0' in answer.text
    else:
        assert "team-a" not in answer.text and api.job not in answer.text


def test_a_metrics_token_reads_metrics_and_nothing_else(api: Api) -> None:
    for path in ("/v1/jobs", f"/v1/jobs/{api.job}", "/v1/queues", "/v1/me", "/v1/overview"):
        answer = api.get(path, api.metrics)
        assert answer.status_code == 403, (path, answer.text)
        assert "metrics" in answer.json()["error"]
    made = api.post("/v1/tokens", api.metrics, json={"name": "x", "admin": True})
    assert made.status_code == 403
    both = api.post("/v1/tokens", api.admin, json={"name": "x", "metrics": True, "tenant": "t"})
    assert both.status_code == 400 and both.json()["problems"][0]["field"] == "metrics"


def test_only_the_jobs_report_token_may_post_its_runtime_events(api: Api) -> None:
    events = {"events": [{"event": "restart", "attempt": 1, "restarts_left": 2}]}
    path = f"/v1/jobs/{api.job}/runtime-events"
    assert api.post(path, None, json=events).status_code == 401
    assert api.post(path, "baige_nope", json=events).status_code == 401
    for token in (api.tenant, api.admin, api.metrics):  # the job's owner cannot forge figures
        answer = api.post(path, token, json=events)
        assert answer.status_code == 403 and "report token" in answer.json()["error"]
    # and a user token learns nothing of which jobs exist
    assert (
        api.post("/v1/jobs/job-nothere/runtime-events", api.tenant, json=events).status_code == 403
    )
    assert api.post(path, api.report_token(), json=events).json() == {"accepted": 1}
    job = api.get(f"/v1/jobs/{api.job}", api.tenant).json()
    assert job["runtime"]["restarts"] == 1


def test_a_report_cordons_only_a_node_the_job_runs_on(api: Api) -> None:
    """A job's report token must not be a way to cordon other tenants' nodes."""
    node = {"nodes": [{"name": "elsewhere", "accelerators": {"type": "h100", "count": 8}}]}
    assert api.post("/v1/nodes", api.admin, json=node).status_code == 201
    report = {"node": "elsewhere", "events": [{"event": "node_reported", "message": "slow"}]}
    answer = api.post(f"/v1/jobs/{api.job}/runtime-events", api.report_token(), json=report)
    assert answer.status_code == 200
    assert api.get("/v1/nodes/elsewhere", api.admin).json()["cordoned"] is False
    kinds = [e["type"] for e in api.get(f"/v1/jobs/{api.job}/events", api.tenant).json()]
    assert "ReportIgnored" in kinds


def test_hostile_runtime_events_are_bounded(api: Api) -> None:
    """What a job's own agent posts is data from the tenant: wrong types are dropped, text is
    cut short, attempts and fault kinds are bounded, a clock far off is ignored."""
    path = f"/v1/jobs/{api.job}/runtime-events"
    token = api.report_token()
    odd = {"events": [
        {"event": "fault_detected", "ranks": 5, "kind": "crash", "attempt": 1},
        {"event": "fault_detected", "ranks": True, "kind": {"x": 1}, "attempt": 2},
        {"event": "restart", "attempt": 3, "reason": "R" * 5_000_000, "ts": 1e308},
    ]}  # fmt: skip
    answer = api.post(path, token, json=odd)
    assert answer.status_code == 200, answer.text
    events = api.get(f"/v1/jobs/{api.job}/events", api.tenant).json()
    assert max(len(e["message"]) for e in events) < 2000
    assert all(e["ts"] < 1e12 for e in events)
    many = {"events": [{"event": "fault_detected", "attempt": 10 + i, "kind": f"k{i}"}
                       for i in range(1000)]}  # fmt: skip
    for _ in range(3):
        assert api.post(path, token, json=many).status_code == 200
    runtime = api.get(f"/v1/jobs/{api.job}", api.tenant).json()["runtime"]
    assert len(runtime["faults"]) <= 17 and runtime["faults"]["other"] >= 900
    metrics = api.get("/metrics", api.admin).text
    assert metrics.count("baige_job_runtime_faults{") <= 17


def test_a_guessed_report_token_does_not_tell_which_jobs_exist(api: Api) -> None:
    events = {"events": [{"event": "restart"}]}
    headers = "baige_run_guess"
    real = api.post(f"/v1/jobs/{api.job}/runtime-events", headers, json=events)
    missing = api.post("/v1/jobs/job-nothere/runtime-events", headers, json=events)
    assert real.status_code == missing.status_code == 401
    assert real.json()["error"] == missing.json()["error"]
