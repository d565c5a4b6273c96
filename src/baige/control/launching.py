"""Launching and stopping: replicas the store wants running are launched (a fair share of
them per pass), replicas it no longer wants are stopped — a service replica only once it has
drained (its requests through the gateway finished).
"""

from __future__ import annotations

import logging
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from baige.api.workloads import TrainingJobSpec
from baige.backends.base import ReplicaState
from baige.backends.peers import PeerWiring
from baige.control.peer_wiring import job_secret, members_of, wire
from baige.control.preflight_gate import PreflightGating
from baige.control.recording import PassStats, _free_port, _life
from baige.control.snapshot import (
    launch_record,
    parse_spec,
)
from baige.sched import (
    lifecycle,
)
from baige.store.tables import NodeRow, ReplicaRow, WorkloadRow

__all__ = ["DRAIN_SETTLE_S", "Launching"]

log = logging.getLogger("baige.controller")
# a replica leaving a service is stopped no sooner than this after it left the rotation: the
# gateway's cached replica list (ENDPOINTS_TTL_S, 1 s) may still send it a request meanwhile
DRAIN_SETTLE_S = 2.0


class Launching(PreflightGating):
    """Carries the store's wanted state out on the backend (a big gang once its pre-flight
    has passed: :mod:`~baige.control.preflight_gate`)."""

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

    @staticmethod
    def _peer_wirings(
        session: Session, workloads: list[WorkloadRow]
    ) -> dict[str, dict[str, PeerWiring]]:
        """Workload id -> replica id -> its peer-memory wiring, for each training job of two
        or more replicas (spares included) that has not turned ``checkpoint.peer_memory``
        off; no entry for any other workload. Each replica wanted running gets a port once,
        kept in its row. Two queries for all the jobs of a pass, not two per job."""
        jobs: dict[tuple[str, int], WorkloadRow] = {}
        for workload in workloads:
            if workload.kind != "TrainingJob" or not workload.report_token:
                continue
            spec = parse_spec(workload.kind, workload.spec)
            if not isinstance(spec, TrainingJobSpec) or spec.replicas + spec.spares < 2:
                continue
            if spec.checkpoint is not None and not spec.checkpoint.peer_memory:
                continue
            jobs[(workload.id, workload.generation)] = workload
        if not jobs:
            return {}
        wanted: dict[str, list[ReplicaRow]] = defaultdict(list)
        for row in session.scalars(
            select(ReplicaRow).where(
                ReplicaRow.workload_id.in_({w.id for w in jobs.values()}),
                ReplicaRow.desired == "running",
            )
        ):
            if (row.workload_id, row.generation) in jobs:
                wanted[row.workload_id].append(row)
                if row.port is None:
                    row.port = _free_port()
        topology: dict[str, tuple[str, ...]] = {}
        nodes = {r.node for rows in wanted.values() for r in rows}
        for name, spec_data in session.execute(
            select(NodeRow.name, NodeRow.spec).where(NodeRow.name.in_(nodes))
        ):
            path = spec_data.get("topology")
            topology[name] = tuple(map(str, path)) if isinstance(path, list | tuple) else ()
        wirings: dict[str, dict[str, PeerWiring]] = {}
        for workload in jobs.values():
            rows = wanted.get(workload.id, [])
            members = members_of([(r.id, r.node, r.port or 0) for r in rows], topology)
            secret = job_secret(workload.report_token or "", workload.id, workload.generation)
            wirings[workload.id] = wire(members, secret)
        return wirings

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
            held = self._preflight_holds(session, workloads, self.clock())
            peers = self._peer_wirings(session, [w for w in workloads.values() if w.id not in held])
            node_types: dict[str, str] = {}
            if any(w.hetero_plan for w in workloads.values()):  # a job spans types
                node_types = dict(session.execute(select(NodeRow.name, NodeRow.accel_type)).all())
            for replica in to_launch:
                workload = workloads.get(replica.workload_id)
                if workload is None or workload.id in held:
                    continue
                if workload.master_port is None:
                    workload.master_port = _free_port()
                try:
                    observation = self.backend.launch(
                        launch_record(
                            replica, workload, sizes[workload.id], workload.master_port,
                            self.api_url, node_types=node_types,
                            peer=peers.get(workload.id, {}).get(replica.id),
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
                if observation.port is not None:  # a training replica keeps its peer port
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
