"""Placement policies to compare: the FGD paper's baselines as score plugins, and profiles.

Weng et al. (ATC'23) compare fragmentation gradient descent with five heuristics. Each is a
score plugin here, written after the paper's own simulator (hkust-adsl/
kubernetes-scheduler-simulator, ``pkg/simulator/plugin/*_score.go``) and registered in
``baige.sched``'s plugin registry (``SCORES``) when this module is imported, so a profile
names it like any built-in plugin. Like the artifact's, their scores are whole numbers (so
near-equal nodes tie) and ties go to the node first in the snapshot (``tie_break:
node-order``; the artifact breaks them by node name, which it prefixes with a seeded shuffle:
the inflation experiment shuffles the node list per seed to match). CPU and cards are
measured against the largest node (the artifact's constants, 128 cores and 8 cards, are the
largest node of its trace):

* ``best-fit`` — the node left with the least free CPU and cards, each weighted a half;
* ``dot-product`` — Tetris' alignment: the smaller the dot product of the node's free
  (CPU, cards) vector and the request's, the better;
* ``gpu-packing`` — a share of an already shared card first, then free cards of a node in
  use, an idle node last (the smaller the better); CPU-only tasks are indifferent;
* ``gpu-clustering`` — nodes running only tasks of the same card shape first (a share of a
  card, whatever its size, or ``k`` whole cards: the artifact's pod tags), then nodes with
  some, then idle nodes, each band ordered by cards in use; CPU-only tasks are indifferent.

``random`` (a uniformly random feasible node, a random card on it) and ``fragmentation``
(FGD) are built into ``baige.sched``. Every policy scores every feasible node
(``candidate_nodes: 0``), as the paper's simulator does; ``baige`` is Baige's own profile
unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from baige.sched import BAIGE, MILLI, PROFILES, Profile, ProfileError, Workload
from baige.sched.cluster import ClusterState, tag_of
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
    """The largest node's CPU and card capacity, computed once per cycle's cluster."""

    cluster_id: int = -1
    cpu: int = 1
    milli: int = MILLI

    def of(self, cluster: ClusterState) -> _Largest:
        if id(cluster) != self.cluster_id:
            self.cluster_id = id(cluster)
            self.cpu = max((s.node.cpu_milli for s in cluster.slots), default=0) or 1
            self.milli = max((s.node.devices for s in cluster.slots), default=1) * MILLI
        return self


def _asked(option: Option) -> int:
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
        gpu_left = (sum(slot.free) - _asked(option)) / largest.milli
        cpu_left = 0.0
        if slot.node.cpu_milli:
            cpu_left = (slot.cpu_free - ctx.workload.request.cpu_milli) / largest.cpu
        return float(int(100.0 * (1.0 - 0.5 * gpu_left - 0.5 * cpu_left)))


@dataclass(slots=True)
class DotProduct:
    name: str = "dot-product"
    _largest: _Largest = field(default_factory=_Largest)

    def applies(self, workload: Workload) -> bool:
        return True

    def score(self, option: Option, ctx: ScoreContext) -> float:
        largest = self._largest.of(ctx.cluster)
        slot = option.slot
        dot = (sum(slot.free) / largest.milli) * (_asked(option) / largest.milli)
        if slot.node.cpu_milli:
            cpu = ctx.workload.request.cpu_milli
            dot += (max(0, slot.cpu_free) / largest.cpu) * (cpu / largest.cpu)
        return float(int(100.0 * (1.0 - dot / 2)))


@dataclass(frozen=True, slots=True)
class GpuPacking:
    name: str = "gpu-packing"

    def applies(self, workload: Workload) -> bool:
        return True

    def score(self, option: Option, ctx: ScoreContext) -> float:
        if option.devices == 0:
            return 0.0
        free = option.slot.free
        whole = sum(1 for f in free if f == MILLI)
        if whole == len(free):  # an idle node: the smaller, the better
            return float(max(33 - whole, whole))
        if option.device >= 0 and free[option.device] < MILLI:  # a share of a shared card
            return float(max(100 - (free[option.device] * 100 // MILLI) // 10, 50))
        taking = 1 if option.device >= 0 else option.devices
        return float(max(50 - taking, 33))


@dataclass(slots=True)
class GpuClustering:
    name: str = "gpu-clustering"
    _largest: _Largest = field(default_factory=_Largest)

    def applies(self, workload: Workload) -> bool:
        return True

    def score(self, option: Option, ctx: ScoreContext) -> float:
        tag = tag_of(option.devices, option.milli)
        if tag is None:
            return 0.0
        slot = option.slot
        largest = self._largest.of(ctx.cluster).milli
        base = 25 * (largest - sum(slot.free)) // largest
        tags = slot.tags
        if tag in tags:
            return float(base + (75 if len(tags) == 1 else 50))
        return float(base + (25 if not tags else 0))


for _plugin in (BestFit, DotProduct, GpuPacking, GpuClustering):
    SCORES.setdefault(_plugin().name, _plugin)

_PLACEMENT = replace(BAIGE, candidate_nodes=0, tie_break="node-order")

PLACEMENT_POLICIES: dict[str, Profile] = {
    "random": replace(_PLACEMENT, name="random", scores=(("random", 1.0),)),
    "best-fit": replace(_PLACEMENT, name="best-fit", scores=(("best-fit", 1.0),)),
    "dot-product": replace(_PLACEMENT, name="dot-product", scores=(("dot-product", 1.0),)),
    "gpu-packing": replace(_PLACEMENT, name="gpu-packing", scores=(("gpu-packing", 1.0),)),
    "gpu-clustering": replace(_PLACEMENT, name="gpu-clustering", scores=(("gpu-clustering", 1.0),)),
    # FGD alone; its ties go as in Baige's placer (fullest node first), not by node name
    "fgd": replace(_PLACEMENT, name="fgd", scores=(("fragmentation", 1.0),), tie_break="best-fit"),
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
