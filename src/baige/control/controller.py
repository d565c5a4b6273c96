"""The controller loop: observe, decide with ``baige.sched``, record, then carry out.

Level-triggered: each pass compares what the store wants with what the backend reports and
closes the gap, so a controller killed at any moment and started again loses nothing and
launches nothing twice. Decisions are committed to the store before any process starts
(replica rows are written "pending" in the same transaction as the admission); the backend
launches by replica id, which it refuses to launch twice.
"""

from __future__ import annotations

import gc
import logging
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from baige.api.workloads import InferenceServiceSpec, Phase, TrainingJobSpec
from baige.backends.base import Backend, ReplicaObservation, ReplicaState
from baige.control.failure_reason import launch_failure_message
from baige.control.service import record_event
from baige.control.snapshot import (
    SnapshotCache,
    launch_record,
    load_snapshot,
    parse_spec,
    stored_placement,
)
from baige.control.usage import record_usage
from baige.sched import (
    BAIGE,
    Admit,
    CycleResult,
    Grow,
    Placement,
    Profile,
    Shrink,
    apply_decisions,
    lifecycle,
    run_cycle,
)
from baige.sched.autoscale import AutoscaleState, LoadSample, recommend
from baige.sched.from_api import autoscale_policy
from baige.sched.lifecycle import Life, Outcome, ReplicaEnd, Step
from baige.sched.model import Kind
from baige.store.db import Database
from baige.store.tables import NodeRow, ReplicaRow, WorkloadRow

__all__ = ["Controller", "PassStats"]

log = logging.getLogger("baige.controller")

_ENDED = {s.value for s in ReplicaState if s.ended}
# a replica leaving a service is stopped no sooner than this after it left the rotation: the
# gateway's cached replica list (ENDPOINTS_TTL_S, 1 s) may still send it a request meanwhile
DRAIN_SETTLE_S = 2.0


@dataclass(slots=True)
class PassStats:
    seconds: float = 0.0
    cycle_seconds: float = 0.0
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


def _life(row: WorkloadRow, max_restarts: int = 0) -> Life:
    """A workload row as the pure lifecycle sees it."""
    kind = Kind.TRAINING if row.kind == "TrainingJob" else Kind.INFERENCE
    return Life(kind, Phase(row.phase), row.restarts, max_restarts, row.generation,
                len(row.placements or ()))  # fmt: skip


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


class Controller:
    """One control loop over one store and one backend."""

    def __init__(
        self,
        db: Database,
        backend: Backend,
        profile: Profile = BAIGE,
        *,
        heartbeat_timeout: float = 10.0,
        interval: float = 1.0,
        sample_interval: float = 30.0,
        api_url: str | None = None,
        max_launches_per_pass: int = 256,
        load: Callable[[str], LoadSample | None] | None = None,
        in_flight: Callable[[str], int] | None = None,
        drain_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.clock = clock  # wall-clock time of a pass (a test steps it)
        self.load = load  # a service's measured load (the gateway's board), for autoscaling
        self._autoscale_state: dict[str, AutoscaleState] = {}
        # requests in flight to a service replica (the gateway's count): drain, then stop
        self.in_flight = in_flight
        self.drain_timeout = drain_timeout
        self._draining: dict[str, float] = {}  # replica id -> when it left the rotation
        self.max_launches_per_pass = max_launches_per_pass
        self.api_url = api_url
        self.backend = backend
        self.profile = profile
        self.heartbeat_timeout = heartbeat_timeout
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.last: PassStats = PassStats()
        self._cache = SnapshotCache()
        self.sample_interval = sample_interval
        self._last_sample = 0.0
        self.pass_seconds: list[float] = []

    # -- loop ----------------------------------------------------------------------------

    def wake(self) -> None:
        """Run the next pass now (after a submission, a cancel, a scale)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run_forever(self) -> None:
        """Pass every ``interval`` seconds, or sooner when woken; but after a pass of t
        seconds, rest at least t (and 50 ms): under a stream of submissions the loop then
        takes at most half the interpreter from the API threads that accept them."""
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.run_pass()
            except Exception:  # a pass must never kill the loop; the next one retries
                log.exception("controller pass failed; retrying")
            took = time.monotonic() - started
            self._stop.wait(max(0.05, min(took, self.interval)))
            self._wake.wait(max(0.0, self.interval - took))
            self._wake.clear()

    def run_pass(self) -> PassStats:
        """One pass. The cyclic garbage collector is paused during it and the pass's young
        garbage collected at its end: a full collection walks every object the process holds
        (tens of thousands at 10,000 nodes) and would otherwise land inside passes at random,
        adding 50–100 ms to one in a few."""
        enabled = gc.isenabled()
        started = time.perf_counter()
        gc.disable()
        try:
            stats = self._run_pass()
        finally:
            if enabled:
                gc.collect(1)
                gc.enable()
        stats.phases["gc"] = time.perf_counter() - started - stats.seconds
        stats.seconds = time.perf_counter() - started
        self.pass_seconds[-1] = stats.seconds
        return stats

    def _run_pass(self) -> PassStats:
        started = time.perf_counter()
        stats = PassStats()
        now = self.clock()
        mark = started

        def lap(phase: str) -> None:
            nonlocal mark
            current = time.perf_counter()
            stats.phases[phase] = current - mark
            mark = current

        stats.failed_nodes = self._expire_nodes(now)
        self._drain_nodes(now)
        lap("nodes")
        self._observe(now, stats)
        lap("observe")
        self._finish_cancellations(now)
        lap("cancel")
        self._autoscale(now)
        lap("autoscale")
        self._schedule(now, stats)
        lap("schedule")
        self._reconcile(stats)
        lap("reconcile")
        stats.seconds = time.perf_counter() - started
        self.last = stats
        self.pass_seconds.append(stats.seconds)
        del self.pass_seconds[:-1000]
        return stats

    # -- nodes ---------------------------------------------------------------------------

    def _expire_nodes(self, now: float) -> int:
        """Nodes silent for longer than the heartbeat timeout are failed."""
        deadline = now - self.heartbeat_timeout
        with self.db.session() as session:
            stale = list(
                session.scalars(
                    select(NodeRow).where(
                        NodeRow.health == "ready", NodeRow.last_heartbeat < deadline
                    )
                )
            )
            for row in stale:
                row.health = "failed"
                row.reason = f"no heartbeat for {now - row.last_heartbeat:.0f} s"
                record_event(
                    session, "node", row.name, "Failed", "HeartbeatMissed", row.reason, now=now
                )
        return len(stale)

    def _drain_nodes(self, now: float) -> None:
        """Move the work off draining nodes: each workload placed there is stopped and goes
        back to pending (not a restart: nothing failed), and is placed again elsewhere."""
        with self.db.session() as session:
            draining = set(session.scalars(select(NodeRow.name).where(NodeRow.draining.is_(True))))
            if not draining:
                return
            active = session.scalars(
                select(WorkloadRow).where(
                    WorkloadRow.phase.in_((Phase.ADMITTED.value, Phase.RUNNING.value))
                )
            )
            for workload in active:
                nodes = {str(p.get("node")) for p in workload.placements or []}
                hit = sorted(nodes & draining)
                if not hit:
                    continue
                self._apply(session, workload, lifecycle.evicted(_life(workload), hit[0]), now)
            for name in sorted(draining):
                row = session.get(NodeRow, name)
                if row is not None:
                    row.draining = False  # its work is off; it stays cordoned
                    record_event(session, "node", name, "Drained", "Drain",
                                 f"node {name} drained: its work was moved", now=now)  # fmt: skip

    # -- observing -----------------------------------------------------------------------

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

    @staticmethod
    def _record_observation(row: ReplicaRow, observation: ReplicaObservation) -> None:
        row.state = observation.state.value
        row.exit_code = observation.exit_code
        row.finished_at = observation.finished_at
        row.reason = observation.reason
        if observation.port is not None:
            row.port = observation.port

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
        step = lifecycle.replicas_ended(_life(workload, limit), ended, len(wanted))
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

    def _apply(self, session: Session, workload: WorkloadRow, step: Step, now: float) -> None:
        """Write a lifecycle step to the workload's row (and its event), stopping its
        replicas when the step says so."""
        life = step.life
        if step.stop_all:
            self._stop_generation(session, workload)
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

    # -- autoscaling ---------------------------------------------------------------------

    def _autoscale(self, now: float) -> None:
        """Set each autoscaled service's wanted replicas from its measured load (the pure
        :func:`baige.sched.autoscale.recommend`); the scheduling cycle then grows or shrinks
        it like any resize, preempting or shrinking training when there is no free room."""
        if self.load is None:
            return
        with self.db.session() as session:
            services = session.scalars(
                select(WorkloadRow).where(
                    WorkloadRow.kind == "InferenceService",
                    WorkloadRow.phase.in_(
                        (Phase.PENDING.value, Phase.ADMITTED.value, Phase.RUNNING.value)
                    ),
                    WorkloadRow.cancel_requested.is_(False),
                )
            )
            active: set[str] = set()
            for row in services:
                spec = parse_spec(row.kind, row.spec)
                if not isinstance(spec, InferenceServiceSpec) or spec.autoscale is None:
                    continue
                active.add(row.id)
                policy = autoscale_policy(spec.autoscale)
                state = self._autoscale_state.get(row.id, AutoscaleState())
                result = recommend(policy, state, row.replicas, self.load(row.id), now)
                self._autoscale_state[row.id] = result.state
                if not result.changed:
                    continue
                data = dict(row.spec)
                data["replicas"] = result.replicas
                row.spec, row.replicas = data, result.replicas
                record_event(session, "workload", row.id, "Autoscaled", "Load", result.reason,
                             tenant=row.tenant, now=now)  # fmt: skip
            for gone in set(self._autoscale_state) - active:
                del self._autoscale_state[gone]

    # -- deciding ------------------------------------------------------------------------

    def _schedule(self, now: float, stats: PassStats) -> None:
        loading = time.perf_counter()
        with self.db.session() as session:
            snapshot, rows = load_snapshot(session, self._cache)
        stats.phases["snapshot"] = time.perf_counter() - loading
        started = time.perf_counter()
        result = run_cycle(snapshot, now, self.profile)
        stats.cycle_seconds = time.perf_counter() - started
        stats.decisions = len(result.decisions)
        for warning in result.warnings:
            log.warning("snapshot: %s", warning)
        with self.db.session() as session:
            self._record(session, result, rows, now)
        if now - self._last_sample >= self.sample_interval:
            self._last_sample = now
            with self.db.session() as session:
                record_usage(session, apply_decisions(snapshot, result), now)

    def _record(
        self, session: Session, result: CycleResult, before: dict[str, tuple[str, str]], now: float
    ) -> None:
        """Write the decisions (and the pending reasons) in one transaction."""
        for decision in result.decisions:
            workload = session.get(WorkloadRow, decision.workload)
            if workload is None or workload.cancel_requested or Phase(workload.phase).terminal:
                continue  # changed since the snapshot: the next pass decides again
            self._apply(session, workload, lifecycle.decided(_life(workload), decision), now)
            if isinstance(decision, Admit):
                self._admit(session, workload, decision, now)
            elif isinstance(decision, Shrink):
                self._shrink(session, workload, decision)
            elif isinstance(decision, Grow):
                self._grow(session, workload, decision)
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

    # -- carrying out --------------------------------------------------------------------

    def _fair_share_of_launches(self, pending: list[ReplicaRow]) -> list[ReplicaRow]:
        """At most ``max_launches_per_pass`` replicas, taken round-robin across workloads.

        One service of 30,000 hundredth-of-a-card replicas would otherwise make one pass fork
        30,000 processes, holding the loop (and every other workload's launch) for minutes;
        the rest start on the following passes, which come at once."""
        if len(pending) <= self.max_launches_per_pass:
            return pending
        by_workload: dict[str, list[ReplicaRow]] = defaultdict(list)
        for replica in sorted(pending, key=lambda r: (r.workload_id, r.index, r.id)):
            by_workload[replica.workload_id].append(replica)
        chosen: list[ReplicaRow] = []
        queues = list(by_workload.values())
        while len(chosen) < self.max_launches_per_pass:
            for queue in queues:
                if queue and len(chosen) < self.max_launches_per_pass:
                    chosen.append(queue.pop(0))
        self._wake.set()  # more to launch: pass again without waiting for the interval
        return chosen

    def _drained(self, replica: ReplicaRow, services: set[str]) -> bool:
        """Whether a running service replica the controller no longer wants may be stopped:
        it has left the gateway's rotation (the gateway re-reads replica lists every
        ``ENDPOINTS_TTL_S``) and its requests in flight have finished, or the drain timeout
        is spent. Training replicas, and any replica without a gateway, stop at once."""
        if self.in_flight is None or replica.workload_id not in services:
            return True
        now = self.clock()
        since = self._draining.setdefault(replica.id, now)
        waited = now - since
        if waited >= self.drain_timeout:
            busy = self.in_flight(replica.id)
            if busy:
                log.warning("replica %s still has %d request(s) in flight after the %g s "
                            "drain timeout; stopping it", replica.id, busy,
                            self.drain_timeout)  # fmt: skip
            return True
        # otherwise the next pass looks again
        return waited >= DRAIN_SETTLE_S and self.in_flight(replica.id) == 0

    def _reconcile(self, stats: PassStats) -> None:
        """Launch what should run and is not launched; stop what should not run."""
        with self.db.session() as session:
            to_launch = list(
                session.scalars(
                    select(ReplicaRow).where(
                        ReplicaRow.desired == "running",
                        ReplicaRow.state == ReplicaState.PENDING.value,
                    )
                )
            )
            to_stop = list(
                session.scalars(
                    select(ReplicaRow).where(
                        ReplicaRow.desired == "stopped",
                        ReplicaRow.state.in_(
                            (ReplicaState.RUNNING.value, ReplicaState.PENDING.value)
                        ),
                    )
                )
            )
            to_launch = self._fair_share_of_launches(to_launch)
            services = set(
                session.scalars(
                    select(WorkloadRow.id).where(
                        WorkloadRow.kind == "InferenceService",
                        WorkloadRow.id.in_({r.workload_id for r in to_stop}),
                    )
                )
            )
            waiting = {r.id for r in to_stop}
            sizes: dict[str, int] = defaultdict(int)
            workloads: dict[str, WorkloadRow] = {}
            for replica in to_launch:
                if replica.workload_id not in workloads:
                    workload = session.get(WorkloadRow, replica.workload_id)
                    if workload is None:
                        continue
                    workloads[replica.workload_id] = workload
                    sizes[workload.id] = len(workload.placements)
            for replica in to_launch:
                workload = workloads.get(replica.workload_id)
                if workload is None:
                    continue
                if workload.master_port is None:
                    workload.master_port = _free_port()
                try:
                    observation = self.backend.launch(
                        launch_record(
                            replica, workload, sizes[workload.id], workload.master_port,
                            self.api_url,
                        )
                    )  # fmt: skip
                except (ValueError, TypeError) as err:  # what it was given cannot run
                    log.warning("cannot launch replica %s: %s", replica.id, err)
                    self._launch_failed(session, workload, replica, f"{err}", self.clock())
                    continue
                except Exception:  # the backend is unreachable: the next pass tries again
                    log.exception("launching replica %s failed; retrying", replica.id)
                    continue
                replica.state = observation.state.value
                replica.pid = observation.pid
                replica.port = observation.port
                replica.log_path = observation.log_path
                replica.started_at = observation.started_at
                replica.reason = observation.reason
                if observation.state.ended:
                    replica.exit_code = observation.exit_code
                    replica.finished_at = observation.finished_at or self.clock()
                    if observation.state is ReplicaState.FAILED and observation.reason:
                        # refused at launch (e.g. the working directory is gone): trying again
                        # would fail the same way, so the job fails once, saying why
                        self._launch_failed(
                            session, workload, replica, observation.reason, self.clock()
                        )
                        continue
                stats.launched += 1
                step = lifecycle.started(_life(workload))
                if step.life.phase.value != workload.phase:
                    self._apply(session, workload, step, self.clock())
                    workload.started_at = workload.started_at or self.clock()
            for replica in to_stop:
                if replica.state == ReplicaState.PENDING.value:
                    # never launched, or launched by a controller that died before recording it
                    observed = self.backend.observe([replica.id]).get(replica.id)
                    if observed is None or observed.state is not ReplicaState.RUNNING:
                        replica.state = ReplicaState.STOPPED.value
                        continue
                    self._record_observation(replica, observed)
                if not self._drained(replica, services):
                    continue
                self.backend.stop(replica.id)
                stats.stopped += 1
            self._draining = {r: t for r, t in self._draining.items() if r in waiting}
