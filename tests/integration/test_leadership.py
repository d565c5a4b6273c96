"""Several controllers on one PostgreSQL database (the real one): exactly one leads, a standby
takes over when the leader dies or stops answering, a deposed leader that wakes up writes
nothing, and a database outage is ridden out without a change of leader.

The controllers are stand-ins (``leader_proc.py``): real processes that take the lead as
`baige up` does (``control.leadership``) and then write through a fenced database every
0.1 s, as the controller does; the tests kill, pause and resume them and read what reached
the database."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from baige.control.leadership import Leadership
from baige.store.db import Database
from baige.store.tables import EventRow, LeaderLeaseRow

from .conftest import _pg_url, wait_for
from .test_db_outage import database_away

LEASE = 2.0
ROOT = Path(__file__).parents[2]


class Proc:
    def __init__(self, url: str, name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.leader_proc", url, name, str(LEASE)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def said(self, prefix: str) -> str | None:
        return next((line for line in self.lines if line.startswith(prefix)), None)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def pg() -> Iterator[tuple[str, Database]]:
    url = _pg_url()
    db = Database(url)
    yield url, db
    db.dispose()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.kill()


def _term(db: Database) -> tuple[int, str]:
    with db.session() as session:
        row = session.get(LeaderLeaseRow, 1)
        assert row is not None
        return row.term, row.holder


def _ticks(db: Database, name: str, after: float = 0.0) -> int:
    with db.session() as session:
        return int(
            session.scalar(
                select(func.count()).where(EventRow.object_id == name, EventRow.ts > after)
            )
            or 0
        )


def _leader_and_standby(url: str, db: Database, procs: list[Proc]) -> tuple[Proc, Proc]:
    """ "a" leading (and writing), then "b" standing by."""
    a = Proc(url, "a")
    procs.append(a)
    assert wait_for(lambda: a.said("leading") and _ticks(db, "a") > 0, timeout=30)
    b = Proc(url, "b")
    procs.append(b)
    assert wait_for(lambda: b.said("standby"), timeout=30)
    return a, b


def test_one_leads_and_a_standby_takes_over_when_it_is_killed(pg, procs) -> None:
    url, db = pg
    a, b = _leader_and_standby(url, db, procs)
    time.sleep(1.0)
    assert not b.said("leading") and _ticks(db, "b") == 0  # one leader at a time
    first = _term(db)[0]
    a.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    assert wait_for(lambda: b.said("leading"), timeout=15)
    took = time.monotonic() - killed
    assert took < 10, took
    assert _term(db) == (first + 1, "b")
    assert wait_for(lambda: _ticks(db, "b") > 0, timeout=10)


def test_a_paused_leader_is_deposed_and_writes_nothing_when_it_wakes(pg, procs) -> None:
    url, db = pg
    a, b = _leader_and_standby(url, db, procs)
    a.proc.send_signal(signal.SIGSTOP)  # mid-write, perhaps: its transaction is ended for it
    try:
        assert wait_for(lambda: b.said("leading"), timeout=LEASE * 4 + 10)
    finally:
        a.proc.send_signal(signal.SIGCONT)
    with db.session() as session:
        since = session.get(LeaderLeaseRow, 1).since  # type: ignore[union-attr]
    assert a.proc.wait(timeout=30) == 3, a.lines[-5:]
    assert any(line.startswith("deposed") for line in a.lines), a.lines[-5:]
    assert _ticks(db, "a", after=since) == 0  # nothing written once b took over
    assert wait_for(lambda: _ticks(db, "b") > 0, timeout=10)


def test_a_database_outage_is_ridden_out_by_the_same_leader(pg, procs) -> None:
    url, db = pg
    a = Proc(url, "a")
    procs.append(a)
    assert wait_for(lambda: a.said("leading") and _ticks(db, "a") > 0, timeout=30)
    term = _term(db)
    db.dispose()
    with database_away():
        time.sleep(LEASE * 2)  # long enough for the lease to lapse
    back = time.time()
    assert wait_for(lambda: _ticks(db, "a", after=back) > 0, timeout=30), a.lines[-5:]
    assert _term(db) == term  # the same leader, the same term
    assert a.proc.poll() is None


def test_a_20_s_cut_leaves_one_leader_and_nothing_written_twice(pg, procs) -> None:
    """The database cut for 20 s under a leader and a standby: afterwards exactly one leads
    (the same one with its term, or the standby with the next, the old leader then exits 3),
    and the two never wrote at once."""
    url, db = pg
    a, b = _leader_and_standby(url, db, procs)
    term = _term(db)[0]
    db.dispose()
    with database_away():
        time.sleep(20)
    back = time.time()
    assert wait_for(lambda: _ticks(db, "a", after=back) + _ticks(db, "b", after=back) > 0,
                    timeout=30)  # fmt: skip
    time.sleep(2 * LEASE)
    now_term, holder = _term(db)
    if holder == "a":
        assert now_term == term and b.proc.poll() is None and not b.said("leading")
        assert _ticks(db, "b") == 0
    else:
        assert (holder, now_term) == ("b", term + 1)
        assert a.proc.wait(timeout=30) == 3, a.lines[-5:]
        # never both: nothing of a's after b's first write. (Not after the lease row's
        # ``since``: b stamps it before its takeover waits on a's last fenced transaction,
        # which may commit a tick stamped a moment later but ordered before the takeover.)
        with db.session() as session:
            first_b = session.scalar(select(func.min(EventRow.ts)).where(EventRow.object_id == "b"))
        assert first_b is not None
        assert _ticks(db, "a", after=first_b) == 0


def test_leading_in_process_hands_over_on_close(pg) -> None:
    url, _db = pg
    first = Leadership(url, lease_s=LEASE, name="first")
    second = Leadership(url, lease_s=LEASE, name="second")
    stop = threading.Event()
    try:
        assert first.wait(stop) is not None
        got: list[int | None] = []
        waiter = threading.Thread(target=lambda: got.append(second.wait(stop)))
        waiter.start()
        time.sleep(1.5)
        assert not got
        assert second.holder() == f"first, term {first.term}"  # a standby names the leader
        first.close()
        waiter.join(timeout=10)
        assert got and got[0] == (first.term or 0) + 1
        with pytest.raises(ValueError, match="at least 1 s"):
            Leadership(url, lease_s=0.5)
    finally:
        stop.set()
        first.close()
        second.close()


def test_a_submission_to_a_standby_wakes_the_leading_controller(pg, tmp_path: Path) -> None:
    """Two platforms on one database with a 30 s controller interval: a job submitted
    through the standby's service is launched by the leader at once (NOTIFY), not at its
    next pass."""
    from baige.api import load_specs  # noqa: PLC0415
    from baige.control.platform import SYSTEM, Platform, PlatformOptions  # noqa: PLC0415

    url, _db = pg

    def platform(name: str) -> Platform:
        options = PlatformOptions(
            db_url=url, home=tmp_path / name, accelerators=None, backend="fake", interval=30.0
        )
        return Platform(options)

    leader, standby = platform("a"), platform("b")
    try:
        leader.start()
        assert wait_for(lambda: leader.leading and leader.controller.pass_seconds, timeout=30)
        standby.start()
        leader.service.register_nodes(SYSTEM, [_node()])
        time.sleep(1.0)  # the leader's loop is now resting for its 30 s
        assert (leader.role(), standby.role()) == ("leading", "standby")
        (spec,) = load_specs(JOB_SPEC)
        job = standby.service.submit(SYSTEM, spec)[0]  # type: ignore[arg-type]
        submitted = time.monotonic()
        assert wait_for(lambda: standby.service.get(SYSTEM, job.id).phase == "running", timeout=10)
        assert time.monotonic() - submitted < 10
    finally:
        standby.stop()
        leader.stop()


JOB_SPEC = """\
kind: TrainingJob
name: woken
queue: default
accelerators: {count: 1, types: [h100]}
command: [sleep, '100']
"""


def _node() -> object:
    from baige.api.nodes import AcceleratorGroup, NodeSpec  # noqa: PLC0415

    return NodeSpec(name="n0", accelerators=AcceleratorGroup(type="h100", count=8))


def test_sqlite_has_no_leadership(tmp_path: Path) -> None:
    from baige.control.platform import Platform, PlatformOptions  # noqa: PLC0415

    options = PlatformOptions(
        db_url=f"sqlite:///{tmp_path / 'b.db'}", home=tmp_path, accelerators=None, backend="fake"
    )
    platform = Platform(options)
    try:  # one process's embedded database: its controller always runs, unfenced
        assert platform.leadership is None and platform.controller_db is platform.db
        assert platform.db.fence is None
    finally:
        platform.db.dispose()
