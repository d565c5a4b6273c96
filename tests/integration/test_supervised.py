"""`baige up` on PostgreSQL as supervised processes: a controller process and API
processes that share nothing but the store. Killing either is repaired without the other
noticing: the API answers throughout a controller's death, a submission made meanwhile runs
once the controller is back, nothing runs twice; a killed API worker is replaced while its
sibling serves."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import select

from baige.store.db import Database
from baige.store.tables import ControllerStatusRow

from .conftest import _pg_url, wait_for
from .test_reliability import Server, sleeper


def children(pid: int) -> dict[int, str]:
    """pid -> its part ("controller", "api-0", …) for each child of `baige up` ``pid``."""
    found: dict[int, str] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except FileNotFoundError:
                continue
            if b"baige.control.processes" in argv:
                found[int(child)] = argv[argv.index(b"baige.control.processes") + 1].decode()
    return found


def parts(server: Server) -> dict[str, int]:
    """Each part of `baige up` ("controller", "api-0", …) -> its pid, as now."""
    assert server.process is not None
    return {name: pid for pid, name in children(server.process.pid).items()}


def part_pid(server: Server, part: str) -> int:
    assert server.process is not None
    pids = [pid for pid, name in children(server.process.pid).items() if name == part]
    assert len(pids) == 1, children(server.process.pid)
    return pids[0]


class Watch:
    """Polls /healthz every 50 ms in a thread; counts the answers that were not 200."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.failures: list[str] = []
        self.answers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:  # a new connection each time: whichever worker accepts it answers
                status = httpx.get(f"{self.url}/healthz", timeout=5).status_code
                self.answers += 1
                if status != 200:
                    self.failures.append(str(status))
            except httpx.HTTPError as err:
                self.failures.append(repr(err))

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def test_a_killed_controller_process_is_replaced_while_the_api_answers(tmp_path: Path) -> None:
    """kill -9 of the leading controller process mid-run (jobs running, one submitted in the
    gap), a standby `baige up` beside it: a controller leads again within 10 s, adopts what
    runs, starts nothing twice, runs what was submitted; the API never stops answering."""
    home = tmp_path / "home"
    home.mkdir()
    server = Server(home, _pg_url(), "--lease", "2", "--api-workers", "2")
    standby = Server(home, _pg_url(), "--lease", "2", "--api-workers", "1")
    db = Database(server.db_url, migrate=False)
    try:
        server.start()
        standby.start()
        client = server.client()
        running = [client.submit(sleeper(tmp_path, f"job{i}", replicas=2, sleep=6)) for i in (0, 1)]
        wait_for(lambda: all(client.job(j.id).phase == "running" for j in running), timeout=30)
        controller = part_pid(server, "controller")
        apis = {part_pid(server, "api-0"), part_pid(server, "api-1")}
        with Watch(server.url) as watch:
            os.kill(controller, signal.SIGKILL)
            killed = time.monotonic()
            # accepted while no controller runs: the API does not need one. Then either the
            # restarted controller process or the standby's leads (whichever locks first)
            late = client.submit(sleeper(tmp_path, "late", replicas=2, sleep=1))

            def leads_again() -> bool:
                with db.session() as session:
                    rows = session.scalars(select(ControllerStatusRow)).all()
                    return any(r.role == "leading" and r.pid != controller for r in rows)

            assert wait_for(leads_again, timeout=15, interval=0.1)
            took = time.monotonic() - killed
            time.sleep(0.5)
        assert took < 10, took
        assert watch.answers > 5 and not watch.failures, watch.failures  # polled throughout
        # the API processes were left alone
        assert {part_pid(server, "api-0"), part_pid(server, "api-1")} == apis
        for job in [*running, late]:
            view = wait_for(
                lambda j=job: (v := client.job(j.id)).phase == "succeeded" and v, timeout=60
            )
            assert view.restarts == 0
        starts = (tmp_path / "starts").read_text().split()
        assert len(starts) == 6 and len(set(starts)) == 6  # adopted, none started twice
    finally:
        db.dispose()
        server.stop()
        standby.stop()


def test_a_killed_api_worker_is_replaced_while_its_sibling_serves(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    server = Server(home, _pg_url(), "--api-workers", "2")
    try:
        server.start()
        controller = part_pid(server, "controller")
        victim = part_pid(server, "api-0")
        with Watch(server.url) as watch:
            os.kill(victim, signal.SIGKILL)
            replaced = wait_for(
                lambda: (pid := parts(server).get("api-0")) not in (None, victim) and pid,
                timeout=15,
            )
            time.sleep(1.0)
        assert replaced
        # the listening socket stayed open (the supervisor holds it): no connection refused;
        # a request the killed worker was serving at that instant may have been cut
        assert watch.answers > 10, watch.answers
        assert not [f for f in watch.failures if "ConnectError" in f], watch.failures
        assert len(watch.failures) <= 1, watch.failures
        assert part_pid(server, "controller") == controller
        client = server.client()
        job = client.submit(sleeper(tmp_path, "after", replicas=1, sleep=0.1))
        wait_for(lambda: client.job(job.id).phase == "succeeded", timeout=30)
    finally:
        server.stop()
