"""Node registration on both databases: new nodes are inserted with an event, known ones
updated (their spec's change time moves only when the spec changed), a request naming a
node twice is refused whole, and agents racing to register one new node all succeed with
one row and one event."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from baige.api.nodes import NodeSpec
from baige.control.auth import Principal
from baige.control.errors import Invalid
from baige.control.service import ControlService
from baige.store.db import Database
from baige.store.tables import EventRow, NodeRow

ADMIN = Principal("test", None, admin=True)


def spec(name: str, count: int = 8, **extra: object) -> NodeSpec:
    return NodeSpec.model_validate(
        {"name": name, "accelerators": {"type": "h100", "count": count}, **extra}
    )


def registered_events(db: Database, name: str) -> int:
    with db.session() as session:
        return (
            session.scalar(
                select(func.count()).where(
                    EventRow.object_id == name, EventRow.type == "Registered"
                )
            )
            or 0
        )


def row(db: Database, name: str) -> NodeRow:
    with db.session() as session:
        found = session.get(NodeRow, name)
        assert found is not None
        session.expunge(found)
        return found


def test_new_and_known_nodes(db_url: str) -> None:
    db = Database(db_url)
    now = [1000.0]
    service = ControlService(db, clock=lambda: now[0])
    assert service.register_nodes(ADMIN, [spec("a"), spec("b", cordoned=True), spec("c")]) == 3
    assert [registered_events(db, n) for n in "abc"] == [1, 1, 1]
    b = row(db, "b")
    assert (b.devices, b.cordoned, b.updated_at, b.registered_at) == (8, True, 1000.0, 1000.0)

    with db.session() as session:  # b fails; a new registration brings it back
        session.get(NodeRow, "b").health = "failed"  # type: ignore[union-attr]
    now[0] = 1010.0
    # a known node with the same spec, one with a new spec, and a new one, in one request
    service.register_nodes(ADMIN, [spec("a"), spec("b", count=4, cordoned=True), spec("d")])
    a, b, d = row(db, "a"), row(db, "b"), row(db, "d")
    assert (a.updated_at, a.last_heartbeat, a.registered_at) == (1000.0, 1010.0, 1000.0)
    assert (b.devices, b.updated_at, b.health, b.cordoned) == (4, 1010.0, "ready", True)
    assert d.registered_at == 1010.0
    assert [registered_events(db, n) for n in "abd"] == [1, 1, 1]
    db.dispose()


def test_a_node_named_twice_is_refused_and_nothing_is_written(db_url: str) -> None:
    db = Database(db_url)
    service = ControlService(db)
    with pytest.raises(Invalid, match=r"nodes\[2\]\.name: node x is listed twice"):
        service.register_nodes(ADMIN, [spec("x"), spec("y"), spec("x", count=4)])
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(NodeRow)) == 0
    db.dispose()


def test_agents_racing_to_register_one_node_all_succeed(db_url: str) -> None:
    db = Database(db_url)
    service = ControlService(db)
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def register() -> None:
        start.wait()
        try:
            service.register_nodes(ADMIN, [spec("racy")])
        except BaseException as err:  # the test reports any
            errors.append(err)

    threads = [threading.Thread(target=register) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert registered_events(db, "racy") == 1
    assert row(db, "racy").health == "ready"
    db.dispose()
