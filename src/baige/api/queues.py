"""The queue tree: who is guaranteed what, who may borrow, and who lends.

Quotas are counted in accelerators (a float, so an inference queue may be guaranteed 2.5
cards' worth of shares) per accelerator type. Semantics follow Kueue's cohorts:
``guaranteed`` is the share a queue can always reclaim, ``limit`` caps borrowing, and
``lend_limit`` caps how much of its unused guarantee others may borrow.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from baige.api.common import AcceleratorType, Name, SpecModel, Text

__all__ = ["Ordering", "QueueQuota", "QueueSpec", "QueueTreeError", "check_queue_tree"]


class Ordering(StrEnum):
    """How a queue's own workloads are taken: Kueue's two queueing strategies."""

    BEST_EFFORT_FIFO = "best-effort-fifo"  # a blocked head lets the next one try
    STRICT_FIFO = "strict-fifo"  # a blocked head blocks the queue


class QueueQuota(SpecModel):
    """A queue's share of one accelerator type, in accelerators."""

    guaranteed: float = Field(default=0, ge=0)
    limit: float | None = Field(default=None, ge=0)
    lend_limit: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> QueueQuota:
        if self.limit is not None and self.limit < self.guaranteed:
            raise ValueError(
                f"limit ({self.limit:g}) is below guaranteed ({self.guaranteed:g}): "
                "a queue may always use its guarantee"
            )
        if self.lend_limit is not None and self.lend_limit > self.guaranteed:
            raise ValueError(
                f"lend_limit ({self.lend_limit:g}) exceeds guaranteed ({self.guaranteed:g}): "
                "a queue can only lend what it is guaranteed"
            )
        return self


class QueueSpec(SpecModel):
    """One node of the queue tree. Workloads are submitted to leaves; inner queues group them."""

    kind: Literal["Queue"] = "Queue"
    name: Name
    parent: Name | None = None
    weight: float = Field(default=1.0, gt=0)
    quotas: dict[AcceleratorType, QueueQuota] = Field(default_factory=dict)
    ordering: Ordering = Ordering.BEST_EFFORT_FIFO
    tenant: Name | None = None
    description: Text = ""


class QueueTreeError(ValueError):
    """The queues do not form a valid tree; ``problems`` names each queue and field at fault."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _tolerance(value: float) -> float:
    return value + 1e-9


def check_queue_tree(queues: list[QueueSpec]) -> None:
    """Raise :class:`QueueTreeError` unless ``queues`` form a forest whose quotas nest.

    A child's guarantees must fit inside its parent's (where the parent sets one), and no
    child's limit may exceed its parent's limit: otherwise a guarantee would be a promise the
    tree cannot keep.
    """
    by_name: dict[str, QueueSpec] = {}
    problems: list[str] = []
    for queue in queues:
        if queue.name in by_name:
            problems.append(f"queue {queue.name!r}: defined twice")
        by_name[queue.name] = queue
    for queue in queues:
        if queue.parent is not None and queue.parent not in by_name:
            problems.append(f"queue {queue.name!r}: parent {queue.parent!r} does not exist")
    for queue in queues:
        seen = {queue.name}
        cursor = queue.parent
        while cursor is not None and cursor in by_name:
            if cursor in seen:
                problems.append(f"queue {queue.name!r}: parent chain loops through {cursor!r}")
                break
            seen.add(cursor)
            cursor = by_name[cursor].parent
    if problems:
        raise QueueTreeError(problems)
    children: dict[str, list[QueueSpec]] = {}
    for queue in queues:
        if queue.parent is not None:
            children.setdefault(queue.parent, []).append(queue)
    for parent_name, kids in sorted(children.items()):
        parent = by_name[parent_name]
        for accel, pquota in parent.quotas.items():
            total = sum(k.quotas[accel].guaranteed for k in kids if accel in k.quotas)
            if total > _tolerance(pquota.guaranteed):
                problems.append(
                    f"queue {parent_name!r}: children's guaranteed {accel} add up to {total:g}, "
                    f"more than its own guaranteed {pquota.guaranteed:g}"
                )
            if pquota.limit is None:
                continue
            for kid in kids:
                kquota = kid.quotas.get(accel)
                if kquota is None:
                    continue
                if kquota.limit is not None and kquota.limit > _tolerance(pquota.limit):
                    problems.append(
                        f"queue {kid.name!r}: quotas.{accel}.limit {kquota.limit:g} exceeds "
                        f"parent {parent_name!r}'s limit {pquota.limit:g}"
                    )
                if kquota.guaranteed > _tolerance(pquota.limit):
                    problems.append(
                        f"queue {kid.name!r}: quotas.{accel}.guaranteed {kquota.guaranteed:g} "
                        f"exceeds parent {parent_name!r}'s limit {pquota.limit:g}"
                    )
    if problems:
        raise QueueTreeError(problems)
