"""Property-based fuzzing of the API from its own OpenAPI schema: whatever a client sends,
the answer is never a 5xx (bad input is always the client's 4xx, with a message)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from baige.api.queues import QueueSpec
from baige.control.auth import ensure_admin_token
from baige.control.platform import SYSTEM
from baige.control.service import ControlService
from baige.server.app import create_app
from baige.store.db import Database

_home = Path(tempfile.mkdtemp(prefix="baige-fuzz-"))
_db = Database(f"sqlite:///{_home / 'baige.db'}")
_token = ensure_admin_token(_db, _home / "admin-token")
_service = ControlService(_db)
_service.apply_queue(SYSTEM, QueueSpec(name="default"))
app = create_app(_db, _service)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case: schemathesis.Case) -> None:
    headers = {"Authorization": f"Bearer {_token}"}
    response = case.call(headers=headers)
    assert response.status_code < 500, (case.method, case.path, response.text[:500])
