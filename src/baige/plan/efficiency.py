"""How fast a chip really runs a training step's kernels: a small table per chip family.

Peak throughput is a datasheet figure; what matrix multiplies and attention kernels reach is
not, and it differs between chip generations (Hopper's tensor cores are harder to keep fed
than Ampere's). Each family gets two fractions of dense BF16 peak, with where they come from:

* ``gemm`` — the large matrix multiplies of a transformer layer, everything the cost model
  does not itemise included (kernel launch gaps, the odd small kernel). It is the model's
  one fitted figure per family, fitted over all published rows of that family at once
  (:data:`GEMM_EFFICIENCY`, :data:`HOPPER_GEMM_EFFICIENCY`); docs/plan.md lists the
  leave-one-table-out figures.
* ``attention`` — fused (flash) attention kernels, taken from the kernels' own papers, not
  fitted: FlashAttention-2 reaches 50–73% of A100 peak (Dao 2023, abstract) and "only 35%
  utilization on the H100" (Shah et al. 2024, FlashAttention-3, abstract).

The roofline in :mod:`baige.plan.cost` lowers ``gemm`` further for skinny multiplies whose
operands cost more to stream from HBM than to multiply. Chips outside the table (Ascend,
AMD, …) take the A100 figures and say so in the plan's assumptions.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "FAMILIES",
    "GEMM_EFFICIENCY",
    "HOPPER_GEMM_EFFICIENCY",
    "ChipEfficiency",
    "chip_efficiency",
    "family_of",
]


@dataclass(frozen=True, slots=True)
class ChipEfficiency:
    """Fractions of dense BF16 peak reached by large GEMMs and by flash attention."""

    family: str
    gemm: float
    attention: float
    source: str


GEMM_EFFICIENCY = 0.680
"""The A100 (Ampere) figure, fitted over the A100 rows of every published table in
data/published/ (21 rows, three sources): the value at which their mean log error is zero.
The tests refit it and fail if it drifts; docs/plan.md gives the leave-one-table-out refits."""

HOPPER_GEMM_EFFICIENCY = 0.554
"""The H100 (Hopper) figure, fitted the same way over the H100 rows (5 rows, two sources:
the Llama 3 paper's Table 4 and the Megatron-LM README's H100 scaling figures). Lower than
the A100's: Hopper's tensor cores are three times faster against twice the memory and
network bandwidth, and sustained clocks under a 700 W limit sit below the boost clock the
989 TFLOP/s peak assumes."""

FAMILIES: dict[str, ChipEfficiency] = {
    "ampere": ChipEfficiency(
        family="ampere",
        gemm=GEMM_EFFICIENCY,
        attention=0.60,
        source=(
            "gemm: fitted over the A100 rows of all published tables (docs/plan.md); "
            "attention: FlashAttention-2 paper (arXiv:2307.08691), 50-73% of A100 peak, "
            "middle taken"
        ),
    ),
    "hopper": ChipEfficiency(
        family="hopper",
        gemm=HOPPER_GEMM_EFFICIENCY,
        attention=0.35,
        source=(
            "gemm: fitted over the H100 rows (Llama 3 Table 4, Megatron-LM README); "
            "attention: FlashAttention-3 paper (arXiv:2407.08608), FlashAttention-2 reaches "
            "35% of H100 peak"
        ),
    ),
}

_PREFIXES = {"a100": "ampere", "a800": "ampere", "h100": "hopper", "h800": "hopper",
             "h200": "hopper", "h20": "hopper", "gh200": "hopper"}  # fmt: skip


def family_of(chip: str) -> str | None:
    """The family of a catalog key (``a100-80g`` → ``ampere``), ``None`` when not in the table."""
    key = chip.lower()
    for prefix, family in _PREFIXES.items():
        if key.startswith(prefix):
            return family
    return None


def chip_efficiency(chip: str) -> tuple[ChipEfficiency, bool]:
    """The table entry for ``chip`` and whether it is the chip's own (False: A100 stand-in)."""
    family = family_of(chip)
    if family is None:
        return FAMILIES["ampere"], False
    return FAMILIES[family], True
