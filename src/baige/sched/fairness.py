"""The order in which a cycle considers pending workloads: weighted fair across the queue tree.

At each level the sibling with the smallest weighted share goes next (queues still under
a guarantee first, then queues not borrowing, then by dominant share of the cluster over
weight), so a queue
with twice the weight gets about twice the capacity when both want more than there is.
Within a queue: higher priority first, then first come first served.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from baige.sched.model import Workload
from baige.sched.quota import ROOT, QuotaLedger

__all__ = ["FairOrder", "queue_order_key"]


def queue_order_key(workload: Workload) -> tuple[int, float, str]:
    """Within one queue: priority (high first), then arrival, then id for determinism."""
    return (-workload.priority, workload.created_at, workload.id)


class FairOrder:
    """Yields pending workloads one at a time, re-reading queue shares before every pick.

    Call :meth:`block` after a head fails in a strict-FIFO queue: the rest of that queue
    then waits for the next cycle.
    """

    def __init__(
        self,
        ledger: QuotaLedger,
        pending: Mapping[str, Sequence[Workload]],
        strict: Mapping[str, bool],
    ) -> None:
        self.ledger = ledger
        self.queues: dict[str, list[Workload]] = {
            queue: sorted(items, key=queue_order_key, reverse=True)  # pop() takes the first
            for queue, items in pending.items()
            if items
        }
        self.strict = strict
        self.remaining: dict[str, int] = {}
        for queue, items in self.queues.items():
            for ancestor in (*ledger.path(queue), ROOT):
                self.remaining[ancestor] = self.remaining.get(ancestor, 0) + len(items)
        self.blocked: dict[str, list[Workload]] = {}
        self._keys: dict[str, tuple[int, tuple[int, float, float, str]]] = {}

    def _key(self, queue: str) -> tuple[int, float, float, str]:
        # a queue's key changes when its own usage does, or when capacity does (never,
        # within a cycle); shares of the cluster are relative to fixed capacities
        touched = self.ledger.touched.get(queue, 0)
        cached = self._keys.get(queue)
        if cached is None or cached[0] != touched:
            cached = (touched, self._compute_key(queue))
            self._keys[queue] = cached
        return cached[1]

    def _compute_key(self, queue: str) -> tuple[int, float, float, str]:
        ledger = self.ledger
        borrowed = 0.0
        below_guarantee = False
        for accel, capacity in ledger.capacity.items():
            if capacity:
                borrowed = max(borrowed, ledger.borrowed(queue, accel) / capacity)
            guaranteed = ledger.quota(queue, accel).guaranteed
            if guaranteed and ledger.usage(queue, accel) < guaranteed:
                below_guarantee = True
        weight = ledger.queues[queue].weight
        return (0 if below_guarantee else 1, borrowed / weight, ledger.share(queue), queue)

    def _pick(self) -> str | None:
        node = ROOT
        while True:
            own = self.queues.get(node) if node != ROOT else None
            best: str | None = None
            best_key: tuple[int, float, float, str] | None = None
            for child in self.ledger.children.get(node, ()):
                if self.remaining.get(child, 0) <= 0:
                    continue
                key = self._key(child)
                if best_key is None or key < best_key:
                    best, best_key = child, key
            if best is None:
                return node if own else None
            if own and self._key(node) <= (best_key or self._key(node)):
                return node
            node = best

    def _take(self, queue: str) -> Workload:
        workload = self.queues[queue].pop()
        if not self.queues[queue]:
            del self.queues[queue]
        for ancestor in (*self.ledger.path(queue), ROOT):
            self.remaining[ancestor] -= 1
        return workload

    def __iter__(self) -> Iterator[Workload]:
        while self.remaining.get(ROOT, 0) > 0:
            queue = self._pick()
            if queue is None:
                return
            yield self._take(queue)

    def block(self, queue: str) -> list[Workload]:
        """Stop taking from ``queue`` this cycle; returns the workloads left behind."""
        left = self.queues.pop(queue, [])
        if left:
            for ancestor in (*self.ledger.path(queue), ROOT):
                self.remaining[ancestor] -= len(left)
        left.reverse()
        self.blocked[queue] = left
        return left
