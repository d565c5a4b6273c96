"""The SDK retries what is safe to repeat while the control plane answers 503 (its database
is away) or, once reached, cannot be reached; a submission keeps one Idempotency-Key over
its retries; what is not safe (making a token) is never repeated. A scripted transport
stands in for the server (httpx's MockTransport)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from baige.api import load_specs
from baige.api.workloads import TrainingJobSpec
from baige.client import BaigeClient, BaigeError

VIEW = {
    "id": "job-1", "name": "j", "kind": "TrainingJob", "tenant": "t", "queue": "default",
    "phase": "pending", "replicas": 1, "created_at": 1.0, "spec": {},
}  # fmt: skip
JOB = (
    "kind: TrainingJob\nname: j\nqueue: default\naccelerators: {count: 1, types: [h100]}\n"
    "command: [python3, -c, '1']\n"
)


def scripted(
    answers: list[int | type[Exception]], seen: list[httpx.Request], body: object = None
) -> Callable[[httpx.Request], httpx.Response]:
    """A server that answers each request with the next status (or raises the next error)."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0) if answers else 200
        if isinstance(answer, type):
            raise answer("scripted", request=request)  # type: ignore[call-arg]
        if answer == 503:
            return httpx.Response(
                503, json={"error": "the database is unavailable; retry"},
                headers={"Retry-After": "0"},
            )  # fmt: skip
        return httpx.Response(answer, json=body if body is not None else [])

    return handle


def client_for(handler: Callable[[httpx.Request], httpx.Response], **kwargs: float) -> BaigeClient:
    client = BaigeClient("http://baige.test", "tok", **kwargs)
    client.http = httpx.Client(base_url=client.url, transport=httpx.MockTransport(handler))
    return client


def test_reads_are_retried_through_503s() -> None:
    seen: list[httpx.Request] = []
    client = client_for(scripted([503, 503], seen))
    assert client.jobs() == []
    assert len(seen) == 3


def test_a_submission_keeps_its_idempotency_key_over_retries() -> None:
    seen: list[httpx.Request] = []
    client = client_for(scripted([503, httpx.ReadError, 201], seen, VIEW))
    client._reached = True  # the server answered before the connection broke
    spec = load_specs(JOB)[0]
    assert isinstance(spec, TrainingJobSpec)
    view = client.submit(spec)
    assert view.id == "job-1" and len(seen) == 3
    keys = {request.headers["idempotency-key"] for request in seen}
    assert len(keys) == 1 and len(keys.pop()) >= 16
    client.submit(spec)
    assert seen[-1].headers["idempotency-key"] not in keys  # a new submission, a new key


def test_making_a_token_is_never_repeated() -> None:
    seen: list[httpx.Request] = []
    client = client_for(scripted([503], seen))
    with pytest.raises(BaigeError) as caught:
        client.create_token("bob", "t")
    assert caught.value.status == 503 and len(seen) == 1


def test_retries_end_after_retry_s() -> None:
    seen: list[httpx.Request] = []
    client = client_for(scripted([503] * 1000, seen), retry_s=0.3)
    with pytest.raises(BaigeError) as caught:
        client.queues()
    assert caught.value.status == 503 and "database" in caught.value.message
    assert 1 < len(seen) < 5


def test_a_server_never_reached_fails_at_once_and_a_lost_one_is_waited_for() -> None:
    seen: list[httpx.Request] = []
    client = client_for(scripted([httpx.ConnectError], seen))
    with pytest.raises(BaigeError, match="cannot reach Baige"):
        client.nodes()
    assert len(seen) == 1
    client = client_for(scripted([200, httpx.ConnectError, httpx.ConnectError], seen := []))
    client.nodes()  # reached once: a refused connection now means a restart
    assert client.nodes() == [] and len(seen) == 4
