"""Reservations for blocked gangs, so that backfill never delays them.

Without a reservation, a stream of small jobs can keep a large gang waiting forever: every
time a few cards free up, a small job takes them. So the first gang blocked by capacity
(per accelerator type) gets a reservation: the smallest topology domain where it can start
earliest, judged from running workloads' expected ends (EASY backfill, as in Slurm). The
whole cards already free on the chosen nodes are *held*; later workloads may use them only
if they are sure to finish before the reservation starts (their time limit says so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from baige.sched.cluster import NodeSlot, TypeIndex
from baige.sched.decisions import Reservation
from baige.sched.model import MILLI, Workload
from baige.sched.state import CycleState

__all__ = ["Hold", "plan_reservation"]


@dataclass(slots=True)
class Hold:
    """A reservation as applied to the cycle: cards held per node, liftable for backfill."""

    reservation: Reservation
    held: list[tuple[NodeSlot, int]]

    def lift(self, state: CycleState) -> None:
        for slot, count in self.held:
            state.cluster.hold(slot, -count)

    def apply(self, state: CycleState) -> None:
        for slot, count in self.held:
            state.cluster.hold(slot, count)


def _releases(state: CycleState, accel: str) -> dict[int, list[tuple[float, int]]]:
    """Per node index: (expected end, whole cards returned) of each running replica."""
    out: dict[int, list[tuple[float, int]]] = {}
    by_name = state.cluster.by_name
    for run in state.runs_on(accel):
        if run.evicted:
            continue
        end = math.inf if run.expected_end is None else run.expected_end
        for placement in run.placements:
            slot = by_name.get(placement.node)
            if slot is None or not slot.indexed:
                continue
            if placement.milli == MILLI:
                cards = len(placement.devices)
            else:  # a shared card comes back whole only if this replica is its last user
                cards = sum(1 for d in placement.devices if slot.free[d] + placement.milli == MILLI)
            if cards:
                out.setdefault(slot.idx, []).append((end, cards))
    return out


class _Search:
    """What one reservation search shares between the domains it tries: the release events,
    sorted once (the largest domains use them instead of sorting their own), and how many
    replicas each domain holds when empty (a domain too small is skipped at once)."""

    __slots__ = ("_sorted", "capacity", "k", "releases")

    def __init__(self, releases: dict[int, list[tuple[float, int]]], k: int) -> None:
        self.releases = releases
        self.k = k
        self.capacity: dict[int, int] = {}
        self._sorted: list[tuple[float, int, int]] | None = None

    def events(self, free: dict[int, int], limit: float) -> list[tuple[float, int, int]]:
        """Release events on the nodes of ``free`` up to ``limit``, by (end, node, cards)."""
        releases = self.releases
        if len(free) <= _SHARED_SORT:
            return sorted(
                (end, idx, cards)
                for idx in free
                for end, cards in releases.get(idx, ())
                if end <= limit
            )
        if self._sorted is None:
            self._sorted = sorted(
                (end, idx, cards) for idx, items in releases.items() for end, cards in items
            )
        out = []
        for event in self._sorted:
            if event[0] > limit:
                break
            if event[1] in free:
                out.append(event)
        return out


_SHARED_SORT = 64  # domains with more nodes filter the shared sorted list


def _earliest(
    slots: list[NodeSlot],
    count: int,
    search: _Search,
    now: float,
    limit: float = math.inf,
) -> tuple[float, dict[int, int]] | None:
    """When ``count`` replicas of ``k`` cards fit on ``slots`` (if no later than ``limit``),
    and the whole cards free on each node by then."""
    k = search.k
    if len(slots) == 1:  # the per-node level asks this for every node: keep it cheap
        return _earliest_one(slots[0], k, count, search.releases, now, limit)
    most = search.capacity.get(id(slots))
    if most is None:
        most = search.capacity[id(slots)] = sum(slot.node.devices // k for slot in slots)
    if most < count:  # then fewer fit now, too
        return None
    free = {slot.idx: slot.avail for slot in slots}
    fit = sum(a // k for a in free.values())
    if fit >= count:
        return now, free
    for end, idx, cards in search.events(free, limit):
        before = free[idx] // k
        free[idx] += cards
        fit += free[idx] // k - before
        if fit >= count:
            return end, free
    return None


def _earliest_one(
    slot: NodeSlot,
    k: int,
    count: int,
    releases: dict[int, list[tuple[float, int]]],
    now: float,
    limit: float,
) -> tuple[float, dict[int, int]] | None:
    """:func:`_earliest` for one node."""
    avail = slot.avail
    if avail // k >= count:
        return now, {slot.idx: avail}
    if slot.node.devices // k < count:
        return None
    mine = releases.get(slot.idx)
    if not mine:
        return None
    for end, cards in sorted(item for item in mine if item[0] <= limit):
        avail += cards
        if avail // k >= count:
            return end, {slot.idx: avail}
    return None


def plan_reservation(
    state: CycleState,
    workload: Workload,
    accel: str,
    count: int,
    eligible: frozenset[int] | None,
    required: int,
) -> Hold | None:
    """Pick where and when the blocked gang starts, and hold the cards free there now.

    The earliest start is decided at the outermost level the gang may span (a larger domain
    never starts later than one inside it); then the smallest domain that starts as early
    is taken, so the reservation stays as local as waiting allows.
    """
    tindex: TypeIndex | None = state.cluster.index(accel)
    if tindex is None:
        return None
    k = state.placer.effective_request(workload).devices
    releases = _releases(state, accel)
    depth = state.cluster.depth

    def usable(slots: list[NodeSlot]) -> list[NodeSlot]:
        return slots if eligible is None else [s for s in slots if s.idx in eligible]

    levels: list[list[list[NodeSlot]]] = []  # deepest first
    if count * k <= tindex.max_devices:
        levels.append([[s] for s in usable(tindex.root.nodes)])
    if required <= depth:
        for level in range(depth, max(required, 1) - 1, -1):
            levels.append([usable(d.nodes) for d in tindex.levels[level - 1].values()])
        if required == 0:
            levels.append([usable(tindex.root.nodes)])
    if not levels:
        return None
    search = _Search(releases, k)  # the lists above live until the end of this call
    outermost: dict[int, tuple[float, dict[int, int]] | None] = {}
    for slots in levels[-1]:
        outermost[id(slots)] = _earliest(slots, count, search, state.now)
    starts = [found[0] for found in outermost.values() if found is not None]
    if not starts:
        return None
    earliest = min(starts)
    chosen: tuple[list[NodeSlot], dict[int, int], float] | None = None
    for domains in levels:
        for slots in domains:
            if id(slots) in outermost:  # searched above: found then if it starts by earliest
                found = outermost[id(slots)]
                if found is not None and found[0] > earliest:
                    found = None
            else:
                found = _earliest(slots, count, search, state.now, earliest)
            if found is not None:
                chosen = (slots, found[1], found[0])
                break
        if chosen is not None:
            break
    if chosen is None:
        return None
    slots, free_then, start = chosen
    plan: list[tuple[NodeSlot, int]] = []
    remaining = count
    for slot in sorted(slots, key=lambda s: (-(free_then[s.idx] // k), s.idx)):
        if remaining <= 0:
            break
        replicas = min(remaining, free_then[slot.idx] // k)
        if replicas <= 0:
            continue
        remaining -= replicas
        held_now = min(slot.avail, replicas * k)
        plan.append((slot, held_now))
    reservation = Reservation(
        workload=workload.id,
        accel_type=accel,
        nodes=tuple((slot.node.name, held) for slot, held in plan),
        start=None if math.isinf(start) else start,
    )
    hold = Hold(reservation, [(slot, held) for slot, held in plan if held > 0])
    hold.apply(state)
    return hold
