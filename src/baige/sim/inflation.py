"""Inflation mode: the FGD paper's experiment on the Alibaba pod list.

The pod list is a sample of tasks, not a timeline (its recorded times never ask for more
than about 65 of the 6,212 GPUs at once), so Weng et al. inflate it. As their simulator
does (hkust-adsl/kubernetes-scheduler-simulator, ``SortClusterPods`` and ``tuneUpPods``):
the whole list is shuffled, then tasks drawn from it with replacement are appended until
the GPUs asked for reach ``up_to`` percent of the capacity; the tasks are submitted one
after another and never leave. After each task a scheduler pass places it or fails it (a
failed task is dropped, as in the paper). CPU-only tasks are kept: they ask for no GPU, so
they add nothing to the arrived workload, but they take the host CPU that GPU tasks need.

Recorded as the arrived workload grows (in percent of the GPU capacity), as the paper's
analysis does (``merge_alloc_discrete.py``): at each point, the mean share of GPUs left
unallocated over the tasks whose arrival rounds to that point; and the share fragmented
when the arrival first reaches it — free GPU capacity that the task mix cannot use (the
paper's measure, ``fragmentation_of`` with the pod list's shape mix, summed over nodes).
The node list is shuffled per seed too, since the paper's simulator breaks score ties by
node name after prefixing every name with a seeded random number.

Placement is what is compared, so each task is placed or fails at once: preemption and
backfill reservations are switched off in every policy here. Tasks ask for host CPU and
memory as recorded unless ``host_resources: false`` (then CPU-only tasks are left out,
having nothing to ask for).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from baige.sched import MILLI, Admit, Node, Profile, Queue, Request, Workload
from baige.sched.incremental import Scheduler
from baige.sched.plugins import fragmentation_of
from baige.sim.build import alibaba_pods, build_cluster, pod_request, pod_types, rng_for
from baige.sim.scenario import LoadedScenario

__all__ = ["InflationCurve", "InflationResult", "run_inflation", "task_mix"]


@dataclass(slots=True)
class InflationCurve:
    """One policy and seed: at each arrived percent, the unallocated and fragmented shares."""

    policy: str
    seed: int
    arrived: list[float] = field(default_factory=list)  # percent of GPU capacity
    unallocated: list[float] = field(default_factory=list)  # share of GPU capacity
    fragmented: list[float] = field(default_factory=list)
    tasks: int = 0
    failed: int = 0
    wall_seconds: float = 0.0

    def at(self, percent: float) -> tuple[float, float]:
        """(unallocated, fragmented) when the arrived workload first reached ``percent``."""
        for arrived, unallocated, fragmented in zip(
            self.arrived, self.unallocated, self.fragmented, strict=True
        ):
            if arrived >= percent - 1e-9:
                return unallocated, fragmented
        return self.unallocated[-1], self.fragmented[-1]


@dataclass(slots=True)
class InflationResult:
    capacity_gpus: int
    tasks_in_trace: int
    cpu_only_tasks: int
    curves: list[InflationCurve]
    report_at: list[float]

    def table(self) -> dict[str, dict[str, float]]:
        """Per policy, the mean over seeds of the unallocated and fragmented shares at each
        reported percent (keys ``unallocated_at_95``, ``fragmented_at_95``, …)."""
        out: dict[str, dict[str, float]] = {}
        for policy in dict.fromkeys(c.policy for c in self.curves):
            curves = [c for c in self.curves if c.policy == policy]
            row: dict[str, float] = {}
            for percent in self.report_at:
                values = [c.at(percent) for c in curves]
                key = f"{percent:g}"
                row[f"unallocated_at_{key}"] = sum(v[0] for v in values) / len(values)
                row[f"fragmented_at_{key}"] = sum(v[1] for v in values) / len(values)
            row["failed_tasks"] = sum(c.failed for c in curves) / len(curves)
            row["wall_seconds"] = sum(c.wall_seconds for c in curves)
            out[policy] = row
        return out


def task_mix(requests: list[Request]) -> dict[tuple[int, int], float]:
    """Share of tasks per shape ``(devices, milli)``: the workload the fragmentation
    measure judges free capacity against."""
    counts = Counter((r.devices, r.milli) for r in requests)
    total = sum(counts.values())
    return {shape: count / total for shape, count in counts.items()}


def _inflation_profile(profile: Profile) -> Profile:
    """The experiment measures where each policy puts a task, so every policy scores every
    node (as the paper's simulator does): Baige's live default scores 16 candidates per step
    for speed, which would compare its shortcut rather than its placement."""
    return replace(profile, preemption=False, reclaim=False, backfill=False, candidate_nodes=0)


def run_inflation(
    loaded: LoadedScenario,
    profiles: list[Profile],
    progress: Callable[[str, float], None] | None = None,
) -> InflationResult:
    scenario = loaded.scenario
    spec = scenario.inflation
    pods_spec = scenario.workloads.alibaba_pods
    assert spec is not None and pods_spec is not None  # checked by the scenario model
    nodes = build_cluster(loaded)
    pods, types = alibaba_pods(loaded, pods_spec, nodes)
    if not any(p.num_gpu for p in pods):
        raise loaded.error(("workloads", "alibaba_pods", "path"), "the pod list has no GPU task")
    capacity = sum(n.devices for n in nodes) * MILLI
    requests = [pod_request(p, pods_spec.host_resources) for p in pods]
    accepted = [pod_types(p, types) for p in pods]
    mix = task_mix(requests)
    curves: list[InflationCurve] = []
    for profile in profiles:
        for index in range(spec.seeds):
            seed = scenario.seed + index
            curves.append(
                _one_curve(profile, seed, nodes, requests, accepted, mix, loaded, progress)
            )
    cpu_only = sum(1 for p in pods if not p.num_gpu)
    return InflationResult(capacity // MILLI, len(pods), cpu_only, curves, list(spec.report_at))


def _stream(requests: list[Request], limit: float, seed: int) -> list[int]:
    """Indices of the tasks in submission order: the whole list shuffled, then tasks drawn
    with replacement until the GPUs asked for reach ``limit`` milli (the paper's tuning)."""
    rng = rng_for(seed, "inflation")
    order = list(range(len(requests)))
    rng.shuffle(order)
    asked = sum(requests[i].total_milli for i in order)
    while asked < limit:
        choice = rng.randrange(len(requests))
        order.append(choice)
        asked += requests[choice].total_milli
    return order


def _one_curve(
    profile: Profile,
    seed: int,
    nodes: list[Node],
    requests: list[Request],
    accepted: list[tuple[str, ...]],
    mix: dict[tuple[int, int], float],
    loaded: LoadedScenario,
    progress: Callable[[str, float], None] | None,
) -> InflationCurve:
    scenario = loaded.scenario
    spec = scenario.inflation
    pods_spec = scenario.workloads.alibaba_pods
    assert spec is not None and pods_spec is not None
    curve = InflationCurve(profile.name, seed)
    started = time.perf_counter()
    shuffled = list(nodes)
    rng_for(seed, "node-order").shuffle(shuffled)
    scheduler = Scheduler(
        shuffled,
        [Queue(pods_spec.queue)],
        _inflation_profile(profile),
        tuple(scenario.topology_levels),
    )
    capacity = sum(n.devices for n in nodes) * MILLI
    step = spec.step
    # the last point's bin is complete once the arrival passes half a step beyond it
    limit = (spec.up_to + step / 2) / 100 * capacity
    stream = _stream(requests, limit, seed)
    arrived = 0
    allocated = 0
    bins: dict[int, list[float]] = {}  # point index -> [sum of allocated shares, tasks]
    next_point = step
    fragmented: dict[int, float] = {}
    frag_cache: dict[tuple[int, ...], float] = {}
    for position, choice in enumerate(stream):
        if arrived >= limit:
            break
        request = requests[choice]
        task = Workload(
            id=f"t{position}",
            queue=pods_spec.queue,
            request=request,
            accel_types=accepted[choice],
            types_ranked=False,
            created_at=float(position),
        )
        curve.tasks += 1
        scheduler.submit(task)
        result = scheduler.cycle(float(curve.tasks))
        admits = [d for d in result.decisions if isinstance(d, Admit)]
        if admits:  # what was taken: a whole card for a share, without co-location
            allocated += sum(len(p.devices) * p.milli for p in admits[0].placements)
        else:
            scheduler.remove(task.id)
            curve.failed += 1
        arrived += request.total_milli
        point = round(arrived * 100 / capacity / step)
        entry = bins.setdefault(point, [0.0, 0.0])
        entry[0] += allocated / capacity
        entry[1] += 1
        while arrived >= next_point / 100 * capacity - 1e-9 and next_point <= spec.up_to + 1e-9:
            fragmented[round(next_point / step)] = _fragmented(scheduler, mix, frag_cache)
            next_point += step
        if progress is not None and curve.tasks % 200 == 0:
            progress(f"{profile.name} seed {seed}", min(1.0, arrived / limit))
    last = 0.0
    for point in range(1, round(spec.up_to / step) + 1):
        if point in bins:
            total, count = bins[point]
            last = total / count
        if point not in fragmented:
            continue  # the arrival never reached this point (every task was asked)
        curve.arrived.append(point * step)
        curve.unallocated.append(1 - last)
        curve.fragmented.append(fragmented[point] / capacity)
    curve.wall_seconds = time.perf_counter() - started
    return curve


def _fragmented(
    scheduler: Scheduler,
    mix: dict[tuple[int, int], float],
    cache: dict[tuple[int, ...], float],
) -> float:
    total = 0.0
    for _, free in scheduler.nodes():
        value = cache.get(free)
        if value is None:
            value = cache[free] = fragmentation_of(free, 0, mix)
        total += value
    return total
