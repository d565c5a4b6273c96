"""The controller's workload lifecycle, table-driven: SQLite, the declared fake backend with
a script, and a clock the test steps. No server, no processes, nothing patched."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from baige.api.loader import load_specs
from baige.api.nodes import AcceleratorGroup, NodeSpec
from baige.api.queues import QueueSpec
from baige.backends.base import ReplicaLaunch
from baige.backends.fake import Behaviour, FakeBackend, Refuse, Run, Vanish
from baige.control.auth import Principal
from baige.control.controller import Controller
from baige.control.service import ControlService
from baige.store.db import Database

ADMIN = Principal("test", None, admin=True)

JOB = """\
kind: TrainingJob
name: j
queue: default
replicas: 2
max_restarts: 2
accelerators: {count: 1, types: [h100]}
command: [train]
"""
SPARE = JOB.replace("max_restarts: 2", "max_restarts: 2\nspares: 1")
SERVICE = """\
kind: InferenceService
name: s
queue: default
replicas: 2
accelerators: {share: 0.5, types: [h100]}
command: [serve]
"""


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Case:
    spec: str
    script: dict[str, Behaviour]  # by "g<generation>-r<index>-a<attempt>"; others run forever
    phase: str
    restarts: int
    reason: str
    launches: int


CASES = {
    "a job whose replicas exit 0 succeeds": Case(
        JOB, {"g1-r0-a0": Run(5), "g1-r1-a0": Run(5)}, "succeeded", 0, "exited 0", 2),
    "a failing replica restarts the gang until the budget is spent": Case(
        JOB, {f"g{g}-r1-a0": Run(5, exit_code=3) for g in (1, 2, 3)}, "failed", 2,
        "exited with code 3", 6),
    "a vanished replica is lost, and the job restarts": Case(
        JOB, {"g1-r0-a0": Vanish(5), "g2-r0-a0": Run(5), "g2-r1-a0": Run(5)}, "succeeded", 1,
        "exited 0", 4),
    "a replica that cannot be started fails the job once": Case(
        JOB, {"g1-r1-a0": Refuse("no such binary")}, "failed", 0, "no such binary", 1),
    "a job with a spare loses a replica and goes on, then a new spare is placed": Case(
        SPARE, {"g1-r0-a0": Vanish(5)}, "running", 0, "admitted", 4),
    "a spare lost with the replica it stood in for: the gang restarts": Case(
        SPARE, {"g1-r0-a0": Vanish(5), "g1-r2-a0": Vanish(5), "g2-r0-a0": Run(5),
                "g2-r1-a0": Run(5), "g2-r2-a0": Run(5)}, "succeeded", 1, "exited 0", 6),
    "a job with spares succeeds when every replica exited 0 (a released spare too)": Case(
        SPARE, {"g1-r0-a0": Run(5), "g1-r1-a0": Run(5), "g1-r2-a0": Run(6)}, "succeeded", 0,
        "exited 0", 3),
    "a spare whose agent gives up is dropped and replaced; the job still succeeds": Case(
        SPARE, {"g1-r2-a0": Run(3, exit_code=1), "g1-r0-a0": Run(9), "g1-r1-a0": Run(9)},
        "succeeded", 0, "2 replicas exited 0", 4),
    "a service replica that ends is started again in place": Case(
        SERVICE, {"g1-r0-a0": Run(5, exit_code=1)}, "running", 1, "admitted", 3),
}  # fmt: skip


def _run(
    tmp_path: Path,
    clock: Clock,
    script: Callable[[ReplicaLaunch], Behaviour],
    text: str,
    passes: int,
) -> tuple[FakeBackend, ControlService, str]:
    """One node of 8 cards, the spec submitted, ``passes`` controller passes two seconds
    apart on the test's clock."""
    db = Database(f"sqlite:///{tmp_path / 'b.db'}")
    backend = FakeBackend(clock=clock, script=script)
    controller = Controller(db, backend, heartbeat_timeout=3600, clock=clock)
    service = ControlService(db, wake=controller.wake)
    service.apply_queue(ADMIN, QueueSpec(name="default"))
    node = NodeSpec(name="n0", accelerators=AcceleratorGroup(type="h100", count=8))
    service.register_nodes(ADMIN, [node])
    (spec,) = load_specs(text)
    workload = service.submit(ADMIN, spec)[0].id  # type: ignore[arg-type]
    for _ in range(passes):
        controller.run_pass()
        clock.now += 2
    return backend, service, workload


@pytest.mark.parametrize("name", CASES)
def test_lifecycle(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    clock = Clock()

    def script(replica: ReplicaLaunch) -> Behaviour:
        key = replica.id.split("-", 2)[-1]  # job-xxxx-g1-r0-a0 -> g1-r0-a0
        return case.script.get(key, Run(None))

    backend, service, workload = _run(tmp_path, clock, script, case.spec, passes=12)
    view = service.get(ADMIN, workload)
    assert view.phase == case.phase, view.reason
    assert view.restarts == case.restarts
    assert case.reason in view.reason
    assert len(backend.launches) == case.launches, backend.launches
    # never two copies of one replica index running at once
    indexes = [backend.launched[r].env["BAIGE_REPLICA_INDEX"] for r in backend.running()]
    assert len(indexes) == len(set(indexes))


def test_a_spare_stands_in_without_requeue(tmp_path: Path) -> None:
    clock = Clock()

    def script(replica: ReplicaLaunch) -> Behaviour:
        return Vanish(5) if replica.id.endswith("g1-r1-a0") else Run(None)

    backend, service, workload = _run(tmp_path, clock, script, SPARE, passes=8)
    launches = [backend.launched[r] for r in backend.launches]
    # three replicas (two and a spare) told to train on two; the lost one's stand-in placed
    assert [r.env["BAIGE_NNODES"] for r in launches] == ["2"] * 4
    assert sorted(r.env["BAIGE_REPLICA_INDEX"] for r in launches) == ["0", "1", "2", "3"]
    view = service.get(ADMIN, workload)
    assert (view.phase, view.restarts) == ("running", 0)
    reasons = [e.reason for e in service.events(ADMIN, "workload", workload)]
    assert "ReplicaLost" in reasons and "ReplicaFailed" not in reasons
    (swap,) = [e for e in service.events(ADMIN, "workload", workload) if e.type == "SpareSwapped"]
    assert "replica 1 was lost" in swap.message and "a spare takes its place" in swap.message
