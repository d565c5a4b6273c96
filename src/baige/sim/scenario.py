"""Scenario files: what to simulate, written as one YAML document of ``kind: Simulation``.

Every mistake is a :class:`~baige.api.loader.SpecError` naming the file, the line and the
field (``llm.yaml:14: faults.repair: duration '4x' is not a time …``), including what only
shows once the file is valid YAML: a trace file that does not exist, a policy or queue name
nobody defined. See ``docs/sim.md`` for every field, and ``examples/sim/`` for scenarios.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from baige.api.loader import SpecError, SpecProblem, read_documents, read_spec_text
from baige.api.quantities import DurationSeconds
from baige.api.yaml_errors import field_errors, field_path, line_of, node_at

__all__ = [
    "AlibabaNodes",
    "AlibabaPods",
    "CheckpointSettings",
    "ClusterSpec",
    "CsvJobs",
    "CurveSpec",
    "FaultSpec",
    "InflationSpec",
    "JobClass",
    "LoadedScenario",
    "Mode",
    "NodeGroup",
    "QueueQuotaSpec",
    "RecoverySpec",
    "RestartSpec",
    "Scenario",
    "SchedulerSpec",
    "ServiceSpec",
    "SimQueue",
    "SyntheticJobs",
    "TrainingSpec",
    "WorkloadSpec",
    "load_scenario",
    "parse_scenario",
]

Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]
TypeName = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9._-]*$")]
QueueName = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9._-]*$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Mode(StrEnum):
    TIMELINE = "timeline"
    INFLATION = "inflation"


class Passes(StrEnum):
    ON_CHANGE = "on-change"  # a pass at most every interval, and only after something changed
    EVERY_INTERVAL = "every-interval"  # a pass every interval, as a polling controller


class SchedulerSpec(_Model):
    interval: DurationSeconds = Field(default=60.0, gt=0)
    passes: Passes = Passes.ON_CHANGE


class NodeGroup(_Model):
    """``count`` identical nodes; the topology puts them in racks and blocks."""

    count: Positive
    type: TypeName
    devices: Positive = 8
    name: TypeName | None = None  # node name prefix (default: the type)
    cpu: Count = 0  # host CPU in milli-cores (0: not tracked)
    memory: Count = 0  # host memory in MiB (0: not tracked)
    nodes_per_rack: Positive = 16
    racks_per_block: Positive = 8


class TypesFromModels(StrEnum):
    BY_MODEL = "by-model"  # each GPU model its own accelerator type
    SINGLE = "single"  # one type, "gpu", for every model (the FGD paper's setting)


class AlibabaNodes(_Model):
    """The GPU nodes of the Alibaba v2023 node list (CPU-only nodes are left out); ``sample``
    keeps that share of them, evenly spread over the list (a smaller cluster of the same
    mix, for timelines the sparse pod list can load)."""

    path: str
    types: TypesFromModels = TypesFromModels.BY_MODEL
    sample: float = Field(default=1.0, gt=0, le=1)
    nodes_per_rack: Positive = 16
    racks_per_block: Positive = 8


class ClusterSpec(_Model):
    node_groups: list[NodeGroup] = Field(default_factory=list)
    alibaba_nodes: AlibabaNodes | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ClusterSpec:
        if bool(self.node_groups) == (self.alibaba_nodes is not None):
            raise ValueError("give either node_groups or alibaba_nodes")
        return self


class QueueQuotaSpec(_Model):
    guaranteed: float = Field(default=0.0, ge=0)
    limit: float | None = Field(default=None, ge=0)
    lend_limit: float | None = Field(default=None, ge=0)


class SimQueue(_Model):
    name: QueueName
    parent: QueueName | None = None
    weight: float = Field(default=1.0, gt=0)
    quotas: dict[TypeName, QueueQuotaSpec] = Field(default_factory=dict)
    strict_fifo: bool = False


class Lognormal(_Model):
    """A run time drawn from a lognormal: ``median`` and ``sigma`` (of its logarithm),
    capped at ``max``."""

    median: DurationSeconds = Field(gt=0)
    sigma: float = Field(default=1.0, ge=0)
    max: DurationSeconds | None = Field(default=None, gt=0)


class JobClass(_Model):
    """One kind of training job in a synthetic mix."""

    name: str
    share: float = Field(gt=0)  # relative weight among classes
    gpus: Positive = 1  # accelerators per replica
    replicas: list[Positive] = Field(default_factory=lambda: [1], min_length=1)  # drawn from
    elastic: Share = 0.0  # share of jobs that may shrink to half their replicas
    duration: Lognormal
    queue: QueueName = "default"
    queues: list[QueueName] = Field(default_factory=list)  # drawn from, if given
    priority: int = 0
    types: list[TypeName] = Field(default_factory=list)  # accepted, preferred first; [] = any
    time_limit: float = Field(default=0.0, ge=0)  # declared limit as a multiple of run time
    topology: Literal["any", "block", "rack", "node"] = "any"
    # may one job's replicas span several accepted types (a TrainingJob's accelerators.mix)
    mix: Literal["never", "allowed", "required"] = "never"


class SyntheticJobs(_Model):
    """``jobs`` training jobs arriving as a Poisson process over ``arrive_within`` of the
    run (default: all of it)."""

    jobs: Positive
    classes: list[JobClass] = Field(min_length=1)
    arrive_within: Share = 1.0
    start: DurationSeconds = 0.0


class AlibabaPods(_Model):
    """The Alibaba v2023 pod list: LS and Guaranteed tasks become inference services of one
    replica (they run from creation for their recorded lifetime), BE and Burstable tasks
    training jobs (they need their recorded run time, however long they wait). Tasks created
    before ``skip`` are left out and the rest start the clock; ``time_scale`` divides the
    times between arrivals (not run times), turning the sparse sample into a loaded
    timeline. CPU-only tasks (no GPU) become CPU-only jobs and services, taking host CPU and
    memory only; with ``host_resources: false`` they ask for nothing and are left out."""

    path: str
    host_resources: bool = True  # tasks ask for host CPU and memory too (false: GPUs only)
    skip: DurationSeconds = Field(default=0.0, ge=0)
    time_scale: float = Field(default=1.0, gt=0)
    limit: Positive | None = None  # the first tasks only
    queue: QueueName = "default"
    inference_queue: QueueName = "serving"
    inference_priority: int = 1000


class CsvJobs(_Model):
    path: str


class CurveSpec(_Model):
    """Demand over a day: a QPS trace's shape, stretched to ``period``."""

    path: str | None = None  # qps.csv; absent: a smooth diurnal curve
    bin: DurationSeconds = Field(default=900.0, gt=0)
    period: DurationSeconds = Field(default=86400.0, gt=0)
    request_type: str | None = None
    floor: Share = 0.0  # demand never falls below this share of the peak


class ServiceSpec(_Model):
    """``count`` inference services whose replicas follow the demand curve between
    ``min_replicas`` and ``peak_replicas``; each replica takes ``gpus`` cards, or a share
    ``milli`` (1..1000) of one card."""

    name: str
    count: Positive = 1
    peak_replicas: Positive
    min_replicas: Count = 1
    gpus: Positive = 1
    milli: int = Field(default=1000, ge=1, le=1000)
    queue: QueueName = "serving"
    priority: int = 1000
    types: list[TypeName] = Field(default_factory=list)
    phase_spread: DurationSeconds = 0.0  # services' curves shifted by up to this much

    @model_validator(mode="after")
    def _shape(self) -> ServiceSpec:
        if self.milli < 1000 and self.gpus != 1:
            raise ValueError("a share of a card (milli < 1000) needs gpus: 1")
        if self.min_replicas > self.peak_replicas:
            raise ValueError("min_replicas is more than peak_replicas")
        return self


class InferenceSpec(_Model):
    services: list[ServiceSpec] = Field(min_length=1)
    curve: CurveSpec = Field(default_factory=CurveSpec)
    tick: DurationSeconds = Field(default=900.0, gt=0)  # how often the autoscaler acts


class WorkloadSpec(_Model):
    synthetic: SyntheticJobs | None = None
    alibaba_pods: AlibabaPods | None = None
    csv: CsvJobs | None = None
    inference: InferenceSpec | None = None

    @model_validator(mode="after")
    def _some(self) -> WorkloadSpec:
        if not any((self.synthetic, self.alibaba_pods, self.csv, self.inference)):
            raise ValueError("name at least one of synthetic, alibaba_pods, csv, inference")
        return self


class CheckpointSettings(_Model):
    interval: DurationSeconds = Field(default=1800.0, ge=0)  # 0: never checkpoints
    # training blocked while saving; absent: the recovery model's checkpoint_stall, else 30 s
    stall: DurationSeconds | None = Field(default=None, ge=0)
    on_preemption: bool = False  # a preempted (or resized) job saves before it stops
    # step-granular saves: every this many steps of ``training.step_time`` (replaces interval)
    every_steps: Positive | None = None


class RestartSpec(_Model):
    """What a failure costs besides the lost work: the failure is noticed after
    ``detection``; after the scheduler places the job again, ``rescheduling`` (launch),
    ``initialization`` and ``checkpoint_load`` pass before it makes progress."""

    detection: DurationSeconds = Field(default=60.0, ge=0)
    rescheduling: DurationSeconds = Field(default=30.0, ge=0)
    initialization: DurationSeconds = Field(default=120.0, ge=0)
    checkpoint_load: DurationSeconds = Field(default=60.0, ge=0)
    # a restart model measured by ``bench/runtime_faults.py --restart-model FILE`` (JSON):
    # the figures it holds replace the ones above (path relative to the scenario file)
    measured: str | None = None


class RecoverySpec(_Model):
    """Node failures recovered as a measured model says (``baige.sim.recovery``): ``model``
    names its JSON file (relative to the scenario); ``spares`` hot spare nodes of each
    accelerator type are held out of the scheduler and swapped in for a failed node under a
    training job (no requeue); ``peer``: checkpoints are replicated to a buddy node's memory
    (a lost node restores from it unless the buddy lost its memory too: then from disk).
    ``restart`` replaces the model's restart figure (for sweeps)."""

    model: str
    spares: Count = 0
    peer: bool = True
    restart: DurationSeconds | None = Field(default=None, ge=0)


class TrainingSpec(_Model):
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings)
    restart: RestartSpec = Field(default_factory=RestartSpec)
    recovery: RecoverySpec | None = None  # replaces ``restart`` when given
    step_time: DurationSeconds | None = Field(default=None, gt=0)  # seconds per training step

    @model_validator(mode="after")
    def _steps(self) -> TrainingSpec:
        if self.checkpoint.every_steps is not None and self.step_time is None:
            raise ValueError("checkpoint.every_steps needs step_time (seconds per step)")
        return self

    @property
    def checkpoint_interval(self) -> float:
        """Seconds of progress between saves."""
        if self.checkpoint.every_steps is not None and self.step_time is not None:
            return self.checkpoint.every_steps * self.step_time
        return self.checkpoint.interval


class FaultSpec(_Model):
    node_failures_per_1000_node_days: float = Field(default=0.0, ge=0)
    repair: DurationSeconds = Field(default=4 * 3600.0, ge=0)
    flaky_nodes: Share = 0.0  # share of nodes that fail ``flaky_factor`` times as often
    flaky_factor: float = Field(default=10.0, ge=1)
    cordon_after: Count = 0  # failures within cordon_window that take a node out (0: never)
    cordon_window: DurationSeconds = Field(default=7 * 86400.0, gt=0)


class InflationSpec(_Model):
    """The FGD paper's method: the task list shuffled, then tasks drawn from it with
    replacement, submitted one after another and never leaving, until ``up_to`` percent of
    the GPU capacity has been asked for."""

    policies: list[str] = Field(min_length=1)
    seeds: Positive = 3
    up_to: float = Field(default=100.0, gt=0, le=200)
    report_at: list[float] = Field(default_factory=lambda: [90.0, 95.0, 100.0])
    step: float = Field(default=1.0, gt=0)  # curve resolution, percent of capacity


class ReportSpec(_Model):
    timeline_points: Annotated[int, Field(ge=10, le=5000)] = 480


class Scenario(_Model):
    kind: Literal["Simulation"]
    name: str
    description: str = ""
    seed: int = 1
    mode: Mode = Mode.TIMELINE
    duration: DurationSeconds = Field(default=86400.0, gt=0)
    policy: str = "baige"
    policy_settings: dict[str, Any] = Field(default_factory=dict)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    cluster: ClusterSpec
    topology_levels: list[str] = Field(default_factory=lambda: ["block", "rack"])
    queues: list[SimQueue] = Field(default_factory=list)
    workloads: WorkloadSpec
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    faults: FaultSpec = Field(default_factory=FaultSpec)
    inflation: InflationSpec | None = None
    report: ReportSpec = Field(default_factory=ReportSpec)

    @model_validator(mode="after")
    def _mode(self) -> Scenario:
        if self.mode is Mode.INFLATION:
            if self.inflation is None:
                raise ValueError("mode inflation needs an inflation section")
            if self.workloads.alibaba_pods is None:
                raise ValueError("mode inflation draws tasks from workloads.alibaba_pods")
        return self


class LoadedScenario:
    """A validated scenario, where it came from, and the line of each of its fields (so
    problems found later, such as a missing trace file, still name a line)."""

    def __init__(self, scenario: Scenario, source: str, node: yaml.Node | None) -> None:
        self.scenario = scenario
        self.source = source
        self.node = node

    def problem(self, loc: tuple[str | int, ...], message: str) -> SpecProblem:
        target = node_at(self.node, loc)
        return SpecProblem(self.source, line_of(target), field_path(loc), message)

    def error(self, loc: tuple[str | int, ...], message: str) -> SpecError:
        return SpecError([self.problem(loc, message)])

    def resolve(self, loc: tuple[str | int, ...], path: str) -> Path:
        """A trace path: as given if it exists from the current directory (examples name
        ``../shared/data/...`` from the repository root), else next to the scenario file."""
        candidate = Path(path)
        if candidate.exists() or candidate.is_absolute() or self.source.startswith("<"):
            found = candidate
        else:
            found = Path(self.source).parent / candidate
        if not found.exists():
            raise self.error(loc, f"file not found: {path}")
        if not found.is_file():
            raise self.error(loc, f"not a file: {path}")
        return found


def parse_scenario(text: str, source: str = "<scenario>") -> LoadedScenario:
    """A scenario from YAML text; a :class:`SpecError` listing every problem otherwise."""
    nodes, documents = read_documents(text, source)
    if len(documents) != 1:
        what = "the file is empty" if not documents else f"it holds {len(documents)} documents"
        raise SpecError([SpecProblem(source, None, "", f"expected one document, but {what}")])
    node, data = nodes[0], documents[0]
    if not isinstance(data, dict):
        raise SpecError([SpecProblem(source, line_of(node), "", "expected a mapping of fields")])
    if data.get("kind") != "Simulation":
        found = data.get("kind")
        message = (
            "required field is missing: a scenario says 'kind: Simulation'"
            if found is None
            else f"expected 'Simulation', found {found!r}: is this a scenario file?"
        )
        kind_node = node_at(node, ("kind",))
        raise SpecError([SpecProblem(source, line_of(kind_node or node), "kind", message)])
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as err:
        problems = [
            SpecProblem(source, e.line, e.field, e.message)
            for e in field_errors(err, Scenario, node)
        ]
        raise SpecError(problems) from None
    return LoadedScenario(scenario, source, node)


def load_scenario(path: str | Path) -> LoadedScenario:
    return parse_scenario(read_spec_text(path), str(path))
