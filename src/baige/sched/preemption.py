"""Choosing victims: whom to shrink or preempt so that a workload fits.

Rules (Kueue's, plus elasticity):

* within a queue, a higher-priority workload may preempt lower-priority ones;
* a queue asking for no more than its guarantee reclaims from queues that borrow, whatever
  their priority (what was lent is taken back);
* a higher-priority workload may preempt lower-priority work of queues that borrow;
* non-preemptible workloads are never victims; workloads admitted in this cycle are not either.

Order: lowest priority first; at equal priority, shrink elastic work (down to its minimum)
before preempting anything, and newest first. After a set that makes room is found, each
victim is put back in turn if the preemptor still fits without it, so the set is minimal
("fewest victims").
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice

from baige.sched.model import Placement, Workload
from baige.sched.state import CycleState, Running

__all__ = ["VictimPlan", "find_victims", "victim_reason"]


@dataclass(slots=True)
class _Unit:
    key: tuple[int, int, float, str, int]
    run: Running
    preempt: bool
    released: list[Placement] = field(default_factory=list)


@dataclass(slots=True)
class VictimPlan:
    """Victims already released in the cycle state; :meth:`undo` puts them back."""

    preempted: list[Running]
    shrunk: dict[str, list[Placement]]
    entitled: bool
    _units: list[_Unit]

    def undo(self, state: CycleState) -> None:
        for unit in reversed(self._units):
            state.restore(unit.run, unit.released)
            unit.run.evicted = False


def victim_reason(preemptor: Workload, victim: Workload, accel: str, entitled: bool) -> str:
    """The sentence a victim's owner reads: who took its place and by which rule."""
    if victim.queue == preemptor.queue and victim.priority < preemptor.priority:
        return f"priority {preemptor.priority} > {victim.priority} in queue {victim.queue}"
    if entitled:
        return f"queue {preemptor.queue} reclaims its guaranteed {accel}"
    return f"priority {preemptor.priority} > {victim.priority}; queue {victim.queue} is borrowing"


def _eligible_queues(
    state: CycleState, preemptor: Workload, accel: str, entitled: bool
) -> dict[str, bool]:
    """Queues whose workloads may be victims: queue -> "only lower priority ones"."""
    profile = state.profile
    ledger = state.ledger
    out: dict[str, bool] = {}
    for queue in state.queues_on(accel):
        if queue == preemptor.queue:
            if profile.preemption:
                out[queue] = True
            continue
        if not ledger.known(queue) or not ledger.borrowing_outside(queue, preemptor.queue, accel):
            continue
        if profile.reclaim and entitled:
            out[queue] = False
        elif profile.preemption:
            out[queue] = True
    return out


def _fits(state: CycleState, workload: Workload, accel: str, floor: int) -> bool:
    per = state.per_replica(workload)
    if not state.ledger.check(workload.queue, accel, floor * per).ok:
        return False
    if not state.placer.may_fit(workload, accel, floor):
        return False
    return state.placer.can_place(workload, accel, floor)


def _apply(state: CycleState, unit: _Unit) -> None:
    run = unit.run
    if unit.preempt:
        unit.released = list(run.placements)
        run.evicted = True
    else:
        unit.released = [run.placements[-1]]
    state.release(run, unit.released)


def _undo(state: CycleState, unit: _Unit) -> None:
    state.restore(unit.run, unit.released)
    if unit.preempt:
        unit.run.evicted = False
    unit.released = []


def _single_victim(
    state: CycleState,
    workload: Workload,
    accel: str,
    floor: int,
    units: list[_Unit],
    applied: list[_Unit],
) -> list[_Unit]:
    """Greedy order can pick two small victims where one larger one of no higher priority
    would do: prefer one victim when it is enough (lowest priority, newest first)."""
    ceiling = max(u.key[0] for u in applied)
    for unit in reversed(applied):
        _undo(state, unit)
    tindex = state.cluster.index(accel)
    free = 0 if tindex is None else tindex.root.free_milli
    deficit = floor * state.per_replica(workload) - free
    for unit in units:
        if not unit.preempt or unit.key[0] > ceiling:
            continue
        held = sum(len(p.devices) * p.milli for p in unit.run.placements)
        if held < deficit:  # one victim must free at least what is missing
            continue
        _apply(state, unit)
        if _fits(state, workload, accel, floor):
            return [unit]
        _undo(state, unit)
    for unit in applied:
        _apply(state, unit)
    return applied


def _units(state: CycleState, workload: Workload, accel: str, entitled: bool) -> Iterator[_Unit]:
    """Victim units in preemption order, generated lazily (most preemptors need one or two,
    and the candidates number in thousands at 10,000 accelerators): for each priority from
    the lowest, first the replicas elastic workloads can give up, then whole workloads."""
    queues = _eligible_queues(state, workload, accel, entitled)
    if not queues:
        return
    profile = state.profile

    def allowed(run: Running) -> bool:
        victim = run.workload
        if queues[victim.queue] and victim.priority >= workload.priority:
            return False  # same queue (or a borrower without reclaim): lower priority only
        return not (run.evicted or run.admitted_now or not victim.preemptible) and bool(
            run.placements
        )

    def merged(elastic: bool) -> Iterator[Running]:
        streams: list[list[Running]] = []
        for queue, lower_only in queues.items():
            runs = state.victim_order(accel, queue, elastic=elastic)
            if lower_only:
                cut = bisect.bisect_left(runs, workload.priority, key=_priority)
                runs = runs[:cut]
            if runs:
                streams.append(runs)
        return (run for run in heapq.merge(*streams, key=_order_key) if allowed(run))

    shrinkers = merged(True) if profile.elastic else iter(())
    wholes = merged(False)
    next_shrinker = next(shrinkers, None)
    next_whole = next(wholes, None)
    while next_shrinker is not None or next_whole is not None:
        band = min(run.workload.priority for run in (next_shrinker, next_whole) if run is not None)
        while next_shrinker is not None and next_shrinker.workload.priority == band:
            run = next_shrinker
            spare = len(run.placements) - run.workload.floor
            for index in range(max(0, spare)):
                key = (band, 0, -run.admitted_at, run.workload.id, index)
                yield _Unit(key, run, False)
            next_shrinker = next(shrinkers, None)
        while next_whole is not None and next_whole.workload.priority == band:
            run = next_whole
            victim = run.workload
            shrinkable = profile.elastic and (victim.elastic or not victim.gang)
            if not shrinkable or victim.floor > 0:
                yield _Unit((band, 1, -run.admitted_at, victim.id, 0), run, True)
            next_whole = next(wholes, None)


def _priority(run: Running) -> int:
    return run.workload.priority


def _order_key(run: Running) -> tuple[int, float, str]:
    return (run.workload.priority, -run.admitted_at, run.workload.id)


def find_victims(
    state: CycleState, workload: Workload, accel: str, floor: int
) -> VictimPlan | None:
    """Release the fewest, cheapest victims that let ``floor`` replicas of ``workload`` fit
    on ``accel``; None (and nothing changed) if no allowed set does."""
    per = state.per_replica(workload)
    entitled = state.ledger.within_guarantee(workload.queue, accel, floor * per)
    stream = islice(_units(state, workload, accel, entitled), state.profile.max_preemption_units)
    units: list[_Unit] = []  # the units looked at so far, in order
    applied: list[_Unit] = []
    found = False
    for unit in stream:
        units.append(unit)
        if unit.run.evicted:  # a shrink unit after its workload was preempted whole
            continue
        if unit.preempt:
            # preempting whole supersedes this workload's shrink units already applied
            for earlier in [u for u in applied if u.run is unit.run and not u.preempt]:
                _undo(state, earlier)
                applied.remove(earlier)
        _apply(state, unit)
        applied.append(unit)
        if _fits(state, workload, accel, floor):
            found = True
            break
    if not found:
        for unit in reversed(applied):
            _undo(state, unit)
        return None
    # minimise: first put back, at once, every victim away from the nodes the preemptor
    # would use (checked once); then each remaining one the preemptor does not need,
    # oldest/highest first
    nodes = state.placer.planned_nodes(workload, accel, floor) or set()
    away = [u for u in applied if not any(p.node in nodes for p in u.released)]
    if away and len(away) < len(applied):
        for unit in reversed(away):
            _undo(state, unit)
        if _fits(state, workload, accel, floor):
            applied = [u for u in applied if u not in away]
        else:
            for unit in away:
                _apply(state, unit)
    for unit in sorted(applied[:-1], key=lambda u: u.key, reverse=True):
        _undo(state, unit)
        if _fits(state, workload, accel, floor):
            applied.remove(unit)
        else:
            _apply(state, unit)
    if sum(1 for u in applied if u.preempt) > 1:
        ceiling = max(u.key[0] for u in applied)
        for unit in stream:  # the rest of the ceiling's priority band
            if unit.key[0] > ceiling:
                break
            units.append(unit)
        applied = _single_victim(state, workload, accel, floor, units, applied)
    preempted = [u.run for u in applied if u.preempt]
    shrunk: dict[str, list[Placement]] = {}
    for unit in applied:
        if not unit.preempt:
            shrunk.setdefault(unit.run.workload.id, []).extend(unit.released)
    return VictimPlan(preempted, shrunk, entitled, applied)
