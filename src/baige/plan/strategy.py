"""A parallel strategy for one group of identical chips: the knobs a training launcher takes.

``tp·cp·dp·pp`` cards, ranks ordered as Megatron-Core orders them (tensor innermost, then
context, then data — expert parallelism carved out of data — and pipeline outermost), which
decides which groups of ranks share a node and so which link their traffic crosses.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = ["Recompute", "Strategy"]


class Recompute(IntEnum):
    """Activation recomputation: trade FLOPs for memory.

    ``SELECTIVE`` recomputes only core attention (Korthikanti et al. 2022), which stores the
    largest activations for the fewest FLOPs; ``FULL`` keeps only each layer's input and
    recomputes the whole forward pass during backward.
    """

    NONE = 0
    SELECTIVE = 1
    FULL = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Strategy:
    """Parallel degrees and scheduling for one group.

    ``micro_batch`` sequences per micro-batch; ``interleave`` model chunks per pipeline stage
    (Megatron's virtual pipeline; 1 = plain 1F1B). ``last_stage_layers`` is how many layers
    the last pipeline stage holds (it also computes the LM head, so a balanced split gives it
    fewer); ``None`` means an even split. ``recompute_layers`` is how many layers of each
    stage full recomputation covers (Megatron's ``--recompute-method block
    --recompute-num-layers``); ``None`` means all of them.
    """

    tp: int
    pp: int
    dp: int
    cp: int = 1
    ep: int = 1
    micro_batch: int = 1
    recompute: Recompute = Recompute.NONE
    interleave: int = 1
    distributed_optimizer: bool = False
    last_stage_layers: int | None = None
    recompute_layers: int | None = None

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "dp", "cp", "ep", "micro_batch", "interleave"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.dp % self.ep:
            raise ValueError(f"ep ({self.ep}) must divide dp ({self.dp})")
        if self.interleave > 1 and self.pp == 1:
            raise ValueError("interleave needs pipeline parallelism (pp > 1)")
        if self.last_stage_layers is not None and self.last_stage_layers < 1:
            raise ValueError("last_stage_layers must be at least 1")
        if self.recompute_layers is not None:
            if self.recompute is not Recompute.FULL:
                raise ValueError("recompute_layers needs recompute = full")
            if self.recompute_layers < 1:
                raise ValueError("recompute_layers must be at least 1")

    @property
    def cards(self) -> int:
        return self.tp * self.cp * self.dp * self.pp

    def micro_batches(self, global_batch: int) -> int:
        """Micro-batches per data-parallel rank per iteration; the batch must split evenly."""
        per_rank, rest = divmod(global_batch, self.dp * self.micro_batch)
        if rest or per_rank < 1:
            raise ValueError(
                f"global batch {global_batch} does not split into dp={self.dp} ranks × "
                f"micro-batches of {self.micro_batch}"
            )
        return per_rank

    def differences(self, other: Strategy) -> str:
        """The fields in which this strategy differs from ``other``, as ``name=value`` words
        (so that top-K rows that read alike say what sets them apart)."""
        names = ("tp", "pp", "dp", "cp", "ep", "micro_batch", "recompute", "interleave",
                 "distributed_optimizer", "last_stage_layers", "recompute_layers")  # fmt: skip
        words = []
        for name in names:
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                shown = mine.label if isinstance(mine, Recompute) else mine
                words.append(f"{name}={'even' if shown is None else shown}")
        return " ".join(words) or "same"

    def describe(self) -> str:
        parts = [f"TP{self.tp}", f"PP{self.pp}", f"DP{self.dp}"]
        if self.cp > 1:
            parts.append(f"CP{self.cp}")
        if self.ep > 1:
            parts.append(f"EP{self.ep}")
        if self.interleave > 1:
            parts.append(f"v{self.interleave}")
        if self.last_stage_layers is not None:
            parts.append(f"last{self.last_stage_layers}")
        parts.append(f"mb{self.micro_batch}")
        if self.recompute_layers is None:
            parts.append(f"rc={self.recompute.label}")
        else:
            parts.append(f"rc=full:{self.recompute_layers}")
        if self.distributed_optimizer:
            parts.append("dist-opt")
        return " ".join(parts)
