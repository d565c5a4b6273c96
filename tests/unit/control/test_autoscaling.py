"""The live controller scales an autoscaled service from the load it is given (the gateway's
board in `baige up`), through the same pure autoscaler the simulator can call."""

from __future__ import annotations

from pathlib import Path

from baige.api.loader import load_specs
from baige.api.nodes import AcceleratorGroup, NodeSpec
from baige.api.queues import QueueSpec
from baige.backends.fake import FakeBackend
from baige.control.auth import Principal
from baige.control.controller import Controller
from baige.control.service import ControlService
from baige.sched.autoscale import LoadSample
from baige.store.db import Database

ADMIN = Principal("test", None, admin=True)

SERVICE = """\
kind: InferenceService
name: chat
queue: default
replicas: 1
accelerators: {share: 0.5, types: [h100]}
autoscale: {min_replicas: 1, max_replicas: 4, target_qps_per_replica: 2,
            scale_down_window: 0s, cooldown: 0s}
command: [python3, -m, http.server]
"""


def test_load_scales_a_service_up_and_down(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'b.db'}")
    measured: dict[str, LoadSample] = {}
    backend = FakeBackend()
    controller = Controller(db, backend, load=measured.get)
    service = ControlService(db, wake=controller.wake)
    service.apply_queue(ADMIN, QueueSpec(name="default"))
    service.register_nodes(
        ADMIN, [NodeSpec(name="n0", accelerators=AcceleratorGroup(type="h100", count=2))]
    )
    (spec,) = load_specs(SERVICE)
    svc = service.submit(ADMIN, spec)[0].id  # type: ignore[arg-type]
    controller.run_pass()
    assert service.get(ADMIN, svc).replicas == 1
    measured[svc] = LoadSample(qps=7.0, in_flight=3, ready_replicas=1)
    controller.run_pass()
    controller.run_pass()
    view = service.get(ADMIN, svc)
    assert view.replicas == 4 and len(view.running_replicas) == 4
    scaled = [e for e in service.events(ADMIN, "workload", svc) if e.type == "Autoscaled"]
    assert len(scaled) == 1 and "from 1 to 4" in scaled[0].message
    assert "7.0 requests/s" in scaled[0].message
    measured[svc] = LoadSample(qps=0.5, in_flight=0, ready_replicas=4)
    controller.run_pass()
    controller.run_pass()
    assert service.get(ADMIN, svc).replicas == 1
