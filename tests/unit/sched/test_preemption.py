"""Capability 6: priorities, preemption (lowest priority, fewest victims, newest first), and
elastic training that shrinks to make room and grows back."""

from __future__ import annotations

import pytest

from baige.sched import BAIGE, Admit, Grow, Preempt, Shrink, apply_decisions
from baige.sched.testing import make_cluster, make_job, make_queue, make_snapshot

from .helpers import admitted, cycle, grown, preempted, shrunk

H = "h100"
NODES = make_cluster(4, H)


def full_cluster(priorities=(1, 1, 1, 1), admitted_at=(0, 1, 2, 3), preemptible=True):
    return [
        make_job(f"r{i}")
        .gpus(8)
        .priority(p)
        .preemptible(preemptible)
        .running(H, [(f"h100-{i:04d}", range(8))], admitted_at=t)
        for i, (p, t) in enumerate(zip(priorities, admitted_at, strict=True))
    ]


@pytest.mark.parametrize(
    ("priorities", "admitted_at", "ask_nodes", "victims"),
    [
        ((1, 1, 1, 1), (0, 1, 2, 3), 1, {"r3"}),  # newest first
        ((1, 1, 1, 1), (3, 2, 1, 0), 1, {"r0"}),
        ((5, 0, 5, 5), (0, 1, 2, 3), 1, {"r1"}),  # lowest priority first
        ((0, 0, 5, 5), (0, 1, 2, 3), 2, {"r0", "r1"}),
        ((5, 5, 5, 9), (0, 1, 2, 3), 1, {"r2"}),
        ((9, 9, 9, 9), (0, 1, 2, 3), 1, set()),  # nobody of lower priority
    ],
)
def test_priority_preemption_in_a_queue(priorities, admitted_at, ask_nodes, victims):
    snap = make_snapshot(
        NODES,
        workloads=[
            *full_cluster(priorities, admitted_at),
            make_job("hi").gpus(8).replicas(ask_nodes).priority(9).created(10),
        ],
    )
    result = cycle(snap)
    assert preempted(result) == victims
    assert ("hi" in admitted(result)) is bool(victims)
    if victims:
        kinds = [type(d) for d in result.decisions]
        assert kinds.index(Admit) > max(i for i, k in enumerate(kinds) if k is Preempt)
        assert all(d.by == "hi" for d in result.decisions if isinstance(d, Preempt))


def test_fewest_victims():
    # one 8-card job can go, or two 4-card jobs: fewer victims wins when priorities tie
    running = [
        make_job("small-a").gpus(4).running(H, [("h100-0000", range(4))], admitted_at=5),
        make_job("small-b").gpus(4).running(H, [("h100-0000", range(4, 8))], admitted_at=5),
        make_job("big").gpus(8).running(H, [("h100-0001", range(8))], admitted_at=1),
    ]
    snap = make_snapshot(
        make_cluster(2, H), workloads=[*running, make_job("hi").gpus(8).priority(5)]
    )
    result = cycle(snap)
    assert "hi" in admitted(result)
    assert len(preempted(result)) == 1


def test_non_preemptible_is_never_a_victim():
    snap = make_snapshot(
        NODES,
        workloads=[*full_cluster(preemptible=False), make_job("hi").gpus(8).priority(9)],
    )
    result = cycle(snap)
    assert preempted(result) == set()
    assert "hi" not in admitted(result)


def test_no_priority_preemption_across_queues_within_guarantees():
    # b runs within its guarantee: a's higher priority does not entitle it to b's cards
    snap = make_snapshot(
        NODES,
        [make_queue("a", h100=16), make_queue("b", h100=16)],
        [
            *[
                make_job(f"a{i}")
                .queue("a")
                .gpus(8)
                .priority(100)
                .running(H, [(f"h100-{i:04d}", range(8))])
                for i in range(2)
            ],
            *[
                make_job(f"b{i}").queue("b").gpus(8).running(H, [(f"h100-{i + 2:04d}", range(8))])
                for i in range(2)
            ],
            make_job("a-hi").queue("a").gpus(8).priority(100),
        ],
    )
    result = cycle(snap)
    assert preempted(result) == set()


def elastic_training(replicas=4, floor=1):
    """An elastic job with 4 replicas of 8 cards holding the whole cluster."""
    return (
        make_job("train")
        .queue("train")
        .gpus(8)
        .replicas(replicas)
        .elastic(floor)
        .running(H, [(f"h100-{i:04d}", range(8)) for i in range(4)], admitted_at=0)
    )


def test_inference_shrinks_elastic_training_then_it_grows_back():
    queues = [make_queue("serve", h100=8), make_queue("train", h100=0)]
    service = make_job("svc").queue("serve").inference().gpus(8).replicas(1).created(5)
    snap = make_snapshot(NODES, queues, [elastic_training(), service])
    result = cycle(snap, now=10)
    assert "svc" in admitted(result)
    assert preempted(result) == set()
    assert shrunk(result) == {"train": 3}
    shrink = next(d for d in result.decisions if isinstance(d, Shrink))
    assert shrink.by == "svc"
    # the service goes away; the next cycle grows the job back to 4
    after = apply_decisions(snap, result)
    without_service = [w for w in after.workloads if w.id != "svc"]
    snap2 = make_snapshot(NODES, queues, without_service)
    result2 = cycle(snap2, now=20)
    assert grown(result2) == {"train": 4}
    assert isinstance(result2.decisions[0], Grow)


def test_shrink_stops_at_min_replicas_then_preempts():
    queues = [make_queue("serve", h100=32), make_queue("train", h100=0)]
    service = make_job("svc").queue("serve").inference().gpus(8).replicas(4).created(5)
    snap = make_snapshot(NODES, queues, [elastic_training(floor=2), service])
    result = cycle(snap, now=10)
    # shrinking to 2 frees 2 nodes; the service wants 4: the job must go entirely
    assert preempted(result) == {"train"}
    assert len(next(d for d in result.decisions if isinstance(d, Admit)).placements) == 4


def test_growth_respects_quota_limits():
    queues = [make_queue("train", h100=(0, 24))]
    job = (
        make_job("train")
        .queue("train")
        .gpus(8)
        .replicas(4)
        .elastic(1)
        .running(H, [("h100-0000", range(8))])
    )
    result = cycle(make_snapshot(NODES, queues, [job]))
    assert grown(result) == {"train": 3}


def test_service_scaled_down_releases_newest_replicas():
    svc = (
        make_job("svc")
        .inference()
        .gpus(1)
        .replicas(1)
        .running(H, [("h100-0000", (0,)), ("h100-0000", (1,)), ("h100-0001", (0,))])
    )
    result = cycle(make_snapshot(NODES, workloads=[svc]))
    (decision,) = result.decisions
    assert isinstance(decision, Shrink)
    assert decision.replicas == 1
    assert [p.node for p in decision.remove] == ["h100-0000", "h100-0001"]


def test_preemption_switch_off():
    snap = make_snapshot(NODES, workloads=[*full_cluster(), make_job("hi").gpus(8).priority(9)])
    result = cycle(snap, BAIGE.with_overrides({"preemption": False, "reclaim": False}))
    assert preempted(result) == set()


def test_a_running_service_scaled_up_shrinks_elastic_training():
    """Load rose: the autoscaler asked a running service for 3 replicas where it has 1, and
    the cluster is full of elastic training. The service grows by shrinking the training
    (one decision cycle), as a pending service would have."""
    queues = [make_queue("serve", h100=24), make_queue("train", h100=0)]
    service = (
        make_job("svc").queue("serve").inference().gpus(8).replicas(3)
        .running(H, [("h100-0000", range(8))])
    )  # fmt: skip
    training = (
        make_job("train").queue("train").gpus(8).replicas(4).elastic(1)
        .running(H, [(f"h100-{i:04d}", range(8)) for i in (1, 2, 3)])
    )  # fmt: skip
    result = cycle(make_snapshot(NODES, queues, [training, service]), now=10)
    assert grown(result) == {"svc": 3}
    assert shrunk(result) == {"train": 1}
    shrink = next(d for d in result.decisions if isinstance(d, Shrink))
    assert shrink.by == "svc"


def test_a_running_service_does_not_preempt_what_it_may_not():
    queues = [make_queue("serve", h100=8), make_queue("train", h100=24)]
    service = (
        make_job("svc").queue("serve").inference().gpus(8).replicas(3)
        .running(H, [("h100-0000", range(8))])
    )  # fmt: skip
    training = (
        make_job("train").queue("train").gpus(8).replicas(3).preemptible(False)
        .running(H, [(f"h100-{i:04d}", range(8)) for i in (1, 2, 3)])
    )  # fmt: skip
    result = cycle(make_snapshot(NODES, queues, [training, service]), now=10)
    assert grown(result) == {} and preempted(result) == set() and shrunk(result) == {}
