"""Requests that no amount of waiting can place: bigger than the whole cluster or queue limit.

A cycle only learns that a workload does not fit *now*; this module says when it would not fit
even on an empty cluster, so that the user reads "can never be placed as specified" instead of
waiting forever behind ``InsufficientCapacity``. The workload stays pending (nodes may be added,
cordoned nodes uncordoned, limits raised) and takes no reservation or victims meanwhile.

Counted as capacity: nodes that are ready or cordoned (an operator may uncordon them); failed
nodes are not, since nothing says they come back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from baige.sched.model import MILLI, Health, Node, Request

__all__ = ["TypeCapacity", "never_fits", "type_capacities"]


@dataclass(frozen=True, slots=True)
class TypeCapacity:
    """Every ready or cordoned node of one accelerator type, as counts of node sizes."""

    nodes: int
    devices: int
    sizes: tuple[tuple[int, int], ...]  # (devices per node, how many such nodes)
    largest_cpu: int = 0  # the most host CPU (milli) of one node; 0: no node tracks it
    largest_memory: int = 0  # the most host memory (MiB) of one node; 0: none tracks it
    cpu_bounded: bool = False  # every node tracks its CPU (else some node takes any amount)
    memory_bounded: bool = False

    @property
    def largest(self) -> int:
        return max((size for size, _ in self.sizes), default=0)

    def replicas(self, request: Request) -> int:
        """How many replicas of ``request`` the empty cluster of this type could hold."""
        if request.host_only:
            raise ValueError("host CPU and memory are not counted per type: no replica count")
        per_card = MILLI // request.milli if request.fractional else 1
        return sum(
            count * (size // request.devices) * per_card
            for size, count in self.sizes
            if size >= request.devices
        )

    def host_short(self, request: Request) -> str | None:
        """What of a replica's host CPU or memory no single node of the type has (None: the
        largest nodes hold it, or a CPU-only request finds no node tracking what it asks)."""
        if request.cpu_milli and self.cpu_bounded and request.cpu_milli > self.largest_cpu:
            most = self.largest_cpu / 1000
            return f"{request.cpu_milli / 1000:g} CPU; the largest node has {most:g}"
        if request.memory_mib and self.memory_bounded and request.memory_mib > self.largest_memory:
            return f"{request.memory_mib} MiB memory; the largest node has {self.largest_memory}"
        if request.host_only and not (
            (request.cpu_milli and self.largest_cpu) or (request.memory_mib and self.largest_memory)
        ):
            return "host CPU or memory; no node tracks what it asks for"
        return None


def type_capacities(nodes: Iterable[Node]) -> dict[str, TypeCapacity]:
    sizes: dict[str, Counter[int]] = {}
    cpu: dict[str, int] = {}
    memory: dict[str, int] = {}
    unbounded: set[tuple[str, str]] = set()
    for node in nodes:
        if node.health is Health.FAILED or node.devices <= 0:
            continue
        accel = node.accel_type
        sizes.setdefault(accel, Counter())[node.devices] += 1
        cpu[accel] = max(cpu.get(accel, 0), node.cpu_milli)
        memory[accel] = max(memory.get(accel, 0), node.memory_mib)
        if not node.cpu_milli:
            unbounded.add((accel, "cpu"))
        if not node.memory_mib:
            unbounded.add((accel, "memory"))
    return {
        accel: TypeCapacity(
            nodes=sum(counter.values()),
            devices=sum(size * count for size, count in counter.items()),
            sizes=tuple(sorted(counter.items())),
            largest_cpu=cpu[accel],
            largest_memory=memory[accel],
            cpu_bounded=(accel, "cpu") not in unbounded,
            memory_bounded=(accel, "memory") not in unbounded,
        )
        for accel, counter in sizes.items()
    }


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _why(
    accel: str,
    request: Request,
    floor: int,
    capacity: TypeCapacity | None,
    limits: Sequence[tuple[str, int]],
) -> str | None:
    """Why ``floor`` replicas of ``request`` can never fit on ``accel`` (None: they could)."""
    if capacity is None or capacity.nodes == 0:
        return f"the cluster has no {accel} nodes"
    gang = "in one gang" if floor > 1 else "for one replica"
    short = capacity.host_short(request)
    if short is not None:
        return f"each replica needs {short} ({accel} nodes)"
    if request.host_only:
        return None
    if request.devices > capacity.largest:
        return (
            f"each replica needs {request.devices} {accel} cards on one node; the largest "
            f"node has {capacity.largest}"
        )
    if capacity.replicas(request) < floor:
        if request.fractional:
            return (
                f"needs {floor} replicas of {request.milli / MILLI:g} {accel} card {gang}; "
                f"the whole cluster has {capacity.devices} {accel} cards "
                f"({_plural(capacity.nodes, 'node')})"
            )
        return (
            f"needs {floor * request.devices} {accel} cards {gang}; the whole cluster has "
            f"{capacity.devices} ({_plural(capacity.nodes, 'node')})"
        )
    needed = floor * request.total_milli
    for queue, limit in limits:
        if needed > limit:
            return (
                f"needs {needed / MILLI:g} {accel} cards {gang}; queue {queue} may use at most "
                f"{limit / MILLI:g}"
            )
    return None


def never_fits(
    accel_types: Sequence[str],
    request: Request,
    floor: int,
    capacities: dict[str, TypeCapacity],
    limits: dict[str, list[tuple[str, int]]],
) -> str | None:
    """The message for a workload that fits on none of its accepted types even with the
    cluster empty, or None if it could fit on one of them. ``limits`` maps a type to the
    (queue, limit in milli) pairs on the workload's queue path."""
    if floor < 1:
        return None
    reasons: list[str] = []
    for accel in accel_types:
        why = _why(accel, request, floor, capacities.get(accel), limits.get(accel, ()))
        if why is None:
            return None
        reasons.append(why)
    return "; ".join(reasons) + ": it can never be placed as specified (it stays pending)"
