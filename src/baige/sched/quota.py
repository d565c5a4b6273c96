"""Hierarchical quota accounting: guarantees, borrowing limits, lending limits, reclaim.

Semantics (Kueue's cohorts, made recursive). For each queue ``x`` and accelerator type:

* ``inner(x)`` is what x's subtree uses: its own workloads plus each child's footprint;
* ``footprint(x) = max(kept(x), inner(x))`` is what x takes from its parent, where ``kept``
  is the part of x's guarantee it does not lend (``guaranteed - lend_limit``);
* admission of ``d`` more to a leaf must keep ``inner(x) <= limit(x)`` for every ancestor x,
  and the root's total footprint within the type's schedulable capacity.

A queue *borrows* when ``inner(x) > guaranteed(x)``; borrowers are what a queue under its
guarantee reclaims from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from baige.sched.model import MILLI, Queue, Quota

__all__ = ["ROOT", "QuotaLedger", "QuotaVerdict"]

ROOT = ""  # the implicit root above all top-level queues; its limit is physical capacity
_NO_QUOTA = Quota()


@dataclass(frozen=True, slots=True)
class QuotaVerdict:
    ok: bool
    borrowing: bool = False
    blocked_at: str | None = None  # queue whose limit is hit; ROOT for cluster capacity
    message: str = ""
    physical: bool = False  # more than the type's capacity minus all usage: not a quota matter


_OK = QuotaVerdict(True)
_OK_BORROWING = QuotaVerdict(True, borrowing=True)


def _cards(milli: int) -> str:
    return f"{milli / MILLI:g}"


class QuotaLedger:
    """Usage per (queue, type), kept consistent with the tree's footprint rules."""

    def __init__(
        self,
        queues: Iterable[Queue],
        capacity: Mapping[str, int],
        *,
        borrowing: bool = True,
    ) -> None:
        self.queues: dict[str, Queue] = {}
        for queue in queues:
            self.queues[queue.name] = queue
        self.warnings: list[str] = []
        self.parent: dict[str, str] = {}
        for name, queue in self.queues.items():
            parent = queue.parent or ROOT
            if parent != ROOT and parent not in self.queues:
                self.warnings.append(
                    f"queue {name!r}: parent {parent!r} missing; treated as top-level"
                )
                parent = ROOT
            self.parent[name] = parent
        self._break_cycles()
        self.children: dict[str, list[str]] = {ROOT: []}
        for name in self.queues:
            self.children.setdefault(name, [])
        for name, parent in self.parent.items():
            self.children[parent].append(name)
        self.capacity = dict(capacity)
        self.borrowing_allowed = borrowing
        self.inner: dict[tuple[str, str], int] = {}
        self._paths: dict[str, tuple[str, ...]] = {}
        self.version = 0  # bumped on every change, so readers can cache derived figures
        self.touched: dict[str, int] = {}  # queue -> version of its last change
        self._term_cache: dict[tuple[str, str], tuple[int, int, int | None]] = {}
        self._init_footprints()

    def _init_footprints(self) -> None:
        """Charge every ancestor for the guarantees its children keep even when idle."""
        accels = {accel for queue in self.queues.values() for accel in queue.quotas}
        for accel in sorted(accels):
            for name in self.queues:
                kept = self.quota(name, accel).kept
                if kept:
                    # as if the queue used its kept share, minus the usage itself
                    self._propagate(self.parent[name], accel, kept)

    def _terms(self, queue: str, accel: str) -> tuple[int, int, int | None]:
        """(guaranteed, kept, limit) for a queue and type, computed once: the admission
        loop asks for them tens of thousands of times per cycle."""
        key = (queue, accel)
        terms = self._term_cache.get(key)
        if terms is None:
            quota = self.quota(queue, accel)
            terms = (quota.guaranteed, quota.kept, self.limit(queue, accel))
            self._term_cache[key] = terms
        return terms

    def _propagate(self, start: str, accel: str, delta: int) -> None:
        self.version += 1
        inner = self.inner
        touched = self.touched
        cursor = start
        while cursor != ROOT and delta:
            touched[cursor] = self.version
            key = (cursor, accel)
            old_inner = inner.get(key, 0)
            new_inner = old_inner + delta
            inner[key] = new_inner
            kept = self._terms(cursor, accel)[1]
            delta = max(kept, new_inner) - max(kept, old_inner)
            cursor = self.parent[cursor]
        if delta:
            inner[(ROOT, accel)] = inner.get((ROOT, accel), 0) + delta

    def _break_cycles(self) -> None:
        for name in self.queues:
            seen = {name}
            cursor = self.parent[name]
            while cursor != ROOT:
                if cursor in seen:
                    self.warnings.append(
                        f"queue {name!r}: parent chain loops; treated as top-level"
                    )
                    self.parent[name] = ROOT
                    break
                seen.add(cursor)
                cursor = self.parent[cursor]

    # -- structure -----------------------------------------------------------------------

    def known(self, queue: str) -> bool:
        return queue in self.queues

    def path(self, queue: str) -> tuple[str, ...]:
        """The queue and its ancestors, leaf first, without the root."""
        cached = self._paths.get(queue)
        if cached is None:
            chain = []
            cursor = queue
            while cursor != ROOT:
                chain.append(cursor)
                cursor = self.parent[cursor]
            cached = tuple(chain)
            self._paths[queue] = cached
        return cached

    def quota(self, queue: str, accel: str) -> Quota:
        return self.queues[queue].quotas.get(accel, _NO_QUOTA)

    def managed(self, queue: str, accel: str) -> bool:
        return accel in self.queues[queue].quotas

    def limit(self, queue: str, accel: str) -> int | None:
        """The most the subtree may use: its limit, or its guarantee when borrowing is off."""
        quota = self.queues[queue].quotas.get(accel)
        if quota is None:
            return None
        if not self.borrowing_allowed:
            return quota.guaranteed
        return quota.limit

    # -- usage ---------------------------------------------------------------------------

    def usage(self, queue: str, accel: str) -> int:
        return self.inner.get((queue, accel), 0)

    def borrowed(self, queue: str, accel: str) -> int:
        return max(0, self.usage(queue, accel) - self.quota(queue, accel).guaranteed)

    def _footprint(self, queue: str, accel: str, inner: int) -> int:
        return max(self.quota(queue, accel).kept, inner)

    def add(self, queue: str, accel: str, delta: int) -> None:
        """Record ``delta`` milli more (or fewer, if negative) used by ``queue``."""
        self._propagate(queue, accel, delta)

    def check(self, queue: str, accel: str, delta: int) -> QuotaVerdict:
        """Whether ``queue`` may use ``delta`` milli more of ``accel``, and whether it borrows."""
        borrowing = False
        asked = delta
        inner = self.inner
        cursor = queue
        while cursor != ROOT and delta > 0:
            old_inner = inner.get((cursor, accel), 0)
            new_inner = old_inner + delta
            guaranteed, kept, limit = self._terms(cursor, accel)
            if limit is not None and new_inner > limit:
                what = "guaranteed" if not self.borrowing_allowed else "limit"
                return QuotaVerdict(
                    False,
                    blocked_at=cursor,
                    message=(
                        f"queue {cursor} would use {_cards(new_inner)} {accel}, over its {what} "
                        f"of {_cards(limit)} (in use {_cards(old_inner)})"
                    ),
                )
            if new_inner > guaranteed and (guaranteed or limit is not None):
                borrowing = True  # beyond a quota the queue has (no quota: nothing to exceed)
            delta = max(kept, new_inner) - max(kept, old_inner)
            cursor = self.parent[cursor]
        if delta > 0:
            used = self.inner.get((ROOT, accel), 0)
            capacity = self.capacity.get(accel, 0)
            if used + delta > capacity:
                in_use = sum(self.inner.get((q, accel), 0) for q in self.children[ROOT])
                if in_use + asked > capacity:
                    return QuotaVerdict(
                        False,
                        borrowing=borrowing,
                        blocked_at=ROOT,
                        physical=True,
                        message=(
                            f"needs {_cards(asked)} {accel}; {_cards(max(0, capacity - in_use))} "
                            f"of {_cards(capacity)} cards are free"
                        ),
                    )
                return QuotaVerdict(
                    False,
                    borrowing=borrowing,
                    blocked_at=ROOT,
                    message=(
                        f"{accel} is fully committed: {_cards(used)} of {_cards(capacity)} cards "
                        "are in use or kept for other queues' guarantees"
                    ),
                )
        return _OK_BORROWING if borrowing else _OK

    def within_guarantee(self, queue: str, accel: str, delta: int) -> bool:
        """True when adding ``delta`` keeps every queue on the path within its guarantee.

        Such a request is *entitled*: it may reclaim capacity that other queues borrowed.
        Queues that do not manage this type are never entitled to it.
        """
        for cursor in self.path(queue):
            if not self.managed(cursor, accel):
                return False
            if self.inner.get((cursor, accel), 0) + delta > self.quota(cursor, accel).guaranteed:
                return False
        return True

    def borrowing_outside(self, victim_queue: str, queue: str, accel: str) -> bool:
        """True when ``victim_queue`` borrows ``accel`` at some level not shared with ``queue``."""
        shared = set(self.path(queue))
        return any(
            self.borrowed(cursor, accel) > 0
            for cursor in self.path(victim_queue)
            if cursor not in shared
        )

    def share(self, queue: str) -> float:
        """Dominant share of the cluster that ``queue``'s subtree uses, over its weight."""
        dominant = 0.0
        for accel, capacity in self.capacity.items():
            if capacity > 0:
                dominant = max(dominant, self.inner.get((queue, accel), 0) / capacity)
        return dominant / self.queues[queue].weight
