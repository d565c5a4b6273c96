"""The cluster state kept between cycles, for a driver that knows what changed.

``run_cycle(snapshot, now, profile)`` rebuilds free capacity, quota usage and the running
set from the snapshot every time: at 10,000 accelerators that is milliseconds before the
first decision, which a live control plane pays once a second but a simulator replaying a
month of events cannot pay tens of thousands of times. :class:`Scheduler` keeps that state,
is told what changed (a workload submitted, finished or resized, a node's health), and runs
the very same cycle code on it.

Its contract, checked by the simulator's parity tests: ``scheduler.cycle(now)`` returns the
same :class:`~baige.sched.CycleResult` as ``run_cycle(scheduler.snapshot(), now, profile)``
would, and afterwards holds the state ``apply_decisions`` would give. To keep that exact, the
orders a fresh cycle would see are restored before each cycle: best-fit buckets in node order
(the only index whose order a cycle reads and changes), the workload mix in snapshot order,
and a node's accelerator type is re-indexed from scratch when a node changes health.

Unlike ``run_cycle``, which tolerates inconsistent snapshots with warnings, it refuses
inconsistent input (a replica on a busy device, an unknown node) with ``ValueError``.
"""

from __future__ import annotations

import bisect
import heapq
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from baige.sched.cluster import ClusterState, Domain, NodeSlot, OverAllocationError, TypeIndex
from baige.sched.cycle import _Cycle, access_shares, request_shape
from baige.sched.decisions import Admit, CycleResult, Grow, Preempt, Shrink
from baige.sched.model import (
    MILLI,
    Assignment,
    Health,
    Node,
    Placement,
    Queue,
    Snapshot,
    Workload,
)
from baige.sched.placement import Placer
from baige.sched.profile import BAIGE, Profile
from baige.sched.quota import QuotaLedger
from baige.sched.state import CycleState, Running

__all__ = ["Scheduler"]

_Shape = tuple[int, int]


class _TrackedCluster(ClusterState):
    """Free capacity that lives across cycles and can put its bucket order back."""

    def __init__(self, nodes: Iterable[Node], depth: int) -> None:
        super().__init__(nodes, depth)
        self.unsorted: set[tuple[str, int]] = set()  # (type, avail) buckets out of node order

    def _move(self, slot: NodeSlot, old_avail: int) -> None:
        new_avail = slot.avail
        if new_avail != old_avail and slot.indexed and new_avail > 0:
            bucket = self.types[slot.node.accel_type].buckets[new_avail]
            if bucket and next(reversed(bucket)) > slot.idx:
                self.unsorted.add((slot.node.accel_type, new_avail))
        super()._move(slot, old_avail)

    def restore_order(self) -> None:
        """Best-fit buckets in node order, as a fresh build has them (bucket 0, never
        iterated, is left alone)."""
        for accel, avail in self.unsorted:
            tindex = self.types.get(accel)
            if tindex is not None and avail < len(tindex.buckets):
                bucket = tindex.buckets[avail]
                tindex.buckets[avail] = dict(sorted(bucket.items()))
        self.unsorted.clear()

    def reindex(self, accel: str) -> None:
        """Rebuild one type's index from its nodes' current free capacity, exactly as a
        fresh :class:`ClusterState` would."""
        slots = [s for s in self.slots if s.node.accel_type == accel]
        ready = [s for s in slots if s.node.schedulable]
        for slot in slots:
            slot.indexed = False
            slot.domains = ()
        self.unsorted = {key for key in self.unsorted if key[0] != accel}
        if not ready:
            self.types.pop(accel, None)
            return
        tindex = TypeIndex(accel, max(s.node.devices for s in ready), self.depth)
        self.types[accel] = tindex
        for slot in ready:
            slot.indexed = True
            self._index(slot)
        tindex.partial.sort()

    def node_changed(self, slot: NodeSlot) -> None:
        """Take a node out of its type's index or put it back (its health changed), leaving
        every index as a fresh build would have it. Rebuilds the type only when the largest
        node size of the type changes (the histograms are sized by it)."""
        accel = slot.node.accel_type
        tindex = self.types.get(accel)
        if tindex is None or slot.node.devices > tindex.max_devices:
            self.reindex(accel)
            return
        if slot.indexed and not slot.node.schedulable:
            others = (s.node.devices for s in tindex.root.nodes if s is not slot)
            if max(others, default=0) != tindex.max_devices:
                self.reindex(accel)
                return
            self._unindex(tindex, slot)
        elif not slot.indexed and slot.node.schedulable:
            self._index_in_order(tindex, slot)
        tindex.generation += 1

    def _path_keys(self, slot: NodeSlot) -> list[tuple[str, ...]]:
        padded = (*slot.node.topology, *("-",) * self.depth)[: self.depth]
        return [padded[: level + 1] for level in range(self.depth)]

    def _unindex(self, tindex: TypeIndex, slot: NodeSlot) -> None:
        avail = slot.avail
        free = sum(slot.free)
        for domain in slot.domains:
            domain.nodes.remove(slot)
            domain.hist[avail] -= 1
            domain.free_milli -= free
            domain.capacity_milli -= slot.node.devices * MILLI
            domain.changed()
        del tindex.buckets[avail][slot.idx]
        for device, left in enumerate(slot.free):
            if 0 < left < MILLI:
                del tindex.partial[bisect.bisect_left(tindex.partial, (left, slot.idx, device))]
        keys = self._path_keys(slot)
        for level in range(self.depth, 0, -1):  # domains left empty do not exist in a fresh build
            domain = slot.domains[level]
            if not domain.nodes:
                del tindex.levels[level - 1][keys[level - 1]]
                assert domain.parent is not None
                domain.parent.children.remove(domain)
        slot.indexed = False
        slot.domains = ()
        if not tindex.root.nodes:
            del self.types[slot.node.accel_type]
            return
        self._domain_order(tindex)

    def _index_in_order(self, tindex: TypeIndex, slot: NodeSlot) -> None:
        path: list[Domain] = [tindex.root]
        for level, key in enumerate(self._path_keys(slot)):
            domain = tindex.levels[level].get(key)
            if domain is None:
                domain = Domain(level + 1, "/".join(key), tindex.max_devices, path[-1])
                tindex.levels[level][key] = domain
                path[-1].children.append(domain)
            path.append(domain)
        slot.domains = tuple(path)
        slot.indexed = True
        avail = slot.avail
        for domain in path:
            bisect.insort(domain.nodes, slot, key=_node_order)
            domain.hist[avail] += 1
            domain.free_milli += sum(slot.free)
            domain.capacity_milli += slot.node.devices * MILLI
            domain.changed()
        bucket = tindex.buckets[avail]
        if avail > 0 and bucket and next(reversed(bucket)) > slot.idx:
            self.unsorted.add((slot.node.accel_type, avail))
        bucket[slot.idx] = slot
        for device, left in enumerate(slot.free):
            if 0 < left < MILLI:
                bisect.insort(tindex.partial, (left, slot.idx, device))
        self._domain_order(tindex)

    @staticmethod
    def _domain_order(tindex: TypeIndex) -> None:
        """Domains in the order a fresh build creates them: by their first node."""
        for level, domains in enumerate(tindex.levels):
            tindex.levels[level] = dict(sorted(domains.items(), key=lambda kv: kv[1].nodes[0].idx))
        stack = [tindex.root]
        while stack:
            domain = stack.pop()
            domain.children.sort(key=lambda child: child.nodes[0].idx)
            stack.extend(domain.children)


def _node_order(slot: NodeSlot) -> int:
    return slot.idx


@dataclass(slots=True)
class _KeptState(CycleState):
    """Cycle state that remembers the replica order of runs a cycle released from.

    A preemption attempt releases a victim's last replica and restores it at the end of the
    list when the attempt is undone; ``apply_decisions`` never reorders. Which replicas a
    later shrink takes depends on that order, so it is put back after each cycle."""

    touched: dict[int, tuple[Running, list[Placement]]] = field(default_factory=dict)

    def release(self, run: Running, placements: list[Placement]) -> None:
        if id(run) not in self.touched:
            self.touched[id(run)] = (run, list(run.placements))
        CycleState.release(self, run, placements)


class _Mix:
    """``workload_mix`` of the live workloads, kept up to date, in snapshot order."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.count: dict[_Shape, int] = {}
        self.cpu: dict[_Shape, int] = {}  # host CPU milli asked, summed over replicas
        self.first: dict[_Shape, list[int]] = {}  # heap of sequence numbers (lazy deletion)
        self.shape_of: dict[int, _Shape] = {}
        self._cached: dict[_Shape, float] | None = {}
        self._host: dict[_Shape, float] | None = {}
        self.tracks_host = "host-resources" in profile.filters
        self.types: dict[_Shape, Counter[tuple[str, ...]]] = {}  # replicas per accepted types
        self._access: tuple[tuple[str, ...], dict[_Shape, dict[str, float]]] | None = None

    def shape(self, workload: Workload) -> _Shape:
        return request_shape(workload, self.profile)

    def add(self, seq: int, workload: Workload) -> None:
        shape = self.shape(workload)
        self.count[shape] = self.count.get(shape, 0) + max(1, workload.replicas)
        self.cpu[shape] = self.cpu.get(shape, 0) + workload.request.cpu_milli * max(
            1, workload.replicas
        )
        heapq.heappush(self.first.setdefault(shape, []), seq)
        self.shape_of[seq] = shape
        self.types.setdefault(shape, Counter())[workload.accel_types] += max(1, workload.replicas)
        self._cached = self._host = self._access = None

    def remove(self, seq: int, workload: Workload) -> None:
        shape = self.shape_of.pop(seq)
        self.count[shape] -= max(1, workload.replicas)
        self.cpu[shape] -= workload.request.cpu_milli * max(1, workload.replicas)
        by_types = self.types[shape]
        by_types[workload.accel_types] -= max(1, workload.replicas)
        if by_types[workload.accel_types] <= 0:
            del by_types[workload.accel_types]
        if not self.count[shape]:
            del self.count[shape]
            del self.cpu[shape]
            del self.types[shape]
        self._cached = self._host = self._access = None

    def access(self, types: Iterable[str]) -> dict[_Shape, dict[str, float]]:
        """``workload_access`` of the live workloads on a cluster of ``types``."""
        kinds = tuple(sorted(types))
        if self._access is None or self._access[0] != kinds:
            self._access = (kinds, access_shares(self.types, kinds))
        return self._access[1]

    def host(self) -> dict[_Shape, float]:
        """``workload_host`` of the live workloads."""
        if self._host is None:
            self._host = (
                {s: self.cpu[s] / n for s, n in self.count.items() if self.cpu[s]}
                if self.tracks_host
                else {}
            )
        return self._host

    def mix(self) -> dict[_Shape, float]:
        if self._cached is not None:
            return self._cached
        order: list[tuple[int, _Shape]] = []
        for shape in self.count:
            heap = self.first[shape]
            while self.shape_of.get(heap[0]) != shape:
                heapq.heappop(heap)
            order.append((heap[0], shape))
        order.sort()
        total = sum(self.count.values())
        self._cached = {shape: self.count[shape] / total for _, shape in order}
        return self._cached


class Scheduler:
    """Cluster state between cycles: submit, remove, update and set health, then cycle."""

    def __init__(
        self,
        nodes: Iterable[Node],
        queues: Iterable[Queue],
        profile: Profile = BAIGE,
        topology_levels: tuple[str, ...] = ("block", "rack"),
    ) -> None:
        self.profile = profile
        self.levels = tuple(topology_levels)
        self.queues = tuple(queues)
        self.cluster = _TrackedCluster(nodes, len(self.levels))
        capacity = {accel: self.cluster.capacity_milli(accel) for accel in self.cluster.types}
        self.ledger = QuotaLedger(self.queues, capacity, borrowing=profile.borrowing)
        self.cluster.build_indexes()
        self.state = _KeptState(0.0, profile, self.cluster, self.ledger, self._placer({}))
        self.pending: dict[str, Workload] = {}
        self.seq: dict[str, int] = {}
        self._next_seq = 0
        self._mix = _Mix(profile)
        self._failed = {s.node.name for s in self.cluster.slots if s.node.health is Health.FAILED}
        self._newly_failed = set(self._failed)  # the first cycle handles work on them
        self._resized: set[str] = set()  # running workloads whose size changed since a cycle
        self._short: set[str] = set()  # running workloads with fewer replicas than wanted
        self._dead = 0  # finished or evicted runs still in the victim lists

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot, profile: Profile = BAIGE) -> Scheduler:
        """The state a cycle on ``snapshot`` starts from (workloads keep snapshot order)."""
        scheduler = cls(snapshot.nodes, snapshot.queues, profile, snapshot.topology_levels)
        for workload in snapshot.workloads:
            scheduler.submit(workload)
        return scheduler

    def _placer(
        self,
        mix: dict[_Shape, float],
        host: dict[_Shape, float] | None = None,
        access: dict[_Shape, dict[str, float]] | None = None,
    ) -> Placer:
        return Placer(self.cluster, self.profile, self.levels, mix, host, access)

    # -- what the driver tells it ------------------------------------------------------------

    def submit(self, workload: Workload) -> None:
        """A new workload: pending, or running if it carries an assignment."""
        if workload.id in self.seq:
            raise ValueError(f"workload {workload.id!r} is already known")
        assignment = workload.assignment
        if assignment is not None:
            self._start(replace(workload, assignment=None), assignment)
        else:
            self.pending[workload.id] = workload
        self.seq[workload.id] = self._next_seq
        self._mix.add(self._next_seq, workload)
        self._next_seq += 1

    def _start(self, workload: Workload, assignment: Assignment) -> None:
        if not self.ledger.known(workload.queue):
            raise ValueError(f"workload {workload.id}: queue {workload.queue!r} is unknown")
        request = workload.request
        taken: list[NodeSlot] = []
        try:
            for placement in assignment.placements:
                slot = self.cluster.slot(placement.node)
                if slot is None or (
                    slot.node.accel_type != assignment.accel_type
                    and not (workload.mixes and slot.node.accel_type in workload.accel_types)
                ):
                    raise OverAllocationError(f"node {placement.node!r} is not a usable node")
                self.cluster.take(
                    slot, placement.devices, placement.milli, request.cpu_milli, request.memory_mib
                )
                taken.append(slot)
        except OverAllocationError as err:
            for slot, placement in zip(taken, assignment.placements, strict=False):
                self.cluster.give(
                    slot, placement.devices, placement.milli, request.cpu_milli, request.memory_mib
                )
            raise ValueError(f"workload {workload.id}: {err}") from None
        run = Running(
            workload, assignment.accel_type, [], assignment.admitted_at, assignment.expected_end
        )
        self.state.allocate(run, list(assignment.placements))
        self.state.add_running(run)  # after allocate: a mixed gang registers on each type
        self._track_short(run)

    def remove(self, workload_id: str) -> Workload:
        """A workload that ended or was cancelled: its capacity and quota are freed. Returns
        it as it was (with its assignment, if it was running)."""
        seq = self.seq.pop(workload_id, None)
        if seq is None:
            raise KeyError(f"workload {workload_id!r} is not known")
        pending = self.pending.pop(workload_id, None)
        if pending is not None:
            self._mix.remove(seq, pending)
            return pending
        run = self.state.running.pop(workload_id)
        self._mix.remove(seq, run.workload)
        assignment = self._assignment(run)
        self.state.release(run, list(run.placements))
        run.evicted = True
        self._dead += 1
        self._short.discard(workload_id)
        self._resized.discard(workload_id)
        return replace(run.workload, assignment=assignment)

    def update(self, workload: Workload) -> None:
        """A known workload with new settings (an inference service scaled, a pending job
        reprioritised). A running workload may change only its size (replicas and their
        floor), and only if it is not a training gang (whose victim bookkeeping depends on
        its shape)."""
        seq = self.seq.get(workload.id)
        if seq is None:
            raise KeyError(f"workload {workload.id!r} is not known")
        workload = replace(workload, assignment=None)
        if workload.id in self.pending:
            self._mix.remove(seq, self.pending[workload.id])
            self.pending[workload.id] = workload
            self._mix.add(seq, workload)
            return
        run = self.state.running[workload.id]
        old = run.workload
        resized = replace(old, replicas=workload.replicas, min_replicas=workload.min_replicas)
        if old.gang or resized != workload:
            raise ValueError(
                f"workload {workload.id}: only the replicas of a running service may change"
            )
        self._mix.remove(seq, old)
        run.workload = workload
        self._mix.add(seq, workload)
        self._resized.add(workload.id)
        self._track_short(run)

    def set_health(self, node: str, health: Health) -> None:
        """A node failed, was repaired, or was cordoned or uncordoned. Work on a failed node
        is requeued or shrunk by the next cycle, as ``run_cycle`` would do."""
        slot = self.cluster.slot(node)
        if slot is None:
            raise KeyError(f"node {node!r} is not known")
        if slot.node.health is health:
            return
        slot.node = replace(slot.node, health=health)
        accel = slot.node.accel_type
        self.cluster.node_changed(slot)
        tindex = self.cluster.types.get(accel)
        capacity = 0 if tindex is None else tindex.root.capacity_milli
        if capacity:
            self.ledger.capacity[accel] = capacity
        else:
            self.ledger.capacity.pop(accel, None)
        if health is Health.FAILED:
            self._failed.add(node)
            self._newly_failed.add(node)
        else:
            self._failed.discard(node)

    # -- what the driver reads ---------------------------------------------------------------

    def assignment(self, workload_id: str) -> Assignment | None:
        run = self.state.running.get(workload_id)
        return None if run is None else self._assignment(run)

    @staticmethod
    def _assignment(run: Running) -> Assignment:
        return Assignment(run.accel, tuple(run.placements), run.admitted_at, run.expected_end)

    def nodes(self) -> Iterator[tuple[Node, tuple[int, ...]]]:
        """Every node and the free milli of each of its devices."""
        for slot in self.cluster.slots:
            yield slot.node, tuple(slot.free)

    def snapshot(self) -> Snapshot:
        """The snapshot this state stands for: what ``run_cycle`` would be given."""
        live: list[tuple[int, Workload]] = []
        for workload_id, workload in self.pending.items():
            live.append((self.seq[workload_id], workload))
        for workload_id, run in self.state.running.items():
            running = replace(run.workload, assignment=self._assignment(run))
            live.append((self.seq[workload_id], running))
        live.sort(key=lambda item: item[0])
        return Snapshot(
            nodes=tuple(slot.node for slot in self.cluster.slots),
            queues=self.queues,
            workloads=tuple(w for _, w in live),
            topology_levels=self.levels,
        )

    # -- the cycle ----------------------------------------------------------------------------

    def cycle(self, now: float) -> CycleResult:
        """Run one cycle at ``now``; its decisions are applied to the kept state."""
        state = self.state
        self.cluster.restore_order()
        state.now = now
        state.warnings = list(self.ledger.warnings)
        state.placer = self._placer(
            self._mix.mix(), self._mix.host(), self._mix.access(self.cluster.types)
        )
        running = state.running
        failure_runs: list[Running] = []
        if self._newly_failed & self._failed:
            failure_runs = [
                run
                for run in running.values()
                if any(p.node in self._failed for p in run.placements)
            ]
            failure_runs.sort(key=lambda run: self.seq[run.workload.id])
        self._newly_failed.clear()
        scale_runs = sorted(
            (running[w] for w in self._resized if w in running),
            key=lambda run: self.seq[run.workload.id],
        )
        self._resized.clear()
        cycle = _Cycle(
            state,
            self.pending.values(),
            self._failed,
            failure_runs=failure_runs,
            scale_runs=scale_runs,
            grow_runs=[run for w in self._short if (run := running.get(w)) is not None],
        )
        result = cycle.run()
        self._commit(cycle, result)
        return result

    def _commit(self, cycle: _Cycle, result: CycleResult) -> None:
        """Bring the kept state to what ``apply_decisions`` gives: holds lifted, evicted
        workloads back to pending, this cycle's admissions ordinary running work."""
        state = self.state
        for holds in cycle.holds.values():
            for hold in holds:
                hold.lift(state)
        if state.touched:
            self._restore_replica_order(result)
        for decision in result.decisions:
            workload_id = decision.workload
            if isinstance(decision, Preempt):
                self._dead += 1
                run = state.running.get(workload_id)
                if run is not None and run.evicted:  # not readmitted in this very cycle
                    del state.running[workload_id]
                    self._short.discard(workload_id)
                    self.pending[workload_id] = run.workload
                continue
            run = state.running[workload_id]
            if isinstance(decision, Admit):
                self.pending.pop(workload_id, None)
                run.admitted_now = False
            if isinstance(decision, Admit | Shrink | Grow):
                self._track_short(run)
        if self._dead > max(256, len(state.running)):
            state.compact()
            self._dead = 0

    def _restore_replica_order(self, result: CycleResult) -> None:
        state = self.state
        changes: dict[str, list[Shrink | Grow]] = {}
        for decision in result.decisions:
            if isinstance(decision, Shrink | Grow):
                changes.setdefault(decision.workload, []).append(decision)
        for run, before in state.touched.values():
            if run.evicted:
                continue
            order = before
            for change in changes.get(run.workload.id, ()):
                if isinstance(change, Shrink):
                    for placement in change.remove:
                        order.remove(placement)
                else:
                    order.extend(change.add)
            if len(order) != len(run.placements):
                raise AssertionError(f"{run.workload.id}: replicas lost track of")  # a bug
            run.placements[:] = order
        state.touched.clear()

    def _track_short(self, run: Running) -> None:
        if len(run.placements) < run.workload.replicas:
            self._short.add(run.workload.id)
        else:
            self._short.discard(run.workload.id)
