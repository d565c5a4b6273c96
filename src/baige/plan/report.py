"""Turning a plan into what people and scripts read: table rows, notes, and a JSON document.

Pure formatting, no printing: the CLI decides where it goes. The same facts appear in both
forms, and every assumed figure (an unknown chip throughput taken at the low end of its
published range, say) is repeated in both, so a number is never quoted without its caveat.
"""

from __future__ import annotations

from dataclasses import dataclass

from baige.plan.cluster import ChipGroup
from baige.plan.mixed import MixedPlan
from baige.plan.mixed_pipeline import PipelinePlan
from baige.plan.planner import PlanReport

__all__ = ["MFU_DEFINITION", "Table", "mfu_lines", "notes", "report_dict", "tables"]


@dataclass(frozen=True, slots=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def _rate(tokens_per_s: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if tokens_per_s >= scale:
            return f"{tokens_per_s / scale:.2f} {suffix}"
    return f"{tokens_per_s:.0f}"


def _memory(used: float, usable: float) -> str:
    return f"{used:.1f} / {usable:.1f} GB"


def tables(report: PlanReport) -> list[Table]:
    """The tables ``baige plan`` prints: the ranked plans, and for a mixed cluster the best
    plan per chip type and each type training alone."""
    if report.single is not None:
        first = report.single.top[0].strategy
        rows = tuple(
            (
                str(rank),
                e.strategy.describe(),
                f"{e.iteration_s:.2f} s",
                _rate(e.tokens_per_s),
                f"{e.mfu:.1%}",
                _memory(e.memory_gb, e.usable_gb),
                e.bottleneck,
                "" if rank == 1 else e.strategy.differences(first),
            )
            for rank, e in enumerate(report.single.top, start=1)
        )
        columns = ("#", "strategy", "iteration", "tokens/s", "MFU", "memory / card",
                   "bottleneck", "vs #1")  # fmt: skip
        return [Table("Best plans (fastest first)", columns, rows)]
    assert report.mixed is not None
    mixed = report.mixed
    ranked = tuple(
        (
            str(rank),
            plan.describe(),
            f"{plan.iteration_s:.2f} s",
            _rate(plan.tokens_per_s),
            f"{plan.mfu:.1%}",
            plan.bottleneck,
        )
        for rank, plan in enumerate(mixed.top, start=1)
    )
    alone = tuple(
        (
            a.chip,
            f"{a.cards:,}",
            "does not fit" if a.estimate is None else a.estimate.strategy.describe(),
            _rate(a.tokens_per_s),
            "" if a.estimate is None else f"{a.estimate.mfu:.1%}",
        )
        for a in mixed.alone
    )
    return [
        Table(
            "Best mixed plans (fastest first)",
            ("#", "plan", "iteration", "tokens/s", "MFU", "bottleneck"),
            ranked,
        ),
        _detail(mixed.best),
        Table(
            "Each chip type alone, same global batch",
            ("chip", "cards", "strategy", "tokens/s", "MFU"),
            alone,
        ),
    ]


def _detail(plan: MixedPlan) -> Table:
    layout = plan.layout
    rows: tuple[tuple[str, ...], ...]
    columns: tuple[str, ...]
    if isinstance(layout, PipelinePlan):
        rows = tuple(
            (
                s.chip,
                f"{s.stages} × {layout.replicas}",
                "/".join(str(n) for n in s.layers),
                f"{s.seconds_per_micro_batch * 1e3:.0f} ms",
                _memory(s.memory_gb, s.usable_gb),
            )
            for s in layout.stages
        )
        columns = ("chip", "stages × replicas", "layers per stage", "per micro-batch", "memory")
        return Table("Plan 1: pipeline stages in order", columns, rows)
    rows = tuple(
        (
            s.estimate.chip,
            f"{s.estimate.cards:,}",
            s.estimate.strategy.describe(),
            f"{s.batch:,}",
            f"{s.busy_s:.2f} s",
            _memory(s.estimate.memory_gb, s.estimate.usable_gb),
        )
        for s in layout.shares
    )
    columns = ("chip", "cards", "strategy", "sequences", "busy", "memory")
    return Table("Plan 1: one data-parallel group per chip type", columns, rows)


MFU_DEFINITION = (
    "MFU = model FLOPs per iteration / (iteration time × cards × peak). Model FLOPs: 6 per "
    "active weight per token for the matrix multiplies (embedding lookups excluded, the LM "
    "head included) + 12·layers·q_dim·seq_len per token for attention, counted over the full "
    "s×s matrix even when causal masking lets kernels skip half; recomputation excluded "
    "(as PaLM and Megatron count it)."
)


def mfu_lines(report: PlanReport) -> list[str]:
    """What MFU counts and the peak each chip type's MFU divides by."""
    peaks = "; ".join(
        f"{g.chip}: {g.peak_tflops:g} TFLOP/s dense BF16 per card (GEMM efficiency "
        f"{g.efficiency:.3f}, attention {g.attention_efficiency:.2f})"
        for g in report.cluster.groups
    )
    return [MFU_DEFINITION, f"peak used: {peaks}; software {report.software.name}"]


def notes(report: PlanReport) -> list[str]:
    """Lines to print under the tables: assumptions first, what MFU means, then the
    mixed-chip loss."""
    lines = [f"assumption: {a}" for a in report.cluster.assumptions]
    lines += mfu_lines(report)
    if report.single is not None:
        result = report.single
        lines.append(f"searched {result.considered:,} strategies, {result.fitting:,} fit in memory")
    mixed = report.mixed
    if mixed is not None:
        lines.append(
            f"mixed-chip loss: {mixed.mixed_loss:.1%} — the best mixed plan makes "
            f"{_rate(mixed.best.tokens_per_s)} tokens/s; the chip types training alone "
            "(same model and global batch each) would make "
            f"{_rate(mixed.sum_of_parts_tokens_per_s)}"
        )
    return lines


def _group(g: ChipGroup) -> dict[str, object]:
    return {
        "chip": g.chip,
        "count": g.count,
        "cards_per_node": g.cards_per_node,
        "peak_tflops": g.peak_tflops,
        "efficiency": g.efficiency,
        "attention_efficiency": g.attention_efficiency,
        "memory_gb": g.memory_gb,
        "memory_bandwidth_tbs": g.memory_bandwidth_tbs,
        "scale_up_gbs": g.scale_up_gbs,
        "nic_gbps": g.nic_gbps,
    }


def _mixed_plan(plan: MixedPlan) -> dict[str, object]:
    out: dict[str, object] = {
        "kind": plan.kind,
        "description": plan.describe(),
        "iteration_s": plan.iteration_s,
        "tokens_per_s": plan.tokens_per_s,
        "mfu": plan.mfu,
        "bottleneck": plan.bottleneck,
        "memory_gb": {chip: {"used": u, "usable": c} for chip, (u, c) in plan.memory().items()},
    }
    layout = plan.layout
    if isinstance(layout, PipelinePlan):
        out["pipeline"] = {
            "tp": layout.tp,
            "replicas": layout.replicas,
            "micro_batch": layout.micro_batch,
            "micro_batches": layout.micro_batches,
            "recompute": layout.recompute.label,
            "distributed_optimizer": layout.distributed_optimizer,
            "stages": [
                {
                    "chip": s.chip,
                    "stages": s.stages,
                    "layers": list(s.layers),
                    "memory_gb": s.memory_gb,
                    "seconds_per_micro_batch": s.seconds_per_micro_batch,
                }
                for s in layout.stages
            ],
        }
    else:
        out["groups"] = [{"batch": s.batch, **s.estimate.as_dict()} for s in layout.shares]
    return out


def report_dict(report: PlanReport) -> dict[str, object]:
    """Everything in the report as JSON-ready values."""
    model = report.model
    out: dict[str, object] = {
        "model": {
            "name": model.name,
            "params": model.params,
            "active_params": model.active_params,
            "layers": model.layers,
            "seq_len": model.seq_len,
        },
        "cluster": {
            "name": report.cluster.name,
            "cards": report.cluster.cards,
            "groups": [_group(g) for g in report.cluster.groups],
        },
        "software": report.software.name,
        "software_source": report.software.source,
        "mfu_definition": MFU_DEFINITION,
        "peak_tflops": {g.chip: g.peak_tflops for g in report.cluster.groups},
        "global_batch": report.global_batch,
        "tokens_per_batch": report.global_batch * model.seq_len,
        "assumptions": list(report.cluster.assumptions),
    }
    if report.single is not None:
        first = report.single.top[0].strategy
        out["plans"] = [
            {**e.as_dict(), "differs_from_best": e.strategy.differences(first)}
            for e in report.single.top
        ]
        out["searched"] = report.single.considered
        out["fit_in_memory"] = report.single.fitting
    if report.mixed is not None:
        mixed = report.mixed
        out["plans"] = [_mixed_plan(p) for p in mixed.top]
        out["alone"] = [
            {
                "chip": a.chip,
                "cards": a.cards,
                "tokens_per_s": a.tokens_per_s,
                "plan": None if a.estimate is None else a.estimate.as_dict(),
                "reason": a.reason or None,
            }
            for a in mixed.alone
        ]
        out["sum_of_parts_tokens_per_s"] = mixed.sum_of_parts_tokens_per_s
        out["mixed_loss"] = mixed.mixed_loss
    return out
