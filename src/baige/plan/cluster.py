"""The cluster a plan runs on: groups of identical cards, with every figure the cost model needs.

Figures come from ``baige.hw.catalog`` unless the user overrides them; a figure the catalog
marks unknown is never silently invented. When the catalog gives a published range (the
Ascend 910B's BF16 throughput: 256–376 TFLOP/s), the planner takes the LOW end and records
that as an assumption the output prints; when it gives nothing, resolution fails with a
:class:`MissingFigureError` that names the field to set.
"""

from __future__ import annotations

from dataclasses import dataclass

from baige.hw.catalog import get_chip
from baige.plan.efficiency import GEMM_EFFICIENCY, chip_efficiency

__all__ = [
    "DEFAULT_EFFICIENCY",
    "ChipGroup",
    "Cluster",
    "MissingFigureError",
    "resolve_group",
]

DEFAULT_EFFICIENCY = GEMM_EFFICIENCY
"""Achievable fraction of peak BF16 throughput for the large matrix multiplies of training:
the cost model's one fitted figure, fitted over every published table in data/published/ at
once (see :mod:`baige.plan.efficiency`, which also holds the per-family attention figures).
A cluster file's ``efficiency`` overrides it, which is what a user with one measured run on
their own chips should do (``baige.plan.calibrate_efficiency``).
"""

_REFERENCE_CHIP = "a100-80g"  # the chip whose bandwidth-to-compute ratio stands in for unknowns


class MissingFigureError(LookupError):
    """A figure the cost model needs is unknown; ``field`` is the cluster-file field to set."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class ChipGroup:
    """``count`` identical cards, ``cards_per_node`` to a node, with the figures used.

    Units follow the catalog: ``scale_up_gbs`` is the total bidirectional in-node bandwidth per
    card (NVLink 4: 900 GB/s), ``nic_gbps`` the network bandwidth per card in Gb/s each way, as
    network cards are sold (400 for one 400G port per card). ``assumptions`` lists, in words,
    every figure that was assumed rather than published or given.
    """

    chip: str
    name: str
    count: int
    cards_per_node: int
    peak_tflops: float
    efficiency: float
    memory_gb: float
    memory_bandwidth_tbs: float
    scale_up_gbs: float
    nic_gbps: float
    assumptions: tuple[str, ...] = ()
    attention_efficiency: float = 0.60

    def __post_init__(self) -> None:
        if self.count < 1 or self.cards_per_node < 1:
            raise ValueError("count and cards_per_node must be at least 1")
        for name in ("efficiency", "attention_efficiency"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")

    @property
    def nodes(self) -> int:
        return -(-self.count // self.cards_per_node)

    @property
    def flops_per_s(self) -> float:
        """Peak BF16 dense FLOP/s (not derated; the cost model applies ``efficiency``)."""
        return self.peak_tflops * 1e12

    @property
    def memory_bytes_per_s(self) -> float:
        return self.memory_bandwidth_tbs * 1e12

    @property
    def intra_bytes_per_s(self) -> float:
        """One direction of the scale-up link: what a ring collective can push per card."""
        return self.scale_up_gbs / 2 * 1e9

    @property
    def inter_bytes_per_s(self) -> float:
        return self.nic_gbps / 8 * 1e9

    @property
    def memory_bytes(self) -> float:
        return self.memory_gb * 1e9


@dataclass(frozen=True, slots=True)
class Cluster:
    """One or more chip groups; more than one makes a mixed cluster.

    ``between_groups_gbps`` is the per-card bandwidth between cards of different groups (a
    cross-vendor link is often slower than either fabric); ``None`` means the smaller of the
    two groups' ``nic_gbps``.
    """

    name: str
    groups: tuple[ChipGroup, ...]
    between_groups_gbps: float | None = None

    def __post_init__(self) -> None:
        if not self.groups:
            raise ValueError("a cluster needs at least one group")

    @property
    def cards(self) -> int:
        return sum(g.count for g in self.groups)

    @property
    def is_mixed(self) -> bool:
        return len(self.groups) > 1

    @property
    def assumptions(self) -> tuple[str, ...]:
        return tuple(a for g in self.groups for a in g.assumptions)

    def between_bytes_per_s(self, a: ChipGroup, b: ChipGroup) -> float:
        """Per-card bandwidth, one direction, between a card of ``a`` and one of ``b``."""
        if a is b:
            return a.inter_bytes_per_s
        gbps = self.between_groups_gbps
        if gbps is None:
            gbps = min(a.nic_gbps, b.nic_gbps)
        return gbps / 8 * 1e9


def resolve_group(
    chip: str,
    count: int,
    nic_gbps: float,
    cards_per_node: int = 8,
    *,
    peak_tflops: float | None = None,
    efficiency: float | None = None,
    memory_gb: float | None = None,
    memory_bandwidth_tbs: float | None = None,
    scale_up_gbs: float | None = None,
) -> ChipGroup:
    """A group with every figure filled: the user's override, else the catalog, else a flagged
    assumption (BF16 throughput with a published range: its low end; memory bandwidth: the
    A100's bandwidth per TFLOP/s), else :class:`MissingFigureError`.

    Raises ``baige.hw.catalog.UnknownAcceleratorError`` for a chip the catalog lacks.
    """
    spec = get_chip(chip)
    assumptions: list[str] = []

    if peak_tflops is None:
        figure = spec.bf16_dense_tflops
        if figure.value is not None:
            peak_tflops = figure.value
        elif figure.low is not None:
            peak_tflops = figure.low
            assumptions.append(
                f"{spec.key}: BF16 dense throughput is unknown in the catalog (published figures "
                f"{figure.low:g}–{figure.high:g} TFLOP/s); assumed the low end, {figure.low:g} "
                "TFLOP/s. Set peak_tflops for this group to use your own figure."
            )
        else:
            raise MissingFigureError(
                f"{spec.key}: BF16 dense throughput is unknown ({figure.source}); "
                "set peak_tflops for this group (TFLOP/s, dense BF16)",
                "peak_tflops",
            )

    if memory_gb is None:
        if spec.memory_gb.value is None:
            raise MissingFigureError(
                f"{spec.key}: memory size is unknown ({spec.memory_gb.source}); "
                "set memory_gb for this group",
                "memory_gb",
            )
        memory_gb = spec.memory_gb.value

    if memory_bandwidth_tbs is None:
        if spec.memory_bandwidth_tbs.value is not None:
            memory_bandwidth_tbs = spec.memory_bandwidth_tbs.value
        else:
            ref = get_chip(_REFERENCE_CHIP)
            ratio = ref.memory_bandwidth_tbs.require("A100 memory bandwidth") / (
                ref.bf16_dense_tflops.require("A100 BF16 throughput")
            )
            memory_bandwidth_tbs = round(peak_tflops * ratio, 3)
            assumptions.append(
                f"{spec.key}: memory bandwidth is unknown in the catalog; assumed "
                f"{memory_bandwidth_tbs:g} TB/s (the A100's bandwidth per TFLOP/s). "
                "Set memory_bandwidth_tbs for this group to use your own figure."
            )

    if scale_up_gbs is None:
        if spec.scale_up_gbs.value is None:
            raise MissingFigureError(
                f"{spec.key}: in-node ({spec.scale_up_link}) bandwidth is unknown "
                f"({spec.scale_up_gbs.source}); set scale_up_gbs for this group "
                "(GB/s per card, both directions together, as NVLink's 900 GB/s is quoted)",
                "scale_up_gbs",
            )
        scale_up_gbs = spec.scale_up_gbs.value

    table, own = chip_efficiency(spec.key)
    if efficiency is None:
        efficiency = table.gemm
        if not own:
            assumptions.append(
                f"{spec.key}: no measured GEMM efficiency for this chip family; assumed the "
                f"A100's {table.gemm:g} of peak. Set efficiency for this group from one run "
                "of your own."
            )
    return ChipGroup(
        chip=spec.key,
        name=spec.name,
        count=count,
        cards_per_node=cards_per_node,
        peak_tflops=peak_tflops,
        efficiency=efficiency,
        memory_gb=memory_gb,
        memory_bandwidth_tbs=memory_bandwidth_tbs,
        scale_up_gbs=scale_up_gbs,
        nic_gbps=nic_gbps,
        assumptions=tuple(assumptions),
        attention_efficiency=table.attention,
    )
