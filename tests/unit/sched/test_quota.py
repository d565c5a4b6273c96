"""Capability 1: hierarchical queues — guarantees, borrowing, lending limits, fair order,
reclaim."""

from __future__ import annotations

import pytest

from baige.sched import BAIGE, FIFO, MILLI, Queue, Quota, Reason
from baige.sched.quota import ROOT, QuotaLedger
from baige.sched.testing import make_cluster, make_job, make_queue, make_snapshot

from .helpers import admitted, cycle, preempted, shrunk

H = "h100"


def ledger(*queues: Queue, capacity: int = 64, borrowing: bool = True) -> QuotaLedger:
    return QuotaLedger(queues, {H: capacity * MILLI}, borrowing=borrowing)


@pytest.mark.parametrize(
    ("usage", "ask", "ok", "blocked_at", "borrowing"),
    [
        ({"a": 0}, 16, True, None, False),  # within guarantee
        ({"a": 16}, 8, True, None, True),  # beyond guarantee: borrows
        ({"a": 28}, 8, False, "a", True),  # over a's limit of 32
        ({"b": 56}, 16, False, ROOT, False),  # guarantee there, but capacity used by b
        ({"b": 40}, 16, True, None, False),
    ],
)
def test_ledger_check(usage, ask, ok, blocked_at, borrowing):
    book = ledger(make_queue("a", h100=(16, 32)), make_queue("b", h100=16))
    for queue, cards in usage.items():
        book.add(queue, H, cards * MILLI)
    verdict = book.check("a", H, ask * MILLI)
    assert verdict.ok is ok
    assert verdict.blocked_at == blocked_at
    if ok:
        assert verdict.borrowing is borrowing


def test_ledger_nested_limits_and_footprints():
    book = ledger(
        make_queue("org", h100=(32, 40)),
        make_queue("team1", parent="org", h100=(16, None, 0)),  # lends nothing
        make_queue("team2", parent="org", h100=16),
    )
    # team1 keeps its 16 even idle: the org's footprint starts at 16
    assert book.check("team2", H, 24 * MILLI).ok  # 16 kept + 24 = 40 = org limit
    assert not book.check("team2", H, 25 * MILLI).ok
    book.add("team2", H, 24 * MILLI)
    assert book.usage("org", H) == 40 * MILLI
    # team1 using its kept guarantee does not grow the org's footprint
    assert book.check("team1", H, 16 * MILLI).ok
    book.add("team1", H, 16 * MILLI)
    assert book.usage("org", H) == 40 * MILLI
    assert book.borrowed("team2", H) == 8 * MILLI
    book.add("team2", H, -24 * MILLI)
    assert book.usage("org", H) == 16 * MILLI


def test_missing_parent_and_loops_are_warned_not_fatal():
    book = ledger(Queue("a", parent="ghost"), Queue("b", parent="c"), Queue("c", parent="b"))
    assert book.parent["a"] == ROOT
    assert any("ghost" in w for w in book.warnings)
    assert any("loops" in w for w in book.warnings)


# -- through a cycle ------------------------------------------------------------------------

NODES = make_cluster(4, H)  # 32 cards


@pytest.mark.parametrize(
    ("profile", "quota", "jobs", "expect_admitted", "expect_reason"),
    [
        # borrowing idle capacity beyond the guarantee, up to the limit
        (BAIGE, (8, 24), 3, {"j0", "j1", "j2"}, None),
        (BAIGE, (8, 16), 3, {"j0", "j1"}, Reason.QUOTA),
        # the fifo baseline does not borrow: the guarantee is the ceiling
        (FIFO, (8, 24), 3, {"j0"}, Reason.QUOTA),
    ],
)
def test_borrowing_up_to_limit(profile, quota, jobs, expect_admitted, expect_reason):
    snap = make_snapshot(
        NODES,
        [make_queue("a", h100=quota), make_queue("b", h100=8)],
        [make_job(f"j{i}").queue("a").gpus(8).created(i) for i in range(jobs)],
    )
    result = cycle(snap, profile)
    assert admitted(result) == expect_admitted
    if expect_reason is not None:
        first_waiting = f"j{len(expect_admitted)}"
        assert result.pending[first_waiting].reason is expect_reason


def test_lend_limit_keeps_capacity_for_the_lender():
    # b guarantees 16 and lends only 4: a can grow to 16 + 4 = 20 of the 32 cards
    snap = make_snapshot(
        NODES,
        [make_queue("a", h100=16), make_queue("b", h100=(16, None, 4))],
        [make_job(f"j{i}").queue("a").gpus(4).created(i) for i in range(8)],
    )
    result = cycle(snap)
    assert len(admitted(result)) == 5
    assert "committed" in result.pending["j5"].message


def test_weighted_fair_order_among_siblings():
    # two queues, no guarantees, weights 3:1, both want everything
    snap = make_snapshot(
        make_cluster(8, H),
        [Queue("a", weight=3.0), Queue("b", weight=1.0)],
        [make_job(f"a{i}").queue("a").gpus(4).created(i) for i in range(16)]
        + [make_job(f"b{i}").queue("b").gpus(4).created(i) for i in range(16)],
    )
    result = cycle(snap)
    got = admitted(result)
    a = sum(1 for w in got if w.startswith("a"))
    b = sum(1 for w in got if w.startswith("b"))
    assert a + b == 16
    assert (a, b) == (12, 4)


def test_fair_order_is_hierarchical():
    # org1 (weight 1) has two teams; org2 (weight 1) one: org1 and org2 split evenly
    queues = [
        Queue("org1"),
        Queue("org2"),
        Queue("t1", parent="org1"),
        Queue("t2", parent="org1"),
        Queue("t3", parent="org2"),
    ]
    jobs = [
        make_job(f"{t}-{i}").queue(t).gpus(8).created(i)
        for t in ("t1", "t2", "t3")
        for i in range(8)
    ]
    result = cycle(make_snapshot(make_cluster(8, H), queues, jobs))
    got = admitted(result)
    per_team = {t: sum(1 for w in got if w.startswith(t)) for t in ("t1", "t2", "t3")}
    assert per_team == {"t1": 2, "t2": 2, "t3": 4}


def test_under_guarantee_queue_goes_first():
    # a arrived first but has no guarantee; b is under its guarantee: b goes first
    snap = make_snapshot(
        make_cluster(1, H),
        [make_queue("a", h100=0), make_queue("b", h100=8)],
        [
            make_job("a0").queue("a").gpus(8).created(0),
            make_job("b0").queue("b").gpus(8).created(5),
        ],
    )
    result = cycle(snap, BAIGE.with_overrides({"preemption": False, "reclaim": False}))
    assert admitted(result) == {"b0"}


def _borrowed_cluster(extra_b_jobs, elastic=False):
    """a guarantees 16 of 32 cards but is idle; b (guarantee 16) borrowed everything."""
    running = []
    for i in range(4):
        job = (
            make_job(f"b{i}")
            .queue("b")
            .gpus(8)
            .created(i)
            .running(H, [(f"h100-{i:04d}", range(8))], admitted_at=i)
        )
        if elastic:
            job = (
                make_job(f"b{i}")
                .queue("b")
                .gpus(4)
                .replicas(2)
                .elastic(1)
                .created(i)
                .running(
                    H, [(f"h100-{i:04d}", range(4)), (f"h100-{i:04d}", range(4, 8))], admitted_at=i
                )
            )
        running.append(job)
    return make_snapshot(
        NODES,
        [make_queue("a", h100=16), make_queue("b", h100=16)],
        running + extra_b_jobs,
    )


def test_reclaim_preempts_newest_borrowers_first():
    snap = _borrowed_cluster([make_job("a0").queue("a").gpus(8).replicas(2).created(10)])
    result = cycle(snap)
    assert "a0" in admitted(result)
    assert preempted(result) == {"b3", "b2"}  # the newest two, no more
    reasons = {d.workload: d for d in result.decisions if hasattr(d, "reason")}
    assert "reclaims" in reasons["b3"].reason


def test_reclaim_ignores_priority_but_respects_non_preemptible():
    running = [
        make_job("b0")
        .queue("b")
        .gpus(8)
        .priority(100)
        .preemptible(False)
        .running(H, [("h100-0000", range(8))]),
        make_job("b1").queue("b").gpus(8).priority(100).running(H, [("h100-0001", range(8))]),
        make_job("b2").queue("b").gpus(8).running(H, [("h100-0002", range(8))]),
        make_job("b3").queue("b").gpus(8).running(H, [("h100-0003", range(8))]),
    ]
    snap = make_snapshot(
        NODES,
        [make_queue("a", h100=24), make_queue("b", h100=8)],
        [*running, make_job("a0").queue("a").priority(0).gpus(8).replicas(3).created(9)],
    )
    result = cycle(snap)
    assert "a0" in admitted(result)
    assert preempted(result) == {"b1", "b2", "b3"}


def test_reclaim_shrinks_elastic_borrowers_before_preempting():
    snap = _borrowed_cluster(
        [make_job("a0").queue("a").gpus(4).replicas(4).created(10)], elastic=True
    )
    result = cycle(snap)
    assert "a0" in admitted(result)
    assert preempted(result) == set()
    assert sum(2 - left for left in shrunk(result).values()) == 4


def test_no_reclaim_beyond_guarantee():
    # a asks for more than its guarantee: it may only borrow what is idle, not reclaim
    snap = _borrowed_cluster([make_job("a0").queue("a").gpus(8).replicas(3).created(10)])
    result = cycle(snap)
    assert admitted(result) == set()
    assert preempted(result) == set()
    assert result.pending["a0"].reason in {Reason.CAPACITY, Reason.RESERVED}


def test_quota_counts_shares_in_milli():
    snap = make_snapshot(
        make_cluster(1, H),
        [make_queue("serve", h100=(1, 1))],
        [make_job(f"s{i}").inference().queue("serve").share(250).created(i) for i in range(6)],
    )
    result = cycle(snap)
    assert len(admitted(result)) == 4
    assert Quota(1000).kept == 0
