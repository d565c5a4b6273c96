"""Capability 5: fractional accelerators for inference, packed so whole cards stay whole."""

from __future__ import annotations

import pytest

from baige.sched import FIFO, MILLI, Admit
from baige.sched.plugins import fragmentation_of
from baige.sched.testing import make_cluster, make_job, make_snapshot

from .helpers import admitted, cycle


def cards_used(result) -> set[tuple[str, int]]:
    used = set()
    for decision in result.decisions:
        if isinstance(decision, Admit):
            for placement in decision.placements:
                used |= {(placement.node, d) for d in placement.devices}
    return used


@pytest.mark.parametrize(
    ("shares", "milli", "cards"),
    [
        (4, 250, 1),  # four quarter shares fill one card
        (2, 500, 1),
        (3, 500, 2),
        (6, 300, 2),  # 3 per card (900), 2 cards
        (8, 600, 8),  # 0.6 cannot share a card with another 0.6
    ],
)
def test_shares_pack_onto_few_cards(shares, milli, cards):
    snap = make_snapshot(
        make_cluster(2, "h100"),
        workloads=[make_job(f"s{i}").inference().share(milli).created(i) for i in range(shares)],
    )
    result = cycle(snap)
    assert len(admitted(result)) == shares
    assert len(cards_used(result)) == cards


def test_shares_leave_whole_nodes_for_training():
    # 2 nodes; one already has a used card: new shares go there, the other node stays whole
    snap = make_snapshot(
        make_cluster(2, "h100"),
        workloads=[
            make_job("old").inference().share(500).running("h100", [("h100-0001", (3,), 500)]),
            *[make_job(f"s{i}").inference().share(250).created(i) for i in range(3)],
            make_job("train").gpus(8).created(10).priority(-1),
        ],
    )
    result = cycle(snap)
    assert admitted(result) >= {"s0", "s1", "s2", "train"}
    for decision in result.decisions:
        if isinstance(decision, Admit) and decision.workload.startswith("s"):
            assert decision.placements[0].node == "h100-0001"


def test_inference_replicas_scale_independently():
    snap = make_snapshot(
        make_cluster(1, "h100", devices=2),
        workloads=[make_job("svc").inference().share(400).replicas(6)],
    )
    result = cycle(snap)
    (decision,) = result.decisions
    assert isinstance(decision, Admit)
    assert len(decision.placements) == 4  # 2 per card, 2 cards: partial service beats none


def test_without_co_location_a_share_takes_a_whole_card():
    snap = make_snapshot(
        make_cluster(1, "h100"),
        workloads=[make_job(f"s{i}").inference().share(250).created(i) for i in range(10)],
    )
    result = cycle(snap, FIFO)
    assert len(admitted(result)) == 8
    assert all(
        p.milli == MILLI for d in result.decisions if isinstance(d, Admit) for p in d.placements
    )


@pytest.mark.parametrize(
    ("free", "mix", "expected"),
    [
        ((1000,) * 8, {(8, 1000): 1.0}, 0),  # an idle node is fully usable by 8-card jobs
        ((1000,) * 7 + (500,), {(8, 1000): 1.0}, 7500),  # a used card strands the node
        ((1000,) * 7 + (500,), {(1, 500): 1.0}, 0),
        ((1000,) * 7 + (400,), {(1, 500): 1.0}, 400),
        ((1000,) * 7 + (400,), {(1, 500): 0.5, (8, 1000): 0.5}, 200 + 3700),
    ],
)
def test_fragmentation_measure(free, mix, expected):
    assert fragmentation_of(free, 0, mix) == pytest.approx(expected)
