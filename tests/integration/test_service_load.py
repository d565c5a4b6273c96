"""``GET /v1/services/{id}/load`` and the overview's training-vs-inference split: the app on
SQLite and PostgreSQL (no server, no controller), samples written the way the controller
writes them, the gateway's board on a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from baige.control.auth import create_token, ensure_admin_token
from baige.control.load_board import LoadBoard
from baige.control.service import ControlService, record_event
from baige.control.usage import record_service_load
from baige.server.app import create_app
from baige.store.db import Database
from baige.store.tables import ReplicaRow, SampleRow, WorkloadRow

NOW = 1_800_000_000.0
SERVICE = """\
kind: InferenceService
name: chat
queue: team-a
replicas: 2
accelerators: {share: 0.25, types: [h100]}
command: [python3, -c, '1']
"""
JOB = """\
kind: TrainingJob
name: pretrain
queue: team-a
accelerators: {count: 8, types: [h100]}
command: [python3, -c, '1']
"""


class Api:
    """The app with two tenants, alice's service and job, and a board on a fake clock."""

    def __init__(self, db_url: str, home: Path) -> None:
        self.db = Database(db_url)
        self.now = NOW
        self.board = LoadBoard(clock=lambda: self.now)
        self.service = ControlService(self.db, clock=lambda: self.now)
        admin = ensure_admin_token(self.db, home / "admin-token")
        assert admin is not None
        self.admin = admin
        self.http = TestClient(create_app(self.db, self.service, board=self.board))
        for tenant in ("team-a", "team-b"):
            queue = f"kind: Queue\nname: {tenant}\ntenant: {tenant}\n"
            assert self.post("/v1/queues", admin, queue).status_code == 201
        self.alice = create_token(self.db, "alice", "team-a")
        self.bob = create_token(self.db, "bob", "team-b")
        self.svc: str = self.post("/v1/services", self.alice, SERVICE).json()["id"]
        self.job: str = self.post("/v1/jobs", self.alice, JOB).json()["id"]

    def post(self, path: str, token: str, body: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"}
        answer: httpx.Response = self.http.post(path, content=body, headers=headers)
        assert answer.status_code == 201, answer.text
        return answer

    def get(self, path: str, token: str) -> httpx.Response:
        answer: httpx.Response = self.http.get(path, headers={"Authorization": f"Bearer {token}"})
        return answer

    def run(self, replicas: int, running: int) -> None:
        """The service admitted at ``replicas`` with ``running`` of them up, as the
        controller would leave it; the job on 8 whole cards."""
        with self.db.session() as session:
            svc = session.get(WorkloadRow, self.svc)
            job = session.get(WorkloadRow, self.job)
            assert svc is not None and job is not None
            svc.replicas, svc.phase, svc.accel_type = replicas, "running", "h100"
            svc.placements = [{"node": "n-1", "devices": [i], "milli": 250}
                              for i in range(replicas)]  # fmt: skip
            job.phase, job.accel_type = "running", "h100"
            job.placements = [{"node": "n-0", "devices": list(range(8)), "milli": 1000}]
            session.flush()
            session.query(ReplicaRow).filter(ReplicaRow.workload_id == self.svc).delete()
            for index in range(replicas):
                session.add(ReplicaRow(
                    id=f"{self.svc}-{index}-{self.now}", workload_id=self.svc, generation=1,
                    index=index, node="n-1", devices=[index], milli=250, desired="running",
                    state="running" if index < running else "pending"))  # fmt: skip

    def sample(self) -> None:
        """What the controller does every 30 s."""
        with self.db.session() as session:
            record_service_load(session, self.now, self.board.figures())


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[Api]:
    made = Api(db_url, tmp_path)
    yield made
    made.http.close()
    made.db.dispose()


def serve(api: Api, requests: int, latency: float) -> None:
    for _ in range(requests):
        since = api.board.started(api.svc)
        api.now += latency
        api.board.finished(api.svc, since, ok=True)
        api.now -= latency


def test_a_services_load_over_time(api: Api) -> None:
    api.run(replicas=1, running=1)
    api.now -= 7200
    api.sample()  # two hours ago: outside a one-hour window
    api.now += 3600 + 60
    api.sample()  # 59 minutes ago: one replica, no load yet
    with api.db.session() as session:
        record_event(
            session,
            "workload",
            api.svc,
            "Autoscaled",
            "Load",
            "scaled up to 3 replicas: 30 req/s",
            tenant="team-a",
            now=api.now + 1,
        )
    api.now += 1800
    api.run(replicas=3, running=2)
    serve(api, 150, 0.04)
    api.sample()
    api.now = NOW
    answer = api.get(f"/v1/services/{api.svc}/load?hours=1", api.alice)
    assert answer.status_code == 200, answer.text
    load = answer.json()
    assert load["endpoints"] == [f"/s/{api.svc}", "/s/chat"]
    assert (load["replicas"], load["running"]) == (3, 2)
    points = load["history"]
    assert [p["ts"] for p in points] == [NOW - 3540, NOW - 1740, NOW]
    assert [(p["wanted"], p["running"], p["live"]) for p in points] == [
        (1, 1, False), (3, 2, False), (3, 2, True)]  # fmt: skip
    assert points[0]["requests_per_second"] == 0 and points[0]["latency_p50_seconds"] is None
    assert points[1]["requests_per_second"] == 10.0  # 150 requests in the board's 15 s
    assert points[1]["latency_p99_seconds"] == pytest.approx(0.04)
    # the board's window has passed by now: the live point says so, not the old figures
    assert load["current"]["requests_per_second"] == 0 and load["current"]["requests_total"] == 150
    assert load["history_since"] == NOW - 3600 and load["now"] == NOW
    # only what changed its size, not its submission
    assert [e["type"] for e in load["events"]] == ["Autoscaled"]
    assert "scaled up to 3" in load["events"][0]["message"]
    wide = api.get(f"/v1/services/{api.svc}/load?hours=3", api.alice).json()
    assert len(wide["history"]) == 4
    # the services list and the service carry the gateway's figures now
    listed = api.get("/v1/services", api.alice).json()
    assert listed[0]["id"] == api.svc and listed[0]["load"]["requests_total"] == 150
    assert listed[0]["replicas_running"] == 2 and listed[0]["running_replicas"] == []
    assert api.get(f"/v1/services/{api.svc}", api.alice).json()["load"]["requests_total"] == 150
    assert api.get(f"/v1/jobs/{api.job}", api.alice).json()["load"] is None


def test_a_service_never_sampled_still_shows_its_replicas_now(api: Api) -> None:
    api.run(replicas=2, running=1)
    load = api.get(f"/v1/services/{api.svc}/load", api.alice).json()
    assert [(p["wanted"], p["running"], p["live"]) for p in load["history"]] == [(2, 1, True)]
    assert load["current"] is None and load["events"] == []


@pytest.mark.parametrize(
    ("who", "what"),
    [("bob", "svc"), ("alice", "job"), ("alice", "svc-nothing"), ("admin", "job")],
)
def test_the_load_of_what_is_no_visible_service_is_not_found(api: Api, who: str, what: str) -> None:
    token = {"alice": api.alice, "bob": api.bob, "admin": api.admin}[who]
    target = {"svc": api.svc, "job": api.job}.get(what, what)
    answer = api.get(f"/v1/services/{target}/load", token)
    assert answer.status_code == 404, answer.text
    assert "not found" in answer.json()["error"] and "chat" not in answer.text


def test_the_admin_sees_any_tenants_service_load(api: Api) -> None:
    assert api.get(f"/v1/services/{api.svc}/load", api.admin).status_code == 200


@pytest.mark.parametrize("hours", ["abc", "-1", "169", "1e9", "nan", "inf", ""])
def test_bad_hours_are_a_400_naming_the_field(api: Api, hours: str) -> None:
    answer = api.get(f"/v1/services/{api.svc}/load?hours={hours}", api.alice)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["problems"][0]["field"] == "hours" and body["error"].startswith("hours: ")


def test_the_overview_splits_cards_between_training_and_inference(api: Api) -> None:
    api.run(replicas=3, running=3)
    with api.db.session() as session:
        session.add(SampleRow(ts=NOW - 600, accel_type="h100", capacity=16, allocated=9,
                              running=9, pending=0, training=8, inference=1))  # fmt: skip
    history = api.get("/v1/overview", api.admin).json()["history"]
    stored, live = history[0], history[-1]
    assert (stored["training"], stored["inference"], stored["live"]) == (8, 1, False)
    assert (live["training"], live["inference"], live["allocated"]) == (8, 0.75, 8.75)
    assert live["live"]
    # a tenant's overview counts the same cards (they are the cluster's)
    mine = api.get("/v1/overview", api.bob).json()["history"]
    assert mine[0]["inference"] == 1
