"""Random snapshots through several cycles: the invariants of ``check_result`` always hold.

Each example builds a random cluster, queue tree and workload mix, then runs cycles while
nodes fail, services rescale and work finishes, applying each result to get the next
snapshot; every result is checked (no over-allocation, no unaccepted type, no gang below its
floor, quota limits kept, no unhealthy node receiving work, every pending workload has a
reason, non-preemptible work never preempted).
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from baige.sched import (
    BAIGE,
    FIFO,
    Health,
    Queue,
    Snapshot,
    apply_decisions,
    check_result,
    run_cycle,
)
from baige.sched.testing import make_cluster, make_job, make_queue

TYPES = ("h100", "a100-80g", "ascend-910b")


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    nodes = []
    for accel in draw(st.lists(st.sampled_from(TYPES), min_size=1, max_size=3, unique=True)):
        count = draw(st.integers(1, 12))
        devices = draw(st.sampled_from((2, 4, 8)))
        nodes += make_cluster(count, accel, devices, nodes_per_rack=draw(st.integers(1, 4)))
    queues: list[Queue] = [
        make_queue(
            "org", **{t.replace("-", "_"): (draw(st.integers(0, 32)), None) for t in TYPES[:1]}
        )
    ]
    leaves = []
    for i in range(draw(st.integers(1, 4))):
        name = f"q{i}"
        quota = draw(st.integers(0, 16))
        limit = draw(st.one_of(st.none(), st.integers(quota, 48)))
        lend = draw(st.one_of(st.none(), st.integers(0, quota)))
        parent = draw(st.sampled_from((None, "org")))
        queues.append(
            make_queue(
                name,
                parent=parent,
                weight=draw(st.sampled_from((1.0, 2.0))),
                strict_fifo=draw(st.booleans()),
                h100=(quota, limit, lend),
            )
        )
        leaves.append(name)
    workloads = []
    for i in range(draw(st.integers(0, 30))):
        job = make_job(f"w{i}").queue(draw(st.sampled_from(leaves))).created(i)
        job.types(*draw(st.lists(st.sampled_from(TYPES), min_size=1, max_size=3, unique=True)))
        if draw(st.booleans()):
            job.inference()
            if draw(st.booleans()):
                job.share(draw(st.sampled_from((100, 250, 500, 700))))
            else:
                job.gpus(draw(st.sampled_from((1, 2))))
            job.replicas(draw(st.integers(0, 4)))
        else:
            job.gpus(draw(st.sampled_from((1, 2, 4, 8))))
            replicas = draw(st.integers(1, 6))
            job.replicas(replicas)
            if draw(st.booleans()):
                job.elastic(draw(st.integers(1, replicas)))
            job.priority(draw(st.integers(0, 3)))
            if draw(st.booleans()):
                job.duration(draw(st.sampled_from((10.0, 100.0, 1000.0))))
            if draw(st.integers(0, 5)) == 0:
                job.within(draw(st.sampled_from(("node", "rack", "block"))))
        workloads.append(job.build())
    return Snapshot(tuple(nodes), tuple(queues), tuple(workloads))


def step(snapshot: Snapshot, draw: st.DrawFn) -> Snapshot:
    """Perturb a snapshot the way time does: failures, finishes, rescaling."""
    nodes = list(snapshot.nodes)
    for index in draw(st.lists(st.integers(0, len(nodes) - 1), max_size=2)):
        nodes[index] = replace(nodes[index], health=draw(st.sampled_from(list(Health))))
    workloads = []
    for workload in snapshot.workloads:
        roll = draw(st.integers(0, 9))
        if workload.assignment is not None and roll == 0:
            continue  # finished
        if not workload.gang and roll == 1:
            workload = replace(workload, replicas=draw(st.integers(0, 5)))
        workloads.append(workload)
    return replace(snapshot, nodes=tuple(nodes), workloads=tuple(workloads))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshot=snapshots(), profile=st.sampled_from((BAIGE, FIFO)), data=st.data())
def test_cycles_keep_every_invariant(snapshot: Snapshot, profile, data) -> None:
    for now in (0.0, 10.0, 20.0, 30.0):
        result = run_cycle(snapshot, now, profile)
        problems = check_result(snapshot, result, profile)
        assert not problems, problems
        assert run_cycle(snapshot, now, profile).decisions == result.decisions
        snapshot = step(apply_decisions(snapshot, result), data.draw)
