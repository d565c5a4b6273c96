"""The snapshot a scheduling cycle reads: nodes, queues and workloads, frozen.

These are plain frozen dataclasses, not the pydantic specs of ``baige.api``: a cycle builds
thousands of them per second in the simulator, and they carry only what a decision needs,
in integer units (accelerator shares in thousandths of a card, called *milli*).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from baige.api.nodes import Health
from baige.api.workloads import Mix

__all__ = [
    "MILLI",
    "Assignment",
    "Health",
    "Kind",
    "Mix",
    "Node",
    "Placement",
    "Queue",
    "Quota",
    "Request",
    "Snapshot",
    "Workload",
    "accepted_types",
]

MILLI = 1000  # one whole accelerator, in thousandths


@dataclass(frozen=True, slots=True)
class Node:
    """A machine with ``devices`` accelerators of one type, and where it sits in the topology.

    ``topology`` is the path of domains from the outermost (e.g. block) to the innermost
    (e.g. rack); the node itself is the level below the last one.
    """

    name: str
    accel_type: str
    devices: int
    topology: tuple[str, ...] = ()
    health: Health = Health.READY
    labels: Mapping[str, str] = field(default_factory=dict)
    pool: str = "default"
    cpu_milli: int = 0  # 0: host CPU is not tracked on this node
    memory_mib: int = 0  # 0: host memory is not tracked on this node

    @property
    def schedulable(self) -> bool:
        return self.health is Health.READY and self.devices > 0


@dataclass(frozen=True, slots=True)
class Quota:
    """A queue's share of one accelerator type, in milli (1000 = one accelerator).

    ``limit`` None: no cap of its own (the parent's capacity still applies). ``lend_limit``
    None: all of the unused guarantee may be borrowed by others.
    """

    guaranteed: int = 0
    limit: int | None = None
    lend_limit: int | None = None

    @property
    def kept(self) -> int:
        """The part of the guarantee never lent, held for this queue even when idle."""
        if self.lend_limit is None:
            return 0
        return max(0, self.guaranteed - self.lend_limit)


@dataclass(frozen=True, slots=True)
class Queue:
    """A node of the queue tree; workloads sit in leaves."""

    name: str
    parent: str | None = None
    weight: float = 1.0
    quotas: Mapping[str, Quota] = field(default_factory=dict)
    strict_fifo: bool = False


class Kind(StrEnum):
    TRAINING = "training"
    INFERENCE = "inference"


@dataclass(frozen=True, slots=True)
class Request:
    """What ONE replica needs: ``devices`` cards, each a ``milli`` share (1000 = whole), and
    host CPU and memory.

    ``devices`` 0 is a CPU-only replica (a data loader, a preprocessing or evaluation task):
    it takes only host CPU and memory, so it must ask for one of them, and it goes on any node
    that tracks what it asks for (a node that tracks neither has no room to give it).
    """

    devices: int = 1
    milli: int = MILLI
    cpu_milli: int = 0
    memory_mib: int = 0

    def __post_init__(self) -> None:
        if self.devices < 0:
            raise ValueError(f"a replica needs zero or more devices, not {self.devices}")
        if self.cpu_milli < 0 or self.memory_mib < 0:
            raise ValueError("host CPU and memory cannot be negative")
        if self.devices == 0:
            if not (self.cpu_milli or self.memory_mib):
                raise ValueError(
                    "a replica with no device must ask for host CPU or memory (a CPU-only task)"
                )
            if self.milli != MILLI:
                raise ValueError("a share of a card needs one device, not 0")
        if not 0 < self.milli <= MILLI:
            raise ValueError(f"milli must be in 1..{MILLI}, not {self.milli}")
        if self.milli < MILLI and self.devices != 1:
            raise ValueError("a fractional share applies to exactly one device")

    @property
    def fractional(self) -> bool:
        return self.milli < MILLI

    @property
    def host_only(self) -> bool:
        """A CPU-only replica: host CPU and memory, no accelerator."""
        return self.devices == 0

    @property
    def total_milli(self) -> int:
        return self.devices * self.milli


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one replica runs: a node, the device indices it uses, and the share of each."""

    node: str
    devices: tuple[int, ...]
    milli: int = MILLI


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where a running workload's replicas are, on one accelerator type; a gang that may mix
    types (``Workload.mix``) names its first type here and its placements' nodes say the rest.
    """

    accel_type: str
    placements: tuple[Placement, ...]
    admitted_at: float = 0.0
    expected_end: float | None = None  # from a time limit; lets backfill plan around it


@dataclass(frozen=True, slots=True)
class Workload:
    """A training job or inference service, pending (no assignment) or running.

    A *gang* needs ``min_replicas`` placed at once or none; a non-gang (inference) workload
    takes replicas one by one. ``replicas`` is the size wanted; an elastic workload may run
    anywhere between ``min_replicas`` and ``replicas``. ``mix`` lets a gang's replicas span
    several of its accepted types (a sub-gang per type, all or nothing over the whole gang).

    ``accel_types`` is tried in order when ``types_ranked`` (the user's preference order);
    otherwise the types are equally good and one decision scores the nodes of all of them (a
    pod that lists several GPU models, or none). A CPU-only workload may leave ``accel_types``
    empty: it runs on nodes of any type.
    """

    id: str
    queue: str
    request: Request
    accel_types: tuple[str, ...]
    replicas: int = 1
    min_replicas: int | None = None
    kind: Kind = Kind.TRAINING
    priority: int = 0
    preemptible: bool = True
    created_at: float = 0.0
    duration_estimate: float | None = None
    required_level: str | None = None  # a topology level name, or "node"
    node_selector: Mapping[str, str] = field(default_factory=dict)
    pool: str | None = None
    assignment: Assignment | None = None
    mix: Mix = Mix.NEVER
    types_ranked: bool = True

    def __post_init__(self) -> None:
        if not self.accel_types and not self.request.host_only:
            raise ValueError(f"workload {self.id}: accepts no accelerator type")
        if self.replicas < 0:
            raise ValueError(f"workload {self.id}: negative replicas")
        if self.min_replicas is not None and not 0 <= self.min_replicas <= max(self.replicas, 1):
            raise ValueError(f"workload {self.id}: min_replicas outside 0..replicas")

    @property
    def floor(self) -> int:
        """Fewest replicas it may run with (gang size for training)."""
        if self.min_replicas is None:
            return self.replicas
        return self.min_replicas

    @property
    def gang(self) -> bool:
        return self.kind is Kind.TRAINING

    @property
    def elastic(self) -> bool:
        return self.floor < self.replicas

    @property
    def running(self) -> bool:
        return self.assignment is not None

    @property
    def mixes(self) -> bool:
        """Whether its replicas may sit on more than one accelerator type."""
        return self.mix is not Mix.NEVER


def accepted_types(workload: Workload, cluster_types: Iterable[str]) -> tuple[str, ...]:
    """The types ``workload`` may run on: those it lists, or, for a CPU-only workload that
    lists none, every type in the cluster (in name order)."""
    if workload.accel_types:
        return workload.accel_types
    return tuple(sorted(cluster_types))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a cycle decides from. ``topology_levels`` names the topology path's levels,
    outermost first (``("block", "rack")`` means a node's path is ``(block, rack)``)."""

    nodes: tuple[Node, ...]
    queues: tuple[Queue, ...]
    workloads: tuple[Workload, ...]
    topology_levels: tuple[str, ...] = ("block", "rack")
