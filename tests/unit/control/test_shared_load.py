"""The gateway's load and the controller's status across processes (``baige up`` split on
PostgreSQL): boards exported, summed and read back through the store; stale rows ignored.
The store here is SQLite: the tables and the code are the same."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from baige.control.load_board import LoadBoard, merge
from baige.control.shared_load import LoadPublisher, SharedLoad
from baige.control.shared_status import StatusPublisher, StatusReader
from baige.store.db import Database


@pytest.fixture
def db(tmp_path: Path):
    database = Database(f"sqlite:///{tmp_path / 'baige.db'}")
    yield database
    database.dispose()


def busy_board(now: list[float], service: str, requests: int, latency: float) -> LoadBoard:
    """A board that served ``requests`` to ``service`` (each ``latency`` s), one still open."""
    board = LoadBoard(clock=lambda: now[0])
    for _ in range(requests):
        since = board.started(service)
        now[0] += latency
        board.finished(service, since, ok=True)
    board.started(service)
    board.replica_busy("r1", 1)
    board.set_ready(service, 2)
    return board


def test_two_boards_merge_into_the_sums_a_single_board_would_show() -> None:
    now = [100.0]
    a, b = busy_board(now, "svc", 30, 0.1), busy_board(now, "svc", 10, 0.5)
    merged = merge([a.export(), b.export()])
    one = merged["services"]["svc"]  # type: ignore[index]
    assert one["arrivals"] == 42 and one["in_flight"] == 2 and one["ready"] == 2
    assert one["total"] == 42 and one["latencies"] == 40
    assert one["p50"] == pytest.approx((0.1 * 30 + 0.5 * 10) / 40)  # count-weighted medians
    assert one["p99"] == pytest.approx(0.5)  # the worse of the two
    assert merged["replicas"] == {"r1": 2}
    # one board merged alone is that board's own figures
    assert merge([a.export()]) == a.export()


def test_a_board_that_never_measured_a_latency_shows_none() -> None:
    board = LoadBoard()
    board.started("svc")
    figures = LoadBoard.figures(board)["svc"]
    assert math.isnan(figures["latency_p50_seconds"]) and figures["in_flight"] == 1


def test_the_controller_reads_the_sum_of_live_api_processes(db: Database) -> None:
    now = [1000.0]
    boards = [busy_board(now, "svc", 15, 0.2), busy_board(now, "svc", 15, 0.2)]
    publishers = [LoadPublisher(db, b, f"api-{i}") for i, b in enumerate(boards)]
    for publisher in publishers:
        publisher.publish()
    engines = LoadBoard()
    engines.set_engine("svc", waiting=7, cache=0.5)
    shared = SharedLoad(db, engines, cache_s=0.0)
    sample = shared.sample("svc")
    assert sample is not None
    assert sample.in_flight == 2 and sample.ready_replicas == 2
    assert sample.qps == pytest.approx(32 / 15)  # the 15 s window
    assert (sample.waiting, sample.cache_usage) == (7, 0.5)  # the engines' own board
    assert shared.replica_in_flight("r1") == 2 and shared.replica_in_flight("r9") == 0
    assert shared.figures()["svc"]["requests_total"] == 32
    assert shared.sample("nothing") is None
    # a process that stopped publishing (it died, its requests with it) drops out
    later = SharedLoad(db, engines, cache_s=0.0, fresh_s=5.0, clock=lambda: 10**10)
    assert later.replica_in_flight("r1") == 0 and later.sample("svc") is None
    # one that stops cleanly takes its row out at once
    publishers[0].close()
    assert shared.replica_in_flight("r1") == 1


def test_a_drain_sees_requests_finish_through_the_store(db: Database) -> None:
    board = LoadBoard()
    publisher = LoadPublisher(db, board, "api-0")
    shared = SharedLoad(db, LoadBoard(), cache_s=0.0)
    board.replica_busy("r1", 1)
    publisher.publish()
    assert shared.replica_in_flight("r1") == 1
    board.replica_busy("r1", -1)
    publisher.publish()
    assert shared.replica_in_flight("r1") == 0


def test_the_api_shows_its_controllers_role_and_pass_times(db: Database) -> None:
    role = ["standby"]
    passes = [0.01 * i for i in range(1, 500)]
    status = StatusPublisher(db, "up-1", lambda: role[0], lambda: passes)  # type: ignore[arg-type,return-value]
    reader = StatusReader(db, "up-1", cache_s=0.0)
    assert reader.role() == "stopped"  # nothing published yet
    status.publish()
    assert reader.role() == "standby" and reader.pass_seconds() == []
    role[0] = "leading"
    status.publish()
    assert reader.role() == "leading"
    assert reader.pass_seconds() == passes[-200:]  # the last 200 travel
    # another instance's reader does not see this one's controller
    assert StatusReader(db, "up-2", cache_s=0.0).role() == "stopped"
    # a controller process that stopped writing (killed) reads as stopped
    stale = StatusReader(db, "up-1", cache_s=0.0, stale_s=5.0, clock=lambda: 10**10)
    assert stale.role() == "stopped" and stale.pass_seconds() == []
    status.close()  # a clean stop takes the row out
    assert reader.role() == "stopped"


def test_a_reader_outlives_a_database_outage_with_what_it_last_read(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'baige.db'}")
    StatusPublisher(db, "up-1", lambda: "leading", lambda: [0.1]).publish()
    reader = StatusReader(db, "up-1", cache_s=0.0)
    assert reader.role() == "leading"
    db.dispose()
    (tmp_path / "baige.db").unlink()
    (tmp_path / "baige.db").mkdir()  # the file is gone: every read fails now
    assert reader.role() == "leading"  # the last row, until it ages out
