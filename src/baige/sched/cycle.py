"""One scheduling cycle: snapshot and time in, decisions and reasons out.

The order of work, each step documented where it happens:

1. account what runs; replicas on failed nodes are shrunk away (elastic) or their workload
   is requeued; services scaled down lose their newest replicas;
2. take pending workloads in weighted fair order; for each, try its accepted accelerator
   types in preference order (quota, then placement);
3. if none fits, look for victims (reclaim, priority); if still none, the first blocked gang
   per type gets a reservation, and later workloads may only backfill around it;
4. grow elastic workloads and under-replicated services with what is left.

Pure: no clock, no I/O; the same snapshot and time always give the same result.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Set
from dataclasses import replace

from baige.sched.backfill import Hold, plan_reservation
from baige.sched.cluster import ClusterState, OverAllocationError
from baige.sched.decisions import (
    Admit,
    CycleResult,
    CycleStats,
    Decision,
    Grow,
    Pending,
    Preempt,
    Reason,
    Shrink,
)
from baige.sched.fairness import FairOrder, queue_order_key
from baige.sched.mixed import try_mixed
from baige.sched.model import (
    MILLI,
    Health,
    Mix,
    Placement,
    Snapshot,
    Workload,
    accepted_types,
)
from baige.sched.never_fits import TypeCapacity, never_fits, type_capacities
from baige.sched.placement import Failure, Placer
from baige.sched.preemption import VictimPlan, find_victims, victim_reason
from baige.sched.profile import BAIGE, Profile
from baige.sched.quota import QuotaLedger
from baige.sched.state import CycleState, Running

__all__ = ["run_cycle", "workload_host", "workload_mix"]

_PREEMPTABLE_FAILURES = {Reason.CAPACITY, Reason.QUOTA, Reason.TOPOLOGY}


def request_shape(workload: Workload, profile: Profile) -> tuple[int, int]:
    """``(devices, milli)`` as placed: without co-location a share takes a whole card."""
    request = workload.request
    return (request.devices, request.milli if profile.fractional else MILLI)


def workload_mix(workloads: Iterable[Workload], profile: Profile) -> dict[tuple[int, int], float]:
    """Share of replicas per request shape: the demand the fragmentation score plans for."""
    counts: Counter[tuple[int, int]] = Counter()
    for workload in workloads:
        counts[request_shape(workload, profile)] += max(1, workload.replicas)
    total = sum(counts.values())
    return {shape: count / total for shape, count in counts.items()} if total else {}


def workload_host(workloads: Iterable[Workload], profile: Profile) -> dict[tuple[int, int], float]:
    """Mean host CPU (milli) one replica of each request shape asks for (shapes that ask for
    none are left out): what the fragmentation score needs to see cards starved of CPU."""
    if "host-resources" not in profile.filters:
        return {}
    cpu: Counter[tuple[int, int]] = Counter()
    counts: Counter[tuple[int, int]] = Counter()
    for workload in workloads:
        shape = request_shape(workload, profile)
        replicas = max(1, workload.replicas)
        counts[shape] += replicas
        cpu[shape] += workload.request.cpu_milli * replicas
    return {shape: cpu[shape] / counts[shape] for shape in counts if cpu[shape]}


def access_shares(
    counts: Mapping[tuple[int, int], Mapping[tuple[str, ...], int]], types: Iterable[str]
) -> dict[tuple[int, int], dict[str, float]]:
    """From replica counts per shape and accepted types (``()``: any type), the share of each
    shape's demand that accepts each of the cluster's ``types`` (``"*"``: any other type);
    shapes whose whole demand accepts every type are left out, so that a cluster where
    nothing is restricted pays nothing for it."""
    kinds = tuple(types)
    out: dict[tuple[int, int], dict[str, float]] = {}
    for shape, by_types in counts.items():
        total = sum(by_types.values())
        if total <= 0:
            continue
        anywhere = by_types.get((), 0)
        shares = {"*": anywhere / total}
        for accel in kinds:
            shares[accel] = sum(n for ts, n in by_types.items() if not ts or accel in ts) / total
        if all(shares[accel] >= 1.0 for accel in kinds):
            continue
        out[shape] = shares
    return out


def workload_access(
    workloads: Iterable[Workload], profile: Profile, types: Iterable[str]
) -> dict[tuple[int, int], dict[str, float]]:
    """:func:`access_shares` of ``workloads``: which cards each shape's demand may use."""
    counts: dict[tuple[int, int], Counter[tuple[str, ...]]] = {}
    for workload in workloads:
        shape = request_shape(workload, profile)
        counts.setdefault(shape, Counter())[workload.accel_types] += max(1, workload.replicas)
    return access_shares(counts, types)


def run_cycle(snapshot: Snapshot, now: float, profile: Profile = BAIGE) -> CycleResult:
    """Decide what to admit, preempt, shrink and grow for ``snapshot`` at time ``now``."""
    return _Cycle.from_snapshot(snapshot, now, profile).run()


class _Cycle:
    """One cycle over a :class:`CycleState`.

    ``run_cycle`` builds the state from a snapshot (:meth:`from_snapshot`). A driver that
    keeps the state between cycles (:class:`~baige.sched.incremental.Scheduler`) passes it in,
    with the runs each step must look at (``None``: every running workload, as a fresh
    snapshot needs); the steps themselves are the same code either way.
    """

    def __init__(
        self,
        state: CycleState,
        pending: Iterable[Workload],
        failed: Set[str],
        *,
        failure_runs: list[Running] | None = None,
        scale_runs: list[Running] | None = None,
        grow_runs: Iterable[Running] | None = None,
    ) -> None:
        self.state = state
        self.pending_source = pending
        self.failed = failed
        self.failure_runs = failure_runs
        self.scale_runs = scale_runs
        self.grow_runs = grow_runs
        self.decisions: list[Decision] = []
        self.pending: dict[str, Pending] = {}
        self.holds: dict[str, list[Hold]] = {}
        self.requeued: list[Workload] = []
        self.quota_failures: dict[tuple[str, str], tuple[int, int, Failure]] = {}
        self.capacities: dict[str, TypeCapacity] | None = None  # computed on first need
        self.stats = Counter[str]()

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot, now: float, profile: Profile) -> _Cycle:
        levels = snapshot.topology_levels
        cluster = ClusterState(snapshot.nodes, len(levels))
        capacity = {accel: cluster.capacity_milli(accel) for accel in cluster.types}
        ledger = QuotaLedger(snapshot.queues, capacity, borrowing=profile.borrowing)
        placer = Placer(
            cluster,
            profile,
            levels,
            workload_mix(snapshot.workloads, profile),
            workload_host(snapshot.workloads, profile),
            workload_access(snapshot.workloads, profile, cluster.types),
        )
        state = CycleState(now, profile, cluster, ledger, placer)
        state.warnings.extend(ledger.warnings)
        failed = {n.name for n in snapshot.nodes if n.health is Health.FAILED}
        cycle = cls(state, snapshot.workloads, failed)
        cycle._account_running(snapshot.workloads)
        return cycle

    # -- step 1: what runs -----------------------------------------------------------------

    def _account_running(self, workloads: Iterable[Workload]) -> None:
        """Charge every running replica to the cluster and its queue (usage is summed per
        queue and type first: one ledger update per pair, not per workload)."""
        state = self.state
        usage: Counter[tuple[str, str]] = Counter()
        preload = state.cluster.preload
        for workload in workloads:
            assignment = workload.assignment
            if assignment is None:
                continue
            if workload.id in state.running:
                state.warnings.append(f"workload {workload.id} appears twice; second copy ignored")
                continue
            run = Running(
                workload,
                assignment.accel_type,
                [],
                assignment.admitted_at,
                assignment.expected_end,
            )
            request = workload.request
            cpu, memory = request.cpu_milli, request.memory_mib
            taken = run.placements
            for placement in assignment.placements:
                try:
                    preload(placement, cpu, memory)
                except OverAllocationError as err:
                    if state.cluster.slot(placement.node) is None:
                        run.lost.append(placement)  # its node left the cluster: handled below
                    else:
                        state.warnings.append(f"workload {workload.id}: {err}; replica not counted")
                    continue
                taken.append(placement)
            state.add_running(run)
            if state.ledger.known(workload.queue):
                if workload.mix is not Mix.NEVER:
                    for accel, milli in state.types_of(run, taken).items():
                        usage[(workload.queue, accel)] += milli
                else:
                    usage[(workload.queue, run.accel)] += sum(
                        len(p.devices) * p.milli for p in taken
                    )
            else:
                state.warnings.append(
                    f"workload {workload.id}: queue {workload.queue!r} unknown; usage not charged"
                )
        for (queue, accel), milli in usage.items():
            state.ledger.add(queue, accel, milli)
        state.cluster.build_indexes()

    def _handle_failed_nodes(self) -> None:
        """Replicas on failed nodes, or on nodes no longer in the cluster, are lost: the
        workload shrinks off them (elastic) or is requeued to run elsewhere."""
        state = self.state
        failed = self.failed
        runs = list(state.running.values()) if self.failure_runs is None else self.failure_runs
        for run in runs:
            gone = run.lost
            if not failed and not gone:
                continue
            on_failed = [p for p in run.placements if p.node in failed]
            if not on_failed and not gone:
                continue
            workload = run.workload
            lost = on_failed + gone
            nodes = ", ".join(sorted({p.node for p in lost}))
            keep = len(run.placements) - len(on_failed)
            shrinkable = workload.elastic if workload.gang else True
            if self.state.profile.elastic or not workload.gang:
                shrinkable = shrinkable and keep >= max(workload.floor, 1)
            else:
                shrinkable = False
            self._release(run, on_failed)
            run.lost = []
            if shrinkable:
                self.decisions.append(
                    Shrink(workload.id, tuple(lost), keep, f"node {nodes} failed")
                )
                self.stats["shrunk"] += 1
            else:
                self._release(run, list(run.placements))
                run.evicted = True
                self.decisions.append(
                    Preempt(workload.id, f"node {nodes} failed; requeued to run elsewhere")
                )
                self.stats["preempted"] += 1
                self.requeued.append(replace(workload, assignment=None))

    def _release(self, run: Running, placements: list[Placement]) -> None:
        if self.state.ledger.known(run.workload.queue):
            self.state.release(run, placements)
        else:
            request = self.state.placer.effective_request(run.workload)
            for placement in placements:
                run.placements.remove(placement)
                self.state.cluster.give_placement(placement, request.cpu_milli, request.memory_mib)

    def _scale_down(self) -> None:
        runs = self.state.running.values() if self.scale_runs is None else self.scale_runs
        for run in runs:
            workload = run.workload
            extra = len(run.placements) - workload.replicas
            if run.evicted or extra <= 0:
                continue
            removed = run.placements[-extra:]
            self._release(run, list(removed))
            if run.placements:
                self.decisions.append(
                    Shrink(
                        workload.id,
                        tuple(removed),
                        len(run.placements),
                        f"scaled to {workload.replicas} replicas",
                    )
                )
                self.stats["shrunk"] += 1
            else:
                run.evicted = True
                self.decisions.append(Preempt(workload.id, "scaled to 0 replicas"))

    # -- step 2 and 3: admission -----------------------------------------------------------

    def _sizes(self, workload: Workload) -> tuple[int, int]:
        """(floor, want): the fewest replicas worth starting, and the most wanted."""
        if not workload.gang:
            return min(1, workload.replicas), workload.replicas
        if self.state.profile.elastic:
            return max(1, workload.floor), workload.replicas
        return workload.replicas, workload.replicas

    def _quota_max(self, workload: Workload, accel: str, floor: int, want: int) -> int:
        """The most replicas in [floor, want] the quota allows (it is monotonic)."""
        ledger = self.state.ledger
        per = self.state.per_replica(workload)
        if ledger.check(workload.queue, accel, want * per).ok:
            return want
        low, high = floor, want - 1
        while low < high:
            middle = (low + high + 1) // 2
            if ledger.check(workload.queue, accel, middle * per).ok:
                low = middle
            else:
                high = middle - 1
        return low

    def _backfill_window(self, workload: Workload, accel: str) -> list[Hold]:
        """Holds on ``accel`` this workload may use because it ends before they start."""
        estimate = workload.duration_estimate
        if estimate is None:
            return []
        end = self.state.now + estimate
        return [
            hold
            for hold in self.holds.get(accel, [])
            if hold.reservation.start is not None and end <= hold.reservation.start
        ]

    def _try(self, workload: Workload, accel: str, floor: int, want: int) -> Admit | Failure:
        state = self.state
        per = state.per_replica(workload)
        # quota only tightens between two changes of usage: a larger ask fails again
        memo_key = (workload.queue, accel)
        memo = self.quota_failures.get(memo_key)
        if memo is not None and memo[0] == state.ledger.version and floor * per >= memo[1]:
            return memo[2]
        verdict = state.ledger.check(workload.queue, accel, floor * per)
        if not verdict.ok:
            reason = Reason.CAPACITY if verdict.physical else Reason.QUOTA
            failure = Failure(reason, f"{accel}: {verdict.message}")
            self.quota_failures[memo_key] = (state.ledger.version, floor * per, failure)
            return failure
        count = floor if want == floor else self._quota_max(workload, accel, floor, want)
        lifted = self._backfill_window(workload, accel)
        for hold in lifted:
            hold.lift(state)
        try:
            result = state.placer.place(workload, accel, count, floor)
        finally:
            for hold in lifted:
                hold.apply(state)
        if isinstance(result, Failure):
            holds = self.holds.get(accel)
            if holds and result.reason is Reason.CAPACITY:
                owners = ", ".join(h.reservation.workload for h in holds)
                return Failure(
                    Reason.BLOCKED_BY_RESERVATION,
                    f"{result.message}; free cards are held for {owners}",
                )
            return result
        borrowing = verdict.borrowing
        if len(result) != floor:
            borrowing = state.ledger.check(workload.queue, accel, len(result) * per).borrowing
        expected_end = (
            None if workload.duration_estimate is None else (state.now + workload.duration_estimate)
        )
        run = Running(workload, accel, [], state.now, expected_end, admitted_now=True)
        state.add_running(run)
        state.allocate(run, result)
        backfill = bool(lifted) and any(
            p.node == node for hold in lifted for node, _ in hold.reservation.nodes for p in result
        )
        return Admit(workload.id, accel, tuple(result), borrowing=borrowing, backfill=backfill)

    def _admitted(self, admit: Admit) -> None:
        self.decisions.append(admit)
        self.stats["admitted"] += 1
        self.stats["placed_replicas"] += len(admit.placements)
        if admit.backfill:
            self.stats["backfilled"] += 1

    def _admit(self, workload: Workload) -> bool:
        floor, want = self._sizes(workload)
        failures: list[tuple[str, Failure]] = []
        if workload.mix is not Mix.REQUIRED:
            for accel in self._types_to_try(workload):
                outcome = self._try(workload, accel, floor, want)
                if isinstance(outcome, Admit):
                    self._admitted(outcome)
                    return True
                failures.append((accel, outcome))
        if workload.mixes and workload.gang:
            # one type could not hold the whole gang: a sub-gang per type
            spanned = try_mixed(self.state, workload, floor, want)
            if isinstance(spanned, Admit):
                self._admitted(spanned)
                return True
            failures.append(("+".join(workload.accel_types), spanned))
        hopeless = self._never_fits(workload, 1 if workload.mixes else floor)
        if hopeless is not None:
            # no victim or reservation can help: say so, and hold nothing for it
            self.pending[workload.id] = Pending(workload.id, Reason.NEVER_FITS, hopeless)
            return False
        profile = self.state.profile
        if profile.preemption or profile.reclaim:
            for accel, failure in failures:
                if failure.reason in _PREEMPTABLE_FAILURES and self._preempt_for(
                    workload, accel, floor, want
                ):
                    return True
        if self._reserve(workload, floor, failures):
            return False
        reason = failures[0][1].reason if failures else Reason.NO_NODES
        message = "; ".join(f.message for _, f in failures) or "accepts no accelerator type"
        self.pending[workload.id] = Pending(workload.id, reason, message)
        return False

    def _types_to_try(self, workload: Workload) -> tuple[str, ...]:
        """The accepted types in the order to try them: the user's preference order, or, for
        types accepted as equals, best node first (one decision across types, as the FGD
        paper's scheduler scores every feasible node whatever its model)."""
        types = accepted_types(workload, self.state.cluster.types)
        if workload.types_ranked or len(types) < 2:
            return types
        placer = self.state.placer
        by_node = self.state.profile.tie_break == "node-order"
        keys = []
        for position, accel in enumerate(types):
            score, idx = placer.best_score(workload, accel)
            keys.append((-score, idx if by_node else position, position))
        return tuple(types[key[2]] for key in sorted(keys))

    def _never_fits(self, workload: Workload, floor: int) -> str | None:
        """Why ``workload`` could not be placed even on an empty cluster (None: it could)."""
        state = self.state
        if self.capacities is None:
            self.capacities = type_capacities(slot.node for slot in state.cluster.slots)
        ledger = state.ledger
        limits: dict[str, list[tuple[str, int]]] = {}
        types = accepted_types(workload, state.cluster.types)
        for accel in types:
            for queue in ledger.path(workload.queue):
                limit = ledger.limit(queue, accel)
                if limit is not None:
                    limits.setdefault(accel, []).append((queue, limit))
        request = state.placer.effective_request(workload)
        return never_fits(types, request, floor, self.capacities, limits)

    def _preempt_for(self, workload: Workload, accel: str, floor: int, want: int) -> bool:
        state = self.state
        if accel not in state.cluster.types:
            return False
        # a service's replicas are each worth having: make room for all it wants if that
        # is possible, else for one; a gang makes room for its floor and grows later
        targets = [want, floor] if not workload.gang and want > floor else [floor]
        plan = None
        for target in targets:
            plan = find_victims(state, workload, accel, target)
            if plan is not None:
                break
        if plan is None:
            return False
        outcome = self._try(workload, accel, floor, want)
        if isinstance(outcome, Failure):  # cannot happen if find_victims is right; stay safe
            plan.undo(state)
            state.warnings.append(f"preemption for {workload.id} found room that vanished")
            return False
        victims = self._record_victims(workload, accel, plan)
        self._admitted(replace(outcome, preempted=victims))
        return True

    def _record_victims(self, workload: Workload, accel: str, plan: VictimPlan) -> tuple[str, ...]:
        """The Preempt and Shrink decisions of ``plan``, made for ``workload``."""
        state = self.state
        for run in plan.preempted:
            reason = victim_reason(workload, run.workload, accel, plan.entitled)
            self.decisions.append(Preempt(run.workload.id, reason, by=workload.id))
            self.stats["preempted"] += 1
        for victim_id, removed in plan.shrunk.items():
            victim = state.running[victim_id]
            reason = victim_reason(workload, victim.workload, accel, plan.entitled)
            self.decisions.append(
                Shrink(victim_id, tuple(removed), len(victim.placements), reason, by=workload.id)
            )
            self.stats["shrunk"] += 1
        return tuple(run.workload.id for run in plan.preempted)

    def _reserve(self, workload: Workload, floor: int, failures: list[tuple[str, Failure]]) -> bool:
        state = self.state
        profile = state.profile
        request = state.placer.effective_request(workload)
        if not profile.backfill or not workload.gang:
            return False
        if request.host_only or floor * request.devices < profile.reserve_min_cards:
            return False
        for accel, failure in failures:
            if failure.reason not in (
                Reason.CAPACITY,
                Reason.TOPOLOGY,
                Reason.BLOCKED_BY_RESERVATION,
            ):
                continue
            if len(self.holds.get(accel, [])) >= profile.reservations_per_type:
                continue
            tindex = state.cluster.index(accel)
            if tindex is None:
                continue
            eligible, _ = state.placer.eligible_nodes(workload, tindex)
            required = state.placer.level_index.get(workload.required_level or "", 0)
            hold = plan_reservation(state, workload, accel, floor, eligible, required)
            if hold is None:
                continue
            self.holds.setdefault(accel, []).append(hold)
            start = hold.reservation.start
            when = (
                "when running work with no time limit ends"
                if start is None
                else f"in about {math.ceil(start - state.now)} s"
            )
            held = sum(count for _, count in hold.reservation.nodes)
            message = (
                f"{failure.message}; next in line for {accel}: "
                f"{len(hold.reservation.nodes)} node(s) reserved ({held} cards held now), "
                f"expected start {when}"
            )
            self.pending[workload.id] = Pending(workload.id, Reason.RESERVED, message)
            return True
        return False

    # -- step 4: growth --------------------------------------------------------------------

    def _grow(self) -> None:
        state = self.state
        runs: Iterable[Running] = state.running.values()
        if self.grow_runs is not None:  # the short runs a driver tracked, and any shrunk now
            chosen = {id(r): r for r in self.grow_runs}
            for decision in self.decisions:
                if isinstance(decision, Shrink):
                    shrunk = state.running.get(decision.workload)
                    if shrunk is not None:
                        chosen[id(shrunk)] = shrunk
            runs = chosen.values()
        candidates = [
            run
            for run in runs
            if not run.evicted
            and not run.admitted_now
            and run.placements
            and len(run.placements) < run.workload.replicas
            and (not run.workload.gang or (state.profile.elastic and run.workload.elastic))
            and state.ledger.known(run.workload.queue)
        ]
        candidates.sort(
            key=lambda r: (state.ledger.share(r.workload.queue), *queue_order_key(r.workload))
        )
        for run in candidates:
            if run.evicted:  # preempted to make room for a service grown earlier in this loop
                continue
            workload = run.workload
            missing = workload.replicas - len(run.placements)
            per = state.per_replica(workload)
            result: list[Placement] | None
            if not state.ledger.check(workload.queue, run.accel, per).ok:
                # the quota is lent out (or the cohort is full): reclaim, as for admission
                result = self._grow_by_preempting(run, missing)
            else:
                count = self._quota_max(workload, run.accel, 1, missing)
                placed = state.placer.place(
                    workload, run.accel, count, 1, near=tuple(run.placements)
                )
                if isinstance(placed, Failure):
                    result = self._grow_by_preempting(run, count)
                else:
                    result = list(placed)
            if result is None:
                continue
            borrowing = state.ledger.check(workload.queue, run.accel, len(result) * per).borrowing
            state.allocate(run, result)
            self.decisions.append(
                Grow(workload.id, tuple(result), len(run.placements), borrowing=borrowing)
            )
            self.stats["grown"] += 1

    def _grow_by_preempting(self, run: Running, count: int) -> list[Placement] | None:
        """Room for a running service's missing replicas (all of them if possible, else one)
        taken from lower-priority work, as for a pending workload: load rising on a service
        shrinks elastic training or preempts preemptible jobs. Gangs grow only into free
        capacity (their floor is already running)."""
        state = self.state
        workload = run.workload
        if workload.gang or not state.profile.preemption:
            return None
        for target in dict.fromkeys((count, 1)):
            plan = find_victims(state, workload, run.accel, target)
            if plan is None:
                continue
            result = state.placer.place(workload, run.accel, target, 1, near=tuple(run.placements))
            if isinstance(result, Failure):  # find_victims said it fits; stay safe
                plan.undo(state)
                continue
            self._record_victims(workload, run.accel, plan)
            return list(result)
        return None

    # -- the cycle ---------------------------------------------------------------------------

    def run(self) -> CycleResult:
        state = self.state
        self._handle_failed_nodes()
        self._scale_down()
        by_queue: dict[str, list[Workload]] = {}
        for workload in (*self.pending_source, *self.requeued):
            if workload.assignment is not None or workload.replicas == 0:
                continue
            if not state.ledger.known(workload.queue):
                self.pending[workload.id] = Pending(
                    workload.id, Reason.UNKNOWN_QUEUE, f"queue {workload.queue!r} does not exist"
                )
                continue
            by_queue.setdefault(workload.queue, []).append(workload)
        strict = {
            name: state.profile.strict_fifo or queue.strict_fifo
            for name, queue in state.ledger.queues.items()
        }
        order = FairOrder(state.ledger, by_queue, strict)
        for workload in order:
            self.stats["considered"] += 1
            if self._admit(workload) or not strict.get(workload.queue, False):
                continue
            for behind in order.block(workload.queue):
                self.pending[behind.id] = Pending(
                    behind.id,
                    Reason.QUEUE_BLOCKED,
                    f"waiting behind {workload.id} in strict-FIFO queue {workload.queue}",
                )
        self._grow()
        return CycleResult(
            now=state.now,
            decisions=tuple(self.decisions),
            pending=self.pending,
            reservations=tuple(h.reservation for holds in self.holds.values() for h in holds),
            stats=CycleStats(**dict(self.stats)),
            warnings=tuple(state.warnings),
        )
