"""Specs users write become the scheduler's snapshot types with the same meaning."""

from __future__ import annotations

from baige.api import Health, load_specs
from baige.sched import MILLI, Kind
from baige.sched.from_api import node_from_spec, queue_from_spec, workload_from_spec
from baige.sched.testing import make_snapshot

from .helpers import admitted, cycle

SPECS = """\
kind: Node
name: n1
accelerators: {type: H100, count: 8}
topology: b1/r1
cordoned: true
---
kind: Node
name: n2
accelerators: {type: h100, count: 8}
topology: b1/r2
---
kind: Queue
name: team
quotas: {h100: {guaranteed: 8, limit: 12.5, lend_limit: 2}}
---
kind: TrainingJob
name: job
queue: team
replicas: 2
min_replicas: 1
time_limit: 1h
topology: {required: rack}
accelerators: {count: 4, types: [h100]}
command: [python, train.py]
---
kind: InferenceService
name: svc
queue: team
replicas: 3
autoscale: {min_replicas: 1, max_replicas: 4}
accelerators: {share: 0.25, types: [h100]}
command: [serve]
"""


def test_specs_convert_and_schedule() -> None:
    n1, n2, queue, job, service = load_specs(SPECS)
    node = node_from_spec(n1)  # type: ignore[arg-type]
    assert node.health is Health.CORDONED and node.accel_type == "h100"
    assert node.topology == ("b1", "r1")
    q = queue_from_spec(queue)  # type: ignore[arg-type]
    assert q.quotas["h100"].limit == 12_500 and q.quotas["h100"].kept == 6 * MILLI
    w = workload_from_spec(job, created_at=5.0)  # type: ignore[arg-type]
    assert (w.replicas, w.floor, w.duration_estimate, w.required_level) == (2, 1, 3600, "rack")
    s = workload_from_spec(service)  # type: ignore[arg-type]
    assert s.kind is Kind.INFERENCE and s.request.milli == 250 and s.floor == 1
    snapshot = make_snapshot(
        [node, node_from_spec(n2)],  # type: ignore[arg-type]
        [q],
        [w, s],
    )
    result = cycle(snapshot)
    assert admitted(result) == {"job", "svc"}
    used_nodes = {p.node for d in result.decisions for p in getattr(d, "placements", ())}
    assert used_nodes == {"n2"}  # the cordoned node gets nothing


def test_types_in_any_order_are_scored_as_equals():
    spec = load_specs(
        "kind: TrainingJob\nname: t\nqueue: q\ncommand: [x]\n"
        "accelerators: {count: 1, types: [h100, a100-80g], order: any}\n"
    )[0]
    assert workload_from_spec(spec).types_ranked is False  # type: ignore[arg-type]
    spec = load_specs(
        "kind: TrainingJob\nname: t\nqueue: q\ncommand: [x]\n"
        "accelerators: {count: 1, types: [h100, a100-80g]}\n"
    )[0]
    assert workload_from_spec(spec).types_ranked is True  # type: ignore[arg-type]
