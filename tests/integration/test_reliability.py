"""Faults of the control plane itself: kill -9 mid-run and mid-submission, 1,000 concurrent
submissions, and a node that stops heartbeating. Real processes, real databases."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from baige.api import load_specs
from baige.client import BaigeClient, BaigeError
from baige.store.db import Database
from baige.store.tables import LeaderLeaseRow

from .conftest import ROOT_OPT_OUT, _pg_url, free_port, wait_for

SLEEPER = """\
kind: TrainingJob
name: {name}
queue: default
replicas: {replicas}
accelerators: {{count: 1, types: [h100]}}
working_dir: {workdir}
command: [python3, -c, "import os, time; open('starts', 'a').write(os.environ['BAIGE_REPLICA_ID'] + '\\\\n'); time.sleep({sleep})"]
"""


class Server:
    """``baige up`` as a real process that can be killed with SIGKILL and started again."""

    def __init__(self, home: Path, db_url: str, *extra: str) -> None:
        self.home = home
        self.db_url = db_url
        self.extra = extra
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "BAIGE_HOME": str(self.home)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "baige.cli.main", "up", "--port", str(self.port),
             "--db", self.db_url, "--fake-accelerators", "h100:8", "--fake-nodes", "2",
             # its replicas write into the test's (root-only) tmp dir; isolation has its own
             # test (test_isolation.py)
             *ROOT_OPT_OUT, *self.extra],
            env=env, stdout=subprocess.DEVNULL, stderr=open(self.home / "server.log", "ab"),
        )  # fmt: skip
        wait_for(self._healthy, timeout=30)

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        for pid_file in (self.home / "runs").glob("*/pid"):
            with contextlib.suppress(OSError, ValueError):
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)

    def client(self) -> BaigeClient:
        return BaigeClient(self.url, (self.home / "admin-token").read_text().strip())


@pytest.fixture
def server(tmp_path: Path, db_url: str):
    home = tmp_path / "home"
    home.mkdir()
    running = Server(home, db_url)
    running.start()
    yield running
    running.stop()


def sleeper(workdir: Path, name: str, replicas: int = 1, sleep: float = 4.0):
    (spec,) = load_specs(SLEEPER.format(name=name, replicas=replicas, workdir=workdir, sleep=sleep))
    return spec


def test_kill_9_while_jobs_run_loses_nothing_and_runs_nothing_twice(server, tmp_path: Path) -> None:
    client = server.client()
    jobs = [client.submit(sleeper(tmp_path, f"job{i}", replicas=2, sleep=5)) for i in range(3)]
    wait_for(lambda: all(client.job(j.id).phase == "running" for j in jobs), timeout=30)
    server.kill()  # the replicas keep running in their own sessions
    time.sleep(1.0)
    server.start()
    client = server.client()
    for job in jobs:
        view = wait_for(
            lambda j=job: (v := client.job(j.id)).phase == "succeeded" and v, timeout=40
        )
        assert view.restarts == 0
    starts = (tmp_path / "starts").read_text().split()
    assert len(starts) == 6 and len(set(starts)) == 6  # each replica started exactly once


def test_a_standby_takes_over_within_10_s_when_the_leader_is_killed(tmp_path: Path) -> None:
    """Two `baige up` on one PostgreSQL database and one home: the leader is killed with
    jobs running and one pending; the standby leads within 10 s, adopts what runs (nothing
    started twice), and runs the pending job."""
    url = _pg_url()
    home = tmp_path / "home"
    home.mkdir()
    leader, standby = Server(home, url, "--lease", "2"), Server(home, url, "--lease", "2")
    db = Database(url, migrate=False)
    try:
        leader.start()
        standby.start()
        client = leader.client()
        jobs = [client.submit(sleeper(tmp_path, f"job{i}", replicas=2, sleep=8)) for i in (0, 1)]
        wait_for(lambda: all(client.job(j.id).phase == "running" for j in jobs), timeout=30)
        waiting = client.submit(sleeper(tmp_path, "big", replicas=14, sleep=2))  # 12 free
        time.sleep(1.0)
        assert client.job(waiting.id).phase == "pending"
        assert standby.process is not None
        roles = [httpx.get(f"{s.url}/healthz").json()["controller"] for s in (leader, standby)]
        assert roles == ["leading", "standby"]
        leader.kill()
        killed = time.monotonic()

        def standby_leads() -> bool:
            with db.session() as session:
                row = session.get(LeaderLeaseRow, 1)
                return row is not None and f"pid {standby.process.pid} " in row.holder  # type: ignore[union-attr]

        assert wait_for(standby_leads, timeout=15, interval=0.2)
        took = time.monotonic() - killed
        assert took < 10, took
        assert wait_for(
            lambda: httpx.get(f"{standby.url}/healthz").json()["controller"] == "leading"
        )
        # a client given both (the leader first) goes to the one that answers
        token = (home / "admin-token").read_text().strip()
        client = BaigeClient(f"{leader.url},{standby.url}", token)
        for job in [*jobs, waiting]:
            view = wait_for(
                lambda j=job: (v := client.job(j.id)).phase == "succeeded" and v, timeout=60
            )
            assert view.restarts == 0
        starts = (tmp_path / "starts").read_text().split()
        assert len(starts) == 18 and len(set(starts)) == 18  # each replica started once
    finally:
        db.dispose()
        leader.stop()
        standby.stop()


def test_kill_9_during_submissions_keeps_every_accepted_job_once(server, tmp_path: Path) -> None:
    specs = [sleeper(tmp_path, f"s{i}", sleep=0.1) for i in range(40)]
    keys = [f"key-{i}" for i in range(40)]
    accepted: dict[int, str] = {}

    def submit_all() -> None:
        client = server.client()
        client.retry_s = 1.0  # the server starts again only after this thread ends
        for index, (spec, key) in enumerate(zip(specs, keys, strict=True)):
            with contextlib.suppress(BaigeError):  # the server died; the retry below settles it
                accepted[index] = client.submit(spec, idempotency_key=key).id

    thread = threading.Thread(target=submit_all)
    thread.start()
    time.sleep(0.3)
    server.kill()
    thread.join()
    server.start()
    client = server.client()
    ids = [
        client.submit(spec, idempotency_key=key).id for spec, key in zip(specs, keys, strict=True)
    ]
    for index, job_id in accepted.items():
        assert ids[index] == job_id  # what was accepted before the crash is the same job
    assert len(set(ids)) == 40
    every = client.jobs(limit=1000)
    assert len(every) == 40
    wait_for(lambda: all(j.phase == "succeeded" for j in client.jobs(limit=1000)), timeout=90)
    starts = (tmp_path / "starts").read_text().split()
    assert len(starts) == 40 and len(set(starts)) == 40


def test_a_thousand_concurrent_submissions(make_platform, db_url: str) -> None:
    running = make_platform(db_url)
    token = (running.platform.options.home / "admin-token").read_text().strip()
    body = {
        "kind": "TrainingJob",
        "queue": "default",
        "accelerators": {"count": 1, "types": ["a100-80g"]},  # none here: they stay pending
        "command": ["true"],
    }

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=running.url, limits=limits, timeout=120) as http:

            async def one(i: int) -> httpx.Response:
                return await http.post(
                    "/v1/jobs",
                    json={**body, "name": f"c{i % 1000}"},
                    headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"k{i % 1000}"},
                )

            # 1,000 distinct submissions, 200 of them sent twice (clients retrying)
            return await asyncio.gather(*(one(i) for i in range(1200)))

    responses = asyncio.run(run())
    assert {r.status_code for r in responses} <= {200, 201}, {r.status_code for r in responses}
    by_key: dict[int, set[str]] = {}
    for index, response in enumerate(responses):
        by_key.setdefault(index % 1000, set()).add(response.json()["id"])
    assert all(len(ids) == 1 for ids in by_key.values())  # a retry returns the same job
    client = running.client()
    stored = client.jobs(limit=5000)
    assert len(stored) == 1000 == len({j.id for j in stored})


def test_a_silent_node_fails_within_10_s_and_its_work_moves(make_platform, db_url: str) -> None:
    running = make_platform(db_url, nodes=1)
    client = running.client()
    token = client.token or ""
    node = {"name": "remote-1", "accelerators": {"type": "a100-80g", "count": 8}}
    http = httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {token}"})
    assert http.post("/v1/nodes", json={"nodes": [node]}).status_code == 201
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(1.0):
            http.post("/v1/nodes/heartbeat", json={"nodes": ["remote-1"]})

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    spec = load_specs(
        "kind: TrainingJob\nname: moving\nqueue: default\n"
        "accelerators: {count: 8, types: [a100-80g, h100]}\n"
        "command: [python3, -c, 'import time; time.sleep(600)']\n"
    )[0]
    job = client.submit(spec)
    wait_for(
        lambda: (v := client.job(job.id)).phase == "running" and v.accelerator_type == "a100-80g"
    )
    stop.set()
    beater.join()
    silent_since = time.time()
    wait_for(lambda: client.node("remote-1").health == "failed", timeout=15)
    assert time.time() - silent_since <= 12.0  # 10 s timeout, plus the pass interval
    view = wait_for(
        lambda: (v := client.job(job.id)).phase == "running" and v.accelerator_type == "h100" and v,
        timeout=20,
    )
    assert view.running_replicas[0].node != "remote-1"
    assert any("remote-1 failed" in e.message for e in client.events(job.id))
    client.cancel(job.id)


def test_stopping_baige_up_does_not_wait_for_a_followed_log(server, tmp_path: Path) -> None:
    """Ctrl-C (SIGTERM) stops `baige up` in seconds even while someone follows a job's log."""
    import threading  # noqa: PLC0415

    client = server.client()
    job = client.submit(sleeper(tmp_path, "long", sleep=120))
    wait_for(lambda: client.job(job.id).phase == "running", timeout=30)
    following = threading.Event()

    def follow() -> None:
        with contextlib.suppress(Exception):  # the stream ends when the server goes
            for _ in server.client().logs(job.id, follow=True):
                following.set()

    threading.Thread(target=follow, daemon=True).start()
    time.sleep(1.0)  # the stream is open (a sleeping job prints nothing)
    assert server.process is not None
    started = time.monotonic()
    server.process.terminate()
    server.process.wait(timeout=30)
    assert time.monotonic() - started < 15
