"""The accelerator catalog: what each chip can do, with where every figure comes from.

The planner, the simulator and the console quote these figures back to users, so each one
names its source, and a figure nobody has published reliably stays ``unknown`` (with the
spread of third-party claims when there is one) instead of being filled with a guess.

Conventions, so that figures from different vendors compare:
- compute is dense BF16 on the matrix units (no 2:4 sparsity); where a vendor quotes only the
  sparse figure, the dense one is half of it and the note says so;
- bandwidths are per accelerator; scale-up bandwidth is the total bidirectional figure, the way
  NVIDIA quotes NVLink (900 GB/s = 450 GB/s each way);
- a secondary source (press, retail listing, third-party comparison) is named as such.

``docs/accelerators.md`` renders this table for people; a test keeps the two in step.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from baige.hw.figures import Figure, unknown
from baige.hw.vendors import VENDORS

__all__ = ["CATALOG", "ChipSpec", "UnknownAcceleratorError", "chip_keys", "get_chip"]


class UnknownAcceleratorError(LookupError):
    """A name that is neither a catalog key nor an alias; the message suggests the closest."""


_UNITS = {
    "bf16_dense_tflops": "TFLOP/s",
    "memory_gb": "GB",
    "memory_bandwidth_tbs": "TB/s",
    "scale_up_gbs": "GB/s",
}


@dataclass(frozen=True, slots=True)
class ChipSpec:
    """One accelerator model as the scheduler, planner and simulator know it.

    ``key`` is the spelling used everywhere in Baige specs; ``aliases`` are the names people
    type and device discovery reports (``nvidia-smi``, ``npu-smi``, ``hl-smi``), so a node
    reporting ``NVIDIA H100 80GB HBM3`` lands in the same pool as a job asking for ``h100``.
    """

    key: str
    name: str
    vendor: str
    aliases: tuple[str, ...]
    bf16_dense_tflops: Figure
    memory_gb: Figure
    memory_bandwidth_tbs: Figure
    scale_up_gbs: Figure
    scale_up_link: str

    def __post_init__(self) -> None:
        # A wrong unit or an unknown vendor would silently skew every plan built on the chip.
        if not self.key or self.key != self.key.lower() or " " in self.key:
            raise ValueError(f"catalog key must be lower-case without spaces: {self.key!r}")
        if self.vendor not in VENDORS:
            raise ValueError(f"{self.key}: unknown vendor {self.vendor!r}")
        for field, unit in _UNITS.items():
            figure: Figure = getattr(self, field)
            if figure.unit != unit:
                raise ValueError(f"{self.key}.{field} must be in {unit}, not {figure.unit}")

    @property
    def visibility_env(self) -> str:
        """The variable the local backend sets so a process sees only its own cards."""
        return VENDORS[self.vendor].visibility_env

    def figures(self) -> dict[str, Figure]:
        """The four figures by field name, for tables and checks that treat them alike."""
        return {field: getattr(self, field) for field in _UNITS}


def _tflops(value: float, source: str, note: str = "") -> Figure:
    return Figure(value, "TFLOP/s", source, note=note)


def _gb(value: float, source: str, note: str = "") -> Figure:
    return Figure(value, "GB", source, note=note)


def _tbs(value: float, source: str, note: str = "") -> Figure:
    return Figure(value, "TB/s", source, note=note)


def _gbs(value: float, source: str, note: str = "") -> Figure:
    return Figure(value, "GB/s", source, note=note)


# Sources. Vendor documents first; secondary sources say so in their text.
_H100 = (
    "NVIDIA H100 Tensor Core GPU datasheet, H100 SXM column "
    "(https://www.nvidia.com/en-us/data-center/h100/)"
)
_H200 = (
    "NVIDIA H200 Tensor Core GPU datasheet, H200 SXM column "
    "(https://www.nvidia.com/en-us/data-center/h200/)"
)
_HALF_SPARSE = "vendor quotes 1,979 with 2:4 sparsity; dense is one half (Hopper whitepaper: 989.4)"
_H800 = (
    "secondary: NVIDIA's China-only H800 datasheet as summarised in 'NVIDIA H800 vs H100' "
    "(https://www.philisun.com/technical-analysis/"
    "nvidia-h800-vs-h100-a-technical-deep-dive-into-politically-defined-ai-chips/): "
    "H100 SXM5 silicon, NVLink cut to 400 GB/s, FP64 cut"
)
_A100 = (
    "NVIDIA A100 Tensor Core GPU datasheet, A100 80GB SXM column "
    "(https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
    "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf)"
)
_A800 = (
    "secondary: Reuters via Tweakers, 'Nvidia introduceert A800' (2022-11, "
    "https://tweakers.net/nieuws/203182/): an A100 with NVLink capped at 400 GB/s, "
    "performance and memory unchanged"
)
_CHINA_2024 = (
    "secondary: Tom's Hardware, 'H20, L20 and L2' (2024-02, from the Vipera retail listing; "
    "NVIDIA publishes no datasheet) https://www.tomshardware.com/pc-components/gpus/"
    "new-nvidia-ai-gpus-designed-to-get-around-us-export-bans-come-to-china-h20-l20-and-l2-"
    "to-fill-void-left-by-restricted-models"
)
_H20_NVLINK = (
    "secondary: TweakTown, 'H20 enters mass production' (2024-01, "
    "https://www.tweaktown.com/news/95224/): H20 keeps 900 GB/s NVLink"
)
_PCIE4 = (
    "PCIe 4.0 x16 board (Tom's Hardware listing above); NVIDIA quotes PCIe Gen4 x16 as "
    "64 GB/s (A100 datasheet)"
)
_ASCEND_NO_SHEET = "Huawei publishes no per-chip datasheet for the Ascend 910B"
_ASCEND_MEMORY = (
    "npu-smi on Ascend 910B hosts reports 65536 MB of HBM "
    "(https://github.com/Project-HAMi/HAMi-WebUI/issues/47); secondary sources agree on 64 GB "
    "(https://boardor.com/blog/huawei-ascend-910b-outperforms-h20-910c-approaches-h100)"
)
_GAUDI_HOTCHIPS = (
    "Intel, 'Intel Gaudi 3 AI Accelerator: Architected for Gen AI Training and Inference', "
    "Hot Chips 2024 (R. Kaplan), product-generation table"
)
_MI300X = (
    "AMD Instinct MI300X accelerator data sheet (https://www.amd.com/content/dam/amd/en/"
    "documents/instinct-tech-docs/data-sheets/amd-instinct-mi300x-data-sheet.pdf)"
)

_CHIPS = (
    ChipSpec(
        key="h100",
        name="NVIDIA H100 SXM5 80GB",
        vendor="nvidia",
        aliases=("h100-sxm", "h100-sxm5", "h100-80g", "nvidia h100 80gb hbm3", "nvidia h100"),
        bf16_dense_tflops=_tflops(989, _H100, _HALF_SPARSE),
        memory_gb=_gb(80, _H100),
        memory_bandwidth_tbs=_tbs(3.35, _H100),
        scale_up_gbs=_gbs(900, _H100, "NVLink: 450 GB/s each way"),
        scale_up_link="NVLink 4",
    ),
    ChipSpec(
        key="h200",
        name="NVIDIA H200 SXM 141GB",
        vendor="nvidia",
        aliases=("h200-sxm", "nvidia h200", "nvidia h200 141gb hbm3e"),
        bf16_dense_tflops=_tflops(989, _H200, _HALF_SPARSE),
        memory_gb=_gb(141, _H200),
        memory_bandwidth_tbs=_tbs(4.8, _H200),
        scale_up_gbs=_gbs(900, _H200, "NVLink: 450 GB/s each way"),
        scale_up_link="NVLink 4",
    ),
    ChipSpec(
        key="h800",
        name="NVIDIA H800 SXM5 80GB",
        vendor="nvidia",
        aliases=("h800-sxm", "h800-sxm5", "nvidia h800", "nvidia h800 80gb hbm3"),
        bf16_dense_tflops=_tflops(989, _H800, "same silicon and clocks as the H100 SXM5"),
        memory_gb=_gb(80, _H800),
        memory_bandwidth_tbs=_tbs(3.35, _H800),
        scale_up_gbs=_gbs(400, _H800),
        scale_up_link="NVLink 4, capped",
    ),
    ChipSpec(
        key="h20",
        name="NVIDIA HGX H20 96GB",
        vendor="nvidia",
        aliases=("nvidia h20", "h20-96g", "hgx h20"),
        bf16_dense_tflops=_tflops(
            148, _CHINA_2024, "dense: FP8 296 / BF16 148 / TF32 74 keep Hopper's dense ratios"
        ),
        memory_gb=_gb(96, _CHINA_2024),
        memory_bandwidth_tbs=_tbs(4.0, _CHINA_2024),
        scale_up_gbs=_gbs(900, _H20_NVLINK),
        scale_up_link="NVLink 4",
    ),
    ChipSpec(
        key="a100-80g",
        name="NVIDIA A100 SXM4 80GB",
        vendor="nvidia",
        aliases=("a100", "a100-sxm4-80gb", "nvidia a100-sxm4-80gb", "a100 80gb", "a100-80gb"),
        bf16_dense_tflops=_tflops(312, _A100, "624 with sparsity"),
        memory_gb=_gb(80, _A100),
        memory_bandwidth_tbs=_tbs(2.039, _A100, "the datasheet's 2,039 GB/s, often rounded 2.04"),
        scale_up_gbs=_gbs(600, _A100, "NVLink: 300 GB/s each way"),
        scale_up_link="NVLink 3",
    ),
    ChipSpec(
        key="a800",
        name="NVIDIA A800 SXM4 80GB",
        vendor="nvidia",
        aliases=("a800-80g", "a800-sxm4-80gb", "nvidia a800-sxm4-80gb", "nvidia a800"),
        bf16_dense_tflops=_tflops(312, _A800, "as the A100 80GB SXM datasheet"),
        memory_gb=_gb(80, _A800, "as the A100 80GB SXM datasheet"),
        memory_bandwidth_tbs=_tbs(2.039, _A800, "as the A100 80GB SXM datasheet"),
        scale_up_gbs=_gbs(400, _A800),
        scale_up_link="NVLink 3, capped",
    ),
    ChipSpec(
        key="l20",
        name="NVIDIA L20 48GB PCIe",
        vendor="nvidia",
        aliases=("nvidia l20", "l20-48g"),
        bf16_dense_tflops=_tflops(
            119.5,
            _CHINA_2024,
            "listing does not say dense or sparse; dense fits: 92 SMs x 512 FLOP/clk x ~2.5 GHz",
        ),
        memory_gb=_gb(48, _CHINA_2024, "GDDR6 with ECC"),
        memory_bandwidth_tbs=_tbs(0.864, _CHINA_2024),
        scale_up_gbs=_gbs(64, _PCIE4, "no NVLink; about 32 GB/s each way over the host bus"),
        scale_up_link="PCIe Gen4 x16, no NVLink",
    ),
    ChipSpec(
        key="ascend-910b",
        name="Huawei Ascend 910B",
        vendor="huawei",
        aliases=(
            "ascend910b",
            "ascend 910b",
            "huawei ascend 910b",
            "910b",
            "910b1",
            "910b2",
            "910b3",
        ),
        bf16_dense_tflops=unknown(
            "TFLOP/s",
            f"{_ASCEND_NO_SHEET}; third-party FP16 figures disagree (and differ by SKU, "
            "910B1-910B4): 256 (https://jishuzhan.net/article/1872432607539499010, the first "
            "Ascend 910's figure), ~320 (boardor.com), up to 376 in press comparisons",
            low=256,
            high=376,
        ),
        memory_gb=_gb(64, _ASCEND_MEMORY),
        memory_bandwidth_tbs=unknown(
            "TB/s",
            f"{_ASCEND_NO_SHEET}; third-party figures disagree: 0.4 (boardor.com), 0.768 "
            "(jishuzhan.net), 1.2 (https://www.oryoy.com/news/910b-suan-li-shi-duo-shao-jie-mi-"
            "hua-wei-sheng-teng-910b-xin-pian-de-xing-neng-can-shu-yu-shi-ji-sua.html)",
            low=0.4,
            high=1.2,
        ),
        scale_up_gbs=unknown(
            "GB/s",
            f"{_ASCEND_NO_SHEET}; Huawei documents HCCS only as a link type; the one third-party "
            "figure found (600 GB/s, jishuzhan.net) is unconfirmed",
        ),
        scale_up_link="HCCS",
    ),
    ChipSpec(
        key="kunlunxin-p800",
        name="Kunlunxin P800 (OAM)",
        vendor="kunlunxin",
        aliases=("p800", "p800-oam", "kunlun p800", "kunlunxin p800", "xpu-p800"),
        bf16_dense_tflops=unknown("TFLOP/s", "Kunlunxin publishes no datasheet for the P800"),
        memory_gb=unknown("GB", "Kunlunxin publishes no datasheet for the P800"),
        memory_bandwidth_tbs=unknown("TB/s", "Kunlunxin publishes no datasheet for the P800"),
        scale_up_gbs=unknown("GB/s", "Kunlunxin publishes no datasheet for the P800"),
        scale_up_link="unpublished",
    ),
    ChipSpec(
        key="hygon-dcu",
        name="Hygon DCU K100-AI",
        vendor="hygon",
        aliases=("k100-ai", "k100_ai", "hygon k100-ai", "hygon dcu"),
        bf16_dense_tflops=unknown("TFLOP/s", "Hygon publishes no datasheet for the K100-AI"),
        memory_gb=unknown("GB", "Hygon publishes no datasheet for the K100-AI"),
        memory_bandwidth_tbs=unknown("TB/s", "Hygon publishes no datasheet for the K100-AI"),
        scale_up_gbs=unknown("GB/s", "Hygon publishes no datasheet for the K100-AI"),
        scale_up_link="unpublished",
    ),
    ChipSpec(
        key="gaudi2",
        name="Intel Gaudi 2 (HL-225)",
        vendor="intel",
        aliases=("gaudi-2", "gaudi 2", "hl-225", "hl-225h", "intel gaudi 2", "habana gaudi2"),
        bf16_dense_tflops=_tflops(432, _GAUDI_HOTCHIPS, "matrix engines (MME)"),
        memory_gb=_gb(96, _GAUDI_HOTCHIPS),
        memory_bandwidth_tbs=_tbs(2.46, _GAUDI_HOTCHIPS),
        scale_up_gbs=_gbs(
            600,
            _GAUDI_HOTCHIPS + ": embedded NIC 4.8 Tb/s bidirectional",
            "all 24 x 100GbE ports; the 8-card reference server wires 21 of them between cards",
        ),
        scale_up_link="on-die RoCE 24×100GbE",
    ),
    ChipSpec(
        key="gaudi3",
        name="Intel Gaudi 3 (HL-325L)",
        vendor="intel",
        aliases=("gaudi-3", "gaudi 3", "hl-325l", "intel gaudi 3"),
        bf16_dense_tflops=_tflops(1835, _GAUDI_HOTCHIPS, "matrix engines (MME)"),
        memory_gb=_gb(128, _GAUDI_HOTCHIPS),
        memory_bandwidth_tbs=_tbs(3.67, _GAUDI_HOTCHIPS),
        scale_up_gbs=_gbs(
            1200,
            _GAUDI_HOTCHIPS + ": networking 1200 GB/s bidirectional",
            "all 24 x 200GbE ports; the 8-card reference server wires 21 of them between cards",
        ),
        scale_up_link="on-die RoCE 24×200GbE",
    ),
    ChipSpec(
        key="mi300x",
        name="AMD Instinct MI300X OAM",
        vendor="amd",
        aliases=("amd instinct mi300x", "instinct mi300x", "mi300x-oam"),
        bf16_dense_tflops=_tflops(1307.4, _MI300X, "2,614.9 with sparsity"),
        memory_gb=_gb(192, _MI300X),
        memory_bandwidth_tbs=_tbs(5.3, _MI300X),
        scale_up_gbs=_gbs(896, _MI300X, "7 Infinity Fabric links x 128 GB/s"),
        scale_up_link="Infinity Fabric / xGMI",
    ),
)

CATALOG: dict[str, ChipSpec] = {chip.key: chip for chip in _CHIPS}


def _build_lookup(chips: tuple[ChipSpec, ...]) -> dict[str, ChipSpec]:
    # An alias shared by two chips would make a node's type depend on catalog order.
    lookup: dict[str, ChipSpec] = {}
    for chip in chips:
        for name in (chip.key, *chip.aliases):
            spelling = name.strip().lower()
            other = lookup.get(spelling)
            if other is not None and other is not chip:
                raise ValueError(f"{name!r} names both {other.key} and {chip.key}")
            lookup[spelling] = chip
    return lookup


_LOOKUP = _build_lookup(_CHIPS)


def chip_keys() -> tuple[str, ...]:
    """The catalog keys in catalog order, the only spellings specs are normalised to."""
    return tuple(CATALOG)


def get_chip(name: str) -> ChipSpec:
    """The chip called ``name``: its key or an alias, any case, surrounding spaces ignored.

    Raises ``UnknownAcceleratorError`` with the closest keys, because a typo in a spec should
    be fixed by its author, not silently scheduled nowhere.
    """
    wanted = name.strip().lower()
    chip = _LOOKUP.get(wanted)
    if chip is not None:
        return chip
    suggestions: list[str] = []
    for spelling in difflib.get_close_matches(wanted, list(_LOOKUP), n=5, cutoff=0.5):
        key = _LOOKUP[spelling].key
        if key not in suggestions:
            suggestions.append(key)
    hint = f"; did you mean {', '.join(suggestions[:3])}?" if suggestions else ""
    raise UnknownAcceleratorError(
        f"unknown accelerator type {name!r}{hint} (known: {', '.join(CATALOG)})"
    )
