"""Observing replicas: what the backend reports, recorded, and each touched workload
settled by the pure lifecycle (a job succeeds, restarts or fails; a service replica starts
again in place).
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from baige.api.workloads import Phase, TrainingJobSpec
from baige.backends.base import ReplicaState
from baige.control.recording import _ENDED, DecisionRecording, PassStats, _life, _replica_end
from baige.control.snapshot import (
    parse_spec,
)
from baige.sched import (
    lifecycle,
)
from baige.store.tables import ReplicaRow, WorkloadRow

__all__ = ["Observation"]

log = logging.getLogger("baige.controller")


class Observation(DecisionRecording):
    """Observes replicas and settles their workloads."""

    def _observe(self, now: float, stats: PassStats) -> None:
        with self.db.session() as session:
            live = list(
                session.execute(
                    select(ReplicaRow.id, ReplicaRow.state, ReplicaRow.workload_id).where(
                        ReplicaRow.state == ReplicaState.RUNNING.value
                    )
                )
            )
            seen = self.backend.observe([rid for rid, _, _ in live]) if live else {}
            touched: set[str] = set()
            for replica_id, state, workload_id in live:
                observation = seen.get(replica_id)
                if observation is None or observation.state.value == state:
                    continue
                row = session.get(ReplicaRow, replica_id)
                if row is not None:
                    self._record_observation(row, observation)
                    touched.add(workload_id)
            session.flush()
            # level-triggered: any active workload with an ended replica it still wants is
            # settled, however that replica came to be recorded as ended
            touched.update(
                session.scalars(
                    select(ReplicaRow.workload_id)
                    .join(WorkloadRow, WorkloadRow.id == ReplicaRow.workload_id)
                    .where(
                        ReplicaRow.desired == "running",
                        ReplicaRow.state.in_(sorted(_ENDED)),
                        ReplicaRow.generation == WorkloadRow.generation,
                        WorkloadRow.phase.in_((Phase.ADMITTED.value, Phase.RUNNING.value)),
                    )
                    .distinct()
                )
            )
            for workload_id in sorted(touched):
                workload = session.get(WorkloadRow, workload_id)
                if workload is not None:
                    self._settle(session, workload, now, stats)

    def _settle(
        self, session: Session, workload: WorkloadRow, now: float, stats: PassStats
    ) -> None:
        """Move a workload's phase on from what its replicas did."""
        replicas = list(
            session.scalars(
                select(ReplicaRow).where(
                    ReplicaRow.workload_id == workload.id,
                    ReplicaRow.generation == workload.generation,
                )
            )
        )
        wanted = [r for r in replicas if r.desired == "running"]
        if workload.phase in (Phase.ADMITTED.value, Phase.RUNNING.value):
            if workload.kind == "TrainingJob":
                self._settle_job(session, workload, wanted, now, stats)
            else:
                self._settle_service(session, workload, wanted, now)

    def _settle_job(
        self,
        session: Session,
        workload: WorkloadRow,
        wanted: list[ReplicaRow],
        now: float,
        stats: PassStats,
    ) -> None:
        ended = [_replica_end(r) for r in wanted if r.state in _ENDED]
        spec = parse_spec(workload.kind, workload.spec)
        limit = spec.max_restarts if isinstance(spec, TrainingJobSpec) else 0
        keep = spec.replicas if isinstance(spec, TrainingJobSpec) and spec.spares else 0
        step = lifecycle.replicas_ended(_life(workload, limit, keep), ended, len(wanted))
        self._apply(session, workload, step, now)
        if step.life.phase is Phase.SUCCEEDED:
            stats.transitions["succeeded"] = stats.transitions.get("succeeded", 0) + 1
        elif step.event is not None:
            stats.transitions["failed"] = stats.transitions.get("failed", 0) + 1

    def _settle_service(
        self, session: Session, workload: WorkloadRow, wanted: list[ReplicaRow], now: float
    ) -> None:
        """A service replica that ends is started again in place (same cards), unless it
        could not start at all (see :func:`baige.sched.lifecycle.replicas_ended`)."""
        ended = [r for r in wanted if r.state in _ENDED]
        step = lifecycle.replicas_ended(_life(workload), [_replica_end(r) for r in ended], 0)
        self._apply(session, workload, step, now)
        for replica in ended:
            if replica.index not in step.restart:
                continue
            replica.desired = "stopped"
            session.add(
                ReplicaRow(
                    id=f"{replica.id.rsplit('-a', 1)[0]}-a{workload.restarts}",
                    workload_id=workload.id,
                    generation=workload.generation,
                    index=replica.index,
                    node=replica.node,
                    devices=replica.devices,
                    milli=replica.milli,
                    desired="running",
                    state=ReplicaState.PENDING.value,
                )
            )
