"""The homogeneous search: complete over valid strategies, memory-safe, and clear when empty."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from baige.plan import (
    MEGATRON_CORE,
    Constraints,
    NoPlanError,
    PlanError,
    Recompute,
    Strategy,
    check_strategy,
    estimate,
    get_preset,
    resolve_group,
    search,
)
from baige.plan.search import divisors


@pytest.mark.parametrize(
    ("n", "limit", "expected"),
    [(1, None, [1]), (12, None, [1, 2, 3, 4, 6, 12]), (64, 8, [1, 2, 4, 8]), (97, None, [1, 97])],
)
def test_divisors(n: int, limit: int | None, expected: list[int]) -> None:
    assert divisors(n, limit) == expected


@pytest.mark.parametrize(
    ("model_name", "chip", "cards", "batch"),
    [
        ("llama3-8b", "h100", 64, 512),
        ("llama3-70b", "a100-80g", 256, 512),
        ("mixtral-8x7b", "h100", 128, 256),
        ("gpt3-175b", "h200", 512, 1536),
    ],
)
def test_search_returns_valid_fitting_plans_fastest_first(
    model_name: str, chip: str, cards: int, batch: int
) -> None:
    model = get_preset(model_name)
    group = resolve_group(chip, cards, 400)
    result = search(model, group, MEGATRON_CORE, batch, top_k=5)
    times = [e.iteration_s for e in result.top]
    assert times == sorted(times) and len(result.top) == 5
    for e in result.top:
        assert e.fits and e.strategy.cards == cards
        assert check_strategy(model, group, e.strategy, batch) == []
        assert e.tokens_per_s == pytest.approx(batch * model.seq_len / e.iteration_s)
        assert 0 < e.mfu < 1
    assert result.fitting <= result.considered


def test_search_beats_every_hand_written_strategy() -> None:
    """Every valid even-split strategy on 16 cards, scored one by one, is no faster than the
    search's best: the vectorised search misses nothing the scalar path can see."""
    model = get_preset("llama3-8b")
    group = resolve_group("h100", 16, 400)
    batch = 64
    best = search(model, group, MEGATRON_CORE, batch, top_k=1).best
    checked = 0
    for tp, pp, mb, rc in itertools.product([1, 2, 4, 8], [1, 2, 4], [1, 2], Recompute):
        if tp * pp > 16:
            continue
        dp = 16 // (tp * pp)
        strategy = Strategy(tp=tp, pp=pp, dp=dp, micro_batch=mb, recompute=rc,
                            distributed_optimizer=dp > 1)  # fmt: skip
        if check_strategy(model, group, strategy, batch):
            continue
        result = estimate(model, group, MEGATRON_CORE, strategy, batch)
        if result.fits:
            checked += 1
            assert best.iteration_s <= result.iteration_s * (1 + 1e-12)
    assert checked > 20


@pytest.mark.parametrize(
    ("limits", "check"),
    [
        (Constraints(tp=4), lambda s: s.tp == 4),
        (Constraints(pp=2, recompute=Recompute.FULL), lambda s: s.pp == 2 and s.recompute == 2),
        (Constraints(micro_batch=1, cp=2), lambda s: s.micro_batch == 1 and s.cp == 2),
    ],
)
def test_fixed_degrees_are_respected(
    limits: Constraints, check: Callable[[Strategy], bool]
) -> None:
    model = get_preset("llama3-8b")
    result = search(model, resolve_group("h100", 64, 400), MEGATRON_CORE, 256, limits=limits)
    assert all(check(e.strategy) for e in result.top)


@pytest.mark.parametrize(
    ("model_name", "cards", "batch", "limits", "message"),
    [
        ("llama3-405b", 8, 64, Constraints(), "no strategy fits in memory.*needs .* GB"),
        ("llama3-8b", 64, 512, Constraints(tp=3), "tp=3 does not divide the attention heads"),
        ("llama3-8b", 64, 512, Constraints(tp=16), "must divide the 8 cards of a node"),
        ("llama3-8b", 64, 512, Constraints(pp=33), "exceeds the model's 32 layers"),
        ("llama3-8b", 64, 512, Constraints(ep=2), "must divide the number of experts"),
        ("llama3-8b", 64, 3, Constraints(pp=1, cp=1), "dp does not divide the global batch"),
    ],
)
def test_no_plan_says_why(
    model_name: str, cards: int, batch: int, limits: Constraints, message: str
) -> None:
    group = resolve_group("h100", cards, 400)
    with pytest.raises(NoPlanError, match=message):
        search(get_preset(model_name), group, MEGATRON_CORE, batch, limits=limits)


def test_estimate_refuses_an_impossible_strategy() -> None:
    model = get_preset("llama3-70b")
    group = resolve_group("h100", 64, 400)
    with pytest.raises(PlanError, match="does not divide the attention heads"):
        estimate(model, group, MEGATRON_CORE, Strategy(tp=3, pp=1, dp=21), 63)


def test_uneven_split_gives_the_lm_head_room() -> None:
    """Llama 3's 126 layers do not split evenly over 16 stages; the search still plans them,
    with a shorter last stage that also carries the LM head."""
    model = get_preset("llama3-405b")
    group = resolve_group("h100", 1024, 400)
    result = search(model, group, MEGATRON_CORE, 512, limits=Constraints(tp=8, pp=16, cp=1))
    last = result.best.strategy.last_stage_layers
    assert last is not None and last < -(-126 // 16)
