"""One entry point for a whole cluster: a single chip type is searched directly, a mixed
cluster both ways (pipelines across types, per-type data-parallel groups), with each type's
solo throughput for the mixed-chip loss."""

from __future__ import annotations

from dataclasses import dataclass

from baige.plan.cluster import Cluster
from baige.plan.estimate import PlanError
from baige.plan.mixed import MixedResult, plan_mixed
from baige.plan.model import ModelSpec
from baige.plan.search import Constraints, SearchResult, search
from baige.plan.software import Software

__all__ = ["PlanReport", "plan"]


@dataclass(frozen=True, slots=True)
class PlanReport:
    """What ``baige plan`` prints: exactly one of ``single`` and ``mixed`` is set."""

    model: ModelSpec
    cluster: Cluster
    software: Software
    global_batch: int
    single: SearchResult | None = None
    mixed: MixedResult | None = None


def plan(
    model: ModelSpec,
    cluster: Cluster,
    sw: Software,
    global_batch: int,
    *,
    top_k: int = 5,
    limits: Constraints | None = None,
) -> PlanReport:
    """The best plans for ``model`` on ``cluster``; :class:`PlanError` (or its subclass
    ``NoPlanError``) with the reason when there is none."""
    if global_batch < 1:
        raise PlanError(f"the global batch must be at least 1 sequence, got {global_batch}")
    if top_k < 1:
        raise PlanError(f"top must be at least 1, got {top_k}")
    if not cluster.is_mixed:
        result = search(model, cluster.groups[0], sw, global_batch, top_k=top_k, limits=limits)
        return PlanReport(model, cluster, sw, global_batch, single=result)
    if limits is not None and limits != Constraints():
        raise PlanError(
            f"fixed strategy fields ({limits.fixed()}) apply to a cluster of one chip type; "
            "a mixed plan chooses them per type"
        )
    mixed = plan_mixed(model, cluster, sw, global_batch, top_k=top_k)
    return PlanReport(model, cluster, sw, global_batch, mixed=mixed)
