"""From a scenario to what the engine runs: nodes, queues, training jobs, services.

The only module of the simulator that reads trace files (through :mod:`baige.sim.traces`).
Randomness comes from the scenario's seed, one independent stream per purpose, so adding
failures to a scenario does not change its jobs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, replace

from pydantic import ValidationError

from baige.api.queues import Ordering, QueueQuota, QueueSpec
from baige.sched.autoscale import AutoscalePolicy
from baige.sched.from_api import queue_from_spec
from baige.sched.model import MILLI, Kind, Mix, Node, Queue, Request, Workload
from baige.sim.scenario import (
    AlibabaNodes,
    AlibabaPods,
    CsvJobs,
    InferenceSpec,
    JobClass,
    LoadedScenario,
    SimQueue,
    SyntheticJobs,
    TypesFromModels,
)
from baige.sim.traces import (
    AlibabaPod,
    read_alibaba_nodes,
    read_alibaba_pods,
    read_job_csv,
    read_qps_curve,
)

__all__ = [
    "Built",
    "Curve",
    "Service",
    "TrainingJob",
    "build",
    "build_cluster",
    "pod_request",
    "rng_for",
]

_SINGLE_TYPE = "gpu"


def rng_for(seed: int, purpose: str) -> random.Random:
    """An independent random stream per purpose (jobs, failures, …) for one seed."""
    return random.Random(f"{seed}/{purpose}")


@dataclass(frozen=True, slots=True)
class TrainingJob:
    """A training job to submit at ``workload.created_at``: it needs ``work``
    replica-seconds (its run time at full size times its replicas)."""

    workload: Workload
    work: float
    group: str  # its class, for reporting
    # replicas that train (a job with spares holds more, which only stand by); None: all
    size: int | None = None

    @property
    def submit(self) -> float:
        return self.workload.created_at


@dataclass(frozen=True, slots=True)
class Curve:
    """A daily demand shape: values in 0..1 spread evenly over ``period`` seconds."""

    values: tuple[float, ...]
    period: float
    floor: float = 0.0

    def at(self, t: float) -> float:
        position = (t % self.period) / self.period * len(self.values)
        index = int(position)
        frac = position - index
        low = self.values[index % len(self.values)]
        high = self.values[(index + 1) % len(self.values)]
        return max(self.floor, low + (high - low) * frac)

    @staticmethod
    def diurnal(period: float = 86400.0, floor: float = 0.0) -> Curve:
        """A smooth day: lowest at 04:00, highest at 16:00."""
        points = 96
        values = tuple(
            0.5 - 0.5 * math.cos(2 * math.pi * (i / points - 4 / 24)) for i in range(points)
        )
        return Curve(values, period, floor)


@dataclass(slots=True)
class Service:
    """An inference service between ``start`` and ``end``: one workload of N replicas (as in
    the live control plane), N set by the autoscaler (:func:`baige.sched.autoscale.recommend`,
    the live one) from the load the demand curve puts on it.

    The load is ``peak × curve`` replicas' worth of requests, offered as requests per second
    at ``policy.target_qps_per_replica`` each; without a ``policy`` the autoscaler follows
    the demand at once (no windows, no cool-down), between ``minimum`` and ``peak``."""

    name: str
    template: Workload  # one replica's request, queue, priority …; its id is the service's
    start: float
    end: float
    peak: int
    minimum: int
    curve: Curve | None = None  # None: a constant demand of ``peak`` replicas
    phase: float = 0.0
    policy: AutoscalePolicy | None = None
    # requests per second as a step function, (from time, qps) in time order: the load a
    # live gateway would measure; with it the policy's targets size the service
    qps: tuple[tuple[float, float], ...] | None = None
    initial: int | None = None  # replicas it is submitted with (default: ``minimum``)
    window: float = 0.0  # ``qps`` is measured as its mean over this trailing window

    def measured_qps(self, t: float) -> float:
        """Requests per second as a gateway counting over ``window`` would report at ``t``."""
        if self.window <= 0:
            return self.requests_per_second(t)
        start = t - self.window
        total, edge = 0.0, start
        rate = self.requests_per_second(start)
        for since, value in self.qps or ():
            if since <= start:
                continue
            if since > t:
                break
            total += rate * (since - edge)
            edge, rate = since, value
        total += rate * (t - edge)
        return total / self.window

    def demand(self, t: float) -> float:
        """Replicas' worth of load at ``t`` (a fraction: the autoscaler rounds up)."""
        if t < self.start or t >= self.end:
            return 0.0
        if self.qps is not None:
            target = self.autoscale.target_qps_per_replica or 1.0
            return self.requests_per_second(t) / target
        if self.curve is None:
            return float(self.peak)
        return self.peak * self.curve.at(t + self.phase)

    def requests_per_second(self, t: float) -> float:
        """The step function ``qps`` at ``t`` (0 before its first step)."""
        value = 0.0
        for since, rate in self.qps or ():
            if since > t:
                break
            value = rate
        return value

    @property
    def follows_load(self) -> bool:
        """Whether its size changes over time (the autoscaler ticks for it)."""
        return self.curve is not None or self.qps is not None

    def offered(self, t: float) -> float:
        """The requests per second the autoscaler is shown at ``t``: measured over ``window``
        for a ``qps`` service, else the demand at ``target_qps_per_replica`` each."""
        if t < self.start or t >= self.end:
            return 0.0
        if self.qps is not None:
            return self.measured_qps(t)
        return self.demand(t) * (self.autoscale.target_qps_per_replica or 1.0)

    def needed(self, t: float) -> int:
        """Replicas the demand needs at ``t``, between ``minimum`` and ``peak``."""
        if t < self.start or t >= self.end:
            return 0
        wanted = math.ceil(self.demand(t) - 1e-9)
        return max(self.minimum, min(self.peak, wanted))

    @property
    def autoscale(self) -> AutoscalePolicy:
        if self.policy is not None:
            return self.policy
        return AutoscalePolicy(
            min_replicas=self.minimum,
            max_replicas=self.peak,
            target_qps_per_replica=1.0,
            scale_up_window=0.0,
            scale_down_window=0.0,
            cooldown=0.0,
            tolerance=0.0,
        )

    def workload(self, replicas: int, created_at: float) -> Workload:
        """The service as the scheduler sees it, at ``replicas``."""
        return replace(
            self.template,
            id=self.name,
            replicas=replicas,
            min_replicas=min(max(self.minimum, 1), max(replicas, 1)),
            created_at=created_at,
        )


@dataclass(slots=True)
class Built:
    nodes: list[Node]
    queues: list[Queue]
    jobs: list[TrainingJob]
    services: list[Service]
    levels: tuple[str, ...]
    tick: float = 900.0
    failures: tuple[tuple[float, str], ...] = ()  # (time, node): scripted node failures


def _topology(
    index: int, nodes_per_rack: int, racks_per_block: int, prefix: str
) -> tuple[str, ...]:
    rack = index // nodes_per_rack
    block = rack // racks_per_block
    return (f"{prefix}b{block}", f"{prefix}b{block}-r{rack}")


def build_cluster(loaded: LoadedScenario) -> list[Node]:
    spec = loaded.scenario.cluster
    if spec.alibaba_nodes is not None:
        return _alibaba_nodes(loaded, spec.alibaba_nodes)
    nodes: list[Node] = []
    names: set[str] = set()
    for position, group in enumerate(spec.node_groups):
        prefix = group.name or group.type
        if prefix in names:
            raise loaded.error(
                ("cluster", "node_groups", position, "name"),
                f"two groups are named {prefix!r}; give each a distinct name",
            )
        names.add(prefix)
        for i in range(group.count):
            nodes.append(
                Node(
                    name=f"{prefix}-{i:05d}",
                    accel_type=group.type,
                    devices=group.devices,
                    topology=_topology(
                        i, group.nodes_per_rack, group.racks_per_block, f"{prefix}-"
                    ),
                    cpu_milli=group.cpu,
                    memory_mib=group.memory,
                )
            )
    return nodes


def _alibaba_nodes(loaded: LoadedScenario, spec: AlibabaNodes) -> list[Node]:
    path = loaded.resolve(("cluster", "alibaba_nodes", "path"), spec.path)
    nodes: list[Node] = []
    gpu_nodes = [n for n in read_alibaba_nodes(path) if n.gpus > 0]
    if spec.sample < 1:
        keep = max(1, round(len(gpu_nodes) * spec.sample))
        gpu_nodes = [gpu_nodes[i * len(gpu_nodes) // keep] for i in range(keep)]
    for index, row in enumerate(gpu_nodes):
        accel = _SINGLE_TYPE if spec.types is TypesFromModels.SINGLE else row.model.lower()
        nodes.append(
            Node(
                name=row.name,
                accel_type=accel,
                devices=row.gpus,
                topology=_topology(index, spec.nodes_per_rack, spec.racks_per_block, ""),
                labels={"model": row.model},
                cpu_milli=row.cpu_milli,
                memory_mib=row.memory_mib,
            )
        )
    if not nodes:
        raise loaded.error(("cluster", "alibaba_nodes", "path"), "the node list has no GPU node")
    return nodes


def _types_by_capacity(nodes: Iterable[Node]) -> tuple[str, ...]:
    capacity: dict[str, int] = {}
    for node in nodes:
        capacity[node.accel_type] = capacity.get(node.accel_type, 0) + node.devices
    return tuple(sorted(capacity, key=lambda accel: (-capacity[accel], accel)))


def pod_request(pod: AlibabaPod, host_resources: bool = True) -> Request:
    return Request(
        devices=pod.num_gpu,
        milli=pod.gpu_milli if pod.num_gpu == 1 else MILLI,
        cpu_milli=pod.cpu_milli if host_resources else 0,
        memory_mib=pod.memory_mib if host_resources else 0,
    )


class _Types:
    """Accepted types for a task: its ``gpu_spec`` mapped to the cluster's types, or every
    type, largest pool first."""

    def __init__(self, loaded: LoadedScenario, nodes: list[Node]) -> None:
        self.all = _types_by_capacity(nodes)
        alibaba = loaded.scenario.cluster.alibaba_nodes
        self.single = alibaba is not None and alibaba.types is TypesFromModels.SINGLE
        self.models = {node.labels.get("model", ""): node.accel_type for node in nodes}

    def accepted(self, spec: tuple[str, ...]) -> tuple[str, ...] | None:
        if not spec:
            return self.all
        if self.single:
            return None  # a model restriction cannot be expressed on one type
        found = tuple(dict.fromkeys(self.models[m] for m in spec if m in self.models))
        return found or None


def pod_types(pod: AlibabaPod, types: _Types) -> tuple[str, ...]:
    """The types a pod may run on, as equals (the paper's scheduler scores every node of any
    model the pod accepts in one decision): its ``gpu_spec``'s models, or every type; a
    CPU-only pod (no GPU) any node at all."""
    if not pod.num_gpu:
        return ()
    return types.accepted(pod.gpu_spec) or types.all


def alibaba_pods(
    loaded: LoadedScenario, spec: AlibabaPods, nodes: list[Node]
) -> tuple[list[AlibabaPod], _Types]:
    path = loaded.resolve(("workloads", "alibaba_pods", "path"), spec.path)
    pods = read_alibaba_pods(path)
    if spec.limit is not None:
        pods = pods[: spec.limit]
    types = _Types(loaded, nodes)
    largest: dict[str, int] = {}
    for node in nodes:
        largest[node.accel_type] = max(largest.get(node.accel_type, 0), node.devices)
    for pod in pods:
        accepted = types.accepted(pod.gpu_spec) if pod.num_gpu else None
        fits = max((largest.get(t, 0) for t in accepted or ()), default=0)
        if accepted is not None and pod.num_gpu > fits:
            raise loaded.error(
                ("workloads", "alibaba_pods", "path"),
                f"{path}:{pod.line}: num_gpu: a task of {pod.num_gpu} GPUs is larger than any "
                f"node it accepts ({fits} GPUs at most): it could never run",
            )
        if pod.num_gpu and types.accepted(pod.gpu_spec) is None:
            raise loaded.error(
                ("workloads", "alibaba_pods", "path"),
                f"{path}:{pod.line}: gpu_spec {'|'.join(pod.gpu_spec)!r} names no GPU model of "
                "this cluster"
                + (
                    " (with cluster.alibaba_nodes.types: single, use by-model)"
                    if types.single
                    else ""
                ),
            )
    if not spec.host_resources:  # a CPU-only task asks for nothing that is then counted
        pods = [p for p in pods if p.num_gpu > 0]
    return pods, types


def _pods_timeline(
    loaded: LoadedScenario, spec: AlibabaPods, nodes: list[Node]
) -> tuple[list[TrainingJob], list[Service]]:
    pods, types = alibaba_pods(loaded, spec, nodes)
    untimed = next((p for p in pods if not p.timed), None)
    if untimed is not None:
        raise loaded.error(
            ("workloads", "alibaba_pods", "path"),
            f"line {untimed.line}: a replay over time needs creation_time and deletion_time "
            "for every task; this pod list can be used for inflation only (mode: inflation)",
        )
    jobs: list[TrainingJob] = []
    services: list[Service] = []
    scale = spec.time_scale
    for pod in pods:
        if pod.creation < spec.skip:
            continue
        accepted = pod_types(pod, types)
        start = (pod.creation - spec.skip) / scale
        began = pod.scheduled if pod.scheduled is not None else pod.creation
        duration = max(0.0, pod.deletion - began)
        if pod.qos in ("LS", "Guaranteed"):
            end = start + (pod.deletion - pod.creation)
            if end <= start:
                continue
            template = Workload(
                id=pod.name,
                queue=spec.inference_queue,
                request=pod_request(pod, spec.host_resources),
                accel_types=accepted,
                types_ranked=False,
                kind=Kind.INFERENCE,
                priority=spec.inference_priority,
                preemptible=False,
                created_at=start,
                min_replicas=1,
            )
            services.append(Service(pod.name, template, start, end, 1, 1))
            continue
        if duration <= 0:
            continue
        workload = Workload(
            id=pod.name,
            queue=spec.queue,
            request=pod_request(pod, spec.host_resources),
            accel_types=accepted,
            types_ranked=False,
            created_at=start,
        )
        jobs.append(TrainingJob(workload, duration, pod.qos))
    return jobs, services


def _synthetic(
    spec: SyntheticJobs, seed: int, horizon: float, types: tuple[str, ...]
) -> list[TrainingJob]:
    rng = rng_for(seed, "synthetic-jobs")
    weights = [c.share for c in spec.classes]
    window = max(1.0, horizon * spec.arrive_within)
    rate = spec.jobs / window
    clock = spec.start
    jobs: list[TrainingJob] = []
    for index in range(spec.jobs):
        clock += rng.expovariate(rate)
        cls: JobClass = rng.choices(spec.classes, weights)[0]
        replicas = rng.choice(cls.replicas)
        runtime = rng.lognormvariate(math.log(cls.duration.median), cls.duration.sigma)
        if cls.duration.max is not None:
            runtime = min(runtime, cls.duration.max)
        runtime = max(runtime, 1.0)
        elastic = replicas > 1 and rng.random() < cls.elastic
        queue = rng.choice(cls.queues) if cls.queues else cls.queue
        workload = Workload(
            id=f"{cls.name}-{index:06d}",
            queue=queue,
            request=Request(cls.gpus),
            accel_types=tuple(cls.types) or types,
            replicas=replicas,
            min_replicas=max(1, replicas // 2) if elastic else None,
            priority=cls.priority,
            created_at=clock,
            duration_estimate=runtime * cls.time_limit if cls.time_limit else None,
            required_level=None if cls.topology == "any" else cls.topology,
            mix=Mix(cls.mix),
        )
        jobs.append(TrainingJob(workload, runtime * replicas, cls.name))
    return jobs


def _csv_jobs(
    loaded: LoadedScenario, spec: CsvJobs, types: tuple[str, ...]
) -> tuple[list[TrainingJob], list[Service]]:
    path = loaded.resolve(("workloads", "csv", "path"), spec.path)
    jobs: list[TrainingJob] = []
    services: list[Service] = []
    for row in read_job_csv(path):
        request = Request(row.gpus, row.gpu_milli)
        accepted = row.types or types
        if row.kind == "inference":
            template = Workload(
                id=row.id,
                queue=row.queue,
                request=request,
                accel_types=accepted,
                types_ranked=False,
                kind=Kind.INFERENCE,
                priority=row.priority,
                preemptible=False,
                created_at=row.submit,
                min_replicas=1,
            )
            floor = row.min_replicas or row.replicas
            services.append(
                Service(
                    row.id, template, row.submit, row.submit + row.duration, row.replicas, floor
                )
            )
            continue
        workload = Workload(
            id=row.id,
            queue=row.queue,
            request=request,
            accel_types=accepted,
            replicas=row.replicas,
            min_replicas=row.min_replicas,
            priority=row.priority,
            created_at=row.submit,
            duration_estimate=row.time_limit,
        )
        jobs.append(TrainingJob(workload, max(row.duration, 1.0) * row.replicas, "csv"))
    return jobs, services


def _services(
    loaded: LoadedScenario, spec: InferenceSpec, horizon: float, types: tuple[str, ...]
) -> list[Service]:
    curve_spec = spec.curve
    if curve_spec.path is not None:
        path = loaded.resolve(("workloads", "inference", "curve", "path"), curve_spec.path)
        values = read_qps_curve(path, bin_s=curve_spec.bin, request_type=curve_spec.request_type)
        curve = Curve(tuple(values), curve_spec.period, curve_spec.floor)
    else:
        curve = Curve.diurnal(curve_spec.period, curve_spec.floor)
    rng = rng_for(loaded.scenario.seed, "services")
    services: list[Service] = []
    for group in spec.services:
        for index in range(group.count):
            name = f"{group.name}-{index:03d}" if group.count > 1 else group.name
            template = Workload(
                id=name,
                queue=group.queue,
                request=Request(group.gpus, group.milli),
                accel_types=tuple(group.types) or types,
                kind=Kind.INFERENCE,
                priority=group.priority,
                preemptible=False,
                min_replicas=1,
            )
            phase = rng.uniform(0, group.phase_spread) if group.phase_spread else 0.0
            services.append(
                Service(
                    name,
                    template,
                    0.0,
                    math.inf,
                    group.peak_replicas,
                    group.min_replicas,
                    curve,
                    phase,
                )
            )
    return services


def _queue(loaded: LoadedScenario, position: int, spec: SimQueue) -> Queue:
    """A scenario's queue as the live control plane reads a ``Queue`` spec (``from_api``)."""
    ordering = Ordering.STRICT_FIFO if spec.strict_fifo else Ordering.BEST_EFFORT_FIFO
    try:
        api = QueueSpec(
            name=spec.name,
            parent=spec.parent,
            weight=spec.weight,
            quotas={accel: QueueQuota(**q.model_dump()) for accel, q in spec.quotas.items()},
            ordering=ordering,
        )
    except ValidationError as err:
        problem = err.errors()[0]
        where = ("queues", position, *problem.get("loc", ()))
        raise loaded.error(where, str(problem.get("msg", err))) from None
    return queue_from_spec(api)


def _queues(
    loaded: LoadedScenario, jobs: list[TrainingJob], services: list[Service]
) -> list[Queue]:
    scenario = loaded.scenario
    used = list(
        dict.fromkeys([*(j.workload.queue for j in jobs), *(s.template.queue for s in services)])
    )
    if not scenario.queues:
        return [Queue(name) for name in used or ["default"]]
    queues = []
    names = {q.name for q in scenario.queues}
    for position, spec in enumerate(scenario.queues):
        if spec.parent is not None and spec.parent not in names:
            raise loaded.error(("queues", position, "parent"), f"no queue is named {spec.parent!r}")
        queues.append(_queue(loaded, position, spec))
    parents = {q.parent for q in scenario.queues if q.parent}
    for name in used:
        if name not in names:
            raise loaded.error(
                ("queues",), f"workloads use queue {name!r}, which is not defined here"
            )
        if name in parents:
            raise loaded.error(("queues",), f"queue {name!r} has children; submit to a leaf queue")
    return queues


def build(loaded: LoadedScenario) -> Built:
    """Everything a timeline run needs, or a :class:`~baige.api.loader.SpecError`."""
    scenario = loaded.scenario
    nodes = build_cluster(loaded)
    types = _types_by_capacity(nodes)
    jobs: list[TrainingJob] = []
    services: list[Service] = []
    spec = scenario.workloads
    if spec.synthetic is not None:
        for position, cls in enumerate(spec.synthetic.classes):
            unknown = [t for t in cls.types if t not in types]
            if unknown:
                raise loaded.error(
                    ("workloads", "synthetic", "classes", position, "types"),
                    f"no node has type {unknown[0]!r}; the cluster has {', '.join(types)}",
                )
            if cls.mix != "never" and len(cls.types or types) < 2:
                raise loaded.error(
                    ("workloads", "synthetic", "classes", position, "mix"),
                    f"mix: {cls.mix} spreads a job over several types; this class accepts "
                    f"only {', '.join(cls.types or types)}",
                )
        jobs += _synthetic(spec.synthetic, scenario.seed, scenario.duration, types)
    if spec.alibaba_pods is not None:
        more_jobs, more_services = _pods_timeline(loaded, spec.alibaba_pods, nodes)
        jobs += more_jobs
        services += more_services
    if spec.csv is not None:
        more_jobs, more_services = _csv_jobs(loaded, spec.csv, types)
        jobs += more_jobs
        services += more_services
    tick = 900.0
    if spec.inference is not None:
        services += _services(loaded, spec.inference, scenario.duration, types)
        tick = spec.inference.tick
    seen: set[str] = set()
    for name in [*(j.workload.id for j in jobs), *(s.name for s in services)]:
        if name in seen:
            raise loaded.error(("workloads",), f"two jobs or services are named {name!r}")
        seen.add(name)
    queues = _queues(loaded, jobs, services)
    jobs.sort(key=lambda j: (j.submit, j.workload.id))
    return Built(nodes, queues, jobs, services, tuple(scenario.topology_levels), tick)
