"""Heartbeats and registrations by group commit: concurrent requests share one write, each
still answered for its own nodes (404 naming the unregistered ones), a failed node
recovers; and the HTTP endpoints behind them (admin only; a node listed twice is a 400)."""

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
from baige.server.batched_writes import HeartbeatBatcher, RegistrationBatcher
from baige.store.db import Database
from baige.store.tables import EventRow, NodeRow

ADMIN = Principal("test", None, admin=True)


class CountingService(ControlService):
    """The real service, counting its writes of heartbeats."""

    calls: list[int]

    def mark_alive(self, names: Sequence[str]) -> set[str]:
        self.calls.append(len(names))
        return super().mark_alive(names)

    def register_nodes(
        self, who: Principal, specs: Sequence[NodeSpec], *, agent: str = "api"
    ) -> int:
        self.calls.append(len(specs))
        return super().register_nodes(who, specs, agent=agent)


@pytest.fixture
def service(tmp_path: Path):
    db = Database(f"sqlite:///{tmp_path / 'baige.db'}")
    clock = [1000.0]
    svc = CountingService(db, clock=lambda: clock[0])
    svc.calls = []
    specs = [NodeSpec(name=f"n{i}", accelerators=AcceleratorGroup(type="h100", count=8))
             for i in range(200)]  # fmt: skip
    svc.register_nodes(ADMIN, specs)
    svc.calls = []  # the writes of the test itself
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


def test_concurrent_registrations_share_writes_and_the_later_spec_wins(service) -> None:
    batcher = RegistrationBatcher(service)
    service.calls = []

    def node(name: str, count: int = 8) -> NodeSpec:
        return NodeSpec(name=name, accelerators=AcceleratorGroup(type="h100", count=count))

    async def boot() -> list[int | BaseException]:
        requests = [batcher.register(ADMIN, [node(f"new{i}")]) for i in range(60)]
        requests.append(batcher.register(ADMIN, [node("twice", 8), node("other")]))
        requests.append(batcher.register(ADMIN, [node("twice", 4)]))  # after: it wins
        return await asyncio.gather(*requests, return_exceptions=True)

    answers = asyncio.run(boot())
    assert answers == [1] * 60 + [2, 1]
    assert len(service.calls) < 10 and sum(service.calls) == 62, service.calls
    with service.db.session() as session:
        devices = dict(session.execute(select(NodeRow.name, NodeRow.devices)).all())
        registered = session.scalars(
            select(EventRow.object_id).where(EventRow.type == "Registered")
        ).all()
    assert devices["twice"] == 4 and devices["new59"] == 8 and devices["other"] == 8
    assert registered.count("twice") == 1 and len(registered) == 200 + 62


def test_the_registration_endpoint_refuses_a_node_named_twice_and_tenants(
    service, tmp_path
) -> None:
    admin = ensure_admin_token(service.db, tmp_path / "admin-token")
    tenant = create_token(service.db, "alice", "team-a")
    body = {"nodes": [{"name": "x", "accelerators": {"type": "h100", "count": 8}}]}
    with TestClient(create_app(service.db, service)) as http:
        auth = {"Authorization": f"Bearer {admin}"}
        assert http.post("/v1/nodes", json=body, headers=auth).json() == {"registered": 1}
        twice = http.post("/v1/nodes", json={"nodes": body["nodes"] * 2}, headers=auth)
        assert twice.status_code == 400
        assert "nodes[1].name: node x is listed twice" in twice.json()["error"]
        refused = http.post("/v1/nodes", json=body,
                            headers={"Authorization": f"Bearer {tenant}"})  # fmt: skip
        assert refused.status_code == 403
