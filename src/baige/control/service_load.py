"""One inference service's load over time, for ``GET /v1/services/{id}/load`` and the
console's service page: its stable endpoint, replicas wanted and running, requests per
second, in flight and latency (the samples ``control.usage.record_service_load`` keeps, then
the gateway's figures now), and the events that changed its size.

Tenancy is enforced here, as in :class:`baige.control.service.ControlService`: another
tenant's service is "not found".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from baige.api.views import EventView, ServiceFigures, ServiceLoadPoint, ServiceLoadView
from baige.backends.base import ReplicaState
from baige.control.auth import Principal
from baige.control.errors import NotFound
from baige.store.db import Database
from baige.store.tables import EventRow, ReplicaRow, ServiceSampleRow, WorkloadRow

__all__ = ["SCALING_EVENTS", "finite", "running_replicas", "service_figures", "service_load"]

# what changes a service's size or moves its replicas (the scheduler, the autoscaler, a user)
SCALING_EVENTS = (
    "Admitted", "Autoscaled", "Scaled", "Grown", "Shrunk", "Preempted", "Evicted",
    "ReplicaRestarted", "Restarting",
)  # fmt: skip
MAX_EVENTS = 200
MAX_POINTS = 2000  # a week of 30 s samples is 20,160: thin them to what a chart can show


def finite(value: float | None) -> float | None:
    """None for NaN (the board's quantile of no requests), which JSON cannot carry and a
    chart should show as a gap, not as 0."""
    return value if value is not None and math.isfinite(value) else None


def service_figures(figures: Mapping[str, float] | None) -> ServiceFigures | None:
    """The board's figures for one service (``LoadBoard.figures()[id]``) as the API shows
    them; None when the gateway has not served it."""
    if figures is None:
        return None
    return ServiceFigures(
        requests_per_second=round(figures.get("requests_per_second", 0.0), 4),
        in_flight=figures.get("in_flight", 0.0),
        latency_p50_seconds=finite(figures.get("latency_p50_seconds")),
        latency_p99_seconds=finite(figures.get("latency_p99_seconds")),
        requests_total=int(figures.get("requests_total", 0.0)),
        errors_total=int(figures.get("errors_total", 0.0)),
    )


def _service(session: Session, who: Principal, workload_id: str) -> WorkloadRow:
    row = session.get(WorkloadRow, workload_id)
    if row is None or row.kind != "InferenceService" or not who.sees(row.tenant):
        raise NotFound(f"{workload_id!r} not found")
    return row


def _running(session: Session, workload_id: str) -> int:
    return running_replicas(session, [workload_id]).get(workload_id, 0)


def running_replicas(session: Session, workload_ids: Sequence[str] | Select[str]) -> dict[str, int]:
    """Per workload, replicas wanted and observed running (what the service can answer
    with: not those starting, nor those draining after a scale-down); one query. Give the
    ids as a subquery when there may be thousands (no thousands of bound parameters)."""
    rows = session.execute(
        select(ReplicaRow.workload_id, func.count())
        .where(
            ReplicaRow.workload_id.in_(workload_ids),
            ReplicaRow.desired == "running",
            ReplicaRow.state == ReplicaState.RUNNING.value,
        )
        .group_by(ReplicaRow.workload_id)
    )
    return {str(workload_id): int(count) for workload_id, count in rows}


def _history(session: Session, workload_id: str, since: float) -> list[ServiceLoadPoint]:
    """The stored samples in the window, oldest first, every n-th when there are too many
    (the newest always kept: the chart's last stored step)."""
    rows = list(
        session.scalars(
            select(ServiceSampleRow)
            .where(ServiceSampleRow.workload_id == workload_id, ServiceSampleRow.ts >= since)
            .order_by(ServiceSampleRow.ts)
        )
    )
    every = max(1, math.ceil(len(rows) / MAX_POINTS))
    kept = rows[::every] + ([rows[-1]] if rows and (len(rows) - 1) % every else [])
    return [
        ServiceLoadPoint(ts=r.ts, wanted=r.wanted, running=r.running,
                         requests_per_second=r.qps, in_flight=r.in_flight,
                         latency_p50_seconds=r.p50, latency_p99_seconds=r.p99)
        for r in kept
    ]  # fmt: skip


def _events(session: Session, workload_id: str, since: float) -> list[EventView]:
    rows = session.scalars(
        select(EventRow)
        .where(
            EventRow.object_kind == "workload",
            EventRow.object_id == workload_id,
            EventRow.type.in_(SCALING_EVENTS),
            EventRow.ts >= since,
        )
        .order_by(EventRow.id.desc())
        .limit(MAX_EVENTS)
    )
    return [
        EventView(ts=r.ts, object_kind=r.object_kind, object_id=r.object_id, type=r.type,
                  reason=r.reason, message=r.message)
        for r in rows
    ]  # fmt: skip


def service_load(
    db: Database,
    who: Principal,
    workload_id: str,
    *,
    hours: float,
    now: float,
    figures: Mapping[str, float] | None,
) -> ServiceLoadView:
    """The service's load over the last ``hours``, ending with a live point (replicas now and
    the gateway's ``figures`` now) so the charts agree with the page even between samples,
    and on a control plane that has recorded none yet."""
    since = now - hours * 3600
    current = service_figures(figures)
    with db.session() as session:
        row = _service(session, who, workload_id)
        running = _running(session, row.id)
        history = _history(session, row.id, since)
        history.append(
            ServiceLoadPoint(
                ts=now,
                wanted=row.replicas,
                running=running,
                requests_per_second=current.requests_per_second if current else 0.0,
                in_flight=current.in_flight if current else 0.0,
                latency_p50_seconds=current.latency_p50_seconds if current else None,
                latency_p99_seconds=current.latency_p99_seconds if current else None,
                live=True,
            )
        )
        return ServiceLoadView(
            id=row.id,
            name=row.name,
            phase=row.phase,
            endpoints=[f"/s/{row.id}", f"/s/{row.name}"],
            replicas=row.replicas,
            running=running,
            current=current,
            history=history,
            history_since=since,
            now=now,
            events=_events(session, row.id, since),
        )
