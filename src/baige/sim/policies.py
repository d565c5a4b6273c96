"""Placement policies to compare: the FGD paper's baselines as score plugins, and profiles.

Weng et al. (ATC'23) compare fragmentation gradient descent with five heuristics; each is a
score plugin here, registered in ``baige.sched``'s plugin registry (``SCORES``) when this
module is imported, so a profile names it like any built-in plugin:

* ``best-fit`` — the node left with the least free capacity, CPU and GPU weighted equally
  and each measured against the largest node (the paper's BestFit);
* ``dot-product`` — Tetris' alignment: the smaller the dot product of the node's free
  vector and the request, both relative to the node, the better;
* ``gpu-packing`` — a share of an already shared card first, then free cards of a busy node,
  an idle node last;
* ``gpu-clustering`` — nodes already running tasks of the same share of a card first. The
  paper tags each task; a node's tags are read here from its cards' used amounts (a card
  whose use is a multiple of the share), which is what the score can see.

``random`` and ``fragmentation`` (FGD) are built into ``baige.sched``. Every policy scores
every feasible node (``candidate_nodes: 0``), as the paper's simulator does; ``baige`` is
Baige's own profile unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from baige.sched import BAIGE, MILLI, PROFILES, Profile, ProfileError, Workload
from baige.sched.cluster import ClusterState, NodeSlot
from baige.sched.framework import Option, ScoreContext
from baige.sched.plugins import SCORES

__all__ = [
    "PLACEMENT_POLICIES",
    "BestFit",
    "DotProduct",
    "GpuClustering",
    "GpuPacking",
    "get_policy",
    "policy_names",
]


@dataclass(slots=True)
class _Largest:
    """The largest node's CPU and device capacity, computed once per cycle's cluster."""

    cluster_id: int = -1
    cpu: int = 1
    milli: int = MILLI

    def of(self, cluster: ClusterState) -> _Largest:
        if id(cluster) != self.cluster_id:
            self.cluster_id = id(cluster)
            self.cpu = max((s.node.cpu_milli for s in cluster.slots), default=0) or 1
            self.milli = max((s.node.devices for s in cluster.slots), default=1) * MILLI
        return self


def _used_after(option: Option) -> int:
    return option.devices * option.milli


@dataclass(slots=True)
class BestFit:
    name: str = "best-fit"
    _largest: _Largest = field(default_factory=_Largest)

    def applies(self, workload: Workload) -> bool:
        return True

    def score(self, option: Option, ctx: ScoreContext) -> float:
        largest = self._largest.of(ctx.cluster)
        slot = option.slot
        gpu_left = (sum(slot.free) - _used_after(option)) / largest.milli
        cpu_left = 0.0
        if slot.node.cpu_milli:
            cpu_left = max(0, slot.cpu_free - ctx.workload.request.cpu_milli) / largest.cpu
        return 100.0 * (1.0 - 0.5 * gpu_left - 0.5 * cpu_left)


@dataclass(frozen=True, slots=True)
class DotProduct:
    name: str = "dot-product"

    def applies(self, workload: Workload) -> bool:
        return True

    def score(self, option: Option, ctx: ScoreContext) -> float:
        slot = option.slot
        node = slot.node
        capacity = node.devices * MILLI
        dot = (sum(slot.free) / capacity) * (_used_after(option) / capacity)
        dims = 1
        if node.cpu_milli:
            request = ctx.workload.request.cpu_milli
            dot += (max(0, slot.cpu_free) / node.cpu_milli) * (request / node.cpu_milli)
            dims = 2
        return 100.0 * (1.0 - dot / dims)


@dataclass(frozen=True, slots=True)
class GpuPacking:
    name: str = "gpu-packing"

    def applies(self, workload: Workload) -> bool:
        return True

    def score(self, option: Option, ctx: ScoreContext) -> float:
        free = option.slot.free
        whole = sum(1 for f in free if f == MILLI)
        if option.device >= 0 and free[option.device] < MILLI:  # a share of a shared card
            return max(50.0, 100.0 - free[option.device] * 100 / MILLI / 10)
        if whole == len(free):  # an idle node
            return max(0.0, 100 / 3 - whole)
        taking = 1 if option.device >= 0 else option.devices
        return max(100 / 3, 50.0 - taking)


def _same_share(slot: NodeSlot, milli: int) -> tuple[bool, bool]:
    """(some card hosts shares of this size, every used card does)."""
    used = [MILLI - f for f in slot.free if f < MILLI]
    same = [u % milli == 0 for u in used]
    return any(same), bool(used) and all(same)


@dataclass(slots=True)
class GpuClustering:
    name: str = "gpu-clustering"
    _largest: _Largest = field(default_factory=_Largest)

    def applies(self, workload: Workload) -> bool:
        return True

    def score(self, option: Option, ctx: ScoreContext) -> float:
        slot = option.slot
        fill = 25.0 * (1.0 - sum(slot.free) / self._largest.of(ctx.cluster).milli)
        some, only = _same_share(slot, option.milli)
        if only:
            return 75.0 + fill
        if some:
            return 50.0 + fill
        if all(f == MILLI for f in slot.free):
            return 25.0 + fill
        return fill


for _plugin in (BestFit, DotProduct, GpuPacking, GpuClustering):
    SCORES.setdefault(_plugin().name, _plugin)

_PLACEMENT = replace(BAIGE, candidate_nodes=0)

PLACEMENT_POLICIES: dict[str, Profile] = {
    "random": replace(_PLACEMENT, name="random", scores=(("random", 1.0),)),
    "best-fit": replace(_PLACEMENT, name="best-fit", scores=(("best-fit", 1.0),)),
    "dot-product": replace(_PLACEMENT, name="dot-product", scores=(("dot-product", 1.0),)),
    "gpu-packing": replace(_PLACEMENT, name="gpu-packing", scores=(("gpu-packing", 1.0),)),
    "gpu-clustering": replace(_PLACEMENT, name="gpu-clustering", scores=(("gpu-clustering", 1.0),)),
    "fgd": replace(_PLACEMENT, name="fgd", scores=(("fragmentation", 1.0),)),
}


def policy_names() -> list[str]:
    return [*PROFILES, *PLACEMENT_POLICIES]


def get_policy(name: str) -> Profile:
    """A built-in profile (``baige``, ``fifo``) or one of the placement policies above."""
    if name in PROFILES:
        return PROFILES[name]
    if name in PLACEMENT_POLICIES:
        return PLACEMENT_POLICIES[name]
    raise ProfileError(f"unknown profile {name!r}; known: {', '.join(policy_names())}")
