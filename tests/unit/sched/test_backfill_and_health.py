"""Capabilities 7 and 8: backfill never delays the reservation of the first blocked gang;
failed and cordoned nodes receive nothing."""

from __future__ import annotations

import pytest

from baige.sched import BAIGE, Admit, Health, Preempt, Reason, Shrink
from baige.sched.testing import make_cluster, make_job, make_snapshot, with_health

from .helpers import admitted, cycle, nodes_of

H = "h100"
NODES = make_cluster(4, H)


def blocked_gang_scenario(extra, now=0.0):
    """3 nodes busy until t=100 (time limits known); node 3 idle. A 4-node gang waits."""
    running = [
        make_job(f"r{i}")
        .gpus(8)
        .duration(100)
        .running(H, [(f"h100-{i:04d}", range(8))], admitted_at=0, expected_end=100)
        for i in range(3)
    ]
    gang = make_job("gang").gpus(8).replicas(4).created(1)
    return make_snapshot(NODES, workloads=[*running, gang, *extra])


@pytest.mark.parametrize(
    ("small", "admit"),
    [
        (make_job("short").gpus(8).duration(50).created(2), True),  # ends before t=100
        (make_job("exact").gpus(8).duration(100).created(2), True),
        (make_job("long").gpus(8).duration(500).created(2), False),  # would delay the gang
        (make_job("unknown").gpus(8).created(2), False),  # no time limit: cannot promise
    ],
)
def test_backfill_only_when_it_cannot_delay_the_reservation(small, admit):
    snap = blocked_gang_scenario([small])
    result = cycle(snap)
    name = small.build().id
    assert result.pending["gang"].reason is Reason.RESERVED
    (reservation,) = result.reservations
    assert reservation.workload == "gang" and reservation.start == 100
    assert (name in admitted(result)) is admit
    if admit:
        decision = next(d for d in result.decisions if isinstance(d, Admit))
        assert decision.backfill
    else:
        assert result.pending[name].reason is Reason.BLOCKED_BY_RESERVATION


def test_reservation_does_not_block_other_accelerator_types():
    snap = blocked_gang_scenario(
        [make_job("other").types("a100-80g").gpus(8).created(2)],
    )
    snap = make_snapshot([*NODES, *make_cluster(1, "a100-80g")], workloads=snap.workloads)
    result = cycle(snap)
    assert "other" in admitted(result)


def test_no_reservation_without_backfill():
    snap = blocked_gang_scenario([make_job("long").gpus(8).duration(500).created(2)])
    result = cycle(snap, BAIGE.with_overrides({"backfill": False}))
    assert result.reservations == ()
    assert "long" in admitted(result)  # the gang is starved: what backfill prevents


def test_reservation_picks_earliest_domain():
    # two racks of 4 nodes; rack 0 frees at t=50, rack 1 at t=200: reserve rack 0
    nodes = make_cluster(8, H)
    running = [
        make_job(f"r{i}")
        .gpus(8)
        .running(H, [(nodes[i].name, range(8))], expected_end=50 if i < 4 else 200)
        for i in range(8)
        if i not in (0, 5)
    ]
    snap = make_snapshot(nodes, workloads=[*running, make_job("gang").gpus(8).replicas(4)])
    result = cycle(snap)
    (reservation,) = result.reservations
    assert reservation.start == 50
    assert {name for name, _ in reservation.nodes} <= {n.name for n in nodes[:4]}


@pytest.mark.parametrize("health", [Health.FAILED, Health.CORDONED])
def test_unhealthy_nodes_receive_nothing(health):
    snap = with_health(
        make_snapshot(NODES, workloads=[make_job(f"j{i}").gpus(8).created(i) for i in range(4)]),
        h100_0001=health,
        h100_0002=health,
    )
    result = cycle(snap)
    used = {
        node
        for d in result.decisions
        if isinstance(d, Admit)
        for node in nodes_of(result, d.workload)
    }
    assert used == {"h100-0000", "h100-0003"}
    assert len(admitted(result)) == 2


def test_work_on_a_failed_node_is_requeued_and_rescheduled():
    job = (
        make_job("j")
        .gpus(8)
        .replicas(2)
        .running(H, [("h100-0000", range(8)), ("h100-0001", range(8))])
    )
    snap = with_health(make_snapshot(NODES, workloads=[job]), h100_0001=Health.FAILED)
    result = cycle(snap)
    first, second = result.decisions
    assert isinstance(first, Preempt) and "h100-0001 failed" in first.reason
    assert isinstance(second, Admit) and "h100-0001" not in {p.node for p in second.placements}


def test_elastic_job_on_a_failed_node_shrinks_and_keeps_running():
    job = (
        make_job("j")
        .gpus(8)
        .replicas(3)
        .elastic(1)
        .running(H, [(f"h100-{i:04d}", range(8)) for i in range(3)])
    )
    snap = with_health(make_snapshot(make_cluster(3, H), workloads=[job]), h100_0002=Health.FAILED)
    result = cycle(snap)
    (decision,) = result.decisions  # no room to grow back: only two ready nodes, both used
    assert isinstance(decision, Shrink)
    assert decision.replicas == 2


def test_cordoned_node_keeps_its_running_work():
    job = make_job("j").gpus(8).running(H, [("h100-0000", range(8))])
    snap = with_health(make_snapshot(NODES, workloads=[job]), h100_0000=Health.CORDONED)
    assert cycle(snap).decisions == ()


def test_work_on_a_node_that_left_the_cluster_is_requeued():
    job = make_job("j").gpus(8).running(H, [("gone-node", range(8))])
    result = cycle(make_snapshot(NODES, workloads=[job]))
    first, second = result.decisions
    assert isinstance(first, Preempt) and "gone-node failed" in first.reason
    assert isinstance(second, Admit)
    assert result.warnings == ()
