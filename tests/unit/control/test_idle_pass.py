"""A pass over an unchanged store skips the scheduling cycle: the cycle is a pure function of
the snapshot and the time, so after one that decided nothing, the same snapshot decides
nothing again. Any change to what the snapshot holds, or the recheck interval passing,
runs it again; a skipped pass still does everything else."""

from __future__ import annotations

from pathlib import Path

from baige.api.loader import load_specs
from baige.api.nodes import AcceleratorGroup, NodeSpec
from baige.api.queues import QueueSpec
from baige.api.workloads import TrainingJobSpec
from baige.backends.fake import FakeBackend
from baige.control.auth import Principal
from baige.control.controller import Controller
from baige.control.service import ControlService
from baige.control.snapshot import SnapshotCache, load_snapshot
from baige.store.db import Database

ADMIN = Principal("test", None, admin=True)


def job(name: str, count: int, replicas: int = 1) -> TrainingJobSpec:
    (spec,) = load_specs(
        f"kind: TrainingJob\nname: {name}\nqueue: default\nreplicas: {replicas}\n"
        f"accelerators: {{count: {count}, types: [h100]}}\ncommand: [python3, -c, pass]\n"
    )
    assert isinstance(spec, TrainingJobSpec)
    return spec


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def setup(tmp_path: Path) -> tuple[ControlService, Controller, Clock, Database]:
    clock = Clock()
    db = Database(f"sqlite:///{tmp_path / 'b.db'}")
    controller = Controller(
        db, FakeBackend(clock=clock), heartbeat_timeout=1e9, recheck_interval=10.0, clock=clock
    )
    service = ControlService(db, wake=controller.wake, clock=clock)
    service.apply_queue(ADMIN, QueueSpec(name="default"))
    nodes = [
        NodeSpec(name=f"n{i}", accelerators=AcceleratorGroup(type="h100", count=8))
        for i in range(2)
    ]
    service.register_nodes(ADMIN, nodes)
    return service, controller, clock, db


def test_an_unchanged_store_skips_the_cycle_until_something_changes(tmp_path: Path) -> None:
    service, controller, clock, _ = setup(tmp_path)
    running, _ = service.submit(ADMIN, job("fits", 8))
    clock.now += 1  # submitted after it
    waiting, _ = service.submit(ADMIN, job("too-big", 8, replicas=2))  # both nodes
    first = controller.run_pass()
    assert first.decisions == 1 and not first.cycle_skipped
    for _ in range(3):  # launch, then observe it running: no decision, then skipped
        clock.now += 1
        stats = controller.run_pass()
    assert stats.cycle_skipped and stats.decisions == 0
    assert service.get(ADMIN, running.id).phase == "running"
    assert service.get(ADMIN, waiting.id).phase == "pending"

    # a new submission changes the snapshot: the cycle runs (and keeps it waiting behind
    # the reservation "too-big" holds), then is skipped again
    small, _ = service.submit(ADMIN, job("small", 4))
    clock.now += 1
    assert not controller.run_pass().cycle_skipped
    clock.now += 1
    assert controller.run_pass().cycle_skipped
    assert service.get(ADMIN, small.id).phase == "pending"

    # a node cordoned changes it too
    service.set_cordon(ADMIN, "n1", True)
    clock.now += 1
    assert not controller.run_pass().cycle_skipped

    # and the recheck interval bounds how long the cycle is skipped
    clock.now += 1
    assert controller.run_pass().cycle_skipped
    clock.now += 10
    assert not controller.run_pass().cycle_skipped

    # the jobs that end free their cards: the waiting one is admitted
    service.set_cordon(ADMIN, "n1", False)
    service.cancel(ADMIN, small.id)
    service.cancel(ADMIN, running.id)
    for _ in range(4):
        clock.now += 1
        controller.run_pass()
    assert service.get(ADMIN, waiting.id).phase in ("admitted", "running")


def test_an_unchanged_snapshot_is_made_of_the_same_objects(tmp_path: Path) -> None:
    service, controller, _, db = setup(tmp_path)
    service.submit(ADMIN, job("a", 8))
    controller.run_pass()
    cache = SnapshotCache()
    with db.session() as session:
        one, _ = load_snapshot(session, cache)
        two, _ = load_snapshot(session, cache)
        fresh, _ = load_snapshot(session)
    assert one == two == fresh
    assert all(a is b for a, b in zip(one.nodes, two.nodes, strict=True))
    assert all(a is b for a, b in zip(one.workloads, two.workloads, strict=True))
    assert one.workloads[0].assignment is not None  # placements parsed from their text
    assert one.workloads[0].assignment == fresh.workloads[0].assignment
