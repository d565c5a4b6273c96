"""Placing replicas: gangs into the smallest topology domain, shares onto the fullest cards.

The placer allocates as it goes on the cycle's :class:`ClusterState` and gives everything
back if the gang cannot be completed, so a failed attempt leaves no trace (no partial gang
ever leaks). It never places on a node that is not ready or not of the asked type: only
ready nodes are in a type's index.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from baige.sched.cluster import ClusterState, Domain, NodeSlot, TypeIndex
from baige.sched.decisions import Reason
from baige.sched.framework import FilterPlugin, Option, ScoreContext, ScorePlugin
from baige.sched.model import MILLI, Placement, Request, Workload
from baige.sched.plugins import FILTERS, SCORES
from baige.sched.profile import Profile

__all__ = ["Failure", "Placer"]


@dataclass(frozen=True, slots=True)
class Failure:
    """Why replicas could not be placed on one accelerator type."""

    reason: Reason
    message: str


def _cards(count: int, k: int, accel: str) -> str:
    return f"{count}×{k} {accel}" if k > 1 else f"{count} {accel}"


def _host_shape(request: Request) -> str:
    asks = []
    if request.cpu_milli:
        asks.append(f"{request.cpu_milli / 1000:g} CPU")
    if request.memory_mib:
        asks.append(f"{request.memory_mib} MiB memory")
    return " and ".join(asks) + " on a node that tracks them, no card"


class Placer:
    """Finds and allocates placements for one workload on one accelerator type."""

    def __init__(
        self,
        cluster: ClusterState,
        profile: Profile,
        levels: tuple[str, ...],
        mix: Mapping[tuple[int, int], float],
        host: Mapping[tuple[int, int], float] | None = None,
        access: Mapping[tuple[int, int], Mapping[str, float]] | None = None,
    ) -> None:
        self.cluster = cluster
        self.profile = profile
        self.levels = levels
        self.depth = len(levels)
        self.level_index = {name: i + 1 for i, name in enumerate(levels)}
        self.level_index["node"] = self.depth + 1
        self.filters: list[FilterPlugin] = [FILTERS[name]() for name in profile.filters]
        self.scores: list[tuple[ScorePlugin, float]] = [
            (SCORES[name](), weight) for name, weight in profile.scores if weight > 0
        ]
        self.mix = mix
        self.host: Mapping[tuple[int, int], float] = host or {}
        self.access: Mapping[tuple[int, int], Mapping[str, float]] = access or {}
        # (accel, k, milli) -> (generation, smallest count that failed): capacity only shrinks
        # within a cycle until something is given back, so a larger ask fails too.
        self._failed: dict[tuple[str, int, int], tuple[int, int, Failure]] = {}
        self._eligible_cache: dict[tuple[object, ...], frozenset[int]] = {}
        self._last_plan: list[tuple[NodeSlot, int]] = []  # the plan of the last dry run

    # -- request shaping -----------------------------------------------------------------

    def effective_request(self, workload: Workload) -> Request:
        """The request as placed: without co-location a share takes a whole card."""
        request = workload.request
        if request.fractional and not self.profile.fractional:
            return Request(1, MILLI, request.cpu_milli, request.memory_mib)
        return request

    # -- eligibility ---------------------------------------------------------------------

    def eligible_nodes(
        self, workload: Workload, tindex: TypeIndex
    ) -> tuple[frozenset[int] | None, str]:
        """Indices of nodes passing the static filters (None: all nodes of the type pass)."""
        if workload.pool is None and not workload.node_selector:
            return None, ""  # the built-in static filters cannot reject anything
        active = [f for f in self.filters if f.applies(workload) and f.name != "host-resources"]
        if not active:
            return None, ""
        key = (
            tindex.accel_type,
            workload.pool,
            tuple(sorted(workload.node_selector.items())),
            tuple(f.name for f in active),
        )
        cached = self._eligible_cache.get(key)
        first_reason = ""
        if cached is None:
            keep = []
            for slot in tindex.root.nodes:
                for plugin in active:
                    status = plugin.filter(slot, workload)
                    if not status.ok:
                        first_reason = first_reason or f"{plugin.name}: {status.reason}"
                        break
                else:
                    keep.append(slot.idx)
            cached = frozenset(keep)
            self._eligible_cache[key] = cached
        return cached, first_reason

    def _per_node(self, slot: NodeSlot, k: int, request: Request) -> int:
        """How many replicas of the request fit on this node now."""
        count = slot.avail // k
        node = slot.node
        if request.cpu_milli and node.cpu_milli:
            count = min(count, max(0, slot.cpu_free) // request.cpu_milli)
        if request.memory_mib and node.memory_mib:
            count = min(count, max(0, slot.mem_free) // request.memory_mib)
        return count

    # -- entry point ---------------------------------------------------------------------

    def can_place(self, workload: Workload, accel: str, count: int) -> bool:
        """Whether ``count`` replicas would be placed, changing nothing (preemption asks this
        once per candidate victim, so a gang is only planned, not allocated and returned)."""
        return self.planned_nodes(workload, accel, count) is not None

    def planned_nodes(self, workload: Workload, accel: str, count: int) -> set[str] | None:
        """The nodes ``count`` replicas would go to now (None: they would not fit)."""
        self._last_plan = []
        result = self.place(workload, accel, count, count, dry_run=True)
        if isinstance(result, Failure):
            return None
        nodes = {p.node for p in result} | {slot.node.name for slot, _ in self._last_plan}
        self.release(workload, result)
        return nodes

    def place(
        self,
        workload: Workload,
        accel: str,
        want: int,
        floor: int,
        *,
        dry_run: bool = False,
        near: tuple[Placement, ...] = (),
    ) -> list[Placement] | Failure:
        """Place between ``floor`` and ``want`` replicas (as many as fit) or none at all.

        ``dry_run``: a gang is planned but nothing is allocated; the empty list means
        success (one-by-one placements are still allocated, and must be released).
        ``near``: the replicas a growing gang already has; new ones go to the tightest
        domain around them (and, with a required level, never outside it)."""
        tindex = self.cluster.index(accel)
        if tindex is None:
            return Failure(Reason.NO_NODES, f"{accel}: no ready node")
        request = self.effective_request(workload)
        eligible, why = self.eligible_nodes(workload, tindex)
        if eligible is not None and not eligible:
            return Failure(Reason.NO_NODES, f"{accel}: no node passes the filters ({why})")
        if request.devices > tindex.max_devices:
            return Failure(
                Reason.NO_NODES,
                f"{accel}: a replica needs {request.devices} cards; the largest node has "
                f"{tindex.max_devices}",
            )
        memo_key = (accel, request.devices, request.milli)
        simple = eligible is None and not request.cpu_milli and not request.memory_mib
        if simple and workload.required_level is None and not near:
            memo = self._failed.get(memo_key)
            if memo is not None and memo[0] == tindex.generation and floor >= memo[1]:
                return memo[2]
        if request.fractional or request.host_only or not workload.gang:
            result = self._place_each(workload, tindex, request, want, floor, eligible)
        else:
            result = self._place_gang(
                workload, tindex, request, want, floor, eligible, dry_run=dry_run, near=near
            )
        if isinstance(result, Failure) and simple and workload.required_level is None and not near:
            memo = self._failed.get(memo_key)
            if memo is None or memo[0] != tindex.generation or floor < memo[1]:
                self._failed[memo_key] = (tindex.generation, floor, result)
        return result

    def may_fit(self, workload: Workload, accel: str, floor: int) -> bool:
        """A cheap necessary condition for :meth:`place` to succeed (aggregates only), used
        to skip full placement attempts while preemption adds victims one by one."""
        tindex = self.cluster.index(accel)
        if tindex is None:
            return False
        request = self.effective_request(workload)
        if request.host_only:
            return True  # host CPU and memory are not aggregated: only a placement can tell
        if request.fractional:
            partial = tindex.partial
            return tindex.root.max_avail() >= 1 or bool(partial and partial[-1][0] >= request.milli)
        if workload.gang:
            return tindex.root.fit(request.devices) >= floor
        return tindex.root.max_avail() >= request.devices

    def release(self, workload: Workload, placements: list[Placement]) -> None:
        """Give back placements made by :meth:`place` (undo)."""
        request = self.effective_request(workload)
        for placement in placements:
            self.cluster.give_placement(placement, request.cpu_milli, request.memory_mib)

    # -- one replica at a time (shares of a card, inference replicas) ---------------------

    def _options(
        self, tindex: TypeIndex, request: Request, eligible: frozenset[int] | None
    ) -> Iterator[Option]:
        """Candidate options, best-fit first: fullest partial cards, then nodes with the
        fewest free whole cards that still fit."""
        k = request.devices
        if request.fractional:
            for slot, device in self.cluster.best_partial(tindex.accel_type, request.milli):
                if eligible is None or slot.idx in eligible:
                    yield Option(slot, 1, request.milli, device)
        for avail in range(k, tindex.max_devices + 1):
            for slot in tindex.buckets[avail].values():
                if eligible is None or slot.idx in eligible:
                    yield Option(slot, k, request.milli)

    def best_score(self, workload: Workload, accel: str) -> tuple[float, int]:
        """The score of the best node (or card) of ``accel`` for one replica now (-1 where
        none has room) and that node's place in the snapshot: how a workload that accepts
        several types as equals compares them."""
        nowhere = (-1.0, len(self.cluster.slots))
        tindex = self.cluster.index(accel)
        if tindex is None:
            return nowhere
        request = self.effective_request(workload)
        eligible, _ = self.eligible_nodes(workload, tindex)
        if (eligible is not None and not eligible) or request.devices > tindex.max_devices:
            return nowhere
        option, score = self._best(workload, self._options(tindex, request, eligible), request)
        return (score, option.slot.idx) if option is not None else nowhere

    def _choose(
        self, workload: Workload, options: Iterator[Option], request: Request
    ) -> Option | None:
        return self._best(workload, options, request)[0]

    def _best(
        self, workload: Workload, options: Iterator[Option], request: Request
    ) -> tuple[Option | None, float]:
        limit = self.profile.candidate_nodes
        by_node = self.profile.tie_break == "node-order"
        best: Option | None = None
        best_score = -1.0
        ctx: ScoreContext | None = None
        seen = 0
        for option in options:
            if (request.cpu_milli or request.memory_mib) and not self._host_fits(
                option.slot, request
            ):
                continue
            scores = [(p, w) for p, w in self.scores if p.applies(workload)]
            if not scores:
                return option, 0.0
            if ctx is None:
                ctx = ScoreContext(self.cluster, workload, self.mix, self.host, self.access)
            total = 0.0
            for plugin, weight in scores:
                total += weight * plugin.score(option, ctx)
            if total > best_score or (
                total == best_score
                and by_node
                and best is not None
                and option.slot.idx < best.slot.idx
            ):
                best, best_score = option, total
            seen += 1
            if limit and seen >= limit:
                break
        return best, best_score

    @staticmethod
    def _host_fits(slot: NodeSlot, request: Request) -> bool:
        node = slot.node
        if request.host_only and not (
            (request.cpu_milli and node.cpu_milli) or (request.memory_mib and node.memory_mib)
        ):
            return False  # a node that tracks none of what a CPU-only task asks has no room
        if request.cpu_milli and node.cpu_milli and slot.cpu_free < request.cpu_milli:
            return False
        return not (request.memory_mib and node.memory_mib and slot.mem_free < request.memory_mib)

    def _take_option(self, option: Option, request: Request) -> Placement:
        slot = option.slot
        devices = (option.device,) if option.device >= 0 else slot.whole_devices(option.devices)
        self.cluster.take(slot, devices, option.milli, request.cpu_milli, request.memory_mib)
        return Placement(slot.node.name, devices, option.milli)

    def _place_each(
        self,
        workload: Workload,
        tindex: TypeIndex,
        request: Request,
        want: int,
        floor: int,
        eligible: frozenset[int] | None,
    ) -> list[Placement] | Failure:
        placed: list[Placement] = []
        for _ in range(want):
            option = self._choose(workload, self._options(tindex, request, eligible), request)
            if option is None:
                break
            placed.append(self._take_option(option, request))
        if len(placed) < max(floor, 1 if want else 0):
            self._give_back(placed, request)
            if request.host_only:
                shape = _host_shape(request)
            elif request.fractional:
                shape = f"{request.milli / MILLI:g} of a card"
            else:
                shape = f"{request.devices} cards on one node"
            return Failure(
                Reason.CAPACITY,
                f"{tindex.accel_type}: room for {len(placed)} of {floor} replicas ({shape} each)",
            )
        return placed

    def _give_back(self, placed: list[Placement], request: Request) -> None:
        for placement in placed:
            self.cluster.give_placement(placement, request.cpu_milli, request.memory_mib)

    # -- gangs of whole cards -----------------------------------------------------------

    def _fit(
        self, domain: Domain, k: int, request: Request, eligible: frozenset[int] | None
    ) -> int:
        if eligible is None and not request.cpu_milli and not request.memory_mib:
            return domain.fit(k)
        return sum(
            self._per_node(slot, k, request)
            for slot in domain.nodes
            if eligible is None or slot.idx in eligible
        )

    def _place_gang(
        self,
        workload: Workload,
        tindex: TypeIndex,
        request: Request,
        want: int,
        floor: int,
        eligible: frozenset[int] | None,
        *,
        dry_run: bool = False,
        near: tuple[Placement, ...] = (),
    ) -> list[Placement] | Failure:
        k = request.devices
        accel = tindex.accel_type
        total = self._fit(tindex.root, k, request, eligible)
        if total < floor:
            free = tindex.root.whole_free() if eligible is None else "some"
            return Failure(
                Reason.CAPACITY,
                f"{accel}: needs {_cards(floor, k, accel)} cards; room for {total} "
                f"replica{'s' if total != 1 else ''} now ({free} whole cards free)",
            )
        required = self.level_index.get(workload.required_level or "", 0)
        failure: Failure | None = None
        counts: tuple[int, ...] = (min(want, total), floor)
        if near:  # growth: the most replicas that fit around the gang (monotonic in count)
            low, high = floor, min(want, total)
            while low < high:
                middle = (low + high + 1) // 2
                found = self._near_domain(tindex, request, middle, eligible, required, near)
                low, high = (middle, high) if not isinstance(found, Failure) else (low, middle - 1)
            counts = (low,)
        for count in dict.fromkeys(counts):
            where: Domain | NodeSlot | Failure
            if near:
                where = self._near_domain(tindex, request, count, eligible, required, near)
            else:
                where = self._choose_domain(workload, tindex, request, count, eligible, required)
            if isinstance(where, Failure):
                failure = where
                continue
            plan: list[tuple[NodeSlot, int]] = []
            if isinstance(where, NodeSlot):
                plan.append((where, count))
            elif self.profile.topology_aware:
                self._plan_domain(where, count, request, eligible, plan)
            else:
                self._plan_nodes(where.nodes, count, request, eligible, plan, first_fit=True)
            if sum(n for _, n in plan) == count:
                if dry_run:
                    self._last_plan = plan
                    return []
                return self._take_plan(plan, request)
        return failure or Failure(Reason.CAPACITY, f"{accel}: cannot place the gang")

    def _choose_domain(
        self,
        workload: Workload,
        tindex: TypeIndex,
        request: Request,
        count: int,
        eligible: frozenset[int] | None,
        required: int,
    ) -> Domain | NodeSlot | Failure:
        """The smallest topology domain (a node, a rack, a block, …) holding ``count``
        replicas; among domains of that size the one that fits most tightly."""
        k = request.devices
        if not self.profile.topology_aware and required == 0:
            return tindex.root
        if count * k <= tindex.max_devices:
            options = (
                o
                for o in self._options(tindex, Request(count * k), eligible)
                if self._per_node(o.slot, k, request) >= count
            )
            option = self._choose(workload, options, request)
            if option is not None:
                return option.slot
        if required == self.depth + 1:
            return Failure(
                Reason.TOPOLOGY,
                f"{tindex.accel_type}: needs {_cards(count, k, tindex.accel_type)} on one node; "
                f"the most free on a node is {tindex.root.max_avail()}",
            )
        for level in range(self.depth, max(required, 1) - 1, -1):
            best = self._tightest(tindex.domains_at(level), count, request, eligible)
            if best is not None:
                return best
        if required == 0:
            return tindex.root
        level_name = self.levels[required - 1]
        return Failure(
            Reason.TOPOLOGY,
            f"{tindex.accel_type}: needs {_cards(count, k, tindex.accel_type)} inside one "
            f"{level_name}; no {level_name} has that much free",
        )

    def _near_domain(
        self,
        tindex: TypeIndex,
        request: Request,
        count: int,
        eligible: frozenset[int] | None,
        required: int,
        near: tuple[Placement, ...],
    ) -> Domain | NodeSlot | Failure:
        """For a growing gang: the tightest domain around its replicas that holds ``count``
        more, from their own nodes outwards."""
        slots = [
            slot for p in near if (slot := self.cluster.slot(p.node)) is not None and slot.indexed
        ]
        k = request.devices
        for slot in slots:
            if (eligible is None or slot.idx in eligible) and self._per_node(
                slot, k, request
            ) >= count:
                return slot
        if self.profile.topology_aware or required:
            lowest = required if required else 0
            for level in range(self.depth, lowest - 1, -1):
                around = {id(s.domains[level]): s.domains[level] for s in slots}
                best = self._tightest(around.values(), count, request, eligible)
                if best is not None:
                    return best
            if required:
                name = "node" if required > self.depth else self.levels[required - 1]
                return Failure(
                    Reason.TOPOLOGY,
                    f"{tindex.accel_type}: no room for {count} more replicas inside the "
                    f"{name} the gang runs in",
                )
        return tindex.root

    def _tightest(
        self,
        domains: Iterable[Domain],
        count: int,
        request: Request,
        eligible: frozenset[int] | None,
    ) -> Domain | None:
        best: Domain | None = None
        best_key: tuple[int, int, str] | None = None
        for domain in domains:
            fit = self._fit(domain, request.devices, request, eligible)
            if fit < count:
                continue
            key = (fit, domain.free_milli, domain.name)
            if best_key is None or key < best_key:
                best, best_key = domain, key
        return best

    def _plan_domain(
        self,
        domain: Domain,
        count: int,
        request: Request,
        eligible: frozenset[int] | None,
        plan: list[tuple[NodeSlot, int]],
    ) -> None:
        """Split ``count`` replicas over the fewest child domains, recursively: a gang that
        needs two racks gets two whole racks, not bits of three."""
        if not domain.children:
            self._plan_nodes(domain.nodes, count, request, eligible, plan, first_fit=False)
            return
        single = self._tightest(domain.children, count, request, eligible)
        if single is not None:
            self._plan_domain(single, count, request, eligible, plan)
            return
        fits = [
            (fit, child)
            for child in domain.children
            if (fit := self._fit(child, request.devices, request, eligible)) > 0
        ]
        fits.sort(key=lambda item: (-item[0], item[1].free_milli, item[1].name))
        remaining = count
        for position, (fit, child) in enumerate(fits):
            if remaining <= 0:
                break
            if fit >= remaining:
                # the remainder goes to the tightest child that holds it
                tail = [c for f, c in fits[position:] if f >= remaining]
                child = self._tightest(tail, remaining, request, eligible) or child
                self._plan_domain(child, remaining, request, eligible, plan)
                return
            self._plan_domain(child, fit, request, eligible, plan)
            remaining -= fit

    def _plan_nodes(
        self,
        slots: list[NodeSlot],
        count: int,
        request: Request,
        eligible: frozenset[int] | None,
        plan: list[tuple[NodeSlot, int]],
        *,
        first_fit: bool,
    ) -> None:
        """Biggest nodes first (fewest nodes), the remainder on the smallest node that holds
        it; or, for the first-fit baseline, simply in node order."""
        k = request.devices
        candidates = [
            (fits, slot)
            for slot in slots
            if (eligible is None or slot.idx in eligible)
            and (fits := self._per_node(slot, k, request)) > 0
        ]
        candidates.sort(key=(lambda c: c[1].idx) if first_fit else (lambda c: (-c[0], c[1].idx)))
        remaining = count
        for position, (fits, slot) in enumerate(candidates):
            if remaining <= 0:
                return
            if not first_fit and fits >= remaining:
                tail = [(f, s) for f, s in candidates[position:] if f >= remaining]
                best = min(tail, key=lambda c: (c[0], c[1].idx))[1]
                plan.append((best, remaining))
                return
            take = min(fits, remaining)
            plan.append((slot, take))
            remaining -= take

    def _take_plan(self, plan: list[tuple[NodeSlot, int]], request: Request) -> list[Placement]:
        k = request.devices
        placed: list[Placement] = []
        for slot, replicas in plan:
            for _ in range(replicas):
                devices = slot.whole_devices(k)
                self.cluster.take(slot, devices, MILLI, request.cpu_milli, request.memory_mib)
                placed.append(Placement(slot.node.name, devices, MILLI))
        return placed
