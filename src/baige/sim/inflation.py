"""Inflation mode: the FGD paper's experiment on the Alibaba pod list.

The pod list is a sample of tasks, not a timeline (its recorded times never ask for more
than about 65 of the 6,212 GPUs at once), so Weng et al. inflate it: tasks are drawn from the
list with replacement and submitted one after another, never leaving, until the GPUs asked
for reach the capacity or more. After each task a scheduler pass places it or fails it
(a failed task is dropped, as in the paper). Recorded as the arrived workload grows (in
percent of the GPU capacity): the share of GPUs left unallocated, and the share fragmented
— free GPU capacity that the task mix cannot use (the paper's measure, ``fragmentation_of``
with the pod list's shape mix, summed over nodes).

Placement is what is compared, so each task is placed or fails at once: preemption and
backfill reservations are switched off in every policy here. CPU-only tasks are left out
(they ask for no GPU; the paper's arrived workload counts GPUs). Tasks ask for host CPU and
memory as recorded unless ``host_resources: false``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from baige.sched import MILLI, Admit, Profile, Queue, Request, Workload
from baige.sched.incremental import Scheduler
from baige.sched.plugins import fragmentation_of
from baige.sim.build import alibaba_pods, build_cluster, pod_request, rng_for
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
    if not pods:
        raise loaded.error(("workloads", "alibaba_pods", "path"), "the pod list has no GPU task")
    capacity = sum(n.devices for n in nodes) * MILLI
    requests = [pod_request(p, pods_spec.host_resources) for p in pods]
    accepted = [types.accepted(p.gpu_spec) or types.all for p in pods]
    mix = task_mix(requests)
    levels = tuple(scenario.topology_levels)
    curves: list[InflationCurve] = []
    for profile in profiles:
        for index in range(spec.seeds):
            seed = scenario.seed + index
            curve = InflationCurve(profile.name, seed)
            started = time.perf_counter()
            scheduler = Scheduler(
                nodes, [Queue(pods_spec.queue)], _inflation_profile(profile), levels
            )
            rng = rng_for(seed, "inflation")
            arrived = 0
            allocated = 0
            next_point = spec.step
            frag_cache: dict[tuple[int, ...], float] = {}
            limit = spec.up_to / 100 * capacity
            while arrived < limit:
                choice = rng.randrange(len(pods))
                request = requests[choice]
                task = Workload(
                    id=f"t{curve.tasks}",
                    queue=pods_spec.queue,
                    request=request,
                    accel_types=accepted[choice],
                    created_at=float(curve.tasks),
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
                while arrived >= next_point / 100 * capacity - 1e-9 and next_point <= spec.up_to:
                    curve.arrived.append(next_point)
                    curve.unallocated.append(1 - allocated / capacity)
                    curve.fragmented.append(_fragmented(scheduler, mix, frag_cache) / capacity)
                    next_point += spec.step
                if progress is not None and curve.tasks % 200 == 0:
                    progress(f"{profile.name} seed {seed}", arrived / limit)
            curve.wall_seconds = time.perf_counter() - started
            curves.append(curve)
    return InflationResult(capacity // MILLI, len(pods), curves, list(spec.report_at))


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
