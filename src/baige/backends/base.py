"""The protocol every backend implements, and the records that cross it.

The controller decides and records; a backend only carries out: launch a replica, stop it,
report what it sees. Launch is idempotent by replica id (a generation of a workload's
replica), so a controller that crashed mid-launch can simply ask again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from baige.backends.peers import PeerWiring

__all__ = ["Backend", "ReplicaLaunch", "ReplicaObservation", "ReplicaState"]


class ReplicaState(StrEnum):
    PENDING = "pending"  # recorded, not launched yet
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"  # ended because Baige stopped it
    LOST = "lost"  # vanished without an exit status

    @property
    def ended(self) -> bool:
        return self in {
            ReplicaState.SUCCEEDED,
            ReplicaState.FAILED,
            ReplicaState.STOPPED,
            ReplicaState.LOST,
        }


@dataclass(frozen=True, slots=True)
class ReplicaLaunch:
    """Everything needed to start one replica; ``env`` already holds the visibility variable."""

    id: str
    workload_id: str
    node: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    want_port: bool = False
    accel_type: str = ""  # catalog key of the cards the scheduler placed it on
    devices: tuple[int, ...] = ()  # their indices on the node
    visibility_env: str = (
        ""  # the variable that names them (a backend that binds cards itself drops it)
    )
    # the node of replica 0, where a training job's replicas meet (MASTER_ADDR); a backend
    # whose replicas run on other hosts points MASTER_ADDR at that node's address
    master_node: str = ""
    # whose workload it is: a backend that isolates tenants runs it as that tenant's user
    tenant: str = ""
    # a job spanning accelerator types: its split (baige.train.plan JSON), which the backend
    # writes into the replica's run directory and names in BAIGE_HETERO_PLAN
    hetero_plan: str = ""
    # host resources the replica asked for (0: none): a backend whose engine allocates CPU
    # and memory itself (Slurm) asks it for as much
    cpu_milli: int = 0
    memory_mib: int = 0
    # a training replica's peer-memory checkpoints (``env`` holds them rendered for this
    # machine; a backend whose nodes are other hosts renders them with their addresses)
    peer: PeerWiring | None = None


@dataclass(frozen=True, slots=True)
class ReplicaObservation:
    id: str
    state: ReplicaState
    pid: int | None = None
    exit_code: int | None = None
    port: int | None = None
    log_path: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    reason: str = ""


class Backend(Protocol):
    """What the controller needs from an execution engine."""

    name: str

    def launch(self, replica: ReplicaLaunch) -> ReplicaObservation: ...

    def stop(self, replica_id: str) -> None:
        """Ask the replica to end (SIGTERM, then SIGKILL after a grace period)."""
        ...

    def observe(self, replica_ids: Iterable[str]) -> dict[str, ReplicaObservation]: ...
