"""Specs into the simulator: the same ``from_api`` conversion as the control plane, and the
load a service sees as a gateway would measure it."""

from __future__ import annotations

import math

import pytest

from baige.api.loader import load_specs
from baige.api.nodes import AcceleratorGroup, NodeSpec
from baige.api.queues import QueueQuota, QueueSpec
from baige.sched.from_api import node_from_spec, queue_from_spec
from baige.sched.model import Kind
from baige.sim.from_specs import Arrival, built_from_specs

SERVICE = """\
kind: InferenceService
name: chat
queue: q
replicas: 2
priority: 7
accelerators: {share: 0.5, types: [h100]}
autoscale: {min_replicas: 1, max_replicas: 5, target_qps_per_replica: 4}
command: [serve]
"""
JOB = """\
kind: TrainingJob
name: train
queue: q
replicas: 4
min_replicas: 2
accelerators: {count: 2, types: [h100]}
command: [train]
"""


def test_specs_become_what_the_control_plane_would_schedule() -> None:
    node = NodeSpec(name="n0", accelerators=AcceleratorGroup(type="h100", count=8))
    queue = QueueSpec(name="q", quotas={"h100": QueueQuota(guaranteed=4, limit=6)})
    (service,) = load_specs(SERVICE)
    (job,) = load_specs(JOB)
    built = built_from_specs(
        [node], [queue],
        [Arrival(5, service, qps=((0, 2.0), (100, 10.0))), Arrival(0, job, seconds=50)],  # type: ignore[arg-type]
    )  # fmt: skip
    assert built.nodes == [node_from_spec(node)]
    assert built.queues == [queue_from_spec(queue)]
    (training,) = built.jobs
    assert training.workload.kind is Kind.TRAINING and training.workload.min_replicas == 2
    assert training.work == 50 * 4 and training.submit == 0
    (svc,) = built.services
    assert svc.template.priority == 7 and svc.template.request.milli == 500
    assert (svc.minimum, svc.peak, svc.initial) == (1, 5, 2)
    assert svc.workload(3, 5.0).replicas == 3 and svc.workload(3, 5.0).min_replicas == 1
    assert svc.needed(50) == 1  # 2 req/s at 4 per replica
    assert svc.needed(150) == 3  # 10 req/s: ceil(2.5)


@pytest.mark.parametrize(
    ("t", "measured"), [(100.0, 2.0), (107.5, 6.0), (115.0, 10.0), (300.0, 10.0)]
)
def test_the_autoscaler_sees_load_through_the_gateways_window(t: float, measured: float) -> None:
    (service,) = load_specs(SERVICE)
    node = NodeSpec(name="n0", accelerators=AcceleratorGroup(type="h100", count=8))
    built = built_from_specs(
        [node], [QueueSpec(name="q")],
        [Arrival(0, service, qps=((0, 2.0), (100, 10.0)))],  # type: ignore[arg-type]
        window=15,
    )  # fmt: skip
    (svc,) = built.services
    assert math.isclose(svc.offered(t), measured)
    assert svc.requests_per_second(t) == (10.0 if t >= 100 else 2.0)
