"""A replica the backend cannot start fails its workload once, with the cause as its reason,
instead of being retried as a lost replica until the restart budget is gone."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from baige.api.loader import load_specs
from baige.api.nodes import AcceleratorGroup, NodeSpec
from baige.api.queues import QueueSpec
from baige.api.workloads import TrainingJobSpec
from baige.backends.base import ReplicaLaunch, ReplicaObservation, ReplicaState
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
max_restarts: 3
accelerators: {count: 1, types: [h100]}
command: [python3, -c, pass]
"""


class RefusingBackend:
    """A backend (the real protocol) whose launches fail the way ``how`` says."""

    name = "refusing"

    def __init__(self, how: str) -> None:
        self.how = how
        self.launches: list[str] = []

    def launch(self, replica: ReplicaLaunch) -> ReplicaObservation:
        self.launches.append(replica.id)
        if self.how == "raise":
            raise ValueError("embedded null byte")
        if self.how == "unreachable":
            raise RuntimeError("the engine is unreachable")
        return ReplicaObservation(
            replica.id, ReplicaState.FAILED, exit_code=127,
            reason="working directory /gone does not exist",
        )  # fmt: skip

    def stop(self, replica_id: str) -> None:
        pass

    def observe(self, replica_ids: Iterable[str]) -> dict[str, ReplicaObservation]:
        return {r: ReplicaObservation(r, ReplicaState.RUNNING) for r in replica_ids}


def setup(tmp_path: Path, how: str) -> tuple[ControlService, Controller, RefusingBackend, str]:
    db = Database(f"sqlite:///{tmp_path / 'b.db'}")
    backend = RefusingBackend(how)
    controller = Controller(db, backend)
    service = ControlService(db, wake=controller.wake)
    service.apply_queue(ADMIN, QueueSpec(name="default"))
    node = NodeSpec(name="n0", accelerators=AcceleratorGroup(type="h100", count=8))
    service.register_nodes(ADMIN, [node])
    (spec,) = load_specs(JOB)
    assert isinstance(spec, TrainingJobSpec)
    view, _ = service.submit(ADMIN, spec)
    return service, controller, backend, view.id


@pytest.mark.parametrize("how", ["raise", "refused"])
def test_a_launch_error_fails_the_job_once_with_its_cause(tmp_path: Path, how: str) -> None:
    service, controller, backend, job_id = setup(tmp_path, how)
    for _ in range(6):
        controller.run_pass()
    view = service.get(ADMIN, job_id)
    assert view.phase == "failed"
    assert view.restarts == 0  # not retried as "replica lost"
    cause = "embedded null byte" if how == "raise" else "working directory /gone"
    assert "cannot be launched" in view.reason and cause in view.reason
    assert len({r.split("-g")[1].split("-")[0] for r in backend.launches}) == 1  # generation 1
    failed = [e for e in service.events(ADMIN, "workload", job_id) if e.type == "Failed"]
    assert len(failed) == 1


def test_an_unreachable_backend_is_retried_without_failing_the_job(tmp_path: Path) -> None:
    service, controller, backend, job_id = setup(tmp_path, "unreachable")
    for _ in range(3):
        controller.run_pass()  # the pass itself survives the error
    view = service.get(ADMIN, job_id)
    assert view.phase in ("admitted", "running") and view.restarts == 0
    assert len(backend.launches) >= 4  # both replicas tried on each pass


class MissingBinaryBackend(RefusingBackend):
    """Starts the shim, which logs that the command cannot start and exits 127 (as the
    local backend's shim does for a missing binary)."""

    def __init__(self, logs: Path) -> None:
        super().__init__("missing")
        self.logs = logs

    def launch(self, replica: ReplicaLaunch) -> ReplicaObservation:
        self.launches.append(replica.id)
        log = self.logs / f"{replica.id}.log"
        log.write_text("baige: cannot start 'serve': [Errno 2] No such file or directory\n")
        return ReplicaObservation(replica.id, ReplicaState.RUNNING, log_path=str(log))

    def observe(self, replica_ids: Iterable[str]) -> dict[str, ReplicaObservation]:
        return {r: ReplicaObservation(r, ReplicaState.FAILED, exit_code=127,
                                      log_path=str(self.logs / f"{r}.log")) for r in replica_ids}  # fmt: skip


def test_a_service_whose_binary_is_missing_fails_once(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'b.db'}")
    backend = MissingBinaryBackend(tmp_path)
    controller = Controller(db, backend)
    service = ControlService(db, wake=controller.wake)
    service.apply_queue(ADMIN, QueueSpec(name="default"))
    node = NodeSpec(name="n0", accelerators=AcceleratorGroup(type="h100", count=8))
    service.register_nodes(ADMIN, [node])
    (spec,) = load_specs(
        "kind: InferenceService\nname: s\nqueue: default\nreplicas: 2\n"
        "accelerators: {types: [h100]}\ncommand: [serve]\n"
    )
    svc = service.submit(ADMIN, spec)[0].id  # type: ignore[arg-type]
    for _ in range(6):
        controller.run_pass()
    view = service.get(ADMIN, svc)
    assert view.phase == "failed" and "cannot start 'serve'" in view.reason
    assert len(backend.launches) == 2  # not restarted in a loop
