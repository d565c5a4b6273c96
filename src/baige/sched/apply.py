"""Applying a cycle's decisions to a snapshot: the next state both drivers agree on.

The simulator uses it as its state transition; the control plane uses the same function to
know what the store should hold after a commit; tests use it to check invariants. Pure.
"""

from __future__ import annotations

from dataclasses import replace

from baige.sched.decisions import Admit, CycleResult, Grow, Preempt, Shrink
from baige.sched.model import Assignment, Snapshot, Workload

__all__ = ["apply_decisions"]


def apply_decisions(snapshot: Snapshot, result: CycleResult) -> Snapshot:
    """The snapshot after every decision in ``result`` is carried out."""
    workloads: dict[str, Workload] = {w.id: w for w in snapshot.workloads}
    for decision in result.decisions:
        workload = workloads.get(decision.workload)
        if workload is None:
            raise KeyError(f"decision for unknown workload {decision.workload!r}")
        if isinstance(decision, Admit):
            expected_end = (
                None
                if workload.duration_estimate is None
                else result.now + workload.duration_estimate
            )
            workloads[workload.id] = replace(
                workload,
                assignment=Assignment(
                    decision.accel_type, decision.placements, result.now, expected_end
                ),
            )
        elif isinstance(decision, Preempt):
            workloads[workload.id] = replace(workload, assignment=None)
        elif workload.assignment is None:
            raise ValueError(f"{type(decision).__name__} for {workload.id}, which is not running")
        elif isinstance(decision, Shrink):
            remaining = list(workload.assignment.placements)
            for placement in decision.remove:
                remaining.remove(placement)
            workloads[workload.id] = replace(
                workload, assignment=replace(workload.assignment, placements=tuple(remaining))
            )
        elif isinstance(decision, Grow):
            workloads[workload.id] = replace(
                workload,
                assignment=replace(
                    workload.assignment,
                    placements=workload.assignment.placements + decision.add,
                ),
            )
    return replace(snapshot, workloads=tuple(workloads.values()))
