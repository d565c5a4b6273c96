"""What a cycle returns: decisions to carry out, in order, and why everything else waits.

Drivers apply decisions in list order: evictions and shrinks come before the admission they
make room for, so a backend stops victims before it launches the preemptor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from baige.sched.model import Placement

__all__ = [
    "Admit",
    "CycleResult",
    "CycleStats",
    "Decision",
    "Grow",
    "Pending",
    "Preempt",
    "Reason",
    "Reservation",
    "Shrink",
]


class Reason(StrEnum):
    """Why a workload is still pending: a stable code for scripts, beside the sentence."""

    QUOTA = "QuotaExceeded"
    CAPACITY = "InsufficientCapacity"
    NEVER_FITS = "NeverFits"  # bigger than the whole cluster or its queue's limit
    TOPOLOGY = "TopologyUnsatisfiable"
    NO_NODES = "NoMatchingNodes"
    RESERVED = "Reserved"
    BLOCKED_BY_RESERVATION = "BlockedByReservation"
    QUEUE_BLOCKED = "BlockedByQueueHead"
    UNKNOWN_QUEUE = "UnknownQueue"
    NOT_SCHEDULED = "NotConsidered"


@dataclass(frozen=True, slots=True)
class Admit:
    """Start ``workload`` with these replicas on ``accel_type``. A gang spread over several
    types has ``mixed``: ``(type, replicas)`` in placement order (its first type is
    ``accel_type``); empty when all replicas are on one type."""

    workload: str
    accel_type: str
    placements: tuple[Placement, ...]
    borrowing: bool = False
    backfill: bool = False
    preempted: tuple[str, ...] = ()
    mixed: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Preempt:
    """Stop ``workload`` and return it to its queue (it keeps its place by creation time)."""

    workload: str
    reason: str
    by: str | None = None


@dataclass(frozen=True, slots=True)
class Shrink:
    """Remove these replicas from an elastic or multi-replica workload; ``replicas`` remain."""

    workload: str
    remove: tuple[Placement, ...]
    replicas: int
    reason: str
    by: str | None = None


@dataclass(frozen=True, slots=True)
class Grow:
    """Add these replicas to a running workload, which then has ``replicas``."""

    workload: str
    add: tuple[Placement, ...]
    replicas: int
    borrowing: bool = False


Decision = Admit | Preempt | Shrink | Grow


@dataclass(frozen=True, slots=True)
class Pending:
    """Why a workload was not admitted this cycle."""

    workload: str
    reason: Reason
    message: str


@dataclass(frozen=True, slots=True)
class Reservation:
    """Capacity held for a blocked gang so that backfill cannot starve it.

    ``start`` is when the held nodes are expected to have room (None: unknown, because some
    workload in the way has no time limit).
    """

    workload: str
    accel_type: str
    nodes: tuple[tuple[str, int], ...]  # (node, devices held there now)
    start: float | None


@dataclass(frozen=True, slots=True)
class CycleStats:
    considered: int = 0
    admitted: int = 0
    placed_replicas: int = 0
    preempted: int = 0
    shrunk: int = 0
    grown: int = 0
    backfilled: int = 0


@dataclass(frozen=True, slots=True)
class CycleResult:
    """The outcome of one cycle at time ``now``."""

    now: float
    decisions: tuple[Decision, ...]
    pending: Mapping[str, Pending] = field(default_factory=dict)
    reservations: tuple[Reservation, ...] = ()
    stats: CycleStats = field(default_factory=CycleStats)
    warnings: tuple[str, ...] = ()  # inconsistencies found in the snapshot, never fatal

    def admitted(self) -> dict[str, Admit]:
        return {d.workload: d for d in self.decisions if isinstance(d, Admit)}

    def preempted(self) -> dict[str, Preempt]:
        return {d.workload: d for d in self.decisions if isinstance(d, Preempt)}
