"""A request bigger than the whole cluster (or its queue's limit) says it can never fit,
stays pending, and holds nothing: no victims, no reservation."""

from __future__ import annotations

import pytest

from baige.sched import Reason
from baige.sched.model import Health
from baige.sched.testing import make_cluster, make_job, make_queue, make_snapshot, with_health

from .helpers import admitted, cycle, preempted


@pytest.mark.parametrize(
    ("job", "queues", "reason", "words"),
    [
        ("24 cards on 16", (), Reason.NEVER_FITS, ("needs 24 h100 cards in one gang", "has 16")),
        ("16 cards on 16", (), Reason.RESERVED, ()),  # fits once the blocker ends
        ("a replica of 16 on nodes of 8", (), Reason.NEVER_FITS, ("largest node has 8",)),
        ("over the queue limit", ("limit",), Reason.NEVER_FITS, ("queue small may use at most 8",)),
        ("fits nowhere of two types", ("two",), Reason.NEVER_FITS, ("h100", "a100-80g")),
    ],
)
def test_never_fits_table(job, queues, reason, words):
    nodes = make_cluster(2, "h100")
    blocker = (
        make_job("blocker").gpus(8).replicas(2).running("h100", [(n.name, range(8)) for n in nodes])
    )
    qs = []
    workload = make_job("w").gpus(8).replicas(3)
    if job == "16 cards on 16":
        workload = make_job("w").gpus(8).replicas(2)
    elif job == "a replica of 16 on nodes of 8":
        workload = make_job("w").gpus(16)
    elif job == "over the queue limit":
        qs = [make_queue("small", h100=(4, 8)), make_queue("default")]
        workload = make_job("w").gpus(8).replicas(2).queue("small")
    elif job == "fits nowhere of two types":
        nodes = nodes + make_cluster(1, "a100-80g")
        workload = make_job("w").gpus(8).replicas(3).types("h100", "a100-80g")
    result = cycle(make_snapshot(nodes, qs, [blocker, workload]))
    pending = result.pending["w"]
    assert pending.reason is reason, pending
    for word in words:
        assert word in pending.message
    if reason is Reason.NEVER_FITS:
        assert "can never be placed as specified" in pending.message
        assert "w" not in {r.workload for r in result.reservations}
        assert not preempted(result)


def test_cordoned_nodes_count_failed_ones_do_not():
    snap = make_snapshot(make_cluster(3, "h100"), workloads=[make_job("w").gpus(8).replicas(3)])
    cordoned = with_health(snap, h100_0002=Health.CORDONED)
    assert cycle(cordoned).pending["w"].reason is Reason.CAPACITY  # uncordoning would do
    failed = with_health(snap, h100_0002=Health.FAILED)
    result = cycle(failed)
    assert result.pending["w"].reason is Reason.NEVER_FITS
    assert "the whole cluster has 16 (2 nodes)" in result.pending["w"].message


def test_a_never_fitting_job_does_not_block_backfill():
    snap = make_snapshot(
        make_cluster(2, "h100"),
        workloads=[
            make_job("huge").gpus(8).replicas(3).created(0),
            make_job("small").gpus(8).created(1),
        ],
    )
    result = cycle(snap)
    assert admitted(result) == {"small"}
    assert result.pending["huge"].reason is Reason.NEVER_FITS
