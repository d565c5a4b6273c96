"""Hostile path and query parameters get a 4xx naming the problem, never a 500: NUL bytes
and other control characters reach PostgreSQL text columns otherwise."""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture
def running(make_platform, db_url: str):
    return make_platform(db_url, nodes=1)


PATHS = [
    "/v1/jobs/job-%00",
    "/v1/jobs/%00/events",
    "/v1/services/a%00b",
    "/v1/nodes/n%00",
    "/v1/nodes/n%00/cordon",
    "/v1/jobs?queue=a%00b",
    "/v1/jobs?phase=%00",
    "/v1/queues/%00",
    "/v1/jobs/" + "x" * 5000,
]


@pytest.mark.parametrize("path", PATHS)
def test_hostile_parameters_are_a_4xx(running, path: str) -> None:
    token = (running.platform.options.home / "admin-token").read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}
    method = "POST" if path.endswith("cordon") else ("DELETE" if "queues" in path else "GET")
    response = httpx.request(method, f"{running.url}{path}", headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert "error" in response.json()
    assert httpx.get(f"{running.url}/healthz").status_code == 200


BODIES = [
    ("/v1/tokens", {"name": "a\u0000b", "tenant": "t1"}),
    ("/v1/nodes/heartbeat", {"nodes": ["n\u0000"]}),
    ("/v1/jobs", {"name": "j", "queue": "default", "command": ["python3", "\u0000"],
                  "accelerators": {"types": ["h100"]}}),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body"), BODIES)
def test_a_nul_in_a_json_body_is_a_4xx(running, path: str, body: dict) -> None:
    token = (running.platform.options.home / "admin-token").read_text().strip()
    response = httpx.post(
        f"{running.url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert 400 <= response.status_code < 500, response.text
    assert "error" in response.json()


def test_an_oversized_body_is_refused_before_any_handler_reads_it(running) -> None:
    token = (running.platform.options.home / "admin-token").read_text().strip()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def chunks():  # no Content-Length: the server must count as it reads
        for _ in range(40):
            yield b" " * (1 << 20)

    for body in (b" " * (33 << 20), chunks()):
        response = httpx.post(f"{running.url}/v1/nodes/heartbeat", content=body, headers=headers)
        assert response.status_code == 413, response.text
        assert "body" in response.json()["error"]
    ok = httpx.post(f"{running.url}/v1/nodes/heartbeat", json={"nodes": ["nope"]}, headers=headers)
    assert ok.status_code < 500
