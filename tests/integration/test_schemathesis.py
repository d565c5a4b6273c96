"""Property-based fuzzing of the API from its own OpenAPI schema: whatever a client sends,
the answer is never a 5xx (bad input is always the client's 4xx, with a message), and the
answer is what the schema says: every status, content type, body and header it gives is
documented, a schema-valid request is accepted and an invalid one rejected, and a method a
path does not take is answered 405 with an ``Allow`` that lists the ones it does."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.specs.openapi import checks

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
# Unknown query parameters and body fields are ignored, as most HTTP APIs do (a newer client
# still talks to an older server), so sending one is no invalid request.
schema.config.generation.update(allow_extra_parameters=False)
# A body over the size limit is refused with 413 before it is read (a spec is small): as
# much a rejection of invalid data as a 400.
schema.config.checks.negative_data_rejection.expected_statuses.append("413")

CHECKS: list[CheckFunction] = [
    not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.negative_data_rejection,
    checks.positive_data_acceptance,
    checks.unsupported_method,
    checks.allow_header_conformance,
]

# Specs and nodes are checked beyond what JSON Schema can say: cross-field rules (min_replicas
# <= replicas, a guarantee within its limit), accelerator types known to the catalog, names
# (in their models' validators). A schema-valid spec may still be refused there, with a 400
# that names the problem by field and line; every other check applies to these too.
_SPEC_BODIES = {"POST /v1/queues", "POST /v1/jobs", "POST /v1/services", "POST /v1/nodes"}


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_answers_as_its_schema_says(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
    excluded: list[CheckFunction] = (
        [checks.positive_data_acceptance] if case.operation.label in _SPEC_BODIES else []
    )
    case.call_and_validate(
        headers={"Authorization": f"Bearer {_token}"}, checks=CHECKS, excluded_checks=excluded
    )


def test_a_method_a_path_does_not_take_is_405_with_every_method_it_does() -> None:
    from fastapi.testclient import TestClient  # noqa: PLC0415

    http = TestClient(app)
    headers = {"Authorization": f"Bearer {_token}"}
    for method, path, allowed in [
        ("PUT", "/v1/queues", "GET, POST"),  # two routes share the path
        ("OPTIONS", "/v1/services/svc-1", "DELETE, GET"),
        ("PATCH", "/v1/nodes/n1/cordon", "POST"),
    ]:
        answer = http.request(method, path, headers=headers)
        assert answer.status_code == 405 and answer.headers["allow"] == allowed, (method, path)
        assert answer.json() == {"error": "Method Not Allowed"}
    assert http.get("/v1/nope", headers=headers).json() == {"error": "Not Found"}
