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


@pytest.mark.parametrize(
    ("cpu_free", "expected"),
    [
        (None, 0),  # CPU not tracked: eight free cards are usable
        (32_000, 0),  # enough CPU for the shape
        (8_000, 8000),  # cards without the CPU to feed them are fragmented too
    ],
)
def test_fragmentation_counts_cards_starved_of_cpu(cpu_free, expected):
    mix, host = {(1, 1000): 1.0}, {(1, 1000): 16_000.0}
    assert fragmentation_of((1000,) * 8, 0, mix, cpu_free, host) == pytest.approx(expected)


def test_placement_keeps_cpu_next_to_free_cards():
    """Two nodes with two free cards each; one has CPU for two more tasks, the other for one.
    A GPU-only measure cannot tell them apart; counting CPU, the task goes where it leaves
    the other node's cards still usable, so both later tasks still fit."""
    from dataclasses import replace  # noqa: PLC0415

    from baige.sched import BAIGE  # noqa: PLC0415

    rich = replace(make_cluster(1, devices=2, prefix="rich")[0], cpu_milli=8_000)
    poor = replace(make_cluster(1, devices=2, prefix="poor")[0], cpu_milli=4_000)
    profile = replace(BAIGE, scores=(("fragmentation", 1.0),), candidate_nodes=0)
    task = make_job("t").gpus(1).host(cpu_milli=4_000)
    for nodes in ([poor, rich], [rich, poor]):  # either order: not a tie broken by order
        result = cycle(make_snapshot(nodes, workloads=[task]), profile)
        placed = next(d for d in result.decisions if isinstance(d, Admit))
        assert placed.placements[0].node.startswith("rich")
