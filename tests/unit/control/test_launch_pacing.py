"""A pass launches a bounded number of replicas, shared round-robin among workloads, so one
huge service cannot hold the loop for minutes nor delay everyone else's launches."""

from __future__ import annotations

from pathlib import Path

from baige.api.loader import load_specs
from baige.api.nodes import AcceleratorGroup, NodeSpec
from baige.api.queues import QueueSpec
from baige.backends.fake import FakeBackend
from baige.control.auth import Principal
from baige.control.controller import Controller
from baige.control.service import ControlService
from baige.store.db import Database

ADMIN = Principal("test", None, admin=True)

SERVICE = """\
kind: InferenceService
name: swarm
queue: default
replicas: 600
priority: 10
accelerators: {count: 1, share: 0.02, types: [h100]}
command: [sleep, '100']
"""
JOB = """\
kind: TrainingJob
name: small
queue: default
replicas: 2
accelerators: {count: 1, types: [h100]}
command: [sleep, '100']
"""


def test_launches_are_paced_and_shared(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'b.db'}")
    backend = FakeBackend()
    controller = Controller(db, backend, max_launches_per_pass=100)
    service = ControlService(db, wake=controller.wake)
    service.apply_queue(ADMIN, QueueSpec(name="default"))
    nodes = [
        NodeSpec(name=f"n{i}", accelerators=AcceleratorGroup(type="h100", count=8)) for i in (0, 1)
    ]
    service.register_nodes(ADMIN, nodes)
    ids = []
    for text in (SERVICE, JOB):
        (spec,) = load_specs(text)
        ids.append(service.submit(ADMIN, spec)[0].id)  # type: ignore[arg-type]
    stats = controller.run_pass()
    assert stats.launched == 100
    assert sum(r.startswith(ids[1]) for r in backend.launches) == 2  # not behind the swarm
    passes = 1
    while len(backend.launches) < 602:
        assert controller.run_pass().launched <= 100
        passes += 1
    assert passes == 7 and len(set(backend.launches)) == 602
