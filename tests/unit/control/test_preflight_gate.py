"""The controller's pre-flight gate (SQLite, the fake backend, a runner that judges figures
with the real :func:`baige.diag.preflight.judge_compute`): a big gang's launch waits for its
check; a slow node is cordoned through the health policy and the gang is placed again
without it; a policy that keeps the node lets the gang start; a check that cannot run does
not hold the gang; a small gang is not checked."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import select

from baige.api.loader import load_specs
from baige.api.nodes import AcceleratorGroup, NodeSpec
from baige.api.queues import QueueSpec
from baige.backends.fake import FakeBackend
from baige.control.auth import Principal
from baige.control.controller import Controller
from baige.control.health_policy import HealthPolicy
from baige.control.preflight_gate import PreflightGate, PreflightSettings
from baige.control.service import ControlService
from baige.diag.locate import Thresholds
from baige.diag.preflight import NodeCheck, PreflightReport, judge_compute
from baige.store.db import Database
from baige.store.tables import EventRow, NodeRow, WorkloadRow

ADMIN = Principal("test", None, admin=True)
_Row = TypeVar("_Row", WorkloadRow, NodeRow)

GANG = """\
kind: TrainingJob
name: gang
queue: default
replicas: {replicas}
accelerators: {{count: 8, types: [h100]}}
command: [sleep, '100']
"""


class Cluster:
    """Four 8-card nodes; ``slow`` names the node the runner measures at a third of the
    others' speed once the test releases it (after reading where the gang was placed)."""

    def __init__(self, tmp_path: Path, policy: HealthPolicy | None = None,
                 min_nodes: int = 3, fail: bool = False) -> None:  # fmt: skip
        self.db = Database(f"sqlite:///{tmp_path / 'b.db'}")
        self.backend = FakeBackend()
        self.slow: str | None = None
        self.release = threading.Event()
        self.calls: list[tuple[str, ...]] = []
        self.fail = fail
        settings = PreflightSettings(min_nodes=min_nodes, mb=1.0)
        gate = PreflightGate(self.run, settings, policy or HealthPolicy())
        self.controller = Controller(self.db, self.backend, preflight=gate)
        self.service = ControlService(self.db, wake=self.controller.wake)
        self.service.apply_queue(ADMIN, QueueSpec(name="default"))
        nodes = [NodeSpec(name=f"n{i}", accelerators=AcceleratorGroup(type="h100", count=8))
                 for i in range(4)]  # fmt: skip
        self.service.register_nodes(ADMIN, nodes)

    def run(self, nodes: Sequence[str], settings: PreflightSettings) -> PreflightReport:
        self.calls.append(tuple(nodes))
        assert self.release.wait(10)
        if self.fail:
            raise ConnectionRefusedError("cannot reach the probe at 10.0.0.9:7000")
        checks = [NodeCheck(n, f"{n}:1", 1e11 / (3 if n == self.slow else 1), 0.1, 1e9)
                  for n in nodes]  # fmt: skip
        suspects = judge_compute(checks, Thresholds(slowdown=settings.slowdown))
        return PreflightReport(checks, settings.mb, suspects, Thresholds())

    def submit(self, replicas: int) -> str:
        (spec,) = load_specs(GANG.format(replicas=replicas))
        return self.service.submit(ADMIN, spec)[0].id  # type: ignore[arg-type]

    def row(self, table: type[_Row], key: str) -> _Row:
        with self.db.session() as session:
            row = session.get(table, key)
            assert row is not None
            session.expunge(row)
            return row

    def workload(self, workload_id: str) -> WorkloadRow:
        return self.row(WorkloadRow, workload_id)

    def events(self, kind: str, object_id: str) -> list[EventRow]:
        with self.db.session() as session:
            rows = list(session.scalars(select(EventRow).where(
                EventRow.object_kind == kind, EventRow.object_id == object_id
            ).order_by(EventRow.id)))  # fmt: skip
            session.expunge_all()
            return rows

    def node(self, name: str) -> NodeRow:
        return self.row(NodeRow, name)

    def pass_until(self, predicate: object, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.controller.run_pass()
            if callable(predicate) and predicate():
                return
            time.sleep(0.02)
        pytest.fail("condition not met")

    def nodes_of(self, workload_id: str) -> set[str]:
        return {str(p["node"]) for p in self.workload(workload_id).placements or []}


def test_a_slow_node_is_cordoned_and_the_gang_placed_without_it(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    job = cluster.submit(3)
    cluster.controller.run_pass()
    first = cluster.nodes_of(job)
    assert len(first) == 3 and not cluster.backend.launches  # admitted, held for the check
    assert [e.type for e in cluster.events("workload", job)][-1] == "PreflightStarted"
    cluster.slow = sorted(first)[0]
    cluster.release.set()
    cluster.pass_until(lambda: cluster.backend.launches)
    second = cluster.nodes_of(job)
    assert cluster.slow not in second and len(second) == 3
    assert cluster.calls == [tuple(sorted(first)), tuple(sorted(second))]
    node = cluster.node(cluster.slow)
    assert node.cordoned and "pre-flight of gang" in node.reason
    assert node.device_health and node.device_health["conditions"][0]["kind"] == (
        "preflight-failed"
    )
    types = [e.type for e in cluster.events("workload", job)]
    assert types.count("PreflightStarted") == 2 and "PreflightPassed" in types
    failed = next(e for e in cluster.events("workload", job) if e.type == "PreflightFailed")
    assert f"leave out {cluster.slow}" in failed.message and "GFLOP/s" in failed.message
    assert cluster.workload(job).restarts == 0  # nothing ran: not a restart
    assert len(cluster.backend.launches) == 3


def test_a_policy_that_keeps_the_node_lets_the_gang_start(tmp_path: Path) -> None:
    policy = HealthPolicy(overrides={"preflight-failed": "event"})  # type: ignore[dict-item]
    cluster = Cluster(tmp_path, policy)
    job = cluster.submit(3)
    cluster.controller.run_pass()
    placed = cluster.nodes_of(job)
    cluster.slow = sorted(placed)[0]
    cluster.release.set()
    cluster.pass_until(lambda: cluster.backend.launches)
    assert cluster.nodes_of(job) == placed and not cluster.node(cluster.slow).cordoned
    failed = [e for e in cluster.events("workload", job) if e.type == "PreflightFailed"]
    assert len(failed) == 1 and "starts where it was placed" in failed[0].message
    assert len(cluster.calls) == 1


def test_a_check_that_cannot_run_does_not_hold_the_gang(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, fail=True)
    job = cluster.submit(3)
    cluster.release.set()
    cluster.pass_until(lambda: cluster.backend.launches)
    skipped = [e for e in cluster.events("workload", job) if e.type == "PreflightSkipped"]
    assert len(skipped) == 1 and "10.0.0.9:7000" in skipped[0].message


def test_a_gang_below_the_size_starts_without_a_check(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.submit(2)
    cluster.controller.run_pass()
    assert len(cluster.backend.launches) == 2 and cluster.calls == []


def test_settings_are_checked() -> None:
    for bad in ({"min_nodes": 1}, {"mb": 0}, {"compute_s": 31}, {"slowdown": 1}):
        with pytest.raises(ValueError, match="pre-flight"):
            PreflightSettings(**bad)  # type: ignore[arg-type]
