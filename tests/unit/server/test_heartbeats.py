"""Heartbeats by group commit: concurrent requests share one write, each still answered
for its own nodes (404 naming the unregistered ones), a failed node recovers; and the HTTP
endpoint behind it (admin only)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from baige.api.nodes import AcceleratorGroup, NodeSpec
from baige.control.auth import Principal, create_token, ensure_admin_token
from baige.control.errors import NotFound
from baige.control.service import ControlService
from baige.server.app import create_app
from baige.server.heartbeats import HeartbeatBatcher
from baige.store.db import Database
from baige.store.tables import EventRow, NodeRow

ADMIN = Principal("test", None, admin=True)


class CountingService(ControlService):
    """The real service, counting its writes of heartbeats."""

    calls: list[int]

    def mark_alive(self, names: Sequence[str]) -> set[str]:
        self.calls.append(len(names))
        return super().mark_alive(names)


@pytest.fixture
def service(tmp_path: Path):
    db = Database(f"sqlite:///{tmp_path / 'baige.db'}")
    clock = [1000.0]
    svc = CountingService(db, clock=lambda: clock[0])
    svc.calls = []
    specs = [NodeSpec(name=f"n{i}", accelerators=AcceleratorGroup(type="h100", count=8))
             for i in range(200)]  # fmt: skip
    svc.register_nodes(ADMIN, specs)
    clock[0] = 2000.0
    yield svc
    db.dispose()


def beats_of(service: ControlService) -> dict[str, float]:
    with service.db.session() as session:
        return dict(session.execute(select(NodeRow.name, NodeRow.last_heartbeat)).all())  # type: ignore[arg-type]


def test_concurrent_heartbeats_share_writes_and_each_gets_its_own_answer(service) -> None:
    batcher = HeartbeatBatcher(service)

    async def storm() -> list[int | BaseException]:
        requests = [batcher.beat([f"n{i}", f"n{i + 100}"]) for i in range(100)]
        requests.append(batcher.beat(["n5", "ghost"]))
        return await asyncio.gather(*requests, return_exceptions=True)

    answers = asyncio.run(storm())
    assert answers[:100] == [2] * 100
    assert isinstance(answers[100], NotFound) and "ghost" in str(answers[100])
    assert "n5" not in str(answers[100])
    # the first request was written alone, the other 100 together
    assert len(service.calls) < 10 and sum(service.calls) <= 201, service.calls
    assert set(beats_of(service).values()) == {2000.0}


def test_a_failed_node_that_beats_again_is_ready_with_an_event(service) -> None:
    with service.db.session() as session:
        session.get(NodeRow, "n3").health = "failed"  # type: ignore[union-attr]
    assert service.heartbeat(ADMIN, ["n3", "n4"]) == 2
    with service.db.session() as session:
        assert session.get(NodeRow, "n3").health == "ready"  # type: ignore[union-attr]
        events = session.scalars(select(EventRow.type).where(EventRow.object_id == "n3")).all()
    assert "Recovered" in events
    with pytest.raises(NotFound, match="ghost"):
        service.heartbeat(ADMIN, ["n4", "ghost"])


def test_the_endpoint_takes_an_admin_and_names_unregistered_nodes(service, tmp_path) -> None:
    admin = ensure_admin_token(service.db, tmp_path / "admin-token")
    tenant = create_token(service.db, "alice", "team-a")
    with TestClient(create_app(service.db, service)) as http:
        ok = http.post("/v1/nodes/heartbeat", json={"nodes": ["n1", "n2"]},
                       headers={"Authorization": f"Bearer {admin}"})  # fmt: skip
        assert ok.status_code == 200 and ok.json() == {"nodes": 2}
        missing = http.post("/v1/nodes/heartbeat", json={"nodes": ["n1", "nope"]},
                            headers={"Authorization": f"Bearer {admin}"})  # fmt: skip
        assert missing.status_code == 404 and "nope" in missing.json()["error"]
        refused = http.post("/v1/nodes/heartbeat", json={"nodes": ["n1"]},
                            headers={"Authorization": f"Bearer {tenant}"})  # fmt: skip
        assert refused.status_code == 403
        anonymous = http.post("/v1/nodes/heartbeat", json={"nodes": ["n1"]})
        assert anonymous.status_code == 401
