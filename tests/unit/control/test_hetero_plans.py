"""The controller plans a job's split for the types it was placed on: each replica is
launched with its own node's type and the plan, the job view shows the split, and a change
of placement (a resize) plans again."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from baige.api.loader import load_specs
from baige.api.nodes import AcceleratorGroup, NodeSpec
from baige.api.queues import QueueSpec
from baige.backends.base import ReplicaLaunch, ReplicaObservation, ReplicaState
from baige.control.auth import Principal
from baige.control.controller import Controller
from baige.control.hetero_plans import replan
from baige.control.service import ControlService
from baige.plan.runtime_split import split_for_placement
from baige.store.db import Database
from baige.store.tables import WorkloadRow

ADMIN = Principal("test", None, admin=True)

JOB = """\
kind: TrainingJob
name: j
queue: default
replicas: 3
accelerators: {count: 1, types: [h100, a100-80g], mix: allowed}
batch: {size: 32, micro_batch: 2}
command: [python3, -c, pass]
"""


class KeepingBackend:
    """A backend (the real protocol) that keeps what it was asked to launch."""

    name = "keeping"

    def __init__(self) -> None:
        self.launches: list[ReplicaLaunch] = []

    def launch(self, replica: ReplicaLaunch) -> ReplicaObservation:
        self.launches.append(replica)
        return ReplicaObservation(replica.id, ReplicaState.RUNNING)

    def stop(self, replica_id: str) -> None:
        pass

    def observe(self, replica_ids: Iterable[str]) -> dict[str, ReplicaObservation]:
        return {r: ReplicaObservation(r, ReplicaState.RUNNING) for r in replica_ids}


def test_each_replica_gets_its_type_and_the_split(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'b.db'}")
    backend = KeepingBackend()
    controller = Controller(db, backend)
    service = ControlService(db, wake=controller.wake)
    service.apply_queue(ADMIN, QueueSpec(name="default"))
    service.register_nodes(
        ADMIN,
        [
            NodeSpec(name="h0", accelerators=AcceleratorGroup(type="h100", count=2)),
            NodeSpec(name="a0", accelerators=AcceleratorGroup(type="a100-80g", count=1)),
        ],
    )
    (spec,) = load_specs(JOB)
    job = service.submit(ADMIN, spec)[0].id  # type: ignore[arg-type]
    for _ in range(3):
        controller.run_pass()
    launched = sorted(backend.launches, key=lambda r: int(r.env["RANK"]))
    assert [(r.node, r.accel_type) for r in launched] == [
        ("h0", "h100"), ("h0", "h100"), ("a0", "a100-80g"),
    ]  # fmt: skip
    assert launched[2].visibility_env == "CUDA_VISIBLE_DEVICES"
    assert launched[2].env["BAIGE_ACCELERATOR_TYPE"] == "a100-80g"
    expected = split_for_placement(["h100", "h100", "a100-80g"], 32, 2)
    for replica in launched:
        assert json.loads(replica.hetero_plan) == expected.model_dump(mode="json")
    view = service.get(ADMIN, job)
    assert view.accelerator_type == "h100+a100-80g" and view.split is not None
    assert [(p.type, p.ranks) for p in view.split.parts] == [("h100", [0, 1]), ("a100-80g", [2])]
    assert view.split.parts[0].micro_batches[0] > view.split.parts[1].micro_batches[0]
    # a resize plans again for what is left
    with db.session() as session:
        row = session.get(WorkloadRow, job)
        assert row is not None
        row.placements = row.placements[1:]
        replan(session, row)
        plan = row.hetero_plan
    assert plan is not None
    assert plan == split_for_placement(["h100", "a100-80g"], 32, 2).model_dump(mode="json")


def test_a_job_that_may_not_mix_gets_no_plan(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'b.db'}")
    backend = KeepingBackend()
    controller = Controller(db, backend)
    service = ControlService(db, wake=controller.wake)
    service.apply_queue(ADMIN, QueueSpec(name="default"))
    service.register_nodes(
        ADMIN, [NodeSpec(name="h0", accelerators=AcceleratorGroup(type="h100", count=4))]
    )
    (spec,) = load_specs(JOB.replace(", mix: allowed", ""))
    job = service.submit(ADMIN, spec)[0].id  # type: ignore[arg-type]
    for _ in range(3):
        controller.run_pass()
    assert len(backend.launches) == 3
    assert all(r.hetero_plan == "" and r.accel_type == "h100" for r in backend.launches)
    assert service.get(ADMIN, job).split is None
