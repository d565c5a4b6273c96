"""Node ranks kept across rendezvous rounds: a survivor keeps its rank, a spare takes the lost
node's, whatever order torch's rendezvous put them in."""

from __future__ import annotations

import random

import pytest

from baige.runtime.stable_ranks import assign_ranks


def test_the_first_round_keeps_torchs_order() -> None:
    assert assign_ranks([-1, -1, -1]) == [0, 1, 2]


def test_a_spare_takes_the_rank_of_the_node_it_replaces() -> None:
    # node of rank 1 lost; the spare (no rank yet) sorts first in torch's order
    assert assign_ranks([-1, 0, 2]) == [1, 0, 2]
    assert assign_ranks([2, -1, 0]) == [2, 1, 0]


def test_a_shrunk_world_moves_only_the_ranks_outside_it() -> None:
    # four nodes, rank 1 lost, no spare: rank 3 no longer fits and takes the hole
    assert assign_ranks([0, 3, 2]) == [0, 1, 2]


def test_claims_of_one_rank_twice_keep_the_first_in_torchs_order() -> None:
    assert assign_ranks([1, 1, -1]) == [1, 0, 2]


@pytest.mark.parametrize("seed", range(50))
def test_always_a_permutation_and_survivors_inside_the_world_keep_their_rank(seed: int) -> None:
    rng = random.Random(seed)
    size = rng.randrange(1, 12)
    before = list(range(size + rng.randrange(3)))
    rng.shuffle(before)
    claims = [*before[: size - rng.randrange(size)]]
    claims += [-1] * (size - len(claims))
    rng.shuffle(claims)
    ranks = assign_ranks(claims)
    assert sorted(ranks) == list(range(size))
    for claim, rank in zip(claims, ranks, strict=True):
        if 0 <= claim < size:
            assert rank == claim
