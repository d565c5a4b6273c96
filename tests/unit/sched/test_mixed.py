"""One gang across accelerator types (``mix``): a sub-gang per type, all or nothing, quota
charged per type, preempted and requeued as one; the kept-state scheduler agrees."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from baige.sched import (
    BAIGE,
    Admit,
    Health,
    Preempt,
    Reason,
    Snapshot,
    apply_decisions,
    check_result,
    run_cycle,
)
from baige.sched.incremental import Scheduler
from baige.sched.model import MILLI, Mix, Workload
from baige.sched.testing import make_cluster, make_job, make_node, make_queue, make_snapshot

TWO = ("h100", "ascend-910b")


def _one_each() -> list:
    return [make_node("h-0", "h100", 1), make_node("a-0", "ascend-910b", 1)]


@pytest.mark.parametrize(
    ("mix", "admitted"),
    [("never", False), ("allowed", True), ("required", True)],
)
def test_two_replicas_on_one_card_of_each_type(mix: str, admitted: bool) -> None:
    snapshot = make_snapshot(_one_each(), [], [make_job("j").types(*TWO).replicas(2).mix(mix)])
    result = run_cycle(snapshot, 0.0)
    assert not check_result(snapshot, result, BAIGE)
    if not admitted:
        assert result.pending["j"].reason is Reason.NEVER_FITS
        return
    (admit,) = result.decisions
    assert isinstance(admit, Admit)
    assert admit.mixed == (("h100", 1), ("ascend-910b", 1))
    assert {p.node for p in admit.placements} == {"h-0", "a-0"}


def test_allowed_prefers_one_type_when_the_gang_fits_on_it() -> None:
    nodes = [make_node("h-0", "h100", 8), make_node("a-0", "ascend-910b", 8)]
    snapshot = make_snapshot(nodes, [], [make_job("j").types(*TWO).replicas(4).mix("allowed")])
    (admit,) = run_cycle(snapshot, 0.0).decisions
    assert isinstance(admit, Admit) and admit.mixed == () and admit.accel_type == "h100"


def test_required_spans_even_when_one_type_would_do() -> None:
    nodes = [make_node("h-0", "h100", 8), make_node("a-0", "ascend-910b", 8)]
    snapshot = make_snapshot(nodes, [], [make_job("j").types(*TWO).replicas(4).mix("required")])
    (admit,) = run_cycle(snapshot, 0.0).decisions
    assert isinstance(admit, Admit) and admit.mixed == (("h100", 3), ("ascend-910b", 1))


def test_all_or_nothing_across_types() -> None:
    """Three replicas, room for two over both types: nothing is placed, the reason says so,
    and a one-card job behind it still gets a card (none was leaked)."""
    jobs = [
        make_job("big").types(*TWO).replicas(3).mix("allowed").created(0),
        make_job("small").types("ascend-910b").created(1),
    ]
    snapshot = make_snapshot(_one_each(), [], jobs)
    result = run_cycle(snapshot, 0.0)
    assert "big" not in result.admitted()
    assert "across h100+ascend-910b" in result.pending["big"].message
    assert result.admitted()["small"].placements[0].node == "a-0"
    assert not check_result(snapshot, result, BAIGE)


def test_each_sub_gang_is_packed_into_the_smallest_domain() -> None:
    nodes = make_cluster(4, "h100", 2, nodes_per_rack=2) + make_cluster(
        4, "ascend-910b", 2, nodes_per_rack=2
    )
    snapshot = make_snapshot(nodes, [], [make_job("j").types(*TWO).replicas(10).mix("allowed")])
    (admit,) = run_cycle(snapshot, 0.0).decisions
    assert isinstance(admit, Admit) and admit.mixed == (("h100", 8), ("ascend-910b", 2))
    ascend = {p.node for p in admit.placements if p.node.startswith("ascend")}
    assert len(ascend) == 1  # two replicas of 1 card: one node, not two


def test_quota_is_charged_per_type() -> None:
    nodes = [make_node("h-0", "h100", 2), make_node("a-0", "ascend-910b", 2)]
    queues = [make_queue("default", h100=(1, 1), ascend_910b=(2, 2))]
    snapshot = make_snapshot(nodes, queues, [make_job("j").types(*TWO).replicas(3).mix("allowed")])
    result = run_cycle(snapshot, 0.0)
    admit = result.admitted()["j"]
    assert admit.mixed == (("h100", 1), ("ascend-910b", 2))  # the h100 limit caps its share
    after = apply_decisions(snapshot, result)
    more = make_snapshot(nodes, queues, [*after.workloads, make_job("k").types("h100").created(5)])
    pending = run_cycle(more, 1.0).pending["k"]
    assert pending.reason is Reason.QUOTA and "in use 1" in pending.message


def test_a_mixed_gang_is_preempted_and_requeued_as_one() -> None:
    nodes = [make_node("h-0", "h100", 1), make_node("a-0", "ascend-910b", 1)]
    mixed = make_job("m").types(*TWO).replicas(2).mix("allowed").priority(0)
    running = mixed.running("h100", [("h-0", [0]), ("a-0", [0])])
    urgent = make_job("u").types("ascend-910b").priority(5).created(3)
    snapshot = make_snapshot(nodes, [], [running, urgent])
    result = run_cycle(snapshot, 0.0)
    assert isinstance(result.decisions[0], Preempt) and result.decisions[0].workload == "m"
    assert result.admitted()["u"].placements[0].node == "a-0"
    assert not check_result(snapshot, result, BAIGE)
    # a failed node requeues the whole gang, on either type
    failed = make_snapshot([replace(nodes[0], health=Health.FAILED), nodes[1]], [], [running])
    (preempt,) = [d for d in run_cycle(failed, 0.0).decisions if isinstance(d, Preempt)]
    assert preempt.workload == "m" and "failed" in preempt.reason


# -- random clusters: invariants and the kept-state scheduler ----------------------------------


@st.composite
def mixed_snapshots(draw: st.DrawFn) -> Snapshot:
    types = ("h100", "a100-80g", "ascend-910b")
    nodes = []
    for accel in types:
        nodes += make_cluster(
            draw(st.integers(1, 4)), accel, draw(st.sampled_from((1, 2, 4))), nodes_per_rack=2
        )
    limit = draw(st.one_of(st.none(), st.integers(1, 8)))
    queues = [make_queue("q0", h100=(4, limit)), make_queue("q1", ascend_910b=(2, limit))]
    workloads = []
    for i in range(draw(st.integers(1, 14))):
        job = make_job(f"w{i}").queue(draw(st.sampled_from(("q0", "q1")))).created(i)
        job.types(*draw(st.lists(st.sampled_from(types), min_size=2, max_size=3, unique=True)))
        job.gpus(draw(st.sampled_from((1, 2))))
        replicas = draw(st.integers(1, 8))
        job.replicas(replicas)
        if draw(st.booleans()):
            job.elastic(draw(st.integers(1, replicas)))
        job.priority(draw(st.integers(0, 2)))
        job.mix(draw(st.sampled_from(list(Mix))))
        workloads.append(job.build())
    return Snapshot(tuple(nodes), tuple(queues), tuple(workloads))


def _held(snapshot: Snapshot) -> Counter[str]:
    """Whole cards held per node (capacity is never exceeded)."""
    held: Counter[str] = Counter()
    for workload in snapshot.workloads:
        for placement in workload.assignment.placements if workload.assignment else ():
            held[placement.node] += len(placement.devices) * placement.milli
    return held


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshot=mixed_snapshots(), data=st.data())
def test_random_mixed_cycles_keep_every_invariant(snapshot: Snapshot, data: st.DataObject) -> None:
    for now in (0.0, 10.0, 20.0):
        result = run_cycle(snapshot, now, BAIGE)
        assert not check_result(snapshot, result, BAIGE)
        workloads = {w.id: w for w in snapshot.workloads}
        for admit in result.admitted().values():
            workload = workloads[admit.workload]
            if admit.mixed:  # all or nothing: the sub-gangs add up to at least the floor
                assert workload.mix is not Mix.NEVER
                assert sum(n for _, n in admit.mixed) == len(admit.placements)
                assert len(admit.placements) >= workload.floor
            if workload.mix is Mix.REQUIRED:
                assert len(admit.mixed) >= 2
        snapshot = apply_decisions(snapshot, result)
        capacity = {n.name: n.devices * MILLI for n in snapshot.nodes}
        assert all(used <= capacity[node] for node, used in _held(snapshot).items())
        if not snapshot.workloads:
            break
        gone = data.draw(st.sets(st.sampled_from([w.id for w in snapshot.workloads])))
        snapshot = replace(
            snapshot, workloads=tuple(w for w in snapshot.workloads if w.id not in gone)
        )


def _random_job(rng: random.Random, index: int, now: float) -> Workload:
    replicas = rng.randint(1, 6)
    job = (
        make_job(f"w{index}")
        .queue(rng.choice(("q0", "q1")))
        .types(*rng.sample(("h100", "a100-80g", "ascend-910b"), rng.randint(2, 3)))
        .gpus(rng.choice((1, 2, 4)))
        .replicas(replicas)
        .priority(rng.randint(0, 2))
        .created(now)
        .mix(rng.choice(list(Mix)))
    )
    if rng.random() < 0.3:
        job.elastic(rng.randint(1, replicas))
    return job.build()


@pytest.mark.parametrize("seed", range(3))
def test_the_kept_state_scheduler_matches_run_cycle(seed: int) -> None:
    rng = random.Random(seed)
    nodes = (
        make_cluster(6, "h100", 4, nodes_per_rack=2)
        + make_cluster(4, "a100-80g", 8, nodes_per_rack=2)
        + make_cluster(5, "ascend-910b", 4, nodes_per_rack=2)
    )
    queues = [make_queue("q0", h100=(8, None)), make_queue("q1", ascend_910b=(8, 16))]
    levels = ("block", "rack")
    scheduler = Scheduler(nodes, queues, BAIGE, levels)
    seen: Counter[str] = Counter()
    now, index = 0.0, 0
    for _ in range(40):
        for _ in range(rng.randint(0, 6)):
            scheduler.submit(_random_job(rng, index, now))
            index += 1
        running = sorted(scheduler.state.running)
        for workload_id in rng.sample(running, min(len(running), rng.randint(0, 3))):
            scheduler.remove(workload_id)
        if rng.random() < 0.3:
            scheduler.set_health(rng.choice(nodes).name, rng.choice(list(Health)))
        snapshot = scheduler.snapshot()
        expected = run_cycle(snapshot, now, BAIGE)
        assert scheduler.cycle(now) == expected
        assert not check_result(snapshot, expected, BAIGE)
        seen.update("mixed" for a in expected.admitted().values() if a.mixed)
        seen.update(type(d).__name__ for d in expected.decisions)
        now += rng.choice((1.0, 30.0))
    assert seen["mixed"] > 3 and seen["Preempt"]
