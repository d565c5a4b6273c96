"""Builders for snapshots, shipped with the package so tests, the simulator and examples
write ``make_job("a").gpus(8).replicas(4).queue("research")`` instead of long constructors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Self

from baige.sched.model import (
    MILLI,
    Assignment,
    Health,
    Kind,
    Mix,
    Node,
    Placement,
    Queue,
    Quota,
    Request,
    Snapshot,
    Workload,
)

__all__ = ["JobBuilder", "make_cluster", "make_job", "make_node", "make_queue", "make_snapshot"]


def make_node(
    name: str,
    accel: str = "h100",
    devices: int = 8,
    topology: Iterable[str] = (),
    health: Health = Health.READY,
    labels: Mapping[str, str] | None = None,
    pool: str = "default",
) -> Node:
    return Node(name, accel, devices, tuple(topology), health, dict(labels or {}), pool)


def make_cluster(
    nodes: int,
    accel: str = "h100",
    devices: int = 8,
    *,
    nodes_per_rack: int = 4,
    racks_per_block: int = 4,
    prefix: str | None = None,
) -> list[Node]:
    """``nodes`` nodes named ``{prefix}-{i}`` in racks and blocks (topology block/rack)."""
    prefix = prefix or accel
    out = []
    for i in range(nodes):
        rack = i // nodes_per_rack
        block = rack // racks_per_block
        out.append(
            make_node(
                f"{prefix}-{i:04d}",
                accel,
                devices,
                (f"{prefix}-b{block}", f"{prefix}-b{block}-r{rack}"),
            )
        )
    return out


def make_queue(
    name: str,
    parent: str | None = None,
    weight: float = 1.0,
    strict_fifo: bool = False,
    **quotas: float | tuple[float, float | None] | tuple[float, float | None, float | None],
) -> Queue:
    """``make_queue("a", h100=16)`` guarantees 16 cards; ``h100=(16, 32)`` adds a limit of 32;
    ``h100=(16, None, 8)`` lends at most 8. Figures are cards, stored in milli."""
    table: dict[str, Quota] = {}
    for accel, value in quotas.items():
        accel = accel.replace("_", "-")
        spec = value if isinstance(value, tuple) else (value,)
        guaranteed = round(spec[0] * MILLI)
        limit = spec[1] if len(spec) > 1 else None
        lend = spec[2] if len(spec) > 2 else None
        table[accel] = Quota(
            guaranteed,
            None if limit is None else round(limit * MILLI),
            None if lend is None else round(lend * MILLI),
        )
    return Queue(name, parent, weight, table, strict_fifo)


class JobBuilder:
    """Fluent builder of :class:`Workload`; every method returns the builder."""

    def __init__(self, workload_id: str) -> None:
        self._id = workload_id
        self._queue = "default"
        self._devices = 1
        self._milli = MILLI
        self._types: tuple[str, ...] = ("h100",)
        self._replicas = 1
        self._min: int | None = None
        self._kind = Kind.TRAINING
        self._priority = 0
        self._preemptible = True
        self._created = 0.0
        self._duration: float | None = None
        self._level: str | None = None
        self._selector: dict[str, str] = {}
        self._pool: str | None = None
        self._cpu = 0
        self._memory = 0
        self._assignment: Assignment | None = None
        self._mix = Mix.NEVER
        self._ranked = True

    def queue(self, name: str) -> Self:
        self._queue = name
        return self

    def gpus(self, count: int) -> Self:
        self._devices = count
        return self

    def share(self, milli: int) -> Self:
        self._devices, self._milli = 1, milli
        return self

    def types(self, *accels: str) -> Self:
        self._types = accels
        return self

    def cpu_only(self, cpu_milli: int, memory_mib: int = 0) -> Self:
        """A CPU-only replica (no card); with no ``types`` it accepts nodes of any type."""
        self._devices, self._milli = 0, MILLI
        self._cpu, self._memory = cpu_milli, memory_mib
        self._types = ()
        return self

    def unranked(self) -> Self:
        """Its types are equals: one decision scores the nodes of all of them."""
        self._ranked = False
        return self

    def mix(self, how: Mix | str = Mix.ALLOWED) -> Self:
        self._mix = Mix(how)
        return self

    def replicas(self, count: int) -> Self:
        self._replicas = count
        return self

    def elastic(self, minimum: int) -> Self:
        self._min = minimum
        return self

    def inference(self, minimum: int | None = None) -> Self:
        self._kind = Kind.INFERENCE
        self._preemptible = False
        self._priority = 1000
        self._min = minimum
        return self

    def priority(self, value: int) -> Self:
        self._priority = value
        return self

    def preemptible(self, value: bool = True) -> Self:
        self._preemptible = value
        return self

    def created(self, at: float) -> Self:
        self._created = at
        return self

    def duration(self, seconds: float) -> Self:
        self._duration = seconds
        return self

    def within(self, level: str) -> Self:
        self._level = level
        return self

    def selector(self, **labels: str) -> Self:
        self._selector = labels
        return self

    def pool(self, name: str) -> Self:
        self._pool = name
        return self

    def host(self, cpu_milli: int = 0, memory_mib: int = 0) -> Self:
        self._cpu, self._memory = cpu_milli, memory_mib
        return self

    def running(
        self,
        accel: str,
        placements: Iterable[tuple[str, Iterable[int]] | tuple[str, Iterable[int], int]],
        admitted_at: float = 0.0,
        expected_end: float | None = None,
    ) -> Self:
        items = []
        for item in placements:
            milli = item[2] if len(item) > 2 else self._milli
            items.append(Placement(item[0], tuple(item[1]), milli))
        self._assignment = Assignment(accel, tuple(items), admitted_at, expected_end)
        return self

    def build(self) -> Workload:
        return Workload(
            id=self._id,
            queue=self._queue,
            request=Request(self._devices, self._milli, self._cpu, self._memory),
            accel_types=self._types,
            replicas=self._replicas,
            min_replicas=self._min,
            kind=self._kind,
            priority=self._priority,
            preemptible=self._preemptible,
            created_at=self._created,
            duration_estimate=self._duration,
            required_level=self._level,
            node_selector=dict(self._selector),
            pool=self._pool,
            assignment=self._assignment,
            mix=self._mix,
            types_ranked=self._ranked,
        )


def make_job(workload_id: str) -> JobBuilder:
    return JobBuilder(workload_id)


def make_snapshot(
    nodes: Iterable[Node],
    queues: Iterable[Queue] = (),
    workloads: Iterable[Workload | JobBuilder] = (),
    levels: tuple[str, ...] = ("block", "rack"),
) -> Snapshot:
    """A snapshot; with no queues, a single unlimited ``default`` queue is made."""
    built = tuple(w.build() if isinstance(w, JobBuilder) else w for w in workloads)
    queue_list = tuple(queues) or (Queue("default"),)
    return Snapshot(tuple(nodes), queue_list, built, levels)


def with_health(snapshot: Snapshot, **health: Health) -> Snapshot:
    """The snapshot with some nodes' health changed (node names with '-' spelled '_')."""
    changed = {name.replace("_", "-"): value for name, value in health.items()}
    nodes = tuple(
        replace(node, health=changed.get(node.name, node.health)) for node in snapshot.nodes
    )
    return replace(snapshot, nodes=nodes)
