"""Hostile specs posted to a real running server get a fast 400 naming the problem, and never
stall the other requests: before issue 12, a 485-byte YAML alias bomb kept every endpoint,
``/healthz`` included, unresponsive for minutes, and a 100,000-deep document was a 500."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.unit.api.test_hostile_specs import JOB, alias_bomb

DEEP = 100_000

HOSTILE = [
    pytest.param("application/yaml", alias_bomb(), "YAML aliases (*a0) are not allowed", id="bomb"),
    pytest.param("application/yaml", "[" * DEEP + "]" * DEEP, "more than 64 levels", id="deep-yaml"),
    pytest.param("application/yaml", "a: {" * DEEP + "}" * DEEP, "more than 64 levels", id="deep-map"),
    pytest.param("application/json", "[" * DEEP + "]" * DEEP, "more than 64 levels", id="deep-json"),
    pytest.param("application/json", '{"a":' * DEEP + "1" + "}" * DEEP, "more than 64 levels",
                 id="deep-json-map"),
    pytest.param("application/json", '{"replicas": ' + "9" * 5000 + "}", "cannot be read",
                 id="huge-int"),
]  # fmt: skip


@pytest.fixture
def running(make_platform, sqlite_url: str):
    return make_platform(sqlite_url, nodes=1)


def _token(running) -> str:
    return (running.platform.options.home / "admin-token").read_text().strip()


@pytest.mark.parametrize(("content_type", "body", "words"), HOSTILE)
def test_a_hostile_spec_is_a_fast_400_and_healthz_answers_meanwhile(
    running, content_type: str, body: str, words: str
) -> None:
    headers = {"Authorization": f"Bearer {_token(running)}", "Content-Type": content_type}
    result: dict[str, object] = {}

    def post() -> None:
        start = time.monotonic()
        response = httpx.post(f"{running.url}/v1/jobs", content=body, headers=headers, timeout=60)
        result["seconds"] = time.monotonic() - start
        result["response"] = response

    poster = threading.Thread(target=post, daemon=True)
    poster.start()
    health: list[float] = []
    with httpx.Client(timeout=30) as client:
        while poster.is_alive() or not health:
            start = time.monotonic()
            assert client.get(f"{running.url}/healthz").status_code == 200
            health.append(time.monotonic() - start)
            time.sleep(0.05)
    poster.join(timeout=60)
    response = result["response"]
    assert isinstance(response, httpx.Response)
    assert response.status_code == 400, response.text
    assert result["seconds"] < 5  # generous: it takes well under a second
    text = response.text
    assert words in text
    if content_type == "application/yaml":
        assert response.json()["problems"][0]["line"] is not None
    assert max(health) < 5, health


def test_a_declared_oversized_spec_is_refused_at_once(running) -> None:
    headers = {"Authorization": f"Bearer {_token(running)}", "Content-Type": "application/yaml"}
    response = httpx.post(f"{running.url}/v1/jobs", content=b"#" * (2 << 20), headers=headers)
    assert response.status_code == 400 and "at most" in response.json()["error"]


def test_a_normal_spec_still_goes_through(running) -> None:
    headers = {"Authorization": f"Bearer {_token(running)}", "Content-Type": "application/yaml"}
    response = httpx.post(f"{running.url}/v1/jobs", content=JOB, headers=headers)
    assert response.status_code == 201, response.text
