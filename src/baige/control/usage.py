"""Usage samples: what the cluster's cards and services were doing over time, for the
console's charts.

The controller records, every ``sample_interval`` seconds, one sample per accelerator type
(a pass's snapshot, after its decisions: cards held, and how they split between training
and inference) and one per active inference service (replicas wanted and running, and the
gateway's load); a week of each is kept.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from baige.api.workloads import Phase
from baige.control.service_load import finite, running_replicas
from baige.control.snapshot import stored_placement
from baige.sched import Snapshot
from baige.sched.model import Kind, Workload
from baige.store.tables import SampleRow, ServiceSampleRow, WorkloadRow

__all__ = ["KEEP_S", "record_service_load", "record_usage"]

KEEP_S = 7 * 86400.0
_ACTIVE = (Phase.PENDING.value, Phase.ADMITTED.value, Phase.RUNNING.value)


def _cards(workload: Workload) -> float:
    """Cards an admitted workload holds (shares summed)."""
    assert workload.assignment is not None
    return sum(len(p.devices) * p.milli / 1000 for p in workload.assignment.placements)


def record_usage(session: Session, snapshot: Snapshot, now: float) -> None:
    """Record usage per accelerator type at ``now``; drop samples older than a week.

    ``allocated`` is also split into ``training`` and ``inference``, so the console can show
    cards moving to services under load and back to training when it falls."""
    capacity: dict[str, float] = defaultdict(float)
    for node in snapshot.nodes:
        if node.schedulable:
            capacity[node.accel_type] += node.devices
    allocated: dict[str, float] = defaultdict(float)
    by_kind: dict[tuple[str, Kind], float] = defaultdict(float)
    pending: dict[str, int] = defaultdict(int)
    for workload in snapshot.workloads:
        if workload.assignment is None:
            for accel in workload.accel_types:
                pending[accel] += 1
            continue
        held = workload.assignment.accel_type
        allocated[held] += _cards(workload)
        by_kind[held, workload.kind] += _cards(workload)
    running: dict[str, float] = defaultdict(float)
    for held_type, placements in session.execute(
        select(WorkloadRow.accel_type, WorkloadRow.placements).where(
            WorkloadRow.phase == Phase.RUNNING.value
        )
    ):
        if held_type:
            running[held_type] += sum(
                len(p.devices) * p.milli / 1000 for p in map(stored_placement, placements or ())
            )
    for accel in sorted(set(capacity) | set(allocated)):
        session.add(
            SampleRow(
                ts=now,
                accel_type=accel,
                capacity=capacity[accel],
                allocated=round(allocated[accel], 3),
                running=round(running[accel], 3),
                pending=pending[accel],
                training=round(by_kind[accel, Kind.TRAINING], 3),
                inference=round(by_kind[accel, Kind.INFERENCE], 3),
            )
        )
    session.execute(delete(SampleRow).where(SampleRow.ts < now - KEEP_S))


def record_service_load(
    session: Session, now: float, figures: Mapping[str, Mapping[str, float]]
) -> int:
    """Record one sample per active inference service at ``now``; drop those over a week old.

    ``figures`` is :meth:`baige.control.load_board.LoadBoard.figures` (service id -> its
    ``requests_per_second``, ``in_flight``, ``latency_p50_seconds``, ``latency_p99_seconds``);
    a service the gateway has not served is recorded with no load, so its replicas still
    chart. Replicas wanted are the workload's (the autoscaler's or the user's) size; running
    are those the controller wants running and the backend observed running. Returns the
    number of samples written."""
    active = (WorkloadRow.kind == "InferenceService", WorkloadRow.phase.in_(_ACTIVE))
    services = session.execute(select(WorkloadRow.id, WorkloadRow.replicas).where(*active)).all()
    running = running_replicas(session, select(WorkloadRow.id).where(*active))
    for service_id, wanted in services:
        load = figures.get(service_id, {})
        session.add(
            ServiceSampleRow(
                ts=now,
                workload_id=service_id,
                wanted=wanted,
                running=running.get(service_id, 0),
                qps=round(load.get("requests_per_second", 0.0), 4),
                in_flight=load.get("in_flight", 0.0),
                p50=finite(load.get("latency_p50_seconds")),
                p99=finite(load.get("latency_p99_seconds")),
            )
        )
    session.execute(delete(ServiceSampleRow).where(ServiceSampleRow.ts < now - KEEP_S))
    return len(services)
