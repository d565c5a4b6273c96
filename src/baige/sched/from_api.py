"""From the specs users write (``baige.api``) to the snapshot types a cycle reads.

Both drivers build snapshots this way: the control plane from its store, the simulator from
scenario files, so a spec means the same thing in both worlds.
"""

from __future__ import annotations

from dataclasses import replace

from baige.api.nodes import Health, NodeSpec
from baige.api.queues import Ordering, QueueSpec
from baige.api.workloads import Autoscale, InferenceServiceSpec, TopologyLevel, TrainingJobSpec
from baige.sched.autoscale import AutoscalePolicy
from baige.sched.model import MILLI, Kind, Node, Queue, Quota, Request, Workload

__all__ = ["autoscale_policy", "node_from_spec", "queue_from_spec", "workload_from_spec"]


def _milli(cards: float | None) -> int | None:
    return None if cards is None else round(cards * MILLI)


def node_from_spec(spec: NodeSpec, health: Health = Health.READY) -> Node:
    """A node as the scheduler sees it; an operator's cordon overrides a ready status."""
    if spec.cordoned and health is Health.READY:
        health = Health.CORDONED
    accel = spec.accelerators
    return Node(
        name=spec.name,
        accel_type=accel.type if accel else "",
        devices=accel.count if accel else 0,
        topology=spec.topology,
        health=health,
        labels=dict(spec.labels),
        pool=spec.pool,
        cpu_milli=spec.cpu,
        memory_mib=spec.memory,
    )


def queue_from_spec(spec: QueueSpec) -> Queue:
    quotas = {
        accel: Quota(
            guaranteed=round(q.guaranteed * MILLI),
            limit=_milli(q.limit),
            lend_limit=_milli(q.lend_limit),
        )
        for accel, q in spec.quotas.items()
    }
    return Queue(
        name=spec.name,
        parent=spec.parent,
        weight=spec.weight,
        quotas=quotas,
        strict_fifo=spec.ordering is Ordering.STRICT_FIFO,
    )


def workload_from_spec(
    spec: TrainingJobSpec | InferenceServiceSpec,
    *,
    workload_id: str | None = None,
    created_at: float = 0.0,
) -> Workload:
    """A pending workload for ``spec``; the store adds the assignment of a running one."""
    accel = spec.accelerators
    request = Request(
        devices=accel.count,
        milli=accel.milli,
        cpu_milli=spec.resources.cpu,
        memory_mib=spec.resources.memory,
    )
    base = Workload(
        id=workload_id or spec.name,
        queue=spec.queue,
        request=request,
        accel_types=tuple(accel.types),
        types_ranked=accel.order == "preference",
        replicas=spec.replicas,
        priority=spec.priority,
        preemptible=spec.preemptible,
        created_at=created_at,
        node_selector=dict(spec.node_selector),
        pool=spec.pool,
    )
    if isinstance(spec, TrainingJobSpec):
        level = spec.topology.required
        # spares are replicas beyond the job's size: placed with it, given up first
        spares = spec.spares
        return replace(
            base,
            replicas=spec.replicas + spares,
            min_replicas=spec.replicas if spares else spec.min_replicas,
            kind=Kind.TRAINING,
            duration_estimate=spec.time_limit,
            required_level=None if level is TopologyLevel.ANY else level.value,
            mix=accel.mix,
        )
    floor = spec.autoscale.min_replicas if spec.autoscale else spec.replicas
    return replace(base, min_replicas=min(floor, spec.replicas), kind=Kind.INFERENCE)


def autoscale_policy(spec: Autoscale) -> AutoscalePolicy:
    """A service's ``autoscale:`` as the autoscaler reads it (both worlds)."""
    return AutoscalePolicy(
        spec.min_replicas,
        spec.max_replicas,
        spec.target_qps_per_replica,
        spec.target_in_flight_per_replica,
        spec.scale_up_window,
        spec.scale_down_window,
        spec.cooldown,
        target_waiting_per_replica=spec.target_waiting_per_replica,
        target_cache_usage=spec.target_cache_usage,
    )
