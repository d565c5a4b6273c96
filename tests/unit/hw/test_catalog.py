"""The catalog holds the chips Baige schedules, each figure sourced, unknowns left unknown."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from baige.hw import (
    CATALOG,
    VENDORS,
    ChipSpec,
    Figure,
    UnknownAcceleratorError,
    chip_keys,
    get_chip,
    unknown,
)
from baige.hw.catalog import _build_lookup

DOC = Path(__file__).resolve().parents[3] / "docs" / "accelerators.md"

REQUIRED = (
    "h100", "h200", "h800", "h20", "a100-80g", "a800", "l20", "ascend-910b",
    "kunlunxin-p800", "hygon-dcu", "gaudi2", "gaudi3", "mi300x",
)  # fmt: skip

UNITS = {
    "bf16_dense_tflops": "TFLOP/s",
    "memory_gb": "GB",
    "memory_bandwidth_tbs": "TB/s",
    "scale_up_gbs": "GB/s",
}
FIELDS = tuple(UNITS)

# Published figures, exactly as the catalog must hold them (vendor datasheets unless noted).
PUBLISHED = [
    # key, BF16 dense TFLOP/s, memory GB, bandwidth TB/s, scale-up GB/s
    ("h100", 989, 80, 3.35, 900),
    ("h800", 989, 80, 3.35, 400),
    ("h200", 989, 141, 4.8, 900),
    ("a100-80g", 312, 80, 2.039, 600),  # the datasheet's 2,039 GB/s ("2.04 TB/s")
    ("a800", 312, 80, 2.039, 400),
    ("h20", 148, 96, 4.0, 900),
    ("l20", 119.5, 48, 0.864, 64),
    ("gaudi2", 432, 96, 2.46, 600),
    ("gaudi3", 1835, 128, 3.67, 1200),
    ("mi300x", 1307.4, 192, 5.3, 896),
]

# Every figure nobody publishes reliably. Adding a value here must be a deliberate act.
UNKNOWN = {
    ("ascend-910b", "bf16_dense_tflops"),
    ("ascend-910b", "memory_bandwidth_tbs"),
    ("ascend-910b", "scale_up_gbs"),
    ("kunlunxin-p800", "bf16_dense_tflops"),
    ("kunlunxin-p800", "memory_gb"),
    ("kunlunxin-p800", "memory_bandwidth_tbs"),
    ("kunlunxin-p800", "scale_up_gbs"),
    ("hygon-dcu", "bf16_dense_tflops"),
    ("hygon-dcu", "memory_gb"),
    ("hygon-dcu", "memory_bandwidth_tbs"),
    ("hygon-dcu", "scale_up_gbs"),
}

ALL_FIGURES = [(key, field) for key in CATALOG for field in FIELDS]


def _figure(key: str, field: str) -> Figure:
    figure: Figure = getattr(CATALOG[key], field)
    return figure


@pytest.mark.parametrize("key", REQUIRED)
def test_required_chip_is_present(key: str) -> None:
    assert key in CATALOG
    assert CATALOG[key].key == key


def test_chip_keys_are_the_catalog_in_order() -> None:
    assert chip_keys() == tuple(CATALOG)
    assert all(key == key.lower() and " " not in key for key in chip_keys())


@pytest.mark.parametrize(("key", "tflops", "memory", "bandwidth", "scale_up"), PUBLISHED)
def test_published_figures(
    key: str, tflops: float, memory: float, bandwidth: float, scale_up: float
) -> None:
    chip = get_chip(key)
    assert chip.bf16_dense_tflops.value == tflops
    assert chip.memory_gb.value == memory
    assert chip.memory_bandwidth_tbs.value == bandwidth
    assert chip.scale_up_gbs.value == scale_up


def test_ascend_910b_memory_is_known_and_its_compute_is_a_spread() -> None:
    chip = get_chip("ascend-910b")
    assert chip.memory_gb.value == 64
    compute = chip.bf16_dense_tflops
    assert compute.value is None
    assert (compute.low, compute.high) == (256, 376)
    assert str(compute) == "unknown (256–376 TFLOP/s)"
    with pytest.raises(LookupError, match="256–376"):
        compute.require("Ascend 910B BF16 compute")


@pytest.mark.parametrize(("key", "field"), ALL_FIGURES)
def test_every_figure_names_a_source_and_its_unit(key: str, field: str) -> None:
    figure = _figure(key, field)
    assert isinstance(figure, Figure)
    assert figure.source.strip()
    assert figure.unit == UNITS[field]


@pytest.mark.parametrize(("key", "field"), ALL_FIGURES)
def test_unknown_figures_have_no_value_and_known_ones_are_positive(key: str, field: str) -> None:
    figure = _figure(key, field)
    if (key, field) in UNKNOWN:
        assert figure.value is None
        assert not figure.known
        with pytest.raises(LookupError):
            figure.require(f"{key} {field}")
    else:
        assert figure.value is not None and figure.value > 0
        assert figure.require(f"{key} {field}") == figure.value


def test_the_unknown_list_names_real_figures() -> None:
    assert set(ALL_FIGURES) >= UNKNOWN


@pytest.mark.parametrize("key", list(CATALOG))
def test_chip_vendor_exists_and_gives_the_visibility_variable(key: str) -> None:
    chip = CATALOG[key]
    assert chip.vendor in VENDORS
    assert chip.visibility_env == VENDORS[chip.vendor].visibility_env


@pytest.mark.parametrize(
    ("vendor", "variable"),
    [
        ("nvidia", "CUDA_VISIBLE_DEVICES"),
        ("huawei", "ASCEND_RT_VISIBLE_DEVICES"),
        ("kunlunxin", "XPU_VISIBLE_DEVICES"),
        ("hygon", "HIP_VISIBLE_DEVICES"),
        ("intel", "HABANA_VISIBLE_MODULES"),
        ("amd", "ROCR_VISIBLE_DEVICES"),
    ],
)
def test_visibility_variable_per_vendor(vendor: str, variable: str) -> None:
    assert VENDORS[vendor].visibility_env == variable
    assert VENDORS[vendor].source.strip()


@pytest.mark.parametrize(
    ("key", "variable"),
    [
        ("h100", "CUDA_VISIBLE_DEVICES"),
        ("ascend-910b", "ASCEND_RT_VISIBLE_DEVICES"),
        ("kunlunxin-p800", "XPU_VISIBLE_DEVICES"),
        ("hygon-dcu", "HIP_VISIBLE_DEVICES"),
        ("gaudi3", "HABANA_VISIBLE_MODULES"),
        ("mi300x", "ROCR_VISIBLE_DEVICES"),
    ],
)
def test_visibility_variable_per_chip(key: str, variable: str) -> None:
    assert get_chip(key).visibility_env == variable


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("h100", "h100"),
        ("H100", "h100"),
        ("  h100\t", "h100"),
        ("NVIDIA H100 80GB HBM3", "h100"),
        ("  nvidia h100 80gb hbm3 ", "h100"),
        ("H100-SXM", "h100"),
        ("A100", "a100-80g"),
        ("NVIDIA A100-SXM4-80GB", "a100-80g"),
        ("NVIDIA A800-SXM4-80GB", "a800"),
        ("NVIDIA H20", "h20"),
        ("NVIDIA L20", "l20"),
        ("910B", "ascend-910b"),
        ("Ascend910B", "ascend-910b"),
        ("P800-OAM", "kunlunxin-p800"),
        ("K100-AI", "hygon-dcu"),
        ("HL-225", "gaudi2"),
        ("Gaudi-3", "gaudi3"),
        ("MI300X", "mi300x"),
        ("AMD Instinct MI300X", "mi300x"),
    ],
)
def test_lookup_by_key_alias_and_case(name: str, key: str) -> None:
    assert get_chip(name).key == key


@pytest.mark.parametrize(
    ("key", "alias"), [(chip.key, alias) for chip in CATALOG.values() for alias in chip.aliases]
)
def test_every_alias_resolves_in_any_case(key: str, alias: str) -> None:
    assert get_chip(alias).key == key
    assert get_chip(alias.upper()).key == key
    assert get_chip(f" {alias.title()} ").key == key


@pytest.mark.parametrize(
    ("bad", "suggested"),
    [("h10", "h100"), ("a100-40g", "a100-80g"), ("gaudi4", "gaudi3"), ("mi300", "mi300x")],
)
def test_unknown_name_suggests_the_closest_key(bad: str, suggested: str) -> None:
    with pytest.raises(UnknownAcceleratorError) as caught:
        get_chip(bad)
    message = str(caught.value)
    assert repr(bad) in message
    suggestions, _, known = message.partition("(known:")
    assert "did you mean" in suggestions and suggested in suggestions
    assert all(key in known for key in CATALOG)


@pytest.mark.parametrize("bad", ["", "   ", "tpu-v5p"])
def test_names_with_no_close_key_still_list_the_known_ones(bad: str) -> None:
    with pytest.raises(UnknownAcceleratorError, match=r"known: h100, "):
        get_chip(bad)


def test_unknown_accelerator_error_is_a_lookup_error() -> None:
    assert issubclass(UnknownAcceleratorError, LookupError)


def test_a_chip_refuses_a_figure_in_the_wrong_unit() -> None:
    h100 = CATALOG["h100"]
    with pytest.raises(ValueError, match="memory_gb must be in GB"):
        replace(h100, memory_gb=Figure(80, "GiB", "x"))


def test_a_chip_refuses_an_unknown_vendor_or_a_bad_key() -> None:
    h100 = CATALOG["h100"]
    with pytest.raises(ValueError, match="unknown vendor"):
        replace(h100, vendor="acme")
    with pytest.raises(ValueError, match="lower-case"):
        replace(h100, key="H100")


def test_an_alias_shared_by_two_chips_is_refused() -> None:
    h100 = CATALOG["h100"]
    twin: ChipSpec = replace(h100, key="h100-twin", aliases=("h100-sxm",))
    with pytest.raises(ValueError, match="h100-sxm"):
        _build_lookup((h100, twin))


def test_figures_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="source"):
        Figure(1.0, "GB", "")
    with pytest.raises(ValueError, match="negative"):
        Figure(-1.0, "GB", "x")
    with pytest.raises(ValueError, match="inverted"):
        unknown("GB", "x", low=2, high=1)


@pytest.mark.parametrize("key", list(CATALOG))
def test_docs_page_shows_every_figure_and_source(key: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    chip = CATALOG[key]
    summary = [line for line in text.splitlines() if line.startswith(f"| `{key}` | {chip.name} |")]
    assert len(summary) == 1, f"docs/accelerators.md has no summary row for {key}"
    for field in FIELDS:
        figure = _figure(key, field)
        assert str(figure) in summary[0]
        assert figure.source in text, f"docs/accelerators.md lacks the source of {key}.{field}"
    assert chip.visibility_env in summary[0]
