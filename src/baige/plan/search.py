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
from dataclasses import dataclass, field, fields

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
    dp: int | None = None
    cp: int | None = None
    ep: int | None = None
    micro_batch: int | None = None
    recompute: Recompute | None = None
    interleave: int | None = None
    distributed_optimizer: bool | None = None
    last_stage_layers: int | None = None
    recompute_layers: int | None = None

    def allows(self, name: str, value: int) -> bool:
        wanted = getattr(self, name)
        return wanted is None or int(wanted) == value

    def fixed(self) -> str:
        """The fixed fields as ``name=value`` words (empty when nothing is fixed)."""
        words = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                shown = value.label if isinstance(value, Recompute) else value
                words.append(f"{f.name}={shown}")
        return ", ".join(words)


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
                if not limits.allows("dp", dp):
                    continue
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


def _recomputed_layers(rc: int, first: int, limits: Constraints) -> list[int]:
    """Layers per stage that full recomputation covers: all of them, or (Megatron's block
    method) a quarter, half or three quarters of them, so that memory left over stores the
    rest instead of recomputing it."""
    if rc != int(Recompute.FULL):
        return [first]
    if limits.recompute_layers is not None:
        return [min(limits.recompute_layers, first)]
    return sorted({max(1, first * q // 4) for q in (1, 2, 3)} | {first})


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
    if limits.micro_batch is not None:
        mbs = [limits.micro_batch] if per_rank % limits.micro_batch == 0 else []
    else:
        mbs = divisors(per_rank, MAX_MICRO_BATCH)
    rcs = [int(r) for r in Recompute if limits.recompute is None or r == limits.recompute]
    if limits.recompute_layers is not None:
        rcs = [r for r in rcs if r == int(Recompute.FULL)]
    opts = [0, 1] if sw.distributed_optimizer and dp * cp > 1 else [0]
    if limits.distributed_optimizer is not None:
        opts = [o for o in opts if o == int(limits.distributed_optimizer)]
    splits = _layer_splits(model.layers, pp)
    if limits.last_stage_layers is not None:
        splits = [(f, last) for f, last in splits if last == limits.last_stage_layers]
        if not splits and pp > 1:
            rest = model.layers - limits.last_stage_layers
            if rest >= pp - 1 and limits.last_stage_layers >= 1:
                splits = [(-(-rest // (pp - 1)), limits.last_stage_layers)]
    # per layer split, every (rc, opt, first, last, rl) tail once; rows are prefix + tail
    tails = {
        (first, last): [
            (rc, opt, first, last, rl)
            for rc, opt in itertools.product(rcs, opts)
            for rl in _recomputed_layers(rc, first, limits)
        ]
        for first, last in splits
    }
    rows: list[tuple[int, ...]] = []
    for mb in mbs:
        m = per_rank // mb
        vs = [1]
        if pp > 1 and m % pp == 0:
            vs += list(range(2, MAX_INTERLEAVE + 1))
        if limits.interleave is not None:
            vs = [v for v in vs if v == limits.interleave]
        for v, split in itertools.product(vs, splits):
            if split[0] % v:  # the full stages need whole layers per model chunk
                continue
            prefix = (tp, pp, dp, cp, ep, mb, m, v)
            rows.extend(prefix + tail for tail in tails[split])
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
        _explain_knobs(model, sw, found, global_batch, limits, rejected)
        raise NoPlanError(_explain_empty(model, group, global_batch, limits, rejected))
    memory = evaluate(model, group, sw, everything, memory_only=True)
    fits = memory.fits
    rejected["does not fit in memory"] += int((~fits).sum())
    if not fits.any():
        smallest = int(np.argmin(memory.memory.total))
        best = everything.strategy(smallest, model.layers)
        need = float(memory.memory.total[smallest]) / 1e9
        raise NoPlanError(_explain_memory(model, group, limits, best.describe(), need,
                                          memory.usable_bytes / 1e9))  # fmt: skip
    kept = everything.select(fits)
    scored = evaluate(model, group, sw, kept)
    order = np.argsort(scored.iteration_s, kind="stable")[: max(top_k, 1)]
    top = tuple(estimate_row(model, group, scored, int(i), global_batch) for i in order)
    return SearchResult(top, len(everything), len(kept), dict(rejected))


def _explain_memory(
    model: ModelSpec,
    group: ChipGroup,
    limits: Constraints,
    leanest: str,
    need_gb: float,
    usable_gb: float,
) -> str:
    """Why nothing fits, and what would: the fixed fields to free first, then more cards."""
    hints = []
    fixed = limits.fixed()
    if fixed:
        hints.append(f"free the fixed fields ({fixed}) so the search can shard further")
    params_gb = model.params * 2 / 1e9
    cards_for_states = -(-int(model.params * 6) // int(max(usable_gb, 1e-3) * 1e9))
    hints.append(
        f"use more cards (the {model.params / 1e9:.0f}B parameters alone take "
        f"{params_gb:,.0f} GB in BF16; weights, gradients and a sharded optimizer need at "
        f"least {cards_for_states:,} such cards before any activation)"
    )
    hints.append("use cards with more memory")
    hints.append(f"shorten seq_len ({model.seq_len:,})")
    return (
        f"no strategy fits in memory: the leanest ({leanest}) needs {need_gb:.1f} GB per card, "
        f"but each of the {group.count:,} {group.name} cards ({group.chip}, "
        f"{group.memory_gb:g} GB) leaves {usable_gb:.1f} GB after the runtime's share. To fix: "
        + "; ".join(hints)
        + "."
    )


def _explain_knobs(
    model: ModelSpec,
    sw: Software,
    found: list[tuple[int, int, int, int, int]],
    global_batch: int,
    limits: Constraints,
    rejected: Counter[str],
) -> None:
    """Say which fixed micro-batch, interleave or layer split ruled out every structure."""
    if not found:
        return
    if limits.micro_batch is not None:
        shares = sorted({global_batch // s[3] for s in found})
        if all(share % limits.micro_batch for share in shares):
            options = sorted({b for share in shares for b in divisors(share, MAX_MICRO_BATCH)})
            rejected[
                f"micro_batch={limits.micro_batch} does not divide any data-parallel rank's "
                f"share of the batch (global batch {global_batch:,} / dp = "
                f"{', '.join(str(x) for x in shares[:6])}{'…' if len(shares) > 6 else ''} "
                f"sequences); micro-batches that do: "
                f"{', '.join(str(b) for b in options[:10])}"
            ] += 1
            return
    if limits.interleave is not None and limits.interleave > 1:
        rejected[
            f"interleave={limits.interleave} needs pp > 1, micro-batches per rank a multiple "
            f"of pp, and whole layers per chunk ({model.layers} layers)"
        ] += 1
    if limits.distributed_optimizer and not sw.distributed_optimizer:
        rejected[f"the {sw.name} profile has no distributed optimizer"] += 1
    if limits.last_stage_layers is not None:
        rejected[
            f"last_stage_layers={limits.last_stage_layers} leaves a stage empty or needs pp > 1"
        ] += 1


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
    if limits.recompute_layers is not None and limits.recompute not in (None, Recompute.FULL):
        problems.append("recompute_layers applies to full recomputation (--recompute full)")
    if limits.interleave is not None and limits.interleave > 1 and pp == 1:
        problems.append("interleave > 1 needs pipeline parallelism (pp > 1)")
    if limits.distributed_optimizer and not sw.distributed_optimizer:
        problems.append(
            f"the {sw.name} software profile has no distributed optimizer"
            + (" (it shards everything with FSDP already)" if sw.fsdp else "")
        )
    fixed = 1
    for name, value in (("tp", tp), ("pp", pp), ("cp", cp), ("dp", limits.dp)):
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
    reasons = "; ".join(
        why if count == 1 else f"{why} ({count}×)" for why, count in rejected.most_common()
    )
    fixed = limits.fixed()
    detail = f" with {fixed}" if fixed else ""
    return (
        f"no valid way to split {model.name} ({model.heads} heads, {model.kv_heads} key/value "
        f"heads, {model.layers} layers) over {group.count} {group.chip} cards with global batch "
        f"{global_batch}{detail}" + (f": {reasons}" if reasons else "")
    )
