"""Mixed chips, data-wise: each chip type trains its own model replicas on its share of the batch.

Every group keeps a strategy of its own (its own TP/PP/CP/EP, micro-batch, recomputation),
as if it trained alone, and the global batch is divided so that all groups finish their
forward and backward passes together: a group twice as fast gets about twice the sequences.
Gradients are then reduced inside each group and exchanged once across groups (the only
traffic that crosses from one chip type to another). This is the per-group batch balancing
of Whale/Metis-style planners; it needs every group to hold a whole model replica.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from dataclasses import dataclass

import numpy as np

from baige.plan.candidates import Candidates, FloatArray, IntArray
from baige.plan.cluster import ChipGroup, Cluster
from baige.plan.cost import collective_time
from baige.plan.estimate import Estimate, estimate_row, evaluate
from baige.plan.model import ModelSpec
from baige.plan.search import Constraints, expand_structure, structures
from baige.plan.software import Software

__all__ = ["DataParallelPlan", "GroupShare", "search_data_parallel"]

_KEEP_PER_GROUP = 8
_KEEP_UNITS = 16
_LARGE_M = 1 << 20  # micro-batch count for the memory check: every stage at its peak in flight


@dataclass(frozen=True, slots=True)
class GroupShare:
    """One group's part: its strategy, evaluated on the sequences it processes per iteration."""

    estimate: Estimate
    batch: int

    @property
    def busy_s(self) -> float:
        return self.estimate.iteration_s


@dataclass(frozen=True, slots=True)
class DataParallelPlan:
    shares: tuple[GroupShare, ...]
    iteration_s: float
    cross_group_s: float

    def describe(self) -> str:
        split = " + ".join(f"{s.estimate.chip} {s.batch}" for s in self.shares)
        return f"one data-parallel group per chip type; sequences {split}"


@dataclass(frozen=True, slots=True)
class _Layouts:
    """A group's fitting strategies, with time ≈ fixed + per_step·m for m micro-batches."""

    candidates: Candidates
    fixed: FloatArray
    per_step: FloatArray
    unit: IntArray  # sequences per micro-batch step: dp·micro_batch


def _layouts(
    model: ModelSpec, group: ChipGroup, sw: Software, share: float, limits: Constraints
) -> _Layouts | None:
    """Every strategy for the group, linearised in the number of micro-batches, pruned by
    memory, and the fastest few on the expected share kept."""
    rejected: Counter[str] = Counter()
    parts = []
    for structure in structures(model, group, sw, None, limits, rejected):
        dp = structure[3]
        per_rank = max(1, round(share / dp))
        part = expand_structure(model, sw, structure, per_rank * dp, limits)
        if part is not None:
            parts.append(part)
    rows = Candidates.concat(parts)
    if len(rows) == 0:
        return None
    worst = dataclasses.replace(rows, m=np.full(len(rows), _LARGE_M, dtype=np.int64))
    rows = rows.select(evaluate(model, group, sw, worst, memory_only=True).fits)
    if len(rows) == 0:
        return None
    now = evaluate(model, group, sw, rows).iteration_s
    later = evaluate(model, group, sw, dataclasses.replace(rows, m=rows.m + 1)).iteration_s
    per_step = later - now
    fixed = now - rows.m * per_step
    unit = rows.dp * rows.mb
    on_share = fixed + per_step * share / unit
    # the best layout for each batch granularity (dp·micro_batch), so the split can land close
    # to the balance point even when the fastest layouts all move 256 sequences at a time
    order = np.argsort(on_share, kind="stable")
    _, first_of_unit = np.unique(unit[order], return_index=True)
    diverse = order[np.sort(first_of_unit)]
    keep = np.concatenate([order[:_KEEP_PER_GROUP], diverse[:_KEEP_UNITS]])
    keep = keep[np.sort(np.unique(keep, return_index=True)[1])]
    return _Layouts(rows.select(keep), fixed[keep], per_step[keep], unit[keep])


def _split_batch(
    fixed: FloatArray, per_step: FloatArray, unit: IntArray, batch: int
) -> tuple[IntArray, FloatArray]:
    """Micro-batch counts (each ≥ 1) with Σ unit·m = batch minimising max(fixed + per_step·m),
    for many combinations at once (rows: combinations, columns: groups).

    Bisection on the finishing time finds the least T at which the groups can absorb the
    batch; the surplus is then handed back, largest units first, to land exactly on it (if
    it cannot, T moves up one step and the hand-back is tried again). Rows with no exact
    split finish at infinity.
    """
    rows = fixed.shape[0]
    low = (fixed + per_step).max(axis=1)
    high = low + batch * per_step.max(axis=1)
    for _ in range(60):
        mid = (low + high) / 2
        counts = np.maximum(1, np.floor((mid[:, None] - fixed) / per_step))
        ok = (unit * counts).sum(axis=1) >= batch
        high = np.where(ok, mid, high)
        low = np.where(ok, low, mid)
    order = np.argsort(-unit, axis=1, kind="stable")
    result = np.zeros(fixed.shape, dtype=np.int64)
    finish = np.full(rows, np.inf)
    pending = unit.sum(axis=1) <= batch
    for _ in range(16):
        if not pending.any():
            break
        counts = np.maximum(1, np.floor((high[:, None] - fixed) / per_step)).astype(np.int64)
        surplus = (unit * counts).sum(axis=1) - batch
        for rank in range(fixed.shape[1]):
            col = order[:, rank : rank + 1]
            u = np.take_along_axis(unit, col, axis=1)[:, 0]
            have = np.take_along_axis(counts, col, axis=1)[:, 0]
            take = np.clip(np.minimum(have - 1, surplus // u), 0, None)
            np.put_along_axis(counts, col, (have - take)[:, None], axis=1)
            surplus = surplus - take * u
        done = pending & (surplus == 0)
        result[done] = counts[done]
        finish = np.where(done, (fixed + per_step * counts).max(axis=1), finish)
        pending &= ~done
        high = high + per_step.min(axis=1)
    return result, finish


def search_data_parallel(
    model: ModelSpec, cluster: Cluster, sw: Software, global_batch: int, top_k: int = 3
) -> list[DataParallelPlan]:
    """The ``top_k`` best splits of the batch over per-group strategies (empty: none fits)."""
    groups = cluster.groups
    weight = [g.count * g.peak_tflops * g.efficiency for g in groups]
    shares = [global_batch * w / sum(weight) for w in weight]
    layouts = [
        _layouts(model, g, sw, s, Constraints()) for g, s in zip(groups, shares, strict=True)
    ]
    if any(lay is None for lay in layouts):
        return []
    found = [lay for lay in layouts if lay is not None]
    cross = _cross_group_time(model, cluster, sw)
    picks = np.array(list(itertools.product(*(range(len(lay.fixed)) for lay in found))))
    columns = range(len(found))
    fixed = np.stack([found[g].fixed[picks[:, g]] for g in columns], axis=1)
    per_step = np.stack([found[g].per_step[picks[:, g]] for g in columns], axis=1)
    unit = np.stack([found[g].unit[picks[:, g]] for g in columns], axis=1)
    counts, finish = _split_batch(fixed, per_step, unit, global_batch)
    plans = []
    for row in np.argsort(finish, kind="stable")[:top_k]:
        if not np.isfinite(finish[row]):
            break
        parts = []
        for g, (lay, group) in enumerate(zip(found, groups, strict=True)):
            i, m = int(picks[row, g]), int(counts[row, g])
            chosen = lay.candidates.select([i])
            chosen = dataclasses.replace(chosen, m=np.array([m], dtype=np.int64))
            batch = int(lay.unit[i]) * m
            scored = evaluate(model, group, sw, chosen)
            parts.append(GroupShare(estimate_row(model, group, scored, 0, batch), batch))
        plans.append(DataParallelPlan(tuple(parts), max(p.busy_s for p in parts) + cross, cross))
    plans.sort(key=lambda p: p.iteration_s)
    return plans


def _cross_group_time(model: ModelSpec, cluster: Cluster, sw: Software) -> float:
    """All-reduce of the whole gradient across groups after each group has reduced its own.

    Each group holds the gradient spread over all its cards, so the exchange runs over as
    many parallel links as the smallest group has cards, at the slowest between-group
    bandwidth. It cannot overlap: it waits for the last group's backward pass.
    """
    groups = cluster.groups
    links = min(g.count for g in groups)
    bandwidth = min(cluster.between_bytes_per_s(a, b) for a, b in itertools.combinations(groups, 2))
    per_link = model.params * float(sw.grad_reduce_bytes) / links
    return float(collective_time(len(groups), per_link, bandwidth, 2.0, sw))
