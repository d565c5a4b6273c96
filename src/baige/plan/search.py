"""Searching every valid strategy for one group of identical chips.

The space is enumerated from divisors only (a degree that does not divide the card count,
the heads, the layers or the batch cannot run), laid out as numpy columns, pruned by memory
— most of the space for a large model does not fit — and only then timed. That keeps a
16,384-card search to tens of thousands of rows and well under a second.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from baige.plan.candidates import Candidates, IntArray
from baige.plan.cluster import ChipGroup
from baige.plan.estimate import Estimate, PlanError, estimate_row, evaluate
from baige.plan.model import ModelSpec
from baige.plan.software import Software
from baige.plan.strategy import Recompute

__all__ = [
    "Constraints",
    "NoPlanError",
    "SearchResult",
    "check_limits",
    "divisors",
    "expand_structure",
    "search",
    "structures",
]

MAX_MICRO_BATCH = 16
MAX_INTERLEAVE = 8
MAX_CP = 32


class NoPlanError(PlanError):
    """No strategy runs; the message says what ruled each part of the space out."""


@dataclass(frozen=True, slots=True)
class Constraints:
    """Degrees the user fixed (``None``: search them)."""

    tp: int | None = None
    pp: int | None = None
    cp: int | None = None
    ep: int | None = None
    micro_batch: int | None = None
    recompute: Recompute | None = None

    def allows(self, name: str, value: int) -> bool:
        wanted = getattr(self, name)
        return wanted is None or int(wanted) == value


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The best strategies, fastest first, and what the search looked at."""

    top: tuple[Estimate, ...]
    considered: int
    fitting: int
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def best(self) -> Estimate:
        return self.top[0]


def divisors(n: int, limit: int | None = None) -> list[int]:
    """Divisors of ``n`` in increasing order, at most ``limit``."""
    top = n if limit is None else min(n, limit)
    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    every = sorted(set(small + [n // d for d in small]))
    return [d for d in every if d <= top]


def structures(
    model: ModelSpec,
    group: ChipGroup,
    sw: Software,
    global_batch: int | None,
    limits: Constraints,
    rejected: Counter[str],
) -> list[tuple[int, int, int, int, int]]:
    """Every (tp, cp, pp, dp, ep) that uses exactly the group's cards and divides what it must
    (the batch is not checked when ``global_batch`` is ``None``: the caller picks it per dp).

    Tensor parallelism stays inside a node and needs whole query and key/value heads per rank;
    context parallelism splits each sequence into 2·cp chunks (for causal load balance);
    pipeline stages need at least one layer; data-parallel ranks need whole sequences; expert
    parallelism is carved out of data parallelism and needs whole experts per rank.
    """
    n = group.count
    found = []
    for tp in divisors(math.gcd(n, group.cards_per_node)):
        if not limits.allows("tp", tp):
            continue
        if model.heads % tp or model.kv_heads % tp:
            rejected[
                f"tp={tp} does not divide the {model.heads} query and {model.kv_heads} "
                "key/value heads"
            ] += 1
            continue
        for cp in divisors(n // tp, MAX_CP if sw.context_parallel else 1):
            if not limits.allows("cp", cp):
                continue
            if cp > 1 and model.seq_len % (2 * cp):
                rejected["cp does not split the sequence"] += 1
                continue
            for pp in divisors(n // (tp * cp), model.layers):
                if not limits.allows("pp", pp):
                    continue
                dp = n // (tp * cp * pp)
                if global_batch is not None and global_batch % dp:
                    rejected["dp does not divide the global batch"] += 1
                    continue
                eps = divisors(dp) if model.is_moe else [1]
                for ep in eps:
                    if not limits.allows("ep", ep):
                        continue
                    if model.is_moe and model.experts % ep:
                        continue
                    found.append((tp, cp, pp, dp, ep))
    return found


def _layer_splits(layers: int, pp: int) -> list[tuple[int, int]]:
    """(layers per stage, layers on the last stage) pairs to try: the even split, and shorter
    last stages that make room for the LM head (the cost model picks the best)."""
    if pp == 1:
        return [(layers, layers)]
    splits = []
    even = -(-layers // pp)
    for last in range(max(1, even - 8), even + 1):
        rest = layers - last
        if rest >= pp - 1:
            splits.append((-(-rest // (pp - 1)), last))
    return splits


def expand_structure(
    model: ModelSpec,
    sw: Software,
    structure: tuple[int, int, int, int, int],
    global_batch: int,
    limits: Constraints,
) -> Candidates | None:
    """All micro-batch sizes, interleavings, recomputation modes, optimizer sharding and
    layer splits for one (tp, cp, pp, dp, ep)."""
    tp, cp, pp, dp, ep = structure
    per_rank = global_batch // dp
    mbs = [b for b in divisors(per_rank, MAX_MICRO_BATCH) if limits.allows("micro_batch", b)]
    rcs = [int(r) for r in Recompute if limits.recompute is None or r == limits.recompute]
    opts = [0, 1] if sw.distributed_optimizer and dp * cp > 1 else [0]
    rows: list[tuple[int, ...]] = []
    for mb in mbs:
        m = per_rank // mb
        vs = [1]
        if pp > 1 and m % pp == 0:
            vs += [v for v in range(2, MAX_INTERLEAVE + 1) if model.layers % (pp * v) == 0]
        for v in vs:
            if v == 1:
                splits = _layer_splits(model.layers, pp)
            else:
                splits = [(model.layers // pp, model.layers // pp)]
            for (first, last), rc, opt in itertools.product(splits, rcs, opts):
                rows.append((tp, pp, dp, cp, ep, mb, m, v, rc, opt, first, last))
    if not rows:
        return None
    table: IntArray = np.array(rows, dtype=np.int64)
    return Candidates(*(table[:, i] for i in range(table.shape[1])))


def search(
    model: ModelSpec,
    group: ChipGroup,
    sw: Software,
    global_batch: int,
    *,
    top_k: int = 5,
    limits: Constraints | None = None,
) -> SearchResult:
    """The ``top_k`` fastest strategies that fit in memory, or :class:`NoPlanError` saying why
    none does."""
    limits = limits or Constraints()
    problems = check_limits(model, group, sw, limits)
    if problems:
        raise NoPlanError("; ".join(problems))
    rejected: Counter[str] = Counter()
    found = structures(model, group, sw, global_batch, limits, rejected)
    parts = [
        part
        for s in found
        if (part := expand_structure(model, sw, s, global_batch, limits)) is not None
    ]
    everything = Candidates.concat(parts)
    if len(everything) == 0:
        raise NoPlanError(_explain_empty(model, group, global_batch, limits, rejected))
    memory = evaluate(model, group, sw, everything, memory_only=True)
    fits = memory.fits
    rejected["does not fit in memory"] += int((~fits).sum())
    if not fits.any():
        smallest = int(np.argmin(memory.memory.total))
        best = everything.strategy(smallest, model.layers)
        need = float(memory.memory.total[smallest]) / 1e9
        raise NoPlanError(
            f"no strategy fits in memory: the leanest ({best.describe()}) needs {need:.1f} GB "
            f"per card, a {group.chip} card leaves {memory.usable_bytes / 1e9:.1f} GB "
            f"({group.memory_gb:g} GB less the runtime's share). Add cards, use cards with "
            "more memory, or shorten seq_len."
        )
    kept = everything.select(fits)
    scored = evaluate(model, group, sw, kept)
    order = np.argsort(scored.iteration_s, kind="stable")[: max(top_k, 1)]
    top = tuple(estimate_row(model, group, scored, int(i), global_batch) for i in order)
    return SearchResult(top, len(everything), len(kept), dict(rejected))


def check_limits(
    model: ModelSpec, group: ChipGroup, sw: Software, limits: Constraints
) -> list[str]:
    """Why degrees the user fixed cannot work, before searching around them."""
    problems = []
    n = group.count
    tp, pp, cp, ep = limits.tp, limits.pp, limits.cp, limits.ep
    if tp is not None:
        if model.heads % tp or model.kv_heads % tp:
            problems.append(
                f"tp={tp} does not divide the attention heads ({model.heads} query, "
                f"{model.kv_heads} key/value): each tensor-parallel rank needs whole heads"
            )
        if group.cards_per_node % tp:
            problems.append(
                f"tp={tp} must divide the {group.cards_per_node} cards of a node: tensor "
                "parallelism needs the scale-up link"
            )
    if pp is not None and pp > model.layers:
        problems.append(f"pp={pp} exceeds the model's {model.layers} layers")
    if cp is not None and cp > 1 and not sw.context_parallel:
        problems.append(f"cp={cp}: the {sw.name} software profile has no context parallelism")
    if cp is not None and cp > 1 and model.seq_len % (2 * cp):
        problems.append(f"cp={cp}: seq_len {model.seq_len} does not split into 2·cp chunks")
    if ep is not None and ep > 1 and (not model.is_moe or model.experts % ep):
        problems.append(f"ep={ep} must divide the number of experts ({model.experts})")
    fixed = 1
    for name, value in (("tp", tp), ("pp", pp), ("cp", cp)):
        if value is not None:
            fixed *= value
            if n % fixed:
                problems.append(f"{name}={value}: {n} cards do not split into groups of {fixed}")
                break
    return problems


def _explain_empty(
    model: ModelSpec,
    group: ChipGroup,
    global_batch: int,
    limits: Constraints,
    rejected: Counter[str],
) -> str:
    reasons = "; ".join(f"{why} ({count}×)" for why, count in rejected.most_common())
    fixed = ", ".join(
        f"{name}={getattr(limits, name)}"
        for name in ("tp", "pp", "cp", "ep", "micro_batch")
        if getattr(limits, name) is not None
    )
    detail = f" with {fixed}" if fixed else ""
    return (
        f"no valid way to split {model.name} ({model.heads} heads, {model.kv_heads} key/value "
        f"heads, {model.layers} layers) over {group.count} {group.chip} cards with global batch "
        f"{global_batch}{detail}" + (f": {reasons}" if reasons else "")
    )
