"""Mixed clusters: the layer split and batch split are optimal on small cases checked by brute
force, and the mixed planner uses fast chips harder than slow ones."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from baige.plan import (
    MEGATRON_CORE,
    Cluster,
    MissingFigureError,
    MixedResult,
    PipelinePlan,
    get_preset,
    plan_mixed,
    resolve_group,
)
from baige.plan.mixed_data import _split_batch, search_data_parallel
from baige.plan.mixed_pipeline import search_pipelines
from baige.plan.split import balanced_split


def _compositions(total: int, parts: int) -> list[tuple[int, ...]]:
    """Every way to write ``total`` as ``parts`` positive integers."""
    cuts = itertools.combinations(range(1, total), parts - 1)
    return [tuple(b - a for a, b in itertools.pairwise((0, *c, total))) for c in cuts]


@pytest.mark.parametrize(
    ("tau", "extra", "cap", "layers"),
    [
        ([1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [9, 9, 9], 9),
        ([1.0, 3.0, 3.0], [0.0, 0.0, 0.5], [20, 20, 20], 10),
        ([0.3, 1.0, 1.0, 0.3], [0.0, 0.1, 0.1, 0.9], [4, 20, 20, 20], 12),
        ([1.0, 2.0], [0.0, 0.0], [2, 20], 7),
        ([1.0, 1.0], [0.0, 0.0], [2, 2], 7),  # memory cannot hold 7 layers
    ],
)
def test_balanced_split_is_optimal(
    tau: list[float], extra: list[float], cap: list[int], layers: int
) -> None:
    best = min(
        (
            max(n * t + e for n, t, e in zip(split, tau, extra, strict=True))
            for split in _compositions(layers, len(tau))
            if all(n <= c for n, c in zip(split, cap, strict=True))
        ),
        default=np.inf,
    )
    got = balanced_split(
        np.array([tau]), np.array([extra]), np.array([cap], dtype=np.int64), layers
    )
    assert float(got.t_max[0]) == pytest.approx(best)
    if np.isfinite(best):
        assert int(got.layers.sum()) == layers and (got.layers >= 1).all()
        assert (got.layers[0] <= np.array(cap)).all()
    else:
        assert not got.feasible[0]


@pytest.mark.parametrize(
    ("fixed", "per_step", "unit", "batch"),
    [
        ([0.1, 0.1], [1.0, 2.0], [1, 1], 30),
        ([0.5, 0.1, 0.2], [0.3, 1.0, 1.1], [4, 2, 2], 64),
        ([0.0, 0.0], [1.0, 1.0], [8, 8], 12),  # 12 is not a sum of 8s: no exact split
    ],
)
def test_batch_split_is_exact_and_optimal(
    fixed: list[float], per_step: list[float], unit: list[int], batch: int
) -> None:
    best = np.inf
    for counts in itertools.product(*(range(1, batch // u + 1) for u in unit)):
        if sum(u * m for u, m in zip(unit, counts, strict=True)) == batch:
            finish = max(f + p * m for f, p, m in zip(fixed, per_step, counts, strict=True))
            best = min(best, finish)
    got_counts, got_finish = _split_batch(
        np.array([fixed]), np.array([per_step]), np.array([unit], dtype=np.int64), batch
    )
    assert float(got_finish[0]) == pytest.approx(best)
    if np.isfinite(best):
        assert int((got_counts[0] * np.array(unit)).sum()) == batch


MIXED = Cluster("small-mixed", (resolve_group("h100", 16, 400), resolve_group("a100-80g", 32, 200)))


@pytest.fixture(scope="module")
def mixed_8b() -> MixedResult:
    return plan_mixed(get_preset("llama3-8b"), MIXED, MEGATRON_CORE, 256, top_k=8)


def test_mixing_beats_either_chip_type_alone(mixed_8b: MixedResult) -> None:
    best_alone = max(a.tokens_per_s for a in mixed_8b.alone)
    assert mixed_8b.best.tokens_per_s > best_alone
    assert -0.05 < mixed_8b.mixed_loss < 0.25
    assert mixed_8b.mixed_loss == pytest.approx(
        1 - mixed_8b.best.tokens_per_s / sum(a.tokens_per_s for a in mixed_8b.alone)
    )


def test_the_faster_of_both_schemes_wins(mixed_8b: MixedResult) -> None:
    pipelines = search_pipelines(get_preset("llama3-8b"), MIXED, MEGATRON_CORE, 256)
    groups = search_data_parallel(get_preset("llama3-8b"), MIXED, MEGATRON_CORE, 256)
    assert pipelines and groups
    fastest = min(pipelines[0].iteration_s, groups[0].iteration_s)
    assert mixed_8b.best.iteration_s == pytest.approx(fastest)
    times = [p.iteration_s for p in mixed_8b.top]
    assert times == sorted(times)


def test_faster_chips_get_more_work(mixed_8b: MixedResult) -> None:
    model = get_preset("llama3-8b")
    layouts = [p.layout for p in mixed_8b.top]
    layouts += search_pipelines(model, MIXED, MEGATRON_CORE, 256, top_k=5)
    for layout in layouts:
        if isinstance(layout, PipelinePlan):
            per_chip = {s.chip: s.layers for s in layout.stages}
            assert min(per_chip["h100"]) >= max(per_chip["a100-80g"])
            assert sum(sum(s.layers) for s in layout.stages) == model.layers
            assert all(s.memory_gb <= s.usable_gb for s in layout.stages)
        else:
            shares = {s.estimate.chip: s for s in layout.shares}
            assert sum(s.batch for s in layout.shares) == 256
            per_card = {c: s.batch / s.estimate.cards for c, s in shares.items()}
            assert per_card["h100"] > per_card["a100-80g"]
            assert all(s.estimate.fits for s in layout.shares)


@pytest.mark.parametrize(("peak", "assumed"), [(None, True), (313.0, False)])
def test_unknown_ascend_throughput_is_assumed_and_flagged(
    peak: float | None, assumed: bool
) -> None:
    group = resolve_group("ascend-910b", 64, 200, scale_up_gbs=392, peak_tflops=peak)
    flagged = [a for a in group.assumptions if "BF16" in a]
    assert bool(flagged) == assumed
    if assumed:
        assert group.peak_tflops == 256 and "low end" in flagged[0]
    else:
        assert group.peak_tflops == 313


@pytest.mark.parametrize(
    ("chip", "overrides", "field"),
    [
        ("kunlunxin-p800", {}, "peak_tflops"),
        ("kunlunxin-p800", {"peak_tflops": 300.0}, "memory_gb"),
        ("ascend-910b", {}, "scale_up_gbs"),
    ],
)
def test_missing_figures_name_the_field_to_set(
    chip: str, overrides: dict[str, float], field: str
) -> None:
    with pytest.raises(MissingFigureError, match=f"set {field}") as caught:
        resolve_group(chip, 8, 200, **overrides)  # type: ignore[arg-type]
    assert caught.value.field == field
