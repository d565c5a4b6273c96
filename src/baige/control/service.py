"""What the API does, as transactions on the store: queues, nodes, workloads, events.

Every method takes the calling :class:`Principal` and enforces tenancy itself (another
tenant's object is "not found"), so the HTTP layer only translates.
"""

from __future__ import annotations

import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from baige.api.nodes import NodeSpec
from baige.api.queues import QueueSpec, QueueTreeError, check_queue_tree
from baige.api.views import (
    AcceleratorSummary,
    EventView,
    NodeView,
    OverviewView,
    PendingRef,
    QueueUsage,
    QueueView,
    ReplicaView,
    SamplePoint,
    TrainingRuntime,
    WorkloadView,
)
from baige.api.workloads import InferenceServiceSpec, Phase, TrainingJobSpec
from baige.control.auth import Principal
from baige.control.errors import Conflict, Forbidden, Invalid, NotFound
from baige.control.hetero_plans import split_view
from baige.control.runtime_figures import new_report_token, runtime_view
from baige.store.db import Database
from baige.store.tables import EventRow, NodeRow, QueueRow, ReplicaRow, SampleRow, WorkloadRow

__all__ = ["ACTIVE", "ControlService", "record_event"]

ACTIVE = (Phase.PENDING.value, Phase.ADMITTED.value, Phase.RUNNING.value)
WorkloadSpecT = TrainingJobSpec | InferenceServiceSpec
# where a workload kind's cards count in the overview's training-vs-inference split
_KIND_SHARE = {"TrainingJob": "training", "InferenceService": "inference"}


def record_event(
    session: Session,
    kind: str,
    object_id: str,
    event_type: str,
    reason: str,
    message: str,
    *,
    tenant: str | None = None,
    now: float | None = None,
) -> None:
    session.add(
        EventRow(
            ts=time.time() if now is None else now,
            object_kind=kind,
            object_id=object_id,
            tenant=tenant,
            type=event_type,
            reason=reason,
            message=message,
        )
    )


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _cards(placement: dict[str, object]) -> float:
    """Cards a stored placement uses (shares summed)."""
    devices = placement.get("devices")
    milli = placement.get("milli", 1000)
    count = len(devices) if isinstance(devices, list) else 0
    return count * (milli if isinstance(milli, int) else 1000) / 1000


def _event_view(row: EventRow) -> EventView:
    return EventView(
        ts=row.ts,
        object_kind=row.object_kind,
        object_id=row.object_id,
        type=row.type,
        reason=row.reason,
        message=row.message,
    )


def _workload_id(spec: WorkloadSpecT) -> str:
    return f"{'job' if isinstance(spec, TrainingJobSpec) else 'svc'}-{secrets.token_hex(4)}"


def _require_admin(who: Principal, what: str) -> None:
    if not who.admin:
        raise Forbidden(f"only an admin token may {what}")


def node_view(row: NodeRow, allocated: float = 0.0) -> NodeView:
    spec = NodeSpec.model_validate(row.spec)
    return NodeView(
        name=row.name,
        accelerator_type=row.accel_type,
        devices=row.devices,
        health="cordoned" if row.cordoned and row.health == "ready" else row.health,
        cordoned=row.cordoned,
        draining=row.draining,
        reason=row.reason,
        last_heartbeat=row.last_heartbeat,
        allocated=allocated,
        topology=list(spec.topology),
        pool=spec.pool,
        cpu=spec.cpu,
        memory=spec.memory,
    )


def workload_view(row: WorkloadRow, replicas: Sequence[ReplicaRow] = ()) -> WorkloadView:
    split = split_view(row.hetero_plan)
    accel = row.accel_type
    if split is not None and len(split.parts) > 1:  # spans types: name them all
        accel = "+".join(part.type for part in split.parts)
    return WorkloadView(
        id=row.id,
        name=row.name,
        kind=row.kind,
        tenant=row.tenant,
        queue=row.queue,
        phase=row.phase,
        reason_code=row.reason_code,
        reason=row.reason,
        replicas=row.replicas,
        accelerator_type=accel,
        split=split,
        running_replicas=[
            ReplicaView(
                id=r.id,
                index=r.index,
                node=r.node,
                devices=list(r.devices),
                share=r.milli / 1000,
                state=r.state,
                exit_code=r.exit_code,
                port=r.port,
                reason=r.reason,
            )
            for r in replicas
        ],
        restarts=row.restarts,
        exit_code=row.exit_code,
        created_at=row.created_at,
        admitted_at=row.admitted_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        runtime=runtime_view(row.runtime),
        spec=row.spec,
    )


class ControlService:
    """The operations behind every endpoint."""

    def __init__(
        self,
        db: Database,
        *,
        wake: Callable[[], None] | None = None,
        check_launchable: Callable[[WorkloadSpecT], list[dict[str, object]]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.clock = clock  # wall-clock time of a request (a test steps it with the controller)
        self.wake = wake or (lambda: None)
        # the backend's view of what could never start (a working_dir that does not exist)
        self.check_launchable = check_launchable

    # -- queues --------------------------------------------------------------------------

    def apply_queue(self, who: Principal, spec: QueueSpec) -> QueueView:
        """Create or replace a queue; the whole tree must stay valid."""
        _require_admin(who, "change queues")
        now = self.clock()
        with self.db.session() as session:
            rows = {r.name: r for r in session.scalars(select(QueueRow))}
            specs = [QueueSpec.model_validate(r.spec) for n, r in rows.items() if n != spec.name]
            try:
                check_queue_tree([*specs, spec])
            except QueueTreeError as err:
                raise Invalid(
                    "the queue does not fit the tree",
                    [{"field": "quotas", "message": p} for p in err.problems],
                ) from None
            row = rows.get(spec.name)
            data = spec.model_dump(mode="json")
            if row is None:
                row = QueueRow(name=spec.name, created_at=now, spec=data, updated_at=now)
                session.add(row)
            row.spec, row.tenant, row.parent, row.updated_at = data, spec.tenant, spec.parent, now
            record_event(session, "queue", spec.name, "Applied", "QueueApplied",
                         f"queue {spec.name} applied", tenant=spec.tenant, now=now)  # fmt: skip
        self.wake()
        return self._queue_views(who, only=spec.name)[0]

    def delete_queue(self, who: Principal, name: str) -> None:
        _require_admin(who, "delete queues")
        with self.db.session() as session:
            row = session.get(QueueRow, name)
            if row is None:
                raise NotFound(f"queue {name!r} not found")
            children = session.scalar(select(func.count()).where(QueueRow.parent == name))
            active = session.scalar(
                select(func.count()).where(WorkloadRow.queue == name, WorkloadRow.phase.in_(ACTIVE))
            )
            if children or active:
                raise Conflict(
                    f"queue {name!r} still has {children} child queue(s) and {active} active "
                    "workload(s)"
                )
            session.delete(row)

    def list_queues(self, who: Principal) -> list[QueueView]:
        return self._queue_views(who)

    def _queue_views(self, who: Principal, only: str | None = None) -> list[QueueView]:
        with self.db.session() as session:
            rows = list(session.scalars(select(QueueRow).order_by(QueueRow.name)))
            used: dict[tuple[str, str], float] = defaultdict(float)
            counts: dict[tuple[str, str], int] = defaultdict(int)
            for queue, phase, accel, placements in session.execute(
                select(WorkloadRow.queue, WorkloadRow.phase, WorkloadRow.accel_type,
                       WorkloadRow.placements).where(WorkloadRow.phase.in_(ACTIVE))
            ):  # fmt: skip
                counts[(queue, "pending" if phase == "pending" else "running")] += 1
                if accel and placements:
                    used[(queue, accel)] += sum(_cards(p) for p in placements)
        parents = {r.name: r.parent for r in rows}
        totals: dict[tuple[str, str], float] = defaultdict(float)
        for (queue, accel), cards in used.items():
            cursor: str | None = queue
            while cursor is not None:
                totals[(cursor, accel)] += cards
                cursor = parents.get(cursor)
        views = []
        for row in rows:
            if only is not None and row.name != only:
                continue
            if not who.sees(row.tenant):
                continue
            spec = QueueSpec.model_validate(row.spec)
            accels = set(spec.quotas) | {a for (q, a) in totals if q == row.name}
            usage = {
                accel: QueueUsage(
                    guaranteed=spec.quotas[accel].guaranteed if accel in spec.quotas else 0,
                    limit=spec.quotas[accel].limit if accel in spec.quotas else None,
                    used=round(totals.get((row.name, accel), 0.0), 3),
                )
                for accel in sorted(accels)
            }
            views.append(
                QueueView(
                    name=row.name,
                    parent=row.parent,
                    tenant=row.tenant,
                    weight=spec.weight,
                    usage=usage,
                    pending=counts[(row.name, "pending")],
                    running=counts[(row.name, "running")],
                )
            )
        return views

    # -- nodes ---------------------------------------------------------------------------

    def register_nodes(
        self, who: Principal, specs: Sequence[NodeSpec], *, agent: str = "api"
    ) -> int:
        """Create or update nodes (one transaction); a registration counts as a heartbeat.

        New nodes are inserted with ``INSERT … ON CONFLICT DO NOTHING RETURNING name`` and
        only the others are read and updated, in Core statements: an agent registering
        its node costs one statement and its event, not an ORM load and flush (at 10,000
        nodes registering one per request, that was most of the API's time). Two agents
        registering the same new node at once cannot both insert it: the loser updates."""
        self.check_registration(who, specs)
        now = self.clock()
        values = {
            spec.name: {
                "name": spec.name,
                "spec": spec.model_dump(mode="json"),
                "accel_type": spec.accelerators.type if spec.accelerators else "",
                "devices": spec.accelerators.count if spec.accelerators else 0,
                "agent": agent,
                "health": "ready",
                "reason": "",
                "last_heartbeat": now,
            }
            for spec in specs
        }
        with self.db.session() as session:
            fresh = [
                {**v, "cordoned": spec.cordoned, "registered_at": now, "updated_at": now}
                for spec, v in zip(specs, values.values(), strict=True)
            ]
            inserted = set(
                session.scalars(
                    self.db.insert(NodeRow)
                    .on_conflict_do_nothing(index_elements=[NodeRow.name])
                    .returning(NodeRow.name),
                    fresh,
                )
            )
            if inserted:
                session.execute(
                    insert(EventRow),
                    [
                        {"ts": now, "object_kind": "node", "object_id": name, "tenant": None,
                         "type": "Registered", "reason": "NodeRegistered",
                         "message": f"node {name} registered by {agent}"}
                        for name in values
                        if name in inserted
                    ],
                )  # fmt: skip
            known = sorted(set(values) - inserted)
            if known:
                old = {
                    name: (spec, updated)
                    for name, spec, updated in session.execute(
                        select(NodeRow.name, NodeRow.spec, NodeRow.updated_at).where(
                            NodeRow.name.in_(known)
                        )
                    )
                }
                changes = []
                for name in known:
                    spec_was, updated = old.get(name, (None, 0.0))
                    changed = spec_was != values[name]["spec"] or not updated
                    changes.append({**values[name], "updated_at": now if changed else updated})
                session.execute(update(NodeRow), changes)
        self.wake()
        return len(specs)

    def check_registration(self, who: Principal, specs: Sequence[NodeSpec]) -> None:
        """What ``register_nodes`` refuses before it writes: a caller who is not an admin,
        and a node listed twice (which of the two was meant?)."""
        _require_admin(who, "register nodes")
        seen: set[str] = set()
        for i, spec in enumerate(specs):
            if spec.name in seen:
                raise Invalid(f"nodes[{i}].name: node {spec.name} is listed twice")
            seen.add(spec.name)

    def heartbeat(self, who: Principal, names: Sequence[str]) -> int:
        """Mark nodes alive; a failed node that heartbeats again becomes ready. The
        registered ones among ``names`` are marked even when others are not registered
        (then NotFound names those)."""
        _require_admin(who, "send heartbeats")
        alive = self.mark_alive(names)
        if len(alive) != len(set(names)):
            missing = sorted(set(names) - alive)
            raise NotFound(f"node(s) not registered: {', '.join(missing)}")
        return len(alive)

    def mark_alive(self, names: Sequence[str]) -> set[str]:
        """Heartbeats of ``names`` in one statement (no rows loaded): the names found
        registered. A failed node among them becomes ready, with an event. The API's
        heartbeat endpoint gathers many requests' names into one call (``server.batched_writes``);
        the caller has checked who may send them."""
        now = self.clock()
        with self.db.session() as session:
            found = session.execute(
                update(NodeRow)
                .where(NodeRow.name.in_(sorted(set(names))))
                .values(last_heartbeat=now)
                .returning(NodeRow.name, NodeRow.health),
                execution_options={"synchronize_session": False},
            ).all()
            recovered = sorted(name for name, health in found if health == "failed")
            if recovered:
                session.execute(
                    update(NodeRow)
                    .where(NodeRow.name.in_(recovered), NodeRow.health == "failed")
                    .values(health="ready", reason=""),
                    execution_options={"synchronize_session": False},
                )
                for name in recovered:
                    record_event(session, "node", name, "Recovered", "HeartbeatResumed",
                                 "heartbeats resumed; node is ready again", now=now)  # fmt: skip
        return {name for name, _ in found}

    def set_cordon(self, who: Principal, name: str, cordoned: bool) -> NodeView:
        _require_admin(who, "cordon nodes")
        with self.db.session() as session:
            row = session.get(NodeRow, name)
            if row is None:
                raise NotFound(f"node {name!r} not found")
            if row.cordoned != cordoned:
                row.cordoned = cordoned
                what = "Cordoned" if cordoned else "Uncordoned"
                record_event(session, "node", name, what, what,
                             f"node {name} {what.lower()} by {who.name}")  # fmt: skip
            if not cordoned:
                row.draining = False
                row.device_health = None  # the operator has looked: the health policy forgets
                if row.health == "ready":  # "drained by …" no longer says why it is so
                    row.reason = ""
        self.wake()
        return self.get_node(who, name)

    def drain(self, who: Principal, name: str, reason: str = "") -> NodeView:
        """Cordon the node and move its work elsewhere: the controller stops every workload
        placed there and schedules it again (training restores from its checkpoint)."""
        _require_admin(who, "drain nodes")
        with self.db.session() as session:
            row = session.get(NodeRow, name)
            if row is None:
                raise NotFound(f"node {name!r} not found")
            if not row.draining:
                row.cordoned = row.draining = True
                why = reason or f"drained by {who.name}"
                row.reason = why[:500]
                record_event(session, "node", name, "Draining", "Drain",
                             f"node {name} draining: {why}; its work moves elsewhere")  # fmt: skip
        self.wake()
        return self.get_node(who, name)

    def get_node(self, who: Principal, name: str) -> NodeView:
        views = self.list_nodes(who, names=[name])
        if not views:
            raise NotFound(f"node {name!r} not found")
        return views[0]

    def list_nodes(
        self,
        who: Principal,
        *,
        names: Sequence[str] | None = None,
        limit: int = 10_000,
        offset: int = 0,
    ) -> list[NodeView]:
        with self.db.session() as session:
            query = select(NodeRow).order_by(NodeRow.name).limit(limit).offset(offset)
            if names is not None:
                query = query.where(NodeRow.name.in_(list(names)))
            rows = list(session.scalars(query))
            allocated: dict[str, float] = defaultdict(float)
            running: dict[str, set[str]] = defaultdict(set)
            active = select(WorkloadRow.id, WorkloadRow.tenant, WorkloadRow.placements).where(
                WorkloadRow.phase.in_(ACTIVE)
            )
            for workload_id, tenant, placements in session.execute(active):
                for p in placements or ():
                    allocated[str(p["node"])] += _cards(p)
                    if who.sees(tenant):
                        running[str(p["node"])].add(workload_id)
        views = []
        for row in rows:
            view = node_view(row, round(allocated[row.name], 3))
            view.workloads = sorted(running[row.name])
            views.append(view)
        return views

    # -- workloads -----------------------------------------------------------------------

    def submit(
        self, who: Principal, spec: WorkloadSpecT, idempotency_key: str | None = None
    ) -> tuple[WorkloadView, bool]:
        """Accept a job or service: its view, and whether it is new. With an idempotency
        key, a retry returns the first submission (and a different spec under the same key
        is a Conflict)."""
        result = self.submit_many([(who, spec, idempotency_key)])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def submit_many(
        self, items: Sequence[tuple[Principal, WorkloadSpecT, str | None]]
    ) -> list[tuple[WorkloadView, bool] | Exception]:
        """Submissions of many requests in one transaction (the API's group commit), each
        with its own result or error, as if they had been made one after the other.

        Rows are inserted with ``ON CONFLICT DO NOTHING``: one whose idempotency key the
        tenant already used (by an earlier request, or an earlier one of this batch) is
        not inserted, and the row holding the key answers it; one whose random id was
        taken is given another. A first submission costs its share of two statements."""
        results: list[tuple[WorkloadView, bool] | Exception | None] = [None] * len(items)
        now = self.clock()
        for i, (_, spec, _) in enumerate(items):
            problems = self.check_launchable(spec) if self.check_launchable is not None else []
            if problems:
                results[i] = Invalid(
                    f"{spec.kind} {spec.name} cannot run here: {problems[0]['message']}", problems
                )
        with self.db.session() as session:
            wanted = sorted({spec.queue for _, spec, _ in items})
            tenants = dict(
                session.execute(
                    select(QueueRow.name, QueueRow.tenant).where(QueueRow.name.in_(wanted))
                )
                .tuples()
                .all()
            )
            pending: list[tuple[int, dict[str, object]]] = []
            for i, (who, spec, key) in enumerate(items):
                if results[i] is not None:
                    continue
                if spec.queue not in tenants or not who.sees(tenants[spec.queue]):
                    results[i] = NotFound(
                        f"queue {spec.queue!r} not found",
                        [
                            {
                                "field": "queue",
                                "message": f"no queue {spec.queue!r} you can submit to",
                            }
                        ],
                    )
                    continue
                pending.append((i, self._new_row(who, spec, key, tenants[spec.queue], now)))
            ids: dict[int, str] = {}
            for _ in range(5):  # a random id taken twice in a row is already one in 10^19
                if not pending:
                    break
                inserted = set(
                    session.scalars(
                        self.db.insert(WorkloadRow)
                        .on_conflict_do_nothing()
                        .returning(WorkloadRow.id),
                        [values for _, values in pending],
                    )
                )
                retry = []
                for i, values in pending:
                    if values["id"] in inserted:
                        ids[i] = str(values["id"])
                        continue
                    key = items[i][2]
                    found = self._by_key(session, str(values["tenant"]), key) if key else None
                    if found is None:  # the id was taken: another one
                        retry.append((i, {**values, "id": _workload_id(items[i][1])}))
                        continue
                    try:
                        data = items[i][1].model_dump(mode="json")
                        results[i] = (self._same_or_conflict(found, data), False)
                    except Conflict as err:
                        results[i] = err
                pending = retry
            for i, _ in pending:
                results[i] = Conflict("no free workload id after 5 tries; submit again")
            if ids:
                rows = {
                    row.id: row
                    for row in session.scalars(
                        select(WorkloadRow).where(WorkloadRow.id.in_(list(ids.values())))
                    )
                }
                session.execute(
                    insert(EventRow),
                    [
                        {"ts": now, "object_kind": "workload", "object_id": wid,
                         "tenant": rows[wid].tenant, "type": "Submitted", "reason": "Submitted",
                         "message": f"{items[i][1].kind} {items[i][1].name} submitted to queue "
                                    f"{items[i][1].queue} by {items[i][0].name}"}
                        for i, wid in ids.items()
                    ],
                )  # fmt: skip
                for i, wid in ids.items():
                    results[i] = (workload_view(rows[wid]), True)
        if ids:
            self.wake()
        return [r if r is not None else Invalid("not submitted") for r in results]

    @staticmethod
    def _new_row(
        who: Principal, spec: WorkloadSpecT, key: str | None, tenant: str | None, now: float
    ) -> dict[str, object]:
        """A new workload row's columns."""
        return {
            "id": _workload_id(spec),
            "name": spec.name,
            "kind": spec.kind,
            "tenant": tenant or who.tenant or "admin",
            "queue": spec.queue,
            "spec": spec.model_dump(mode="json"),
            "replicas": spec.replicas,
            "phase": Phase.PENDING.value,
            "reason_code": "NotConsidered",
            "reason": "waiting for the next scheduling pass",
            "placements": [],
            "generation": 0,
            "restarts": 0,
            "idempotency_key": key,
            "cancel_requested": False,
            "created_at": now,
            "report_token": new_report_token() if isinstance(spec, TrainingJobSpec) else None,
        }

    @staticmethod
    def _by_key(session: Session, tenant: str, key: str) -> WorkloadRow | None:
        return session.scalars(
            select(WorkloadRow).where(
                WorkloadRow.tenant == tenant, WorkloadRow.idempotency_key == key
            )
        ).first()

    @staticmethod
    def _same_or_conflict(row: WorkloadRow, data: dict[str, object]) -> WorkloadView:
        if row.spec != data:
            raise Conflict(
                f"idempotency key already used for {row.id} with a different spec; "
                "use a new key for a new submission"
            )
        return workload_view(row)

    def _visible(self, session: Session, who: Principal, workload_id: str) -> WorkloadRow:
        row = session.get(WorkloadRow, workload_id)
        if row is None or not who.sees(row.tenant):
            raise NotFound(f"{workload_id!r} not found")
        return row

    def _replicas(self, session: Session, row: WorkloadRow) -> list[ReplicaRow]:
        return list(
            session.scalars(
                select(ReplicaRow)
                .where(ReplicaRow.workload_id == row.id, ReplicaRow.generation == row.generation)
                .order_by(ReplicaRow.index, ReplicaRow.id)
            )
        )

    def get(self, who: Principal, workload_id: str, kind: str | None = None) -> WorkloadView:
        with self.db.session() as session:
            row = self._visible(session, who, workload_id)
            if kind is not None and row.kind != kind:
                raise NotFound(f"{workload_id!r} not found")
            return workload_view(row, self._replicas(session, row))

    def list_workloads(
        self,
        who: Principal,
        *,
        kind: str | None = None,
        queue: str | None = None,
        phase: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[WorkloadView]:
        with self.db.session() as session:
            query = select(WorkloadRow).order_by(WorkloadRow.created_at.desc(), WorkloadRow.id)
            if not who.admin:
                query = query.where(WorkloadRow.tenant == who.tenant)
            if kind:
                query = query.where(WorkloadRow.kind == kind)
            if queue:
                query = query.where(WorkloadRow.queue == queue)
            if phase:
                phases = [p.strip() for p in phase.split(",") if p.strip()]
                unknown = [p for p in phases if p not in {x.value for x in Phase}]
                if unknown:
                    raise Invalid(
                        f"unknown phase {unknown[0]!r}; "
                        f"one of: {', '.join(x.value for x in Phase)}",
                        [{"field": "phase", "message": "unknown phase"}],
                    )
                query = query.where(WorkloadRow.phase.in_(phases))
            rows = list(session.scalars(query.limit(limit).offset(offset)))
            return [workload_view(row) for row in rows]

    def cancel(self, who: Principal, workload_id: str) -> WorkloadView:
        now = self.clock()
        with self.db.session() as session:
            row = self._visible(session, who, workload_id)
            if Phase(row.phase).terminal:
                return workload_view(row)
            row.cancel_requested = True
            if row.phase == Phase.PENDING.value:
                row.phase, row.finished_at = Phase.CANCELLED.value, now
                row.reason_code, row.reason = "Cancelled", f"cancelled by {who.name}"
            record_event(session, "workload", row.id, "CancelRequested", "Cancelled",
                         f"cancel requested by {who.name}", tenant=row.tenant, now=now)  # fmt: skip
        self.wake()
        return self.get(who, workload_id)

    def scale(self, who: Principal, workload_id: str, replicas: int) -> WorkloadView:
        if replicas < 0:
            raise Invalid("replicas cannot be negative", [{"field": "replicas", "message": "≥ 0"}])
        with self.db.session() as session:
            row = self._visible(session, who, workload_id)
            if row.kind != "InferenceService":
                raise Invalid(f"{workload_id} is a {row.kind}; only services scale")
            if Phase(row.phase).terminal:
                raise Conflict(f"{workload_id} has ended ({row.phase}); submit it again")
            spec = dict(row.spec)
            spec["replicas"] = replicas
            try:
                InferenceServiceSpec.model_validate(spec)
            except ValidationError as err:
                raise Invalid(str(err)) from None
            row.spec, row.replicas = spec, replicas
            message = f"scaled to {replicas} replicas by {who.name}"
            record_event(
                session, "workload", row.id, "Scaled", "Scaled", message, tenant=row.tenant
            )
        self.wake()
        return self.get(who, workload_id)

    def events(
        self, who: Principal, kind: str, object_id: str, limit: int = 500
    ) -> list[EventView]:
        with self.db.session() as session:
            if kind == "workload":
                self._visible(session, who, object_id)
            rows = session.scalars(
                select(EventRow)
                .where(EventRow.object_kind == kind, EventRow.object_id == object_id)
                .order_by(EventRow.id)
                .limit(limit)
            )
            return [_event_view(r) for r in rows]

    def overview(self, who: Principal, hours: float = 6.0) -> OverviewView:
        """Cards by type and state, workloads by phase, open faults, recent usage."""
        now = self.clock()
        with self.db.session() as session:
            totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
            node_states: dict[str, int] = defaultdict(int)
            state_of: dict[str, str] = {}
            for name, accel, devices, health, cordoned in session.execute(
                select(
                    NodeRow.name,
                    NodeRow.accel_type,
                    NodeRow.devices,
                    NodeRow.health,
                    NodeRow.cordoned,
                )
            ):
                state = "cordoned" if cordoned and health == "ready" else health
                state_of[name] = state
                node_states[state] += 1
                if not accel:
                    continue
                totals[accel]["total"] += devices
                totals[accel][state] += devices
            phases: dict[str, int] = defaultdict(int)
            reasons: dict[str, int] = defaultdict(int)
            restarts = 0
            query = select(
                WorkloadRow.phase,
                WorkloadRow.reason_code,
                WorkloadRow.accel_type,
                WorkloadRow.placements,
                WorkloadRow.restarts,
                WorkloadRow.id,
                WorkloadRow.name,
                WorkloadRow.queue,
                WorkloadRow.runtime,
                WorkloadRow.kind,
                WorkloadRow.created_at,
            )
            if not who.admin:
                query = query.where(WorkloadRow.tenant == who.tenant)
            training: list[TrainingRuntime] = []
            waiting: dict[str, list[tuple[float, PendingRef]]] = defaultdict(list)
            rows = session.execute(query)
            for (phase, code, held, placements, restarted, wid, name, queue, figures, kind,
                 created) in rows:  # fmt: skip
                if figures and phase == Phase.RUNNING.value:
                    view = runtime_view(figures, now)
                    if view is not None:
                        training.append(
                            TrainingRuntime(id=wid, name=name, queue=queue, ettr=view.ettr,
                                            restarts=view.restarts, lost_steps=view.lost_steps,
                                            last_step=view.last_step,
                                            steps_per_s=view.steps_per_s)
                        )  # fmt: skip
                phases[phase] += 1
                restarts += restarted
                if phase == Phase.PENDING.value:
                    reasons[code or "NotConsidered"] += 1
                    ref = PendingRef(id=wid, name=name, kind=kind)
                    waiting[code or "NotConsidered"].append((created, ref))
                if phase in ACTIVE and held and placements:
                    for placement in placements:
                        cards = _cards(placement)
                        totals[held]["allocated"] += cards
                        totals[held][_KIND_SHARE.get(kind, "training")] += cards
                        if phase == Phase.RUNNING.value:
                            totals[held]["running"] += cards
                        where = state_of.get(str(placement.get("node")), "failed")
                        totals[held][f"allocated-{where}"] += cards
            faults_query = (
                select(EventRow)
                .where(
                    EventRow.type.in_(
                        ("Failed", "Restarting", "Preempted", "FaultDetected", "NodeReported")
                    ),
                    EventRow.ts >= now - hours * 3600,
                )
                .order_by(EventRow.id.desc())
                .limit(50)
            )
            if not who.admin:
                faults_query = faults_query.where(EventRow.tenant == who.tenant)
            faults = [_event_view(r) for r in session.scalars(faults_query)]
            since = now - hours * 3600
            samples = session.scalars(
                select(SampleRow).where(SampleRow.ts >= since).order_by(SampleRow.ts)
            )
            history = [
                SamplePoint(
                    ts=r.ts,
                    type=r.accel_type,
                    capacity=r.capacity,
                    allocated=r.allocated,
                    running=r.running,
                    pending=r.pending,
                    training=r.training,
                    inference=r.inference,
                )
                for r in samples
            ]
            # the cards are live, samples come every 30 s: end the chart with the cards' state
            # so the two always agree (a fresh cluster would otherwise show only a 0 sample)
            history.extend(
                SamplePoint(
                    ts=now,
                    type=accel,
                    capacity=t["ready"],
                    allocated=round(t["allocated"], 3),
                    running=round(t["running"], 3),
                    pending=0,
                    training=round(t["training"], 3),
                    inference=round(t["inference"], 3),
                    live=True,
                )
                for accel, t in sorted(totals.items())
            )
        accelerators = [
            AcceleratorSummary(
                type=accel,
                total=int(t["total"]),
                allocated=round(t["allocated"], 3),
                idle=round(max(0.0, t["ready"] - t["allocated-ready"]), 3),
                failed=int(t["failed"]),
                cordoned=int(max(0.0, t["cordoned"] - t["allocated-cordoned"])),
            )
            for accel, t in sorted(totals.items())
        ]
        return OverviewView(
            accelerators=accelerators,
            nodes=dict(node_states),
            workloads=dict(phases),
            pending_reasons=dict(reasons),
            pending_workloads={
                code: [ref for _, ref in sorted(refs, key=lambda pair: pair[0])[:20]]
                for code, refs in waiting.items()
            },
            history_since=since,
            now=now,
            restarts=restarts,
            faults=faults,
            history=history,
            training=sorted(training, key=lambda t: (t.ettr is None, t.ettr or 0.0))[:50],
            ettr=_mean([t.ettr for t in training if t.ettr is not None]),
        )

    @staticmethod
    def whoami(who: Principal) -> dict[str, object]:
        return {"name": who.name, "tenant": who.tenant, "admin": who.admin}

    def recent_events(self, who: Principal, limit: int = 100) -> list[EventView]:
        """The newest events the caller may see (nodes and queues: admin only)."""
        with self.db.session() as session:
            query = select(EventRow).order_by(EventRow.id.desc()).limit(limit)
            if not who.admin:
                query = query.where(EventRow.tenant == who.tenant)
            return [_event_view(r) for r in session.scalars(query)]

    def log_files(
        self, who: Principal, workload_id: str, replica: int | None = None
    ) -> list[tuple[str, Path]]:
        """(label, log file) of the workload's latest replicas, first replica first; the
        label is ``r<index>`` (and ``.<attempt>`` for a restarted service replica)."""
        with self.db.session() as session:
            row = self._visible(session, who, workload_id)
            replicas = self._replicas(session, row)
            if not replicas and row.generation > 1:
                replicas = list(
                    session.scalars(
                        select(ReplicaRow)
                        .where(ReplicaRow.workload_id == row.id)
                        .order_by(ReplicaRow.generation.desc(), ReplicaRow.index)
                    )
                )
        if replica is not None:
            replicas = [r for r in replicas if r.index == replica]
            if not replicas:
                raise NotFound(f"{workload_id} has no replica {replica}")
        out = []
        for r in replicas:
            if r.log_path:
                attempt = r.id.rsplit("-a", 1)[-1]
                out.append(
                    (f"r{r.index}" + ("" if attempt == "0" else f".{attempt}"), Path(r.log_path))
                )
        return out
