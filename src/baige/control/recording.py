"""Recording what happens to workloads: the lifecycle's steps (``baige.sched.lifecycle``)
and the cycle's decisions written to the store, in the transaction that decides them.

The base of the controller's parts (:mod:`baige.control.observing`,
:mod:`baige.control.node_lifecycle`, :mod:`baige.control.launching`): it declares what the
controller holds, and every part applies lifecycle steps through :meth:`_apply`.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from baige.api.workloads import Phase
from baige.backends.base import Backend, ReplicaObservation, ReplicaState
from baige.control.failure_reason import launch_failure_message
from baige.control.hetero_plans import replan
from baige.control.service import record_event
from baige.control.snapshot import stored_placement
from baige.sched import (
    Admit,
    CycleResult,
    Grow,
    Placement,
    Shrink,
    lifecycle,
)
from baige.sched.lifecycle import Life, Outcome, ReplicaEnd, Step
from baige.sched.model import Kind
from baige.store.db import Database
from baige.store.tables import ReplicaRow, WorkloadRow

__all__ = ["DecisionRecording", "PassStats"]

log = logging.getLogger("baige.controller")


_ENDED = {s.value for s in ReplicaState if s.ended}


@dataclass(slots=True)
class PassStats:
    seconds: float = 0.0
    cycle_seconds: float = 0.0
    cycle_skipped: bool = False  # nothing changed since a cycle that decided nothing
    decisions: int = 0
    launched: int = 0
    stopped: int = 0
    failed_nodes: int = 0
    transitions: dict[str, int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step of the pass


def _placement_json(placement: Placement) -> dict[str, object]:
    return {"node": placement.node, "devices": list(placement.devices), "milli": placement.milli}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _life(row: WorkloadRow, max_restarts: int = 0, keep: int = 0) -> Life:
    """A workload row as the pure lifecycle sees it."""
    kind = Kind.TRAINING if row.kind == "TrainingJob" else Kind.INFERENCE
    return Life(kind, Phase(row.phase), row.restarts, max_restarts, row.generation,
                len(row.placements or ()), keep)  # fmt: skip


def _replica_end(row: ReplicaRow) -> ReplicaEnd:
    """An ended replica row as the pure lifecycle sees it."""
    outcome = {
        ReplicaState.SUCCEEDED.value: Outcome.SUCCEEDED,
        ReplicaState.LOST.value: Outcome.LOST,
    }.get(row.state, Outcome.FAILED)
    cannot_start = None
    if row.state == ReplicaState.FAILED.value:
        cannot_start = launch_failure_message(row.log_path, row.exit_code)
    return ReplicaEnd(row.index, outcome, row.exit_code, row.reason or "", cannot_start)


class DecisionRecording:
    """Writes lifecycle steps and decisions to the store."""

    # what the controller holds, declared for the parts that use it
    db: Database
    backend: Backend
    clock: Callable[[], float]
    api_url: str | None
    max_launches_per_pass: int
    heartbeat_timeout: float
    in_flight: Callable[[str], int] | None
    drain_timeout: float
    _draining: dict[str, float]
    _wake: threading.Event

    def _apply(self, session: Session, workload: WorkloadRow, step: Step, now: float) -> None:
        """Write a lifecycle step to the workload's row (and its event), stopping its
        replicas when the step says so."""
        life = step.life
        if step.stop_all:
            self._stop_generation(session, workload)
        if step.drop:
            self._drop(session, workload, step.drop)
        workload.phase = life.phase.value
        workload.restarts = life.restarts
        workload.generation = life.generation
        if life.phase is Phase.PENDING or life.phase.terminal:
            workload.placements = []
        if life.phase.terminal:
            workload.exit_code = step.exit_code
            workload.finished_at = now
        event = step.event
        if event is None:
            return
        if event.status:
            workload.reason_code = event.type
            workload.reason = event.message
        record_event(session, "workload", workload.id, event.type, event.reason, event.message,
                     tenant=workload.tenant, now=now)  # fmt: skip

    def _launch_failed(
        self, session: Session, workload: WorkloadRow, replica: ReplicaRow, why: str, now: float
    ) -> None:
        """A replica the backend cannot start ends its workload at once, the cause as its
        reason (:func:`baige.sched.lifecycle.launch_refused`)."""
        replica.state = ReplicaState.FAILED.value
        replica.reason = why[:500]
        replica.finished_at = now
        self._apply(session, workload, lifecycle.launch_refused(_life(workload), replica.index,
                                                                why), now)  # fmt: skip

    @staticmethod
    def _drop(session: Session, workload: WorkloadRow, indices: tuple[int, ...]) -> None:
        """Lost replicas a job goes on without: no longer wanted, their cards given back (the
        scheduler places new spares where there is room)."""
        gone: list[dict[str, object]] = []
        for replica in session.scalars(
            select(ReplicaRow).where(
                ReplicaRow.workload_id == workload.id,
                ReplicaRow.generation == workload.generation,
                ReplicaRow.desired == "running",
                ReplicaRow.index.in_(indices),
            )
        ):
            replica.desired = "stopped"
            gone.append(
                {"node": replica.node, "devices": list(replica.devices), "milli": replica.milli}
            )
        kept = []
        for data in workload.placements or ():
            if data in gone:
                gone.remove(data)
            else:
                kept.append(data)
        workload.placements = kept

    @staticmethod
    def _stop_generation(session: Session, workload: WorkloadRow) -> None:
        session.execute(
            update(ReplicaRow)
            .where(ReplicaRow.workload_id == workload.id, ReplicaRow.desired == "running")
            .values(desired="stopped")
        )

    def _finish_cancellations(self, now: float) -> None:
        with self.db.session() as session:
            rows = list(
                session.scalars(
                    select(WorkloadRow).where(
                        WorkloadRow.cancel_requested.is_(True),
                        WorkloadRow.phase.in_((Phase.ADMITTED.value, Phase.RUNNING.value)),
                    )
                )
            )
            for workload in rows:
                self._stop_generation(session, workload)
                session.flush()
                left = session.scalars(
                    select(ReplicaRow.id).where(
                        ReplicaRow.workload_id == workload.id,
                        ReplicaRow.state.in_((ReplicaState.RUNNING.value,)),
                    )
                ).first()
                step = lifecycle.cancelled(_life(workload), 0 if left is None else 1)
                self._apply(session, workload, step, now)

    def _record(
        self, session: Session, result: CycleResult, before: dict[str, tuple[str, str]], now: float
    ) -> None:
        """Write the decisions (and the pending reasons) in one transaction. The decided
        workloads are loaded in one query: one ``session.get`` each would flush the rows
        written so far before every lookup, and a burst of admissions makes thousands."""
        ids = sorted({decision.workload for decision in result.decisions})
        loaded = {
            row.id: row
            for start in range(0, len(ids), 1000)
            for row in session.scalars(
                select(WorkloadRow).where(WorkloadRow.id.in_(ids[start : start + 1000]))
            )
        }
        for decision in result.decisions:
            workload = loaded.get(decision.workload)
            if workload is None or workload.cancel_requested or Phase(workload.phase).terminal:
                continue  # changed since the snapshot: the next pass decides again
            self._apply(session, workload, lifecycle.decided(_life(workload), decision), now)
            if isinstance(decision, Admit):
                self._admit(session, workload, decision, now)
            elif isinstance(decision, Shrink):
                self._shrink(session, workload, decision)
            elif isinstance(decision, Grow):
                self._grow(session, workload, decision)
            if isinstance(decision, Admit | Shrink | Grow):
                replan(session, workload)  # a job spanning types: its split for where it runs
        admitted = {d.workload for d in result.decisions if isinstance(d, Admit)}
        for workload_id, pending in result.pending.items():
            if workload_id in admitted:
                continue
            previous = before.get(workload_id)
            if previous is None or previous == (pending.reason.value, pending.message):
                continue
            session.execute(
                update(WorkloadRow)
                .where(WorkloadRow.id == workload_id, WorkloadRow.phase == Phase.PENDING.value)
                .values(reason_code=pending.reason.value, reason=pending.message)
            )

    def _new_replicas(
        self, session: Session, workload: WorkloadRow, placements: tuple[Placement, ...], first: int
    ) -> None:
        for offset, placement in enumerate(placements):
            index = first + offset
            session.add(
                ReplicaRow(
                    id=f"{workload.id}-g{workload.generation}-r{index}-a0",
                    workload_id=workload.id,
                    generation=workload.generation,
                    index=index,
                    node=placement.node,
                    devices=list(placement.devices),
                    milli=placement.milli,
                    desired="running",
                    state=ReplicaState.PENDING.value,
                )
            )

    def _admit(self, session: Session, workload: WorkloadRow, decision: Admit, now: float) -> None:
        """Where the new generation (the lifecycle step numbered it) runs."""
        workload.master_port = _free_port()  # torch.distributed rendezvous for this generation
        workload.accel_type = decision.accel_type
        workload.placements = [_placement_json(p) for p in decision.placements]
        workload.admitted_at = now
        self._new_replicas(session, workload, decision.placements, 0)

    def _shrink(self, session: Session, workload: WorkloadRow, decision: Shrink) -> None:
        removed = list(decision.remove)
        kept = []
        for data in workload.placements:
            placement = stored_placement(data)
            if placement in removed:
                removed.remove(placement)
            else:
                kept.append(data)
        workload.placements = kept
        gone = [_placement_json(p) for p in decision.remove]
        for replica in session.scalars(
            select(ReplicaRow)
            .where(ReplicaRow.workload_id == workload.id, ReplicaRow.desired == "running")
            .order_by(ReplicaRow.index.desc())
        ):
            data = {"node": replica.node, "devices": list(replica.devices), "milli": replica.milli}
            if data in gone:
                gone.remove(data)
                replica.desired = "stopped"

    def _grow(self, session: Session, workload: WorkloadRow, decision: Grow) -> None:
        first = (
            session.scalars(
                select(ReplicaRow.index)
                .where(
                    ReplicaRow.workload_id == workload.id,
                    ReplicaRow.generation == workload.generation,
                )
                .order_by(ReplicaRow.index.desc())
            ).first()
            or 0
        ) + 1
        workload.placements = [*workload.placements, *(_placement_json(p) for p in decision.add)]
        self._new_replicas(session, workload, decision.add, first)

    @staticmethod
    def _record_observation(row: ReplicaRow, observation: ReplicaObservation) -> None:
        row.state = observation.state.value
        row.exit_code = observation.exit_code
        row.finished_at = observation.finished_at
        row.reason = observation.reason
        if observation.port is not None:
            row.port = observation.port
