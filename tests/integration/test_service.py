"""The store and the service layer, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from baige.api import QueueQuota, QueueSpec, load_specs
from baige.api.workloads import TrainingJobSpec
from baige.control import service as service_module
from baige.control.auth import Principal, authenticate, create_token, ensure_admin_token
from baige.control.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from baige.control.service import ControlService
from baige.store.db import Database, DatabaseError

ADMIN = Principal("admin", None, True)
ALICE = Principal("alice", "team-a", False)
BOB = Principal("bob", "team-b", False)

JOB = """\
kind: TrainingJob
name: train
queue: {queue}
accelerators: {{count: 1, types: [h100]}}
command: [python3, -c, "print(1)"]
"""


def job(queue: str = "qa", **changes: object) -> TrainingJobSpec:
    (spec,) = load_specs(JOB.format(queue=queue))
    assert isinstance(spec, TrainingJobSpec)
    return spec.model_copy(update=changes)


@pytest.fixture
def service(db_url: str) -> ControlService:
    db = Database(db_url)
    service = ControlService(db)
    service.apply_queue(ADMIN, QueueSpec(name="qa", tenant="team-a"))
    service.apply_queue(ADMIN, QueueSpec(name="qb", tenant="team-b"))
    return service


def test_migrations_are_idempotent(db_url: str) -> None:
    Database(db_url).dispose()
    again = Database(db_url)
    with again.engine.connect() as connection:
        from sqlalchemy import text  # noqa: PLC0415

        assert (
            connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0009"
        )


def test_the_migrations_build_exactly_the_tables_the_code_uses(db_url: str) -> None:
    """A column added to ``baige.store.tables`` without a migration fails here."""
    from alembic.autogenerate import compare_metadata  # noqa: PLC0415
    from alembic.migration import MigrationContext  # noqa: PLC0415

    from baige.store.tables import Base  # noqa: PLC0415

    db = Database(db_url)
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        assert compare_metadata(context, Base.metadata) == []


def test_bad_database_urls_are_clear_errors() -> None:
    with pytest.raises(DatabaseError, match="not a database URL"):
        Database("not a url")
    with pytest.raises(DatabaseError, match="unsupported database 'mysql'"):
        Database("mysql://localhost/x", migrate=False)


def test_tokens_and_admin_token_file(db_url: str, tmp_path) -> None:
    db = Database(db_url)
    path = tmp_path / "admin-token"
    token = ensure_admin_token(db, path)
    assert token is not None and path.read_text().strip() == token
    assert path.stat().st_mode & 0o777 == 0o600
    assert ensure_admin_token(db, path) is None  # only once
    assert authenticate(db, f"Bearer {token}").admin
    tenant_token = create_token(db, "alice", "team-a")
    who = authenticate(db, f"bearer {tenant_token}")
    assert (who.tenant, who.admin) == ("team-a", False)
    for header in (None, "Basic xyz", "Bearer nope"):
        with pytest.raises(Unauthorized):
            authenticate(db, header)


def test_idempotent_submission(service: ControlService) -> None:
    first, created = service.submit(ALICE, job(), "key-1")
    again, created_again = service.submit(ALICE, job(), "key-1")
    assert created and not created_again and again.id == first.id
    with pytest.raises(Conflict, match="different spec"):
        service.submit(ALICE, job(replicas=2), "key-1")
    other, _ = service.submit(ALICE, job(), "key-2")
    assert other.id != first.id
    assert len(service.list_workloads(ALICE)) == 2


def test_a_batch_of_submissions_answers_each_as_if_one_after_the_other(
    service: ControlService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``submit_many`` (the API's group commit): a key used twice in one batch makes one
    job, the second use answered with it, or a Conflict for another spec; a queue the
    caller cannot see is that item's NotFound; a random id already taken gets another."""
    earlier, _ = service.submit(ALICE, job(), "k-old")
    real, calls = service_module._workload_id, []

    def first_taken(spec: TrainingJobSpec) -> str:  # the first new id collides with a row
        calls.append(spec.name)
        return earlier.id if len(calls) == 1 else real(spec)

    monkeypatch.setattr(service_module, "_workload_id", first_taken)
    results = service.submit_many(
        [
            (ALICE, job(), None),  # its id collides first, then it gets another
            (ALICE, job(), "k-old"),  # an earlier request's key: that job
            (ALICE, job(name="b"), "k-new"),
            (ALICE, job(name="b"), "k-new"),  # the same key again in this batch
            (ALICE, job(name="c"), "k-new"),  # ... with another spec
            (ALICE, job(queue="qb"), None),  # team-b's queue
        ]
    )
    assert isinstance(results[0], tuple) and results[0] == (results[0][0], True)
    assert results[0][0].id != earlier.id and len(calls) == 6  # 5 rows, 1 retried
    assert isinstance(results[1], tuple) and results[1][0].id == earlier.id and not results[1][1]
    assert isinstance(results[2], tuple) and results[2][1]
    assert isinstance(results[3], tuple) and results[3][0].id == results[2][0].id
    assert not results[3][1]
    assert isinstance(results[4], Conflict) and "different spec" in str(results[4])
    assert isinstance(results[5], NotFound) and "qb" in str(results[5])
    assert len(service.list_workloads(ALICE)) == 3
    submitted = list(service.events(ALICE, "workload", results[0][0].id))
    assert [e.type for e in submitted] == ["Submitted"]


def test_tenants_see_only_their_own(service: ControlService) -> None:
    mine, _ = service.submit(ALICE, job("qa"))
    theirs, _ = service.submit(BOB, job("qb"))
    assert [w.id for w in service.list_workloads(ALICE)] == [mine.id]
    assert {w.id for w in service.list_workloads(ADMIN)} == {mine.id, theirs.id}
    with pytest.raises(NotFound):
        service.get(ALICE, theirs.id)
    with pytest.raises(NotFound):
        service.cancel(ALICE, theirs.id)
    with pytest.raises(NotFound, match="queue 'qb' not found"):
        service.submit(ALICE, job("qb"))
    assert [q.name for q in service.list_queues(ALICE)] == ["qa"]
    with pytest.raises(Forbidden):
        service.apply_queue(ALICE, QueueSpec(name="mine"))


def test_queue_that_does_not_fit_its_parent(service: ControlService) -> None:
    service.apply_queue(ADMIN, QueueSpec(name="org", quotas={"h100": QueueQuota(guaranteed=8)}))
    with pytest.raises(Invalid) as caught:
        service.apply_queue(
            ADMIN,
            QueueSpec(name="team", parent="org", quotas={"h100": QueueQuota(guaranteed=16)}),
        )
    assert "more than its own guaranteed 8" in str(caught.value.problems)
    with pytest.raises(Invalid, match="does not fit"):
        service.apply_queue(ADMIN, QueueSpec(name="lost", parent="ghost"))


def test_cancel_pending_and_scale_rules(service: ControlService) -> None:
    view, _ = service.submit(ALICE, job())
    assert service.cancel(ALICE, view.id).phase == "cancelled"
    assert service.cancel(ALICE, view.id).phase == "cancelled"  # idempotent
    with pytest.raises(Invalid, match="only services scale"):
        service.scale(ALICE, view.id, 3)
    with pytest.raises(Invalid, match="unknown phase"):
        service.list_workloads(ALICE, phase="nonsense")
