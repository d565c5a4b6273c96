"""Placing one gang across accelerator types: a sub-gang per type, all or nothing.

A job that declares ``mix: allowed`` is first tried on each accepted type alone (one chip
type is simpler and faster to train on); only when none holds the whole gang does the cycle
come here. Types are taken in the job's order of preference, each giving as many replicas as
its quota and free capacity allow, each sub-gang packed into the smallest topology domain by
the same placer as a one-type gang. If the sub-gangs together fall short of the gang's floor,
everything placed is given back: no partial gang ever leaks. Quota is charged to each type
for the cards taken there (:meth:`CycleState.allocate`).

Pure, like the rest of ``baige.sched``.
"""

from __future__ import annotations

from baige.sched.decisions import Admit, Reason
from baige.sched.model import Mix, Placement, Workload
from baige.sched.placement import Failure
from baige.sched.state import CycleState, Running

__all__ = ["split_counts", "try_mixed"]


def split_counts(types: list[tuple[str, list[Placement]]]) -> tuple[tuple[str, int], ...]:
    """``(type, replicas)`` per type used, in placement order."""
    return tuple((accel, len(placed)) for accel, placed in types if placed)


def try_mixed(state: CycleState, workload: Workload, floor: int, want: int) -> Admit | Failure:
    """Admit between ``floor`` and ``want`` replicas of ``workload`` spread over its types
    (at least two of them when its mix is ``required``), or change nothing and say why."""
    per = state.per_replica(workload)
    ledger = state.ledger
    span = workload.mix is Mix.REQUIRED
    placed: list[tuple[str, list[Placement]]] = []
    short: list[str] = []
    remaining = want
    for accel in workload.accel_types:
        if remaining <= 0:
            break
        cap = remaining
        if span and not placed:
            cap = min(cap, want - 1)  # leave at least one replica for another type
        if cap <= 0 or state.cluster.index(accel) is None:
            continue
        if not ledger.check(workload.queue, accel, per).ok:
            short.append(f"{accel}: quota")
            continue
        cap = _quota_max(state, workload, accel, cap)
        result = state.placer.place(workload, accel, cap, 1)
        if isinstance(result, Failure):
            short.append(result.message)
            continue
        placed.append((accel, result))
        remaining -= len(result)
    total = want - remaining
    if total < max(floor, 1) or (span and len(placed) < 2):
        for _, result in placed:
            state.placer.release(workload, result)
        used = ", ".join(f"{len(r)} on {a}" for a, r in placed) or "none"
        need = "two types or more" if span and total >= floor else f"{floor} replicas"
        why = f" ({'; '.join(short)})" if short else ""
        return Failure(
            Reason.CAPACITY,
            f"across {'+'.join(workload.accel_types)}: room for {used}; needs {need}{why}",
        )
    borrowing = any(
        ledger.check(workload.queue, accel, len(result) * per).borrowing for accel, result in placed
    )
    placements = [p for _, result in placed for p in result]
    expected_end = (
        None if workload.duration_estimate is None else state.now + workload.duration_estimate
    )
    lead = placed[0][0]
    run = Running(workload, lead, [], state.now, expected_end, admitted_now=True)
    state.allocate(run, placements)  # charges each type its own cards
    state.add_running(run)  # after allocate: it is a victim candidate on every type it uses
    return Admit(
        workload.id,
        lead,
        tuple(placements),
        borrowing=borrowing,
        mixed=split_counts(placed),
    )


def _quota_max(state: CycleState, workload: Workload, accel: str, want: int) -> int:
    """The most replicas in [1, want] the quota allows on ``accel`` (it is monotonic)."""
    ledger = state.ledger
    per = state.per_replica(workload)
    low, high = 1, want
    while low < high:
        middle = (low + high + 1) // 2
        if ledger.check(workload.queue, accel, middle * per).ok:
            low = middle
        else:
            high = middle - 1
    return low
