"""Planning on a mixed cluster, and what mixing costs against the sum of its parts.

Two ways to use chips of different speeds together are searched and ranked on one scale:
pipelines whose stages run on different chip types with a non-uniform split of layers
(:mod:`baige.plan.mixed_pipeline`), and per-type data-parallel groups with per-group batch
sizes (:mod:`baige.plan.mixed_data`). The figure users quote is the *mixed-chip loss*: the
best mixed plan's throughput against the sum of each chip type training the same model, with
the same global batch, alone — what a team would get by running the groups as separate jobs.
"""

from __future__ import annotations

from dataclasses import dataclass

from baige.plan.cluster import Cluster
from baige.plan.estimate import Estimate
from baige.plan.mixed_data import DataParallelPlan, search_data_parallel
from baige.plan.mixed_pipeline import PipelinePlan, search_pipelines
from baige.plan.model import ModelSpec
from baige.plan.search import NoPlanError, search
from baige.plan.software import Software

__all__ = ["Alone", "MixedPlan", "MixedResult", "plan_mixed"]

_TIES = 8  # candidates asked of each search per plan shown, since near-ties are dropped


@dataclass(frozen=True, slots=True)
class MixedPlan:
    """A plan for the whole mixed cluster, whichever way it mixes."""

    layout: PipelinePlan | DataParallelPlan
    global_batch: int
    seq_len: int
    model_flops: float
    peak_flops: float

    @property
    def kind(self) -> str:
        return "pipeline" if isinstance(self.layout, PipelinePlan) else "data-parallel"

    @property
    def iteration_s(self) -> float:
        return self.layout.iteration_s

    @property
    def tokens_per_s(self) -> float:
        return self.global_batch * self.seq_len / self.iteration_s

    @property
    def mfu(self) -> float:
        """Model FLOPs per second over the summed peak of every card in the cluster."""
        return self.model_flops / (self.iteration_s * self.peak_flops)

    def memory(self) -> dict[str, tuple[float, float]]:
        """Peak (used, usable) GB per card, by chip type."""
        if isinstance(self.layout, PipelinePlan):
            out: dict[str, tuple[float, float]] = {}
            for stage in self.layout.stages:
                used = max(stage.memory_gb, out.get(stage.chip, (0.0, 0.0))[0])
                out[stage.chip] = (used, stage.usable_gb)
            return out
        return {
            s.estimate.chip: (s.estimate.memory_gb, s.estimate.usable_gb)
            for s in self.layout.shares
        }

    @property
    def bottleneck(self) -> str:
        layout = self.layout
        if isinstance(layout, PipelinePlan):
            per_stage = [s.seconds_per_micro_batch for s in layout.stages]
            imbalance = (max(per_stage) - min(per_stage)) * layout.micro_batches
            parts = {
                "pipeline bubble": layout.bubble_s,
                "DP comm + optimizer": layout.dp_s,
                "stage imbalance": imbalance,
            }
        else:
            busy = [s.busy_s for s in layout.shares]
            slowest = max(layout.shares, key=lambda s: s.busy_s).estimate
            name, seconds = max(
                ((n, s) for n, s in slowest.breakdown if n != "compute"), key=lambda x: x[1]
            )
            parts = {
                f"{slowest.chip}: {name}": seconds,
                "group imbalance": max(busy) - min(busy),
                "cross-group gradient exchange": layout.cross_group_s,
            }
        name, seconds = max(parts.items(), key=lambda item: item[1])
        return f"{name} ({seconds / self.iteration_s:.0%})"

    def describe(self) -> str:
        return self.layout.describe()


@dataclass(frozen=True, slots=True)
class Alone:
    """One chip group training the model alone on the same global batch."""

    chip: str
    cards: int
    estimate: Estimate | None
    reason: str = ""

    @property
    def tokens_per_s(self) -> float:
        return 0.0 if self.estimate is None else self.estimate.tokens_per_s


@dataclass(frozen=True, slots=True)
class MixedResult:
    top: tuple[MixedPlan, ...]
    alone: tuple[Alone, ...]

    @property
    def best(self) -> MixedPlan:
        return self.top[0]

    @property
    def sum_of_parts_tokens_per_s(self) -> float:
        return sum(a.tokens_per_s for a in self.alone)

    @property
    def mixed_loss(self) -> float:
        """1 − mixed throughput / Σ each type alone; negative means mixing gains."""
        parts = self.sum_of_parts_tokens_per_s
        return 1.0 - self.best.tokens_per_s / parts if parts > 0 else 0.0


def plan_mixed(
    model: ModelSpec, cluster: Cluster, sw: Software, global_batch: int, top_k: int = 5
) -> MixedResult:
    """The best mixed plans and each group's solo throughput; :class:`NoPlanError` if no
    mixed plan fits."""
    model_flops = model.model_flops_per_sequence() * global_batch
    peak = sum(g.count * g.flops_per_s for g in cluster.groups)
    layouts: list[PipelinePlan | DataParallelPlan] = [
        *search_pipelines(model, cluster, sw, global_batch, top_k * _TIES),
        *search_data_parallel(model, cluster, sw, global_batch, top_k * _TIES),
    ]
    if not layouts:
        raise NoPlanError(
            f"no mixed plan fits {model.name} on {cluster.name}: no pipeline across the chip "
            "types balances within memory, and at least one group cannot hold a model replica "
            "alone; add cards or use a smaller seq_len"
        )
    layouts.sort(key=lambda lay: lay.iteration_s)
    distinct: list[PipelinePlan | DataParallelPlan] = []
    for lay in layouts:
        # variants that differ only on a group that is not critical tie to the microsecond;
        # show one of each
        if not distinct or lay.iteration_s > distinct[-1].iteration_s * (1 + 1e-3):
            distinct.append(lay)
    top = tuple(
        MixedPlan(lay, global_batch, model.seq_len, model_flops, peak) for lay in distinct[:top_k]
    )
    alone = []
    for group in cluster.groups:
        try:
            best = search(model, group, sw, global_batch, top_k=1).best
        except NoPlanError as err:
            alone.append(Alone(group.chip, group.count, None, str(err)))
        else:
            alone.append(Alone(group.chip, group.count, best))
    return MixedResult(top, tuple(alone))
