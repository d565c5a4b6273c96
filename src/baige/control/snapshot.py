"""Building the scheduler's snapshot from the store, and the launch record of a replica.

The snapshot is read with plain column selects (no ORM objects): at 10,000 nodes and 5,000
workloads that is the difference between a few and a few hundred milliseconds per pass.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from sqlalchemy import String, cast, select
from sqlalchemy.orm import Session

from baige.api.nodes import Health
from baige.api.quantities import parse_cpu_milli, parse_memory_mib
from baige.api.queues import QueueSpec
from baige.api.workloads import InferenceServiceSpec, TrainingJobSpec
from baige.backends.base import ReplicaLaunch
from baige.backends.peers import PeerWiring, peer_env
from baige.control.runtime_figures import report_env
from baige.hw.catalog import get_chip
from baige.sched import Assignment, Node, Placement, Snapshot, Workload
from baige.sched.from_api import queue_from_spec, workload_from_spec
from baige.store.tables import NodeRow, QueueRow, ReplicaRow, WorkloadRow

__all__ = [
    "ACTIVE_PHASES",
    "SnapshotCache",
    "launch_record",
    "load_snapshot",
    "parse_spec",
    "stored_placement",
]

ACTIVE_PHASES = ("pending", "admitted", "running")
LEVELS = ("zone", "block", "rack")


def parse_spec(kind: str, data: dict[str, object]) -> TrainingJobSpec | InferenceServiceSpec:
    if kind == "TrainingJob":
        return TrainingJobSpec.model_validate(data)
    return InferenceServiceSpec.model_validate(data)


def _levels(depth: int) -> tuple[str, ...]:
    """Names for a topology path of ``depth`` levels (zone/block/rack, innermost last)."""
    if depth <= 1:
        return ("rack",)
    if depth <= 3:
        return LEVELS[-depth:]
    return tuple(f"level{i}" for i in range(depth))


def stored_placement(data: dict[str, object]) -> Placement:
    """A placement as the store keeps it (JSON) back into the scheduler's type."""
    devices = data.get("devices")
    milli = data.get("milli", 1000)
    return Placement(
        str(data["node"]),
        tuple(int(d) for d in devices) if isinstance(devices, list) else (),
        milli if isinstance(milli, int) else 1000,
    )


def _node_shape(spec: dict[str, object]) -> tuple[tuple[str, ...], dict[str, str], str, int, int]:
    """What the scheduler needs from a stored node spec (validated at registration)."""
    topology = spec.get("topology") or ()
    labels = spec.get("labels") or {}
    try:  # stored as written back by the spec (cores, "…Mi")
        cpu = parse_cpu_milli(spec.get("cpu", 0))
        memory = parse_memory_mib(spec.get("memory") or "0Mi")
    except ValueError:
        cpu = memory = 0
    return (
        tuple(str(t) for t in topology) if isinstance(topology, list | tuple) else (),
        {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        str(spec.get("pool") or "default"),
        cpu,
        memory,
    )


@dataclass(slots=True)
class SnapshotCache:
    """Parsed specs kept between passes: a node's shape until its spec changes, a workload's
    until it ends. JSON decoding of 15,000 specs per pass would otherwise dominate it.

    The scheduler's objects built from a row are kept too, with the row's columns they were
    built from: a row unchanged since the last pass gives the very same object. That saves
    building 15,000 of them a pass, and makes an unchanged snapshot compare equal to the
    last one at the cost of an identity check per object (``Controller`` then skips the
    cycle)."""

    nodes: dict[str, tuple[float, tuple[tuple[str, ...], dict[str, str], str, int, int]]] = field(
        default_factory=dict
    )
    # a workload's scheduling form, its time limit and its spares
    workloads: dict[str, tuple[Workload, float | None, int]] = field(default_factory=dict)
    built_nodes: dict[str, tuple[tuple[object, ...], Node]] = field(default_factory=dict)
    built_workloads: dict[str, tuple[tuple[object, ...], Workload]] = field(default_factory=dict)


def _nodes(session: Session, cache: SnapshotCache) -> tuple[Node, ...]:
    rows = list(
        session.execute(
            select(NodeRow.name, NodeRow.accel_type, NodeRow.devices, NodeRow.health,
                   NodeRow.cordoned, NodeRow.updated_at).order_by(NodeRow.name)
        )
    )  # fmt: skip
    stale = [name for name, *_, updated in rows if cache.nodes.get(name, (None,))[0] != updated]
    for start in range(0, len(stale), 5000):
        chunk = stale[start : start + 5000]
        for name, updated, spec in session.execute(
            select(NodeRow.name, NodeRow.updated_at, NodeRow.spec).where(NodeRow.name.in_(chunk))
        ):
            cache.nodes[name] = (updated, _node_shape(spec))
    nodes = []
    built = cache.built_nodes
    for name, accel, devices, health, cordoned, updated in rows:
        key = (accel, devices, health, cordoned, updated)
        known = built.get(name)
        if known is not None and known[0] == key:
            nodes.append(known[1])
            continue
        state = Health(health)
        if cordoned and state is Health.READY:
            state = Health.CORDONED
        topology, labels, pool, cpu, memory = cache.nodes[name][1]
        node = Node(name, accel, devices, topology, state, labels, pool, cpu, memory)
        built[name] = (key, node)
        nodes.append(node)
    if len(cache.nodes) > len(rows) or len(built) > len(rows):
        present = {row[0] for row in rows}
        for gone in set(cache.nodes) - present:
            del cache.nodes[gone]
        for gone in set(built) - present:
            del built[gone]
    return tuple(nodes)


def load_snapshot(
    session: Session, cache: SnapshotCache | None = None
) -> tuple[Snapshot, dict[str, tuple[str, str]]]:
    """The snapshot for a cycle, and each active workload's (reason code, reason).

    Columns are read without ORM objects, and specs are parsed once (``cache``, kept by the
    controller): at 10,000 nodes and 5,000 workloads this keeps a pass well under 500 ms.
    """
    cache = SnapshotCache() if cache is None else cache
    nodes = _nodes(session, cache)
    queues = tuple(
        queue_from_spec(QueueSpec.model_validate(data))
        for (data,) in session.execute(select(QueueRow.spec).order_by(QueueRow.name))
    )
    rows = list(
        session.execute(
            select(WorkloadRow.id, WorkloadRow.reason_code, WorkloadRow.reason,
                   WorkloadRow.replicas, WorkloadRow.created_at,
                   # as text: parsed only when it changed (``built_workloads``)
                   cast(WorkloadRow.placements, String), WorkloadRow.accel_type,
                   WorkloadRow.admitted_at)
            .where(WorkloadRow.phase.in_(ACTIVE_PHASES), WorkloadRow.cancel_requested.is_(False))
            .order_by(WorkloadRow.created_at, WorkloadRow.id)
        )
    )  # fmt: skip
    missing = [row[0] for row in rows if row[0] not in cache.workloads]
    for start in range(0, len(missing), 5000):
        chunk = missing[start : start + 5000]
        for wid, kind, data, created in session.execute(
            select(
                WorkloadRow.id, WorkloadRow.kind, WorkloadRow.spec, WorkloadRow.created_at
            ).where(WorkloadRow.id.in_(chunk))
        ):
            spec = parse_spec(kind, data)
            limit = spec.time_limit if isinstance(spec, TrainingJobSpec) else None
            spares = spec.spares if isinstance(spec, TrainingJobSpec) else 0
            cache.workloads[wid] = (
                workload_from_spec(spec, workload_id=wid, created_at=created),
                limit,
                spares,
            )
    reasons: dict[str, tuple[str, str]] = {}
    workloads: list[Workload] = []
    built = cache.built_workloads
    for wid, code, reason, replicas, created, placements_json, accel, admitted_at in rows:
        reasons[wid] = (code, reason)
        key = (replicas, created, placements_json, accel, admitted_at)
        known = built.get(wid)
        if known is not None and known[0] == key:
            workloads.append(known[1])
            continue
        placements = json.loads(placements_json) if placements_json else None
        workload, limit, spares = cache.workloads[wid]
        replicas += spares  # the row holds the size asked for; spares are placed beyond it
        if workload.replicas != replicas:
            floor = min(workload.floor, replicas) if workload.min_replicas is not None else None
            workload = replace(workload, replicas=replicas, min_replicas=floor)
        if placements and accel:
            admitted = admitted_at or created
            workload = replace(
                workload,
                assignment=Assignment(
                    accel,
                    tuple(stored_placement(p) for p in placements),
                    admitted,
                    None if limit is None else admitted + limit,
                ),
            )
        built[wid] = (key, workload)
        workloads.append(workload)
    if len(cache.workloads) > len(rows) or len(built) > len(rows):
        for gone in set(cache.workloads) - set(reasons):
            del cache.workloads[gone]
        for gone in set(built) - set(reasons):
            del built[gone]
    levels = _levels(max((len(n.topology) for n in nodes), default=0))
    return Snapshot(nodes, queues, tuple(workloads), levels), reasons


# how long a stopped job that declared ``checkpoint:`` has to save (the local backend sends
# SIGKILL STOP_GRACE_S = 10 s after SIGTERM)
STOP_SAVE_GRACE_S = 8.0


def launch_record(
    replica: ReplicaRow,
    workload: WorkloadRow,
    replicas_total: int,
    master_port: int,
    api_url: str | None = None,
    *,
    node_types: Mapping[str, str] | None = None,
    peer: PeerWiring | None = None,
) -> ReplicaLaunch:
    """What a backend needs to start ``replica``: its command, and an environment that
    names its accelerators through the vendor's variable and its place in the job.
    ``node_types`` (node → accelerator type) gives each replica of a job spanning types its
    own node's type; a job with a split plan gets it too (the backend writes the file).
    ``peer``: where its `baige run` holds and sends peer-memory checkpoints
    (:mod:`baige.control.peer_wiring`)."""
    spec = parse_spec(workload.kind, workload.spec)
    env = dict(spec.env)
    accel = (node_types or {}).get(replica.node) or workload.accel_type or ""
    visibility = get_chip(accel).visibility_env if accel else ""
    if visibility:
        env[visibility] = ",".join(str(d) for d in replica.devices)
    env.update(
        BAIGE_WORKLOAD_ID=workload.id,
        BAIGE_WORKLOAD_NAME=workload.name,
        BAIGE_REPLICA_ID=replica.id,
        BAIGE_REPLICA_INDEX=str(replica.index),
        BAIGE_REPLICAS=str(replicas_total),
        BAIGE_NODE=replica.node,
        BAIGE_ACCELERATOR_TYPE=accel,
        BAIGE_ACCELERATOR_SHARE=f"{replica.milli / 1000:g}",
    )
    if isinstance(spec, TrainingJobSpec):
        # what torch.distributed's env:// rendezvous reads; all replicas share this machine
        env.update(
            RANK=str(replica.index),
            WORLD_SIZE=str(replicas_total),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(master_port),
        )
        env.update(report_env(workload, api_url))  # where `baige run` reports to
        if spec.spares:  # `baige run` trains on this many; the rest stand by as spares
            env["BAIGE_NNODES"] = str(spec.replicas)
        if spec.checkpoint is not None:  # save before a preemption's SIGTERM ends it
            env.update(BAIGE_SAVE_ON_STOP="1", BAIGE_STOP_GRACE_S=f"{STOP_SAVE_GRACE_S:g}")
        if peer is not None:
            env.update(peer_env(peer))
    return ReplicaLaunch(
        id=replica.id,
        workload_id=workload.id,
        node=replica.node,
        command=tuple(spec.launch_command),
        env=env,
        working_dir=spec.working_dir,
        want_port=isinstance(spec, InferenceServiceSpec),
        cpu_milli=spec.resources.cpu,
        memory_mib=spec.resources.memory,
        accel_type=accel,
        devices=tuple(replica.devices),
        visibility_env=visibility,
        master_node=str(workload.placements[0].get("node", "")) if workload.placements else "",
        tenant=workload.tenant or "admin",
        hetero_plan=json.dumps(workload.hetero_plan) if workload.hetero_plan else "",
        peer=peer if isinstance(spec, TrainingJobSpec) else None,
    )
