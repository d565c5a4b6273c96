"""Small readers over a cycle result, so table-driven tests state expectations compactly."""

from __future__ import annotations

from collections import Counter

from baige.sched import (
    BAIGE,
    Admit,
    CycleResult,
    Grow,
    Preempt,
    Profile,
    Shrink,
    Snapshot,
    check_result,
    run_cycle,
)


def cycle(snapshot: Snapshot, profile: Profile = BAIGE, now: float = 0.0) -> CycleResult:
    """Run a cycle, and check its invariants and its determinism on the way."""
    result = run_cycle(snapshot, now, profile)
    problems = check_result(snapshot, result, profile)
    assert not problems, problems
    again = run_cycle(snapshot, now, profile)
    assert again.decisions == result.decisions, "a cycle must be deterministic"
    return result


def admitted(result: CycleResult) -> set[str]:
    return {d.workload for d in result.decisions if isinstance(d, Admit)}


def preempted(result: CycleResult) -> set[str]:
    return {d.workload for d in result.decisions if isinstance(d, Preempt)}


def shrunk(result: CycleResult) -> dict[str, int]:
    return {d.workload: d.replicas for d in result.decisions if isinstance(d, Shrink)}


def grown(result: CycleResult) -> dict[str, int]:
    return {d.workload: d.replicas for d in result.decisions if isinstance(d, Grow)}


def nodes_of(result: CycleResult, workload: str) -> Counter[str]:
    for decision in result.decisions:
        if isinstance(decision, Admit) and decision.workload == workload:
            return Counter(p.node for p in decision.placements)
    return Counter()


def accel_of(result: CycleResult, workload: str) -> str | None:
    for decision in result.decisions:
        if isinstance(decision, Admit) and decision.workload == workload:
            return decision.accel_type
    return None
