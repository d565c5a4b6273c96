"""What users submit: training jobs and inference services, and the status Baige reports.

A training job is a gang (all replicas or none), optionally elastic between ``min_replicas``
and ``replicas``. An inference service's replicas are independent, may each take a share of
one card, and by default outrank training so that serving capacity is there when load comes.
Commands are argument lists, never shell strings: nothing a user writes reaches a shell.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from baige.api.common import (
    MAX_LABELS,
    AcceleratorType,
    Argument,
    LabelKey,
    Labels,
    LabelValue,
    Name,
    SpecModel,
    Text,
)
from baige.api.quantities import CpuMilli, DurationSeconds, MemoryMiB
from baige.hw.vendors import VENDORS

__all__ = [
    "DEFAULT_INFERENCE_PRIORITY",
    "RESERVED_ENV",
    "AcceleratorRequest",
    "Autoscale",
    "BatchSplit",
    "CheckpointPolicy",
    "EngineSpec",
    "InferenceServiceSpec",
    "Mix",
    "Phase",
    "ReplicaPlacement",
    "Resources",
    "Speculative",
    "TopologyLevel",
    "TopologyPolicy",
    "TrainingJobSpec",
    "WorkloadSpec",
    "WorkloadStatus",
]

DEFAULT_INFERENCE_PRIORITY = 1000
MAX_REPLICAS = 100_000
MAX_PRIORITY = 1_000_000
# the smallest share of a card, in thousandths: at most 50 replicas share one card (CUDA MPS
# serves 48 clients per device), so a tenant cannot turn a card of quota into thousands of
# processes
MIN_SHARE_MILLI = 20

# Variables Baige sets in every replica (its cards, its place in the job, where it reports).
# A value written in a spec would be overridden without a word, so such a spec is refused.
RESERVED_ENV: dict[str, str] = {
    **{v.visibility_env: "names the cards Baige placed the replica on" for v in VENDORS.values()},
    "ROCR_VISIBLE_DEVICES": "names the cards Baige placed the replica on",
    "HIP_VISIBLE_DEVICES": "names the cards Baige placed the replica on",
    "RANK": "is the replica's rank in the job",
    "WORLD_SIZE": "is the number of replicas in the job",
    "MASTER_ADDR": "is where the job's replicas meet",
    "MASTER_PORT": "is where the job's replicas meet",
    "PORT": "is the port Baige gives a service replica",
    "BAIGE_PORT": "is the port Baige gives a service replica",
    "BAIGE_URL": "is where `baige run` reports to the control plane",
    "BAIGE_TOKEN": "is the job's own report token",
    **{
        f"BAIGE_{name}": "describes the replica to itself"
        for name in (
            "WORKLOAD_ID", "WORKLOAD_NAME", "REPLICA_ID", "REPLICA_INDEX", "REPLICAS", "NODE",
            "ACCELERATOR_TYPE", "ACCELERATOR_SHARE",
        )
    },
    "BAIGE_NNODES": "is how many of a job's replicas train (the others stand by as spares)",
    **{
        f"BAIGE_PEER_{name}": "wires the job's peer-memory checkpoints"
        for name in ("BIND", "BUDDY", "FETCH_FROM", "SECRET", "SECRET_FILE", "JOB")
    },
}  # fmt: skip


class Mix(StrEnum):
    """Whether one training job's replicas may run on different accelerator types at once.

    ``never``: all replicas on one type (the default: a job written for one chip stays on
    one chip). ``allowed``: one type when the whole gang fits on one, else a sub-gang per
    type; the controller then hands every replica a plan that splits the global batch by
    the types' speeds (``BAIGE_HETERO_PLAN``, read by ``baige.train.hetero``).
    ``required``: always span at least two types (for testing a mixed run on any cluster).
    """

    NEVER = "never"
    ALLOWED = "allowed"
    REQUIRED = "required"


class AcceleratorRequest(SpecModel):
    """Accelerators for ONE replica: ``count`` whole cards, or a ``share`` of one card.

    ``types`` lists the accepted accelerator types in order of preference; the scheduler
    tries them in that order and never places a replica on a type that is not listed.
    ``mix`` says whether a training job's replicas may span several of those types.

    ``order: any`` makes the listed types equals: each replica goes to the best node of any
    of them (one scoring over all their nodes) instead of the first type with room.

    ``count: 0`` is a CPU-only workload (data preparation, evaluation, a tokenizer service):
    it takes only the host CPU and memory under ``resources``, on nodes of the listed types
    or, with no ``types``, on any node that tracks its CPU or memory. A spec without an
    ``accelerators`` section is one.
    """

    count: int = Field(default=1, ge=0, le=64)
    share: float | None = Field(default=None, gt=0, le=1)
    types: tuple[AcceleratorType, ...] = Field(default=(), max_length=64)
    mix: Mix = Mix.NEVER
    order: Literal["preference", "any"] = "preference"

    @field_validator("types", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _coherent(self) -> AcceleratorRequest:
        if self.count == 0:
            if self.share is not None:
                raise ValueError("share is a part of one card: it needs count: 1, not 0")
            if self.mix is not Mix.NEVER:
                raise ValueError("mix spreads cards over types: a CPU-only job (count: 0) has none")
        elif not self.types:
            raise ValueError(
                f"types: list the accelerator types {self.count} card(s) may be of, e.g. "
                "[h100]; a CPU-only job says count: 0"
            )
        if len(set(self.types)) != len(self.types):
            raise ValueError(f"types lists an accelerator type twice: {list(self.types)}")
        if self.share is not None and self.share < 1 and self.count != 1:
            raise ValueError(
                "share applies to a single card: use count: 1 with share, or whole cards"
            )
        if self.share is not None and round(self.share * 1000) < MIN_SHARE_MILLI:
            raise ValueError(
                f"share {self.share} is below the smallest share, {MIN_SHARE_MILLI / 1000:g} of "
                f"a card (at most {1000 // MIN_SHARE_MILLI} replicas share one card)"
            )
        if self.mix is not Mix.NEVER:
            if len(self.types) < 2:
                raise ValueError(
                    f"mix: {self.mix.value} spreads a job over several accelerator types, but "
                    f"types lists only {list(self.types)}: list two or more, or use mix: never"
                )
            if self.share is not None and self.share < 1:
                raise ValueError(
                    f"mix: {self.mix.value} applies to whole cards: remove share or use mix: never"
                )
        return self

    @property
    def milli(self) -> int:
        """Thousandths of a card per device (1000 = a whole card)."""
        return 1000 if self.share is None else round(self.share * 1000)


def _at_most(limit: int, spelled: str) -> Callable[[int], int]:
    """A bound said in the units the user wrote (the value is held in milli-CPU or MiB)."""

    def check(value: int) -> int:
        if value > limit:
            raise ValueError(f"at most {spelled}")
        return value

    return check


class Resources(SpecModel):
    """Host resources for ONE replica (0 = not requested)."""

    cpu: Annotated[CpuMilli, AfterValidator(_at_most(10_000_000, "10,000 cores"))] = 0
    memory: Annotated[MemoryMiB, AfterValidator(_at_most(1 << 30, "1Pi"))] = 0


class TopologyLevel(StrEnum):
    """How tightly a gang must be packed; ``any`` still prefers the smallest domain."""

    NODE = "node"
    RACK = "rack"
    BLOCK = "block"
    ANY = "any"


class TopologyPolicy(SpecModel):
    """``required``: the gang must fit inside one domain of that level or wait."""

    required: TopologyLevel = TopologyLevel.ANY


class CheckpointPolicy(SpecModel):
    """How a job checkpoints; a checkpoint-aware job is cheaper to preempt or shrink."""

    interval: DurationSeconds = Field(default=600.0, ge=1, le=30 * 86400)
    directory: Text | None = None
    # a job of two or more replicas (spares included) has each replica's `baige run` hold a
    # buddy's flash checkpoints in memory, so a rank restarted on another node (a spare in
    # place of a lost one) restores from there, not from storage; false turns that off
    peer_memory: bool = True


def _cpu_only() -> AcceleratorRequest:
    return AcceleratorRequest(count=0)


class _WorkloadBase(SpecModel):
    name: Name
    queue: Name
    accelerators: AcceleratorRequest = Field(default_factory=_cpu_only)
    resources: Resources = Field(default_factory=Resources, validate_default=True)
    command: tuple[Argument, ...] = Field(min_length=1, max_length=4096)
    env: dict[Annotated[str, StringConstraints(max_length=256)], Argument] = Field(
        default_factory=dict, max_length=1024
    )
    working_dir: Text | None = None
    labels: Labels
    pool: Name | None = None
    node_selector: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=MAX_LABELS)

    @field_validator("command", mode="before")
    @classmethod
    def _argv_only(cls, value: object) -> object:
        if isinstance(value, str):
            raise ValueError(
                "command must be a list of arguments such as [python, train.py], not a shell "
                "string: Baige never runs commands through a shell"
            )
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if (
                not key
                or not (key[0].isalpha() or key[0] == "_")
                or not all(c.isalnum() or c == "_" for c in key)
            ):
                raise ValueError(f"env name {key!r} is not a valid environment variable name")
            if key in RESERVED_ENV:
                raise ValueError(
                    f"env sets {key}, which Baige sets itself ({key} {RESERVED_ENV[key]}); "
                    "remove it from env"
                )
        return value

    @field_validator("resources")
    @classmethod
    def _asks_for_something(cls, value: Resources, info: ValidationInfo) -> Resources:
        accelerators = info.data.get("accelerators")  # absent if it was invalid itself
        cpu_only = isinstance(accelerators, AcceleratorRequest) and accelerators.count == 0
        if cpu_only and not (value.cpu or value.memory):
            raise ValueError(
                "a CPU-only workload (no accelerators, or accelerators.count: 0) must ask "
                "for cpu or memory here, e.g. resources: {cpu: 4, memory: 8Gi}"
            )
        return value

    @field_validator("working_dir")
    @classmethod
    def _absolute_working_dir(cls, value: str | None) -> str | None:
        # a relative path would resolve against wherever `baige up` happens to run
        if value is not None and not value.startswith("/"):
            raise ValueError(f"working_dir {value!r} must be an absolute path")
        return value


class BatchSplit(SpecModel):
    """The global batch a job spanning accelerator types shares out: ``size`` samples per
    optimizer step in micro-batches of ``micro_batch`` samples. Each rank gets whole
    micro-batches in proportion to its chip's speed (the plan file, ``BAIGE_HETERO_PLAN``).
    Without it a spanning job is planned with 8 micro-batches of 1 sample per card."""

    size: int = Field(ge=1, le=1 << 30)
    micro_batch: int = Field(default=1, ge=1, le=1 << 20)

    @model_validator(mode="after")
    def _whole_micro_batches(self) -> BatchSplit:
        if self.size % self.micro_batch:
            raise ValueError(
                f"size {self.size} is not a multiple of micro_batch {self.micro_batch}"
            )
        return self


class TrainingJobSpec(_WorkloadBase):
    """A gang of ``replicas`` processes; elastic down to ``min_replicas`` when given."""

    kind: Literal["TrainingJob"] = "TrainingJob"
    replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS)
    min_replicas: int | None = Field(default=None, ge=1)
    priority: int = Field(default=0, ge=-MAX_PRIORITY, le=MAX_PRIORITY)
    preemptible: bool = True
    time_limit: DurationSeconds | None = Field(default=None, gt=0, le=366 * 86400)
    checkpoint: CheckpointPolicy | None = None
    topology: TopologyPolicy = Field(default_factory=TopologyPolicy)
    max_restarts: int = Field(default=3, ge=0, le=1000)
    batch: BatchSplit | None = None
    # warm standby replicas, placed and started with the job: `baige run` keeps them waiting
    # on its rendezvous and admits one in place of a replica whose node is lost, so the job
    # goes on at the same size without going back to its queue (no restart counted); a new
    # spare is placed when there is room. Spares are the first capacity a reclaim takes back.
    spares: int = Field(default=0, ge=0, le=MAX_REPLICAS)

    @model_validator(mode="after")
    def _elastic_range(self) -> TrainingJobSpec:
        if self.min_replicas is not None and self.min_replicas > self.replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) exceeds replicas ({self.replicas})"
            )
        if self.spares:
            if self.min_replicas is not None and self.min_replicas < self.replicas:
                raise ValueError(
                    "spares keep a job at its size, min_replicas lets it shrink: give one or "
                    "the other"
                )
            if self.replicas + self.spares > MAX_REPLICAS:
                raise ValueError(
                    f"replicas + spares ({self.replicas + self.spares}) exceeds {MAX_REPLICAS}"
                )
        ranks = self.replicas * self.accelerators.count  # one rank per card
        if self.batch is not None and self.batch.size // self.batch.micro_batch < ranks:
            raise ValueError(
                f"batch: {self.batch.size // self.batch.micro_batch} micro-batches cannot give "
                f"each of {ranks} ranks (one per card) one; raise batch.size"
            )
        if self.accelerators.mix is not Mix.NEVER and "BAIGE_HETERO_PLAN" in self.env:
            raise ValueError(
                "env sets BAIGE_HETERO_PLAN, which Baige sets itself for a job with "
                "accelerators.mix (it names the split Baige planned for where the job runs); "
                "remove it from env"
            )
        return self

    @property
    def elastic(self) -> bool:
        return self.min_replicas is not None and self.min_replicas < self.replicas

    @property
    def launch_command(self) -> tuple[str, ...]:
        return self.command


class Autoscale(SpecModel):
    """Scale replicas with the load the gateway measures (``/s/{service}/…``): between
    ``min_replicas`` and ``max_replicas``, aiming at ``target_qps_per_replica`` requests per
    second and, when given, ``target_in_flight_per_replica`` requests in flight, and with an
    ``engine:``, ``target_waiting_per_replica`` requests queued in the engine and
    ``target_cache_usage`` of its KV cache, read from each replica's metrics (the largest
    need wins). A rise is followed at once (or after ``scale_up_window``), a fall only once it
    has lasted ``scale_down_window``, and never within ``cooldown`` of the last change."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(ge=1, le=MAX_REPLICAS)
    target_qps_per_replica: float = Field(default=10.0, gt=0)
    target_in_flight_per_replica: float | None = Field(default=None, gt=0)
    # read from each replica's own metrics (needs ``engine:``): requests queued inside the
    # engine per replica (vLLM's vllm:num_requests_waiting), and KV-cache use, 0..1
    # (vllm:gpu_cache_usage_perc)
    target_waiting_per_replica: float | None = Field(default=None, gt=0)
    target_cache_usage: float | None = Field(default=None, gt=0, le=1)
    scale_up_window: DurationSeconds = Field(default=0.0, ge=0, le=86400)
    scale_down_window: DurationSeconds = Field(default=300.0, ge=0, le=86400)
    cooldown: DurationSeconds = Field(default=30.0, ge=0, le=86400)

    @model_validator(mode="after")
    def _range(self) -> Autoscale:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})"
            )
        return self


class Speculative(SpecModel):
    """Speculative decoding: a draft model proposes ``tokens`` tokens the served model checks."""

    draft_model: str = Field(min_length=1, max_length=4096)
    tokens: int = Field(default=5, ge=1, le=64)
    method: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class EngineSpec(SpecModel):
    """Serve ``model`` with a known engine; Baige renders its serve command (see
    ``baige.engines``): tensor parallelism from ``accelerators.count``, the memory fraction
    from the card share unless given, the port Baige assigns."""

    name: Literal["vllm", "sglang", "fake"]
    model: str = Field(min_length=1, max_length=4096)
    served_model_name: str | None = Field(default=None, max_length=256)
    max_model_len: int | None = Field(default=None, ge=1, le=10_000_000)
    memory_fraction: float | None = Field(default=None, gt=0, le=1)
    speculative: Speculative | None = None
    token_latency: float = Field(default=0.02, ge=0, le=10)  # the fake engine's pace
    max_concurrency: int = Field(default=8, ge=1, le=100_000)  # the fake engine's slots
    extra_args: tuple[Argument, ...] = Field(default=(), max_length=256)


class InferenceServiceSpec(_WorkloadBase):
    """Independent replicas serving requests; each may use a share of one card. Give either
    ``command`` or ``engine`` (which renders the command)."""

    kind: Literal["InferenceService"] = "InferenceService"
    command: tuple[Argument, ...] = Field(default=(), max_length=4096)
    engine: EngineSpec | None = None
    replicas: int = Field(default=1, ge=0, le=MAX_REPLICAS)
    priority: int = Field(default=DEFAULT_INFERENCE_PRIORITY, ge=-MAX_PRIORITY, le=MAX_PRIORITY)
    preemptible: bool = False
    latency_sensitive: bool = True
    port: int | None = Field(default=None, ge=1, le=65535)
    autoscale: Autoscale | None = None

    @model_validator(mode="after")
    def _command_or_engine(self) -> InferenceServiceSpec:
        if self.accelerators.mix is not Mix.NEVER:
            raise ValueError(
                f"accelerators.mix: {self.accelerators.mix.value} applies to training jobs; a "
                "service's replicas are independent and each already runs on any listed type"
            )
        if (self.engine is None) == (not self.command):
            raise ValueError(
                "give a command (a list of arguments) or an engine section, not both"
                if self.command
                else "give a command (a list of arguments) or an engine section"
            )
        scale = self.autoscale
        if self.engine is None and scale is not None:
            for name in ("target_waiting_per_replica", "target_cache_usage"):
                if getattr(scale, name) is not None:
                    raise ValueError(
                        f"autoscale.{name} is read from the engine's own metrics: it needs an "
                        "engine section (vllm, sglang or fake)"
                    )
        return self

    @property
    def launch_command(self) -> tuple[str, ...]:
        """The command a replica runs: ``command``, or the engine's rendered serve command
        (rendered when launched, so it names the interpreter of the Baige that runs it)."""
        if self.engine is None:
            return self.command
        from baige.engines.render import render_command  # noqa: PLC0415

        engine = self.engine
        speculative = engine.speculative
        return render_command(
            engine.name,
            model=engine.model,
            cards=self.accelerators.count,
            share=self.accelerators.milli / 1000,
            served_model_name=engine.served_model_name,
            max_model_len=engine.max_model_len,
            memory_fraction=engine.memory_fraction,
            draft_model=speculative.draft_model if speculative else None,
            speculative_tokens=speculative.tokens if speculative else None,
            speculative_method=speculative.method if speculative else None,
            token_latency=engine.token_latency,
            max_concurrency=engine.max_concurrency,
            extra_args=engine.extra_args,
        )


WorkloadSpec = Annotated[TrainingJobSpec | InferenceServiceSpec, Field(discriminator="kind")]


class Phase(StrEnum):
    """A workload's life: pending → admitted → running → one terminal phase."""

    PENDING = "pending"
    ADMITTED = "admitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PREEMPTED = "preempted"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in {Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED}


class ReplicaPlacement(SpecModel):
    """Where one replica runs: a node, device indices on it, and the share of each device."""

    node: Name
    devices: tuple[int, ...]
    milli: int = Field(default=1000, ge=1, le=1000)


class WorkloadStatus(SpecModel):
    """What Baige reports about a workload; ``reason`` always says why it is where it is."""

    phase: Phase = Phase.PENDING
    reason: str = ""
    accelerator_type: str | None = None
    placements: tuple[ReplicaPlacement, ...] = ()
    restarts: int = 0
    submitted_at: datetime | None = None
    admitted_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
