"""The mutable state one cycle works on: free capacity, quota usage, running workloads.

Preemption, backfill and admission all change it through the same two operations
(:meth:`CycleState.allocate` and :meth:`CycleState.release`), so capacity and quota usage
never drift apart, and every tentative change can be undone exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from baige.sched.cluster import ClusterState
from baige.sched.model import Kind, Mix, Placement, Workload
from baige.sched.placement import Placer
from baige.sched.profile import Profile
from baige.sched.quota import QuotaLedger

__all__ = ["CycleState", "Running"]


_NEVER = Mix.NEVER


def _milli(placements: list[Placement]) -> int:
    return sum(len(p.devices) * p.milli for p in placements)


@dataclass(slots=True)
class Running:
    """A workload holding capacity during the cycle (running, or admitted in this cycle)."""

    workload: Workload
    accel: str
    placements: list[Placement]
    admitted_at: float
    expected_end: float | None = None
    admitted_now: bool = False
    evicted: bool = False
    lost: list[Placement] = field(default_factory=list)  # on nodes no longer in the snapshot


@dataclass(slots=True)
class CycleState:
    now: float
    profile: Profile
    cluster: ClusterState
    ledger: QuotaLedger
    placer: Placer
    running: dict[str, Running] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    _by_queue: dict[tuple[str, str, bool], list[Running]] = field(default_factory=dict)
    _queues: dict[str, dict[str, None]] = field(default_factory=dict)
    _dirty: set[tuple[str, str, bool]] = field(default_factory=set)
    _on_accel: dict[str, list[Running]] = field(default_factory=dict)

    def add_running(self, run: Running) -> None:
        """Track a workload that holds (or is about to hold) capacity on ``run.accel`` (and,
        for a gang spanning types, on every type its placements are on: it is a victim
        candidate wherever it holds cards, and is preempted as one)."""
        workload = run.workload
        self.running[workload.id] = run
        if workload.mix is _NEVER:
            accels: tuple[str, ...] = (run.accel,)
        else:
            accels = tuple(self.types_of(run, run.placements))
        for accel in accels:
            on_accel = self._on_accel.get(accel)
            if on_accel is None:
                on_accel = self._on_accel[accel] = []
            on_accel.append(run)
            if not workload.preemptible:
                continue  # the lists below are for choosing victims
            queue = workload.queue
            key = (accel, queue, False)
            runs = self._by_queue.get(key)
            if runs is None:
                runs = self._by_queue[key] = []
                self._queues.setdefault(accel, {})[queue] = None
            runs.append(run)
            self._dirty.add(key)
            # a gang spanning types gives up cards only as a whole (a shrink there could
            # free a card of the wrong type)
            if (workload.elastic and workload.mix is _NEVER) or workload.kind is not Kind.TRAINING:
                key = (accel, queue, True)
                self._by_queue.setdefault(key, []).append(run)
                self._dirty.add(key)

    def types_of(self, run: Running, placements: list[Placement]) -> dict[str, int]:
        """Milli per accelerator type held by ``placements`` of ``run`` (its own type first;
        a node no longer in the cluster counts as ``run.accel``)."""
        held: dict[str, int] = {run.accel: 0}
        for placement in placements:
            slot = self.cluster.slot(placement.node)
            accel = run.accel if slot is None else slot.node.accel_type
            held[accel] = held.get(accel, 0) + len(placement.devices) * placement.milli
        return held

    def compact(self) -> None:
        """Forget evicted runs (kept state only: a cycle skips them, but a driver that keeps
        the state for a month of simulated time would see them pile up)."""
        live = [run for run in self.running.values() if not run.evicted]
        self.running.clear()
        self._by_queue.clear()
        self._queues.clear()
        self._dirty.clear()
        self._on_accel.clear()
        for run in live:
            self.add_running(run)

    def runs_on(self, accel: str) -> list[Running]:
        """Every workload holding (or admitted to) capacity on ``accel`` this cycle."""
        return self._on_accel.get(accel, [])

    def queues_on(self, accel: str) -> list[str]:
        """Queues with preemptible workloads holding capacity on ``accel``."""
        return list(self._queues.get(accel, {}))

    def victim_order(self, accel: str, queue: str, *, elastic: bool = False) -> list[Running]:
        """A queue's preemptible workloads on ``accel`` (only those that can shrink, if
        ``elastic``), lowest priority then newest first."""
        key = (accel, queue, elastic)
        runs = self._by_queue.get(key, [])
        if key in self._dirty:
            runs.sort(key=lambda r: (r.workload.priority, -r.admitted_at, r.workload.id))
            self._dirty.discard(key)
        return runs

    def per_replica(self, workload: Workload) -> int:
        """Quota charged per replica, in milli (a whole card per share without co-location)."""
        return self.placer.effective_request(workload).total_milli

    def allocate(self, run: Running, placements: list[Placement]) -> None:
        """Charge quota for placements already taken on the cluster by the placer (to each
        placement's own type when the gang spans types)."""
        run.placements.extend(placements)
        if run.workload.mix is _NEVER:  # the hot path (preemption allocates and undoes a lot)
            self.ledger.add(run.workload.queue, run.accel, _milli(placements))
        else:
            self._charge_per_type(run, placements, 1)

    def _charge_per_type(self, run: Running, placements: list[Placement], sign: int) -> None:
        for accel, milli in self.types_of(run, placements).items():
            if milli:
                self.ledger.add(run.workload.queue, accel, sign * milli)

    def release(self, run: Running, placements: list[Placement]) -> None:
        """Free placements of a running workload: cluster capacity and quota usage."""
        request = self.placer.effective_request(run.workload)
        for placement in placements:
            run.placements.remove(placement)
            self.cluster.give_placement(placement, request.cpu_milli, request.memory_mib)
        if run.workload.mix is _NEVER:
            self.ledger.add(run.workload.queue, run.accel, -_milli(placements))
        else:
            self._charge_per_type(run, placements, -1)

    def restore(self, run: Running, placements: list[Placement]) -> None:
        """Undo :meth:`release` (the placements must still be free)."""
        request = self.placer.effective_request(run.workload)
        for placement in placements:
            self.cluster.take_placement(placement, request.cpu_milli, request.memory_mib)
        self.allocate(run, placements)
