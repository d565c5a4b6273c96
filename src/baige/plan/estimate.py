"""Putting the cost model together: iteration time, throughput, MFU, memory and bottleneck.

:func:`evaluate` scores columns of strategies for one chip group (the search calls it on
thousands at once); :func:`estimate` is the same for one strategy and returns a readable
:class:`Estimate`. The pipeline formula lives here because it is where per-stage times
become an iteration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from baige.plan.candidates import Candidates, FloatArray
from baige.plan.cluster import ChipGroup
from baige.plan.cost import dp_time, hardware_flops_per_sequence, layer_time, stage_extras
from baige.plan.memory import MemoryBreakdown, usable_bytes
from baige.plan.model import ModelSpec
from baige.plan.software import Software
from baige.plan.strategy import Strategy

__all__ = [
    "COMPONENTS",
    "Estimate",
    "Evaluation",
    "PlanError",
    "check_strategy",
    "estimate",
    "evaluate",
    "pipeline_time",
]

COMPONENTS = (
    "compute",
    "memory-bound kernels",
    "recomputation",
    "TP comm",
    "CP comm",
    "EP comm",
    "PP comm",
    "pipeline bubble",
    "DP comm",
    "optimizer step",
)


class PlanError(ValueError):
    """A strategy, model or batch that cannot work, with the reason in words."""


def pipeline_time(m: FloatArray, t_max: FloatArray, t_sum: FloatArray, v: FloatArray) -> FloatArray:
    """Seconds for ``m`` micro-batches through a 1F1B pipeline.

    The slowest stage sets the pace for m − 1 micro-batches; filling and draining the pipe
    costs the sum of all stage times once. Interleaving ``v`` chunks per stage divides the
    fill/drain by v (Narayanan et al. 2021: bubble (p − 1)/(v·m)). For p identical stages this
    is the textbook (m + (p − 1)/v)·t; for unequal stages (mixed chips) it charges the
    imbalance as well as the bubble.
    """
    return (m - 1.0) * t_max + (t_sum + (v - 1.0) * t_max) / v


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Scores for columns of strategies on one chip group (all arrays, one row per strategy)."""

    candidates: Candidates
    iteration_s: FloatArray
    memory: MemoryBreakdown
    usable_bytes: float
    breakdown: tuple[FloatArray, ...]

    @property
    def fits(self) -> np.ndarray:
        return self.memory.total <= self.usable_bytes


def evaluate(
    model: ModelSpec, group: ChipGroup, sw: Software, c: Candidates, memory_only: bool = False
) -> Evaluation:
    """Iteration time and memory for every row of ``c`` (``memory_only`` skips the time)."""
    mem = MemoryBreakdown.of(model, sw, c)
    usable = usable_bytes(group, sw)
    if memory_only:
        zeros = np.zeros(len(c))
        return Evaluation(c, zeros, mem, usable, tuple(zeros for _ in COMPONENTS))
    layer = layer_time(model, group, sw, c)
    tau = layer.total
    extras = stage_extras(model, group, sw, c)
    single = c.pp == 1
    t_other = c.first * tau + extras.p2p
    t_last = c.last * tau + extras.head + extras.p2p
    t_max = np.where(single, t_last, np.maximum(t_other, t_last))
    t_sum = np.where(single, t_last, (model.layers - c.last) * tau + (c.pp - 1) * extras.p2p)
    t_sum = np.where(single, t_sum, t_sum + t_last)
    m = c.m.astype(np.float64)
    v = c.v.astype(np.float64)
    pipe = pipeline_time(m, t_max, t_sum, v)
    sync, optimizer = dp_time(model, group, sw, c)
    # gradient reduction hides behind the last micro-batch's backward. With v interleaved
    # chunks, Megatron launches each chunk's reduce-scatter as soon as that chunk's last
    # backward ends (grad_sync_func, during the pipeline drain) and each chunk's weight
    # all-gather during the next iteration's fill (param_sync_func), so all but the last
    # chunk's share also hides behind the bubble. FSDP's per-layer gathers and reductions run
    # beside the whole pipeline.
    bubble = pipe - m * t_max
    window = pipe if sw.fsdp else t_max + (1.0 - 1.0 / v) * bubble
    exposed = sync - np.minimum(sw.dp_overlap * sync, window)

    last_slowest = single | (t_last >= t_other)
    layers = np.where(last_slowest, c.last, c.first) * m
    head = np.where(last_slowest, extras.head, 0.0) * m
    breakdown = (
        layers * layer.gemm + head,
        layers * layer.elementwise,
        layers * layer.recompute,
        layers * layer.tp,
        layers * layer.cp,
        layers * layer.ep,
        m * extras.p2p,
        pipe - m * t_max,
        exposed,
        optimizer,
    )
    return Evaluation(c, pipe + exposed + optimizer, mem, usable, breakdown)


@dataclass(frozen=True, slots=True)
class Estimate:
    """One strategy's predicted performance on one chip group."""

    strategy: Strategy
    chip: str
    cards: int
    global_batch: int
    seq_len: int
    iteration_s: float
    model_flops: float
    hardware_flops: float
    peak_flops_per_card: float
    memory_gb: float
    states_gb: float
    activations_gb: float
    usable_gb: float
    breakdown: tuple[tuple[str, float], ...]

    @property
    def tokens_per_s(self) -> float:
        return self.global_batch * self.seq_len / self.iteration_s

    @property
    def mfu(self) -> float:
        """Model FLOPs (no recomputation) per second over the cards' peak."""
        return self.model_flops / (self.iteration_s * self.cards * self.peak_flops_per_card)

    @property
    def hardware_tflops_per_card(self) -> float:
        """Executed FLOP/s per card including recomputation, as Megatron-LM reports them."""
        return self.hardware_flops / (self.iteration_s * self.cards) / 1e12

    @property
    def fits(self) -> bool:
        return self.memory_gb <= self.usable_gb

    @property
    def bottleneck(self) -> str:
        """The largest cost other than useful compute, with its share of the iteration."""
        name, seconds = max(
            ((n, s) for n, s in self.breakdown if n != "compute"), key=lambda item: item[1]
        )
        return f"{name} ({seconds / self.iteration_s:.0%})"

    def as_dict(self) -> dict[str, object]:
        s = self.strategy
        return {
            "chip": self.chip,
            "cards": self.cards,
            "strategy": {
                "tp": s.tp, "pp": s.pp, "dp": s.dp, "cp": s.cp, "ep": s.ep,
                "micro_batch": s.micro_batch, "recompute": s.recompute.label,
                "interleave": s.interleave, "distributed_optimizer": s.distributed_optimizer,
                "last_stage_layers": s.last_stage_layers,
                "recompute_layers": s.recompute_layers,
            },
            "description": s.describe(),
            "iteration_s": self.iteration_s,
            "tokens_per_s": self.tokens_per_s,
            "mfu": self.mfu,
            "hardware_tflops_per_card": self.hardware_tflops_per_card,
            "memory_gb": self.memory_gb,
            "usable_memory_gb": self.usable_gb,
            "bottleneck": self.bottleneck,
            "breakdown_s": dict(self.breakdown),
        }  # fmt: skip


def estimate_row(
    model: ModelSpec, group: ChipGroup, evaluation: Evaluation, i: int, global_batch: int
) -> Estimate:
    """Row ``i`` of an evaluation as an :class:`Estimate`."""
    c = evaluation.candidates
    strategy = c.strategy(i, model.layers)
    rc = int(c.rc[i])
    return Estimate(
        strategy=strategy,
        chip=group.chip,
        cards=strategy.cards,
        global_batch=global_batch,
        seq_len=model.seq_len,
        iteration_s=float(evaluation.iteration_s[i]),
        model_flops=model.model_flops_per_sequence() * global_batch,
        hardware_flops=float(hardware_flops_per_sequence(model, rc, float(c.recompute_fraction[i])))
        * global_batch,
        peak_flops_per_card=group.flops_per_s,
        memory_gb=float(evaluation.memory.total[i]) / 1e9,
        states_gb=float(evaluation.memory.states[i]) / 1e9,
        activations_gb=float(evaluation.memory.activations[i]) / 1e9,
        usable_gb=evaluation.usable_bytes / 1e9,
        breakdown=tuple(
            (name, float(part[i]))
            for name, part in zip(COMPONENTS, evaluation.breakdown, strict=True)
        ),
    )


def check_strategy(
    model: ModelSpec, group: ChipGroup, strategy: Strategy, global_batch: int
) -> list[str]:
    """Every reason ``strategy`` cannot run this model on this group (empty: it can)."""
    s = strategy
    problems = []
    if s.cards != group.count:
        problems.append(
            f"tp·cp·dp·pp = {s.cards} cards, but the {group.chip} group has {group.count}"
        )
    if model.heads % s.tp or model.kv_heads % s.tp:
        problems.append(
            f"tp={s.tp} does not divide the attention heads ({model.heads} query, "
            f"{model.kv_heads} key/value): each tensor rank needs whole heads"
        )
    if group.cards_per_node % s.tp:
        problems.append(f"tp={s.tp} does not divide the {group.cards_per_node} cards of a node")
    if s.pp > model.layers or s.interleave > -(-model.layers // s.pp):
        problems.append(
            f"pp={s.pp} × interleave={s.interleave}: a stage's chunks need at least one of "
            f"the {model.layers} layers each"
        )
    if model.seq_len % (2 * s.cp) and s.cp > 1:
        problems.append(f"cp={s.cp}: seq_len {model.seq_len} must split into 2·cp chunks")
    if s.ep > 1 and (not model.is_moe or model.experts % s.ep):
        problems.append(f"ep={s.ep} must divide the number of experts ({model.experts})")
    if global_batch % (s.dp * s.micro_batch):
        problems.append(
            f"global batch {global_batch} is not a multiple of dp·micro_batch = "
            f"{s.dp * s.micro_batch}"
        )
    return problems


def estimate(
    model: ModelSpec, group: ChipGroup, sw: Software, strategy: Strategy, global_batch: int
) -> Estimate:
    """The predicted performance of one strategy; :class:`PlanError` if it cannot run."""
    problems = check_strategy(model, group, strategy, global_batch)
    if problems:
        raise PlanError("; ".join(problems))
    try:
        c = Candidates.of(strategy, model.layers, global_batch)
    except ValueError as err:
        raise PlanError(str(err)) from None
    return estimate_row(model, group, evaluate(model, group, sw, c), 0, global_batch)
