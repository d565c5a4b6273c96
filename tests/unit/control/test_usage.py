"""Usage samples: cards split between training and inference, and per-service samples
(replicas wanted and running, the gateway's load), on a SQLite file."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from baige.control.usage import KEEP_S, record_service_load, record_usage
from baige.sched.testing import make_job, make_node, make_snapshot
from baige.store.db import Database
from baige.store.tables import ReplicaRow, SampleRow, ServiceSampleRow, WorkloadRow

NOW = 1_800_000_000.0


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    made = Database(f"sqlite:///{tmp_path / 'b.db'}")
    yield made
    made.dispose()


def test_usage_samples_split_allocated_cards_by_kind(db: Database) -> None:
    snapshot = make_snapshot(
        [make_node("h-0"), make_node("h-1"), make_node("a-0", "a100-80g", 4)],
        workloads=[
            make_job("train").gpus(8).running("h100", [("h-0", range(8))]),
            make_job("chat").inference().share(250).replicas(3)
            .running("h100", [("h-1", [0]), ("h-1", [0]), ("h-1", [1])]),
            make_job("embed").inference().types("a100-80g").running("a100-80g", [("a-0", [2])]),
            make_job("waiting").gpus(8),
        ],
    )  # fmt: skip
    with db.session() as session:
        session.add(SampleRow(ts=NOW - KEEP_S - 1, accel_type="h100", capacity=16, allocated=0,
                              running=0, pending=0))  # fmt: skip
        record_usage(session, snapshot, NOW)
    with db.session() as session:
        rows = {r.accel_type: r for r in session.scalars(select(SampleRow))}
    assert set(rows) == {"h100", "a100-80g"}  # the week-old sample is gone
    h100, a100 = rows["h100"], rows["a100-80g"]
    assert (h100.allocated, h100.training, h100.inference) == (8.75, 8.0, 0.75)
    assert (a100.allocated, a100.training, a100.inference) == (1.0, 0.0, 1.0)
    assert h100.pending == 1 and h100.capacity == 16 and a100.capacity == 4


def _service(session: Session, workload_id: str, replicas: int, phase: str = "running") -> None:
    session.add(
        WorkloadRow(id=workload_id, name=workload_id, kind="InferenceService", tenant="t",
                    queue="default", spec={}, replicas=replicas, phase=phase, created_at=NOW)
    )  # fmt: skip
    session.flush()  # before its replicas (no ORM relationship orders the inserts)


def _replica(session: Session, workload_id: str, index: int, desired: str, state: str) -> None:
    session.add(
        ReplicaRow(id=f"{workload_id}-{index}", workload_id=workload_id, generation=1,
                   index=index, node="h-0", devices=[0], desired=desired, state=state)
    )  # fmt: skip


def test_service_samples_count_replicas_and_carry_the_gateways_figures(db: Database) -> None:
    with db.session() as session:
        _service(session, "svc-busy", 3)
        _replica(session, "svc-busy", 0, "running", "running")
        _replica(session, "svc-busy", 1, "running", "running")
        _replica(session, "svc-busy", 2, "running", "pending")  # launched, not up yet
        _replica(session, "svc-busy", 3, "stopped", "running")  # draining after a scale-down
        _service(session, "svc-quiet", 1)
        _replica(session, "svc-quiet", 0, "running", "running")
        _service(session, "svc-gone", 2, phase="cancelled")
        session.add(WorkloadRow(id="job-1", name="job", kind="TrainingJob", tenant="t",
                                queue="default", spec={}, replicas=1, phase="running",
                                created_at=NOW))  # fmt: skip
        session.add(ServiceSampleRow(ts=NOW - KEEP_S - 1, workload_id="svc-busy", wanted=1,
                                     running=1, qps=0, in_flight=0))  # fmt: skip
        session.add(ServiceSampleRow(ts=NOW - KEEP_S + 60, workload_id="svc-busy", wanted=1,
                                     running=1, qps=0, in_flight=0))  # fmt: skip
    figures = {
        "svc-busy": {"requests_per_second": 12.5, "in_flight": 4.0,
                     "latency_p50_seconds": 0.05, "latency_p99_seconds": 0.4,
                     "requests_total": 900.0, "errors_total": 0.0},
        "svc-gone": {"requests_per_second": 1.0, "in_flight": 0.0,
                     "latency_p50_seconds": math.nan, "latency_p99_seconds": math.nan},
    }  # fmt: skip
    with db.session() as session:
        assert record_service_load(session, NOW, figures) == 2
    with db.session() as session:
        rows = {
            (r.workload_id, r.ts): r
            for r in session.scalars(select(ServiceSampleRow).order_by(ServiceSampleRow.id))
        }
    assert set(rows) == {("svc-busy", NOW - KEEP_S + 60), ("svc-busy", NOW), ("svc-quiet", NOW)}
    busy, quiet = rows["svc-busy", NOW], rows["svc-quiet", NOW]
    assert (busy.wanted, busy.running) == (3, 2)
    assert (busy.qps, busy.in_flight, busy.p50, busy.p99) == (12.5, 4.0, 0.05, 0.4)
    # never served through the gateway: replicas still recorded, no load, no latency
    assert (quiet.wanted, quiet.running, quiet.qps, quiet.in_flight) == (1, 1, 0.0, 0.0)
    assert quiet.p50 is None and quiet.p99 is None


def test_a_quantile_of_no_requests_is_stored_as_none(db: Database) -> None:
    with db.session() as session:
        _service(session, "svc-idle", 1)
    nan = {"requests_per_second": 0.0, "in_flight": 0.0, "latency_p50_seconds": math.nan,
           "latency_p99_seconds": math.inf}  # fmt: skip
    with db.session() as session:
        record_service_load(session, NOW, {"svc-idle": nan})
    with db.session() as session:
        row = session.scalars(select(ServiceSampleRow)).one()
    assert row.p50 is None and row.p99 is None and row.qps == 0.0
