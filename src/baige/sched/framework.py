"""Extension points: filter and score plugins, their status, and what a score sees.

Kubernetes' scheduler framework, cut to what placement here needs. Filters answer "may this
replica go on this node" with a :class:`Status` and a reason; scores rank the candidate
options the placement mechanism proposes (nodes from the best-fit buckets, cards for a
fractional share). A :class:`~baige.sched.profile.Profile` picks plugins by name and weight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from baige.sched.cluster import ClusterState, NodeSlot
from baige.sched.model import Workload

__all__ = ["Code", "FilterPlugin", "Option", "ScoreContext", "ScorePlugin", "Status"]


class Code(StrEnum):
    SUCCESS = "Success"
    UNSCHEDULABLE = "Unschedulable"  # not on this node, maybe elsewhere
    WAIT = "Wait"  # not now; retry in a later cycle
    ERROR = "Error"  # the plugin could not decide


@dataclass(frozen=True, slots=True)
class Status:
    code: Code = Code.SUCCESS
    reason: str = ""
    plugin: str = ""

    @property
    def ok(self) -> bool:
        return self.code is Code.SUCCESS


SUCCESS = Status()


@dataclass(frozen=True, slots=True)
class Option:
    """A candidate for one placement step: ``devices`` cards of ``milli`` each on ``slot``.

    ``device`` names the card for a fractional share (-1: any whole cards).
    """

    slot: NodeSlot
    devices: int
    milli: int
    device: int = -1


@dataclass(frozen=True, slots=True)
class ScoreContext:
    """What a score plugin may read: the cluster, the workload, and the cycle's workload mix.

    ``mix`` is the share of demand per request shape ``(devices, milli)``, used by the
    fragmentation score to judge which free capacity future work can still use; ``host`` is
    the mean host CPU (milli) one replica of each shape asks for, so that cards on a node
    without the CPU to feed them count as unusable too (the FGD paper's measure).
    """

    cluster: ClusterState
    workload: Workload
    mix: Mapping[tuple[int, int], float]
    host: Mapping[tuple[int, int], float] = field(default_factory=dict)
    # per shape, the share of its replicas that accept each accelerator type ("*": a type
    # not named); a shape absent accepts every type. Cards of a type a shape's demand cannot
    # use are unusable to it (the FGD paper's "no access" case).
    access: Mapping[tuple[int, int], Mapping[str, float]] = field(default_factory=dict)


class FilterPlugin(Protocol):
    """Decides whether a node may take a replica of a workload."""

    @property
    def name(self) -> str: ...

    def applies(self, workload: Workload) -> bool:
        """False when the filter can never reject for this workload (skips the slow path)."""
        ...

    def filter(self, slot: NodeSlot, workload: Workload) -> Status: ...


class ScorePlugin(Protocol):
    """Ranks options; higher is better, on a 0–100 scale so weights mean what they say."""

    @property
    def name(self) -> str: ...

    def applies(self, workload: Workload) -> bool: ...

    def score(self, option: Option, ctx: ScoreContext) -> float: ...
