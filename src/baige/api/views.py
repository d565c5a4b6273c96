"""What the API returns: the objects users read back (statuses, usage, events)."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = [
    "AcceleratorSummary",
    "EventView",
    "NodeView",
    "OverviewView",
    "QueueUsage",
    "QueueView",
    "ReplicaView",
    "SamplePoint",
    "TokenView",
    "WorkloadView",
]


class ReplicaView(BaseModel):
    id: str
    index: int
    node: str
    devices: list[int]
    share: float = Field(description="share of each device (1 = whole cards)")
    state: str
    exit_code: int | None = None
    port: int | None = None
    reason: str = ""


class WorkloadView(BaseModel):
    """A job or service as users see it; ``reason`` says why it is in its phase."""

    id: str
    name: str
    kind: str
    tenant: str
    queue: str
    phase: str
    reason_code: str = ""
    reason: str = ""
    replicas: int
    accelerator_type: str | None = None
    running_replicas: list[ReplicaView] = Field(default_factory=list)
    restarts: int = 0
    exit_code: int | None = None
    created_at: float
    admitted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    spec: dict[str, object]


class NodeView(BaseModel):
    name: str
    accelerator_type: str
    devices: int
    health: str
    cordoned: bool
    reason: str = ""
    last_heartbeat: float
    allocated: float = Field(description="cards in use (shares summed)")
    topology: list[str] = Field(default_factory=list)
    pool: str = "default"
    workloads: list[str] = Field(default_factory=list, description="ids of what runs here")


class QueueUsage(BaseModel):
    guaranteed: float
    limit: float | None = None
    used: float


class QueueView(BaseModel):
    name: str
    parent: str | None = None
    tenant: str | None = None
    weight: float
    usage: dict[str, QueueUsage]
    pending: int
    running: int


class EventView(BaseModel):
    ts: float
    object_kind: str
    object_id: str
    type: str
    reason: str
    message: str


class TokenView(BaseModel):
    name: str
    tenant: str | None
    admin: bool
    token: str = Field(description="shown once; keep it")


class AcceleratorSummary(BaseModel):
    """Cards of one type across the cluster."""

    type: str
    total: int
    allocated: float
    idle: float = Field(description="cards on ready nodes that nothing holds")
    failed: int = Field(description="cards on failed nodes")
    cordoned: int = Field(description="free cards on cordoned nodes")


class SamplePoint(BaseModel):
    ts: float
    type: str
    capacity: float
    allocated: float
    running: float
    pending: int


class OverviewView(BaseModel):
    """The console's first page: the cluster at a glance."""

    accelerators: list[AcceleratorSummary]
    nodes: dict[str, int]
    workloads: dict[str, int] = Field(description="by phase, only what the caller may see")
    pending_reasons: dict[str, int]
    restarts: int
    faults: list[EventView]
    history: list[SamplePoint]
