"""The sampler: the ranks of one step together see exactly the global batch a single
process would see in that step, each rank its own uneven share, the same on every run."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="baige.train needs torch: pip install 'baige[train]'")

from baige.train.plan import HeteroPlan, parse_plan  # noqa: E402
from baige.train.sampler import HeteroSampler  # noqa: E402


def plan(*samples: int) -> HeteroPlan:
    ranks = [
        {"rank": i, "type": "a" if i % 2 == 0 else "b", "micro_batches": 1, "micro_batch_size": n}
        for i, n in enumerate(samples)
    ]
    return parse_plan({"global_batch": sum(samples), "ranks": ranks}, "test")


def steps_of(sampler: HeteroSampler, per_step: int) -> list[list[int]]:
    ids = list(sampler)
    return [ids[i : i + per_step] for i in range(0, len(ids), per_step)]


@pytest.mark.parametrize("epoch", [0, 1, 5])
def test_the_ranks_of_a_step_see_the_homogeneous_global_batch(epoch: int) -> None:
    uneven = plan(12, 4, 12, 4)
    whole = plan(32)
    size = 32 * 6 + 7  # seven samples left over: skipped, as with drop_last
    reference = HeteroSampler(size, whole, 0, seed=3)
    reference.set_epoch(epoch)
    samplers = [HeteroSampler(size, uneven, r, seed=3) for r in range(4)]
    for s in samplers:
        s.set_epoch(epoch)
    per_rank = [steps_of(s, uneven.share(r).samples) for r, s in enumerate(samplers)]
    global_steps = steps_of(reference, 32)
    assert len(global_steps) == 6
    for step, want in enumerate(global_steps):
        got = [i for r in range(4) for i in per_rank[r][step]]
        assert got == want, "the ranks' shares, in rank order, are the global batch"
    assert [len(s) for s in samplers] == [72, 24, 72, 24]


def test_the_order_is_fixed_by_seed_and_epoch() -> None:
    p = plan(3, 5)
    a, b = HeteroSampler(40, p, 1, seed=9), HeteroSampler(40, p, 1, seed=9)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    assert list(HeteroSampler(40, p, 1, seed=10)) != first
    assert list(HeteroSampler(16, p, 1, shuffle=False)) == [3, 4, 5, 6, 7, 11, 12, 13, 14, 15]


def test_a_dataset_smaller_than_a_global_batch_or_a_stranger_rank_is_refused() -> None:
    with pytest.raises(ValueError, match="fewer than one global batch"):
        HeteroSampler(7, plan(4, 4), 0)
    with pytest.raises(ValueError, match="rank 2 is not in the plan"):
        HeteroSampler(70, plan(4, 4), 2)
