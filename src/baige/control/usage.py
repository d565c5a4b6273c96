"""Usage samples: what the cluster's cards were doing over time, for the console's charts.

The controller records one sample per accelerator type every ``sample_interval`` seconds
(a pass's snapshot, after its decisions); a week is kept.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from baige.api.workloads import Phase
from baige.control.snapshot import stored_placement
from baige.sched import Snapshot
from baige.store.tables import SampleRow, WorkloadRow

__all__ = ["KEEP_S", "record_usage"]

KEEP_S = 7 * 86400.0


def record_usage(session: Session, snapshot: Snapshot, now: float) -> None:
    """Record usage per accelerator type at ``now``; drop samples older than a week."""
    capacity: dict[str, float] = defaultdict(float)
    for node in snapshot.nodes:
        if node.schedulable:
            capacity[node.accel_type] += node.devices
    allocated: dict[str, float] = defaultdict(float)
    pending: dict[str, int] = defaultdict(int)
    for workload in snapshot.workloads:
        if workload.assignment is None:
            for accel in workload.accel_types:
                pending[accel] += 1
            continue
        allocated[workload.assignment.accel_type] += sum(
            len(p.devices) * p.milli / 1000 for p in workload.assignment.placements
        )
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
            )
        )
    session.execute(delete(SampleRow).where(SampleRow.ts < now - KEEP_S))
