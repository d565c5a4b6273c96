"""PostgreSQL going away under a running control plane (a restart, a failover): requests
answer 503 with ``Retry-After`` while it is away, never a bare 500, and the SDK's retried
calls succeed once it is back, with nothing lost and nothing made twice.

The database is taken away without touching the server others use: new connections to this
test's own database are refused (``ALLOW_CONNECTIONS false``) and its open ones are
terminated, as a restart would; a ``finally`` lets connections in again whatever happens."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import create_engine, text

from baige.api import load_specs
from baige.client import BaigeError

from .conftest import PG_ADMIN_URL, PG_TEST_DB, _pg_url

JOB = """\
kind: TrainingJob
name: {name}
queue: default
accelerators: {{count: 1, types: [a100-80g]}}
command: [python3, -c, '1']
"""


@contextlib.contextmanager
def database_away() -> Iterator[None]:
    """Refuse and cut every connection to this test's database until the block ends."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{PG_TEST_DB}" WITH ALLOW_CONNECTIONS false'))
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": PG_TEST_DB},
            )
        yield
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{PG_TEST_DB}" WITH ALLOW_CONNECTIONS true'))
        admin.dispose()


@pytest.fixture
def running(make_platform):
    return make_platform(_pg_url(), nodes=1)


def test_the_api_answers_503_while_postgresql_is_away_and_the_sdk_retries(running) -> None:
    client = running.client()
    before = client.submit(load_specs(JOB.format(name="before"))[0])
    headers = {"Authorization": f"Bearer {client.token}"}
    outcome: dict[str, object] = {}

    def submit_during_outage() -> None:
        try:
            spec = load_specs(JOB.format(name="during"))[0]
            outcome["view"] = client.submit(spec, idempotency_key="during-the-outage")
        except BaigeError as err:  # pragma: no cover - reported below
            outcome["error"] = err

    with database_away():
        for method, path in (("GET", "/v1/jobs"), ("GET", f"/v1/jobs/{before.id}"),
                             ("GET", "/v1/queues"), ("POST", f"/v1/jobs/{before.id}/cancel")):  # fmt: skip
            answer = httpx.request(method, f"{running.url}{path}", headers=headers, timeout=30)
            assert answer.status_code == 503, (method, path, answer.status_code, answer.text)
            assert answer.headers["retry-after"].isdigit()
            assert "database is unavailable" in answer.json()["error"]
        assert httpx.get(f"{running.url}/healthz").status_code == 200  # the process lives
        submitter = threading.Thread(target=submit_during_outage)
        submitter.start()
        time.sleep(3)  # the SDK meets 503s and waits
        assert submitter.is_alive() and not outcome
    submitter.join(timeout=60)
    assert not submitter.is_alive()
    assert "error" not in outcome, outcome.get("error")

    during = outcome["view"]
    names = [job.name for job in client.jobs(limit=1000)]
    assert sorted(names) == ["before", "during"]  # nothing lost, nothing twice
    assert client.job(before.id).phase == "pending"  # the 503'd cancel did nothing
    again = client.submit(
        load_specs(JOB.format(name="during"))[0], idempotency_key="during-the-outage"
    )
    assert again.id == during.id  # type: ignore[attr-defined]
    assert len(client.jobs(limit=1000)) == 2
