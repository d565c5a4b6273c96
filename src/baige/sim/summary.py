"""The figures a run reports, as the plain dict written to ``summary.json``.

Definitions (all time-integrated over the run; "available" is the accelerator time of nodes
the scheduler may use, so failed and cordoned nodes do not count against the policy):

* ``allocation_rate`` — accelerator time allocated / available;
* ``utilization`` — accelerator time doing useful work / available: training replicas
  while they make progress that is kept (not in start-up, checkpoint stalls, or work later
  lost to a failure), and inference replicas up to the demand of their service;
* ``ettr`` — effective training time ratio: the time training jobs made kept progress
  over their wall time from first start to end (or to the end of the run), summed over
  jobs (so long jobs weigh more), as Meta and Llama 3 report it;
* ``lost_work_fraction`` — training progress lost (to failures, and to preemptions when
  jobs do not checkpoint on preemption) over all progress made;
* ``queue_wait_*`` — from submission to first start, over training jobs submitted (one
  still waiting at the end counts with its wait so far, so a policy that starts few jobs
  is not flattered);
* ``inference_demand_met`` — the share of time, over services with demand, that their
  serving replicas were at least the demand.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from baige.sim.engine import DONE, Engine, _Job
from baige.sim.metrics import percentile

__all__ = ["summarize"]


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def _jobs(jobs: Iterable[_Job], horizon: float) -> dict[str, Any]:
    submitted = completed = started = 0
    waits: list[float] = []
    jct: list[float] = []
    productive = wall = lost = progress = 0.0
    preemptions = interruptions = 0
    for job in jobs:
        if job.spec.submit >= horizon:
            continue
        submitted += 1
        if job.started:
            waits.append(job.first_start - job.spec.submit)
            started += 1
            end = job.end if job.state == DONE else horizon
            wall += end - job.first_start
            productive += job.productive
        else:  # still waiting: counted with its wait so far (the waits are a lower bound)
            waits.append(horizon - job.spec.submit)
        if job.state == DONE:
            completed += 1
            jct.append(job.end - job.spec.submit)
        lost += job.lost
        progress += job.progress
        preemptions += job.preemptions
        interruptions += job.interruptions
    waits.sort()
    return {
        "jobs_submitted": submitted,
        "jobs_completed": completed,
        "jobs_started": started,
        "ettr": _ratio(productive, wall),
        "lost_work_fraction": _ratio(lost, progress),
        "queue_wait_p50_s": percentile(waits, 0.5),
        "queue_wait_p99_s": percentile(waits, 0.99),
        "queue_wait_mean_s": statistics.fmean(waits) if waits else 0.0,
        "jct_mean_s": statistics.fmean(jct) if jct else 0.0,
        "preemptions": preemptions,
        "interruptions": interruptions,
    }


def _services(engine: Engine, names: set[str] | None = None) -> dict[str, Any]:
    demand = met = 0.0
    count = 0
    for name, state in engine.services.items():
        if names is not None and name not in names:
            continue
        count += 1
        demand += state.demand_time
        met += state.met_time
    return {"services": count, "inference_demand_met": _ratio(met, demand) if count else 1.0}


def summarize(engine: Engine, *, scenario: str, wall_seconds: float) -> dict[str, Any]:
    horizon = engine.config.horizon
    available = engine.total.available.area
    accelerators = sum(n.devices for n in engine.built.nodes)
    summary: dict[str, Any] = {
        "scenario": scenario,
        "policy": engine.profile.name,
        "seed": engine.config.seed,
        "accelerators": accelerators,
        "nodes": len(engine.built.nodes),
        "simulated_seconds": horizon,
        "wall_seconds": wall_seconds,
        "events": engine.events,
        "scheduler_passes": engine.cycles,
        "scheduler_seconds": engine.cycle_seconds,
        "decisions": engine.decisions,
    }
    jobs = _jobs(engine.jobs.values(), horizon)
    summary.update(jobs)
    summary.update(
        {
            "allocation_rate": _ratio(engine.total.allocated.area, available),
            "utilization": _ratio(engine.total.useful_area, available),
            "available_share": _ratio(available, accelerators * 1000 * horizon),
            "training_allocation_share": _ratio(engine.by_kind_area("training"), available),
            "inference_allocation_share": _ratio(engine.by_kind_area("inference"), available),
            "shrinks": engine.shrinks,
            "node_failures": engine.node_failures,
            "nodes_cordoned": len(engine.cordoned),
            "lost_work_replica_seconds": sum(loss.work for loss in engine.losses),
            "lost_work_by_cause": _by_cause(engine),
        }
    )
    if engine.config.recovery is not None:
        summary["recovery"] = {
            "spare_nodes": engine.spares_held,
            "spare_swaps": engine.spare_swaps,
            "restores_after_failure": dict(sorted(engine.restores.items())),
        }
    summary.update(_services(engine))
    summary["inference_replicas_started"] = sum(state.started for state in engine.services.values())
    per_queue: dict[str, Any] = {}
    for name, group in engine.by_queue.items():
        members = [j for j in engine.jobs.values() if j.spec.workload.queue == name]
        services = {s for s, st in engine.services.items() if st.service.template.queue == name}
        row = {
            "allocation_rate": _ratio(group.allocated.area, available),
            "utilization": _ratio(group.useful_area, available),
        }
        row.update(_jobs(members, horizon))
        row.update(_services(engine, services))
        per_queue[name] = row
    summary["per_queue"] = per_queue
    per_type: dict[str, Any] = {}
    for accel, group in engine.by_type.items():
        members = [j for j in engine.jobs.values() if j.accel == accel]
        row = {
            "accelerators": sum(n.devices for n in engine.built.nodes if n.accel_type == accel),
            "allocation_rate": _ratio(group.allocated.area, group.available.area),
            "utilization": _ratio(group.useful_area, group.available.area),
        }
        row.update(_jobs(members, horizon))
        per_type[accel] = row
    summary["per_type"] = per_type
    per_class: dict[str, Any] = {}
    for name in dict.fromkeys(j.spec.group for j in engine.jobs.values()):
        per_class[name] = _jobs((j for j in engine.jobs.values() if j.spec.group == name), horizon)
    summary["per_class"] = per_class
    return summary


def _by_cause(engine: Engine) -> dict[str, float]:
    out: dict[str, float] = {}
    for loss in engine.losses:
        out[loss.cause] = out.get(loss.cause, 0.0) + loss.work
    return out
