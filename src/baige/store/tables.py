"""The tables. Times are epoch seconds (floats) so SQLite and PostgreSQL agree; specs are
stored as the JSON the user's YAML became, so a record can always be re-validated."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Base",
    "ControllerStatusRow",
    "EventRow",
    "GatewayLoadRow",
    "LeaderLeaseRow",
    "NodeRow",
    "QueueRow",
    "ReplicaRow",
    "SampleRow",
    "ServiceSampleRow",
    "TokenRow",
    "WorkloadRow",
]


class Base(DeclarativeBase):
    pass


class TokenRow(Base):
    """A bearer token (only its SHA-256 is kept). ``tenant`` None with ``admin``: sees all;
    ``tenant`` None with ``metrics``: reads /metrics only."""

    __tablename__ = "tokens"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    tenant: Mapped[str | None] = mapped_column(String(63), nullable=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # a read-only token for a Prometheus scrape: it can read /metrics and nothing else
    metrics: Mapped[bool] = mapped_column(Boolean, default=False)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)


class QueueRow(Base):
    __tablename__ = "queues"
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    tenant: Mapped[str | None] = mapped_column(String(63), nullable=True)
    parent: Mapped[str | None] = mapped_column(String(63), nullable=True)
    spec: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class NodeRow(Base):
    """A node: its spec, what the control plane observed, and who heartbeats for it."""

    __tablename__ = "nodes"
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    spec: Mapped[dict[str, object]] = mapped_column(JSON)
    accel_type: Mapped[str] = mapped_column(String(63), default="")
    devices: Mapped[int] = mapped_column(Integer, default=0)
    cordoned: Mapped[bool] = mapped_column(Boolean, default=False)
    # cordoned, and its work is being moved off (``baige drain``, or drained in Slurm)
    draining: Mapped[bool] = mapped_column(Boolean, default=False)
    health: Mapped[str] = mapped_column(String(16), default="ready")
    reason: Mapped[str] = mapped_column(Text, default="")
    agent: Mapped[str] = mapped_column(String(63), default="api")
    last_heartbeat: Mapped[float] = mapped_column(Float)
    registered_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float, default=0.0)  # when the spec last changed
    # the device-health policy's memory of this node (control.node_health): its cards'
    # conditions, whether the policy cordoned it, when it went bad, marked for repair
    device_health: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)


class WorkloadRow(Base):
    """A training job or inference service, its wanted state and what was decided for it."""

    __tablename__ = "workloads"
    __table_args__ = (
        UniqueConstraint("tenant", "idempotency_key", name="uq_workload_idempotency"),
        Index("ix_workload_phase", "phase"),
        Index("ix_workload_tenant_created", "tenant", "created_at"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(32))
    tenant: Mapped[str] = mapped_column(String(63))
    queue: Mapped[str] = mapped_column(String(63))
    spec: Mapped[dict[str, object]] = mapped_column(JSON)
    replicas: Mapped[int] = mapped_column(Integer)
    phase: Mapped[str] = mapped_column(String(16), default="pending")
    reason_code: Mapped[str] = mapped_column(String(32), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    accel_type: Mapped[str | None] = mapped_column(String(63), nullable=True)
    placements: Mapped[list[dict[str, object]]] = mapped_column(JSON, default=list)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    master_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)
    admitted_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # What `baige run` inside the job reported (restarts, faults, lost steps, step rate), and
    # the token that lets only this job's replicas report it (see control.runtime_reports).
    runtime: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)
    report_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # A job allowed to span accelerator types: the split of its batch over the types it was
    # placed on (a baige.train.plan HeteroPlan), re-planned at each admission and resize.
    hetero_plan: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)


class ReplicaRow(Base):
    """One process of a workload on one node, for one generation (admission) of it.

    ``desired``: running or stopped (what the controller wants); ``state``: what the backend
    last observed. The id is unique per generation, so a launch is idempotent.
    """

    __tablename__ = "replicas"
    __table_args__ = (
        Index("ix_replica_workload", "workload_id"),
        Index("ix_replica_state", "state"),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workload_id: Mapped[str] = mapped_column(String(32), ForeignKey("workloads.id"))
    generation: Mapped[int] = mapped_column(Integer)
    index: Mapped[int] = mapped_column(Integer)
    node: Mapped[str] = mapped_column(String(63))
    devices: Mapped[list[int]] = mapped_column(JSON)
    milli: Mapped[int] = mapped_column(Integer, default=1000)
    desired: Mapped[str] = mapped_column(String(16), default="running")
    state: Mapped[str] = mapped_column(String(16), default="pending")
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    log_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class EventRow(Base):
    """Every state change and fault, with a time and a reason."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_event_object", "object_kind", "object_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float)
    object_kind: Mapped[str] = mapped_column(String(16))
    object_id: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str | None] = mapped_column(String(63), nullable=True)
    type: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(64), default="")
    message: Mapped[str] = mapped_column(Text, default="")


class SampleRow(Base):
    """Cluster usage per accelerator type over time, for the console's charts."""

    __tablename__ = "samples"
    __table_args__ = (Index("ix_sample_ts", "ts"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float)
    accel_type: Mapped[str] = mapped_column(String(63))
    capacity: Mapped[float] = mapped_column(Float)  # cards on ready nodes
    allocated: Mapped[float] = mapped_column(Float)  # cards held by admitted workloads
    running: Mapped[float] = mapped_column(Float)  # cards held by replicas observed running
    pending: Mapped[int] = mapped_column(Integer)  # workloads waiting that accept this type
    # ``allocated`` split by kind: how cards shifted between training and inference
    training: Mapped[float] = mapped_column(Float, default=0.0)
    inference: Mapped[float] = mapped_column(Float, default=0.0)


class ServiceSampleRow(Base):
    """One inference service over time: replicas wanted and running, and its load as the
    gateway saw it, for the console's service page (``control.usage.record_service_load``)."""

    __tablename__ = "service_samples"
    __table_args__ = (
        Index("ix_service_sample_workload_ts", "workload_id", "ts"),
        Index("ix_service_sample_ts", "ts"),  # dropping samples older than a week
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float)
    workload_id: Mapped[str] = mapped_column(String(32))
    wanted: Mapped[int] = mapped_column(Integer)  # WorkloadRow.replicas (autoscaler or user)
    running: Mapped[int] = mapped_column(Integer)  # replicas wanted and observed running
    qps: Mapped[float] = mapped_column(Float)  # requests per second through the gateway
    in_flight: Mapped[float] = mapped_column(Float)
    # latency quantiles (s) over the gateway's window; None when nothing finished in it
    p50: Mapped[float | None] = mapped_column(Float, nullable=True)
    p99: Mapped[float | None] = mapped_column(Float, nullable=True)


class LeaderLeaseRow(Base):
    """The one row saying which `baige up` leads the controller on a shared (PostgreSQL)
    database: ``term`` grows by one at every takeover, and every controller transaction
    checks it still holds the term it took (``control.leadership``)."""

    __tablename__ = "leader_lease"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    term: Mapped[int] = mapped_column(Integer)
    holder: Mapped[str] = mapped_column(Text)
    since: Mapped[float] = mapped_column(Float)


class ControllerStatusRow(Base):
    """What one `baige up`'s controller process says of itself, for its API processes to
    show (``/healthz``, ``/metrics``): whether it leads, its recent pass times. Written about
    once a second (``control.shared_status``); a row that stops being written means that
    controller process is down."""

    __tablename__ = "controller_status"
    instance: Mapped[str] = mapped_column(String(200), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    pid: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[float] = mapped_column(Float)
    pass_seconds: Mapped[list[float]] = mapped_column(JSON)


class GatewayLoadRow(Base):
    """One API process's service-gateway counts (``LoadBoard.export``), for the controller's
    autoscaler and drain, which run in another process: written about twice a second
    (``control.shared_load``); rows not written for a few seconds are ignored."""

    __tablename__ = "gateway_load"
    worker: Mapped[str] = mapped_column(String(200), primary_key=True)
    updated_at: Mapped[float] = mapped_column(Float)
    figures: Mapped[dict[str, object]] = mapped_column(JSON)
