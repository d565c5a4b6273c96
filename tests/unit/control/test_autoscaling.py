"""The live controller scales an autoscaled service from the load it is given (the gateway's
board in `baige up`), through the same pure autoscaler the simulator can call."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from baige.api.loader import load_specs
from baige.api.nodes import AcceleratorGroup, NodeSpec
from baige.api.queues import QueueSpec
from baige.backends.fake import FakeBackend
from baige.control.auth import Principal
from baige.control.controller import Controller
from baige.control.service import ControlService
from baige.sched.autoscale import LoadSample
from baige.store.db import Database
from baige.store.tables import ReplicaRow

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


def test_a_replica_leaving_a_service_is_drained_before_it_is_stopped(tmp_path: Path) -> None:
    """Scale-down takes a replica out of the gateway's rotation at once, but stops it only
    when its requests in flight have finished (or the drain timeout is spent)."""
    now = [1_000_000.0]
    busy: dict[str, int] = {}
    db = Database(f"sqlite:///{tmp_path / 'b.db'}")
    backend = FakeBackend(clock=lambda: now[0])
    controller = Controller(db, backend, in_flight=lambda r: busy.get(r, 0), drain_timeout=30,
                            heartbeat_timeout=1e9, clock=lambda: now[0])  # fmt: skip
    service = ControlService(db, wake=controller.wake, clock=lambda: now[0])
    service.apply_queue(ADMIN, QueueSpec(name="default"))
    service.register_nodes(
        ADMIN, [NodeSpec(name="n0", accelerators=AcceleratorGroup(type="h100", count=2))]
    )
    (spec,) = load_specs(SERVICE.replace("replicas: 1\n", "replicas: 3\n", 1))
    svc = service.submit(ADMIN, spec)[0].id  # type: ignore[arg-type]
    controller.run_pass()
    assert len(backend.running()) == 3
    service.scale(ADMIN, svc, 1)
    leaving = sorted(backend.running())[1:]
    busy[leaving[0]] = 2  # two requests still streaming from the first one to leave
    controller.run_pass()  # decided: both leave the rotation, neither is stopped yet
    with db.session() as session:  # what the gateway routes to: replicas still wanted
        wanted = session.scalars(select(ReplicaRow.id).where(ReplicaRow.desired == "running"))
        assert len(list(wanted)) == 1
    assert len(backend.running()) == 3 and not backend.stopped
    now[0] += 1
    controller.run_pass()
    assert not backend.stopped, "stopped before the gateway's replica list could settle"
    now[0] += 2
    controller.run_pass()  # the idle one goes; the busy one waits for its requests
    assert set(backend.stopped) == {leaving[1]}
    now[0] += 10
    controller.run_pass()
    assert set(backend.stopped) == {leaving[1]}
    busy[leaving[0]] = 0
    controller.run_pass()
    assert set(backend.stopped) == set(leaving)
    # a request that never ends does not hold a replica forever
    service.scale(ADMIN, svc, 2)
    controller.run_pass()
    service.scale(ADMIN, svc, 1)
    controller.run_pass()
    (stuck,) = set(backend.running()) - {r for r in backend.running() if r.endswith("r0-a0")}
    busy[stuck] = 1
    now[0] += 29
    controller.run_pass()
    assert stuck not in backend.stopped
    now[0] += 2
    controller.run_pass()
    assert stuck in backend.stopped
