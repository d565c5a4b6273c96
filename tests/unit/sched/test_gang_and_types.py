"""Capabilities 2 and 3: gang admission (all or nothing) and accepted accelerator types in
order of preference."""

from __future__ import annotations

import pytest

from baige.sched import FIFO, Admit, Reason
from baige.sched.testing import make_cluster, make_job, make_snapshot

from .helpers import accel_of, admitted, cycle

MIXED = make_cluster(2, "h100") + make_cluster(2, "a100-80g") + make_cluster(2, "ascend-910b")


@pytest.mark.parametrize(
    ("replicas", "gpus", "free_nodes", "admit"),
    [
        (4, 8, 4, True),
        (5, 8, 4, False),  # one replica short: nothing placed
        (3, 4, 1, False),  # 12 cards on a node of 8
        (2, 4, 1, True),
    ],
)
def test_gang_all_or_nothing(replicas, gpus, free_nodes, admit):
    snap = make_snapshot(
        make_cluster(free_nodes, "h100"),
        workloads=[make_job("g").gpus(gpus).replicas(replicas)],
    )
    result = cycle(snap)
    assert (admitted(result) == {"g"}) is admit
    if admit:
        (decision,) = result.decisions
        assert isinstance(decision, Admit)
        assert len(decision.placements) == replicas
    else:
        assert result.decisions == ()
        assert result.pending["g"].reason is Reason.NEVER_FITS  # bigger than the whole cluster


def test_failed_gang_leaks_nothing():
    # the big gang is considered first and fails; everything it tried must be given back,
    # so the small jobs behind it still find all 16 cards
    snap = make_snapshot(
        make_cluster(2, "h100"),
        workloads=[
            make_job("big").gpus(8).replicas(3).priority(10),
            *[make_job(f"s{i}").gpus(1).created(i) for i in range(16)],
        ],
    )
    profile = FIFO.with_overrides({"strict_fifo": False})
    result = cycle(snap, profile)
    assert "big" not in admitted(result)
    assert len(admitted(result)) == 16


def test_elastic_gang_starts_with_what_fits():
    snap = make_snapshot(
        make_cluster(3, "h100"),
        workloads=[make_job("e").gpus(8).replicas(6).elastic(2)],
    )
    result = cycle(snap)
    (decision,) = result.decisions
    assert isinstance(decision, Admit) and len(decision.placements) == 3


@pytest.mark.parametrize(
    ("types", "busy", "expect"),
    [
        (("h100", "a100-80g"), set(), "h100"),
        (("a100-80g", "h100"), set(), "a100-80g"),
        (("h100", "a100-80g"), {"h100"}, "a100-80g"),  # first choice full: next accepted
        (("h100",), {"h100"}, None),  # never on a type it did not accept
        (("mi300x", "ascend-910b"), set(), "ascend-910b"),  # no mi300x nodes at all
    ],
)
def test_flavor_fungibility(types, busy, expect):
    running = []
    for accel in busy:
        for i in range(2):
            running.append(
                make_job(f"busy-{accel}-{i}")
                .types(accel)
                .gpus(8)
                .running(accel, [(f"{accel}-{i:04d}", range(8))])
            )
    snap = make_snapshot(
        MIXED, workloads=[*running, make_job("w").types(*types).gpus(8).replicas(2)]
    )
    result = cycle(snap)
    assert accel_of(result, "w") == expect
    if expect is None:
        assert "h100" in result.pending["w"].message


def test_pending_reason_lists_every_type_tried():
    snap = make_snapshot(
        MIXED, workloads=[make_job("w").types("h100", "a100-80g").gpus(8).replicas(3)]
    )
    result = cycle(snap)
    message = result.pending["w"].message
    assert "h100" in message and "a100-80g" in message


def test_a_replica_bigger_than_any_node_says_so():
    snap = make_snapshot(make_cluster(2, "h100"), workloads=[make_job("w").gpus(16)])
    result = cycle(snap)
    assert result.pending["w"].reason is Reason.NEVER_FITS
    assert "largest node has 8" in result.pending["w"].message


def test_unknown_queue_is_a_reason_not_a_crash():
    snap = make_snapshot(make_cluster(1, "h100"), workloads=[make_job("w").queue("nope")])
    result = cycle(snap)
    assert result.pending["w"].reason is Reason.UNKNOWN_QUEUE
