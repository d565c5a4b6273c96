"""What the API returns: the objects users read back (statuses, usage, events)."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = [
    "AcceleratorSummary",
    "EventView",
    "NodeView",
    "OverviewView",
    "PendingRef",
    "QueueUsage",
    "QueueView",
    "ReplicaView",
    "RuntimeView",
    "SamplePoint",
    "ServiceFigures",
    "ServiceLoadPoint",
    "ServiceLoadView",
    "SplitPart",
    "SplitView",
    "TokenView",
    "TrainingRuntime",
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
    port: int | None = Field(
        default=None,
        description="a service replica's HTTP port; a training replica's peer-memory "
        "checkpoint server",
    )
    reason: str = ""


class RuntimeView(BaseModel):
    """What ``baige run`` inside a training job reported: faults, restarts, recovery, pace."""

    state: str = Field(default="running", description="running, succeeded, failed, ...")
    restarts: int = Field(default=0, description="worker-group restarts inside the replicas")
    faults: dict[str, int] = Field(default_factory=dict, description="detected faults by kind")
    lost_steps: int = Field(default=0, description="steps computed again after restores")
    last_step: int = -1
    steps_per_s: float | None = None
    median_step_s: float | None = None
    loss: float | None = None
    last_detection_s: float | None = Field(default=None, description="fault to detection")
    max_detection_s: float | None = None
    last_recovery_s: float | None = Field(default=None, description="detection to training")
    max_recovery_s: float | None = None
    restored_from: str | None = Field(default=None, description="memory or disk")
    stragglers: int = 0
    reported_nodes: list[str] = Field(default_factory=list)
    excluded_nodes: list[str] = Field(default_factory=list)
    ettr: float | None = Field(
        default=None,
        description="estimate: steps reached x median step time / wall time since the start",
    )
    events: int = 0
    updated_at: float | None = None


class ServiceFigures(BaseModel):
    """A service's load now, as its gateway sees it (requests over the last 15 s)."""

    requests_per_second: float
    in_flight: float
    latency_p50_seconds: float | None = Field(default=None, description="None: none finished")
    latency_p99_seconds: float | None = None
    requests_total: int = Field(default=0, description="since the control plane started")
    errors_total: int = 0


class SplitPart(BaseModel):
    """The ranks of one accelerator type in a job spanning types, and their batch share."""

    type: str
    ranks: list[int]
    micro_batches: list[int] = Field(description="per rank, in rank order")
    samples: int = Field(description="samples per global batch on this type")


class SplitView(BaseModel):
    """How a job spanning accelerator types splits its global batch (the plan file its
    replicas read through BAIGE_HETERO_PLAN)."""

    global_batch: int
    micro_batch_size: int
    parts: list[SplitPart]


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
    split: SplitView | None = Field(
        default=None, description="a job placed on several accelerator types: its batch split"
    )
    running_replicas: list[ReplicaView] = Field(default_factory=list)
    restarts: int = 0
    exit_code: int | None = None
    created_at: float
    admitted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    runtime: RuntimeView | None = Field(default=None, description="from baige run, if used")
    load: ServiceFigures | None = Field(
        default=None, description="a service's load now, if its gateway has served it"
    )
    replicas_running: int | None = Field(
        default=None,
        description="a service's replicas wanted and observed running now (in lists too, "
        "where running_replicas is left empty)",
    )
    spec: dict[str, object]


class NodeView(BaseModel):
    name: str
    accelerator_type: str
    devices: int
    health: str
    cordoned: bool
    draining: bool = Field(default=False, description="cordoned, its work being moved off")
    reason: str = ""
    last_heartbeat: float
    allocated: float = Field(description="cards in use (shares summed)")
    topology: list[str] = Field(default_factory=list)
    pool: str = "default"
    workloads: list[str] = Field(default_factory=list, description="ids of what runs here")
    cpu: int = Field(default=0, description="host CPU in thousandths of a core (0: not tracked)")
    memory: int = Field(default=0, description="host memory in MiB (0: not tracked)")


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
    training: float = Field(default=0.0, description="of allocated, cards held by training jobs")
    inference: float = Field(default=0.0, description="of allocated, cards held by services")
    live: bool = Field(
        default=False, description="computed now from the same state as the cards, not stored"
    )


class PendingRef(BaseModel):
    """A pending workload named in the overview's why-work-waits list."""

    id: str
    name: str
    kind: str


class TrainingRuntime(BaseModel):
    """A running job's ``baige run`` figures, for the overview's training table."""

    id: str
    name: str
    queue: str
    ettr: float | None = None
    restarts: int = 0
    lost_steps: int = 0
    last_step: int = -1
    steps_per_s: float | None = None


class OverviewView(BaseModel):
    """The console's first page: the cluster at a glance."""

    accelerators: list[AcceleratorSummary]
    nodes: dict[str, int]
    workloads: dict[str, int] = Field(description="by phase, only what the caller may see")
    pending_reasons: dict[str, int]
    pending_workloads: dict[str, list[PendingRef]] = Field(
        default_factory=dict, description="per reason code, the oldest pending workloads (<= 20)"
    )
    restarts: int
    faults: list[EventView]
    history: list[SamplePoint]
    history_since: float | None = Field(
        default=None, description="start of the window history covers (hours back from now)"
    )
    now: float | None = Field(default=None, description="server time the overview was made")
    training: list[TrainingRuntime] = Field(
        default_factory=list, description="running jobs that report through baige run"
    )
    ettr: float | None = Field(
        default=None, description="mean ETTR estimate of the running jobs that report it"
    )


class ServiceLoadPoint(BaseModel):
    """One sample of a service: replicas wanted and running, and its load then."""

    ts: float
    wanted: int = Field(description="replicas wanted (set by the autoscaler or a scale)")
    running: int = Field(description="replicas wanted and observed running")
    requests_per_second: float
    in_flight: float
    latency_p50_seconds: float | None = None
    latency_p99_seconds: float | None = None
    live: bool = Field(default=False, description="computed now, not stored")


class ServiceLoadView(BaseModel):
    """A service's endpoint, replicas and load over time, and why its size changed."""

    id: str
    name: str
    phase: str
    endpoints: list[str] = Field(description="its stable gateway paths: by id, and by name")
    replicas: int = Field(description="replicas wanted now")
    running: int = Field(description="replicas running now")
    current: ServiceFigures | None = Field(
        default=None, description="the gateway's figures now; None if it has not served it"
    )
    history: list[ServiceLoadPoint] = Field(
        description="samples every 30 s, oldest first; the last point is live"
    )
    history_since: float = Field(description="start of the window history covers")
    now: float
    events: list[EventView] = Field(
        description="scaling events in the window (autoscaled, scaled, grown, shrunk, "
        "preempted, replica restarts), newest first"
    )
