"""The HTTP API with a real controller and real processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from baige.client import BaigeError

from .conftest import wait_for

ROOT = Path(__file__).parents[2]

JOB_YAML = """\
kind: TrainingJob
name: hello
queue: default
replicas: 2
accelerators:
  count: 2
  types: [h100]
command: [python3, -c, "import os; print('hi from', os.environ['RANK'], os.environ['CUDA_VISIBLE_DEVICES'])"]
"""


def post_yaml(url: str, token: str, path: str, body: str) -> httpx.Response:
    return httpx.post(
        f"{url}{path}",
        content=body.encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"},
    )


@pytest.fixture
def running(make_platform, db_url: str):
    return make_platform(db_url)


def admin_token(running) -> str:
    return (running.platform.options.home / "admin-token").read_text().strip()


def test_a_job_runs_to_completion_with_its_logs(running) -> None:
    client = running.client()
    response = post_yaml(running.url, admin_token(running), "/v1/jobs", JOB_YAML)
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    view = wait_for(lambda: (v := client.job(job_id)).phase == "succeeded" and v, timeout=30)
    assert view.exit_code == 0 and len(view.running_replicas) == 2
    devices = {tuple(r.devices) for r in view.running_replicas}
    assert all(len(d) == 2 for d in devices) and len(devices) == 2
    text = b"".join(client.logs(job_id)).decode()
    assert "hi from 0" in text and "hi from 1" in text
    for replica in view.running_replicas:  # each replica saw exactly its own cards
        assert f"hi from {replica.index} {','.join(map(str, replica.devices))}" in text
    kinds = [e.type for e in client.events(job_id)]
    assert kinds[:2] == ["Submitted", "Admitted"] and kinds[-1] == "Succeeded"


def test_a_failing_job_is_restarted_then_fails(running) -> None:
    client = running.client()
    body = JOB_YAML.replace("replicas: 2", "replicas: 1\nmax_restarts: 1").replace(
        "print('hi from', os.environ['RANK'], os.environ['CUDA_VISIBLE_DEVICES'])",
        "raise SystemExit(3)",
    )
    job_id = post_yaml(running.url, admin_token(running), "/v1/jobs", body).json()["id"]
    view = wait_for(lambda: (v := client.job(job_id)).phase == "failed" and v, timeout=30)
    assert view.restarts == 1 and view.exit_code == 3
    assert "exited with code 3" in view.reason


def test_cancel_a_running_job(running) -> None:
    client = running.client()
    body = JOB_YAML.replace(
        "print('hi from', os.environ['RANK'], os.environ['CUDA_VISIBLE_DEVICES'])",
        "import time; time.sleep(600)",
    )
    job_id = post_yaml(running.url, admin_token(running), "/v1/jobs", body).json()["id"]
    wait_for(lambda: client.job(job_id).phase == "running")
    client.cancel(job_id)
    view = wait_for(lambda: (v := client.job(job_id)).phase == "cancelled" and v, timeout=30)
    assert all(r.state == "stopped" for r in view.running_replicas)


def test_service_scales_and_serves(running) -> None:
    client = running.client()
    (service,) = client.submit_file(ROOT / "examples" / "inference-toy.yaml")
    wait_for(
        lambda: sum(r.state == "running" for r in client.job(service.id).running_replicas) == 2
    )
    client.scale(service.id, 3)
    view = wait_for(
        lambda: (
            (v := client.job(service.id))
            and sum(r.state == "running" for r in v.running_replicas) == 3
            and v
        )
    )
    port = next(r.port for r in view.running_replicas if r.state == "running")
    reply = wait_for(lambda: _predict(port), timeout=15)
    assert reply["completion"] == "olleh"
    client.scale(service.id, 1)
    wait_for(
        lambda: sum(r.state == "running" for r in client.job(service.id).running_replicas) == 1
    )
    client.cancel(service.id)
    wait_for(lambda: client.job(service.id).phase == "cancelled")


def _predict(port: int) -> dict[str, object] | None:
    try:
        return httpx.post(
            f"http://127.0.0.1:{port}/predict", json={"prompt": "hello"}, timeout=2
        ).json()
    except httpx.HTTPError:
        return None


def test_cordoned_node_gets_nothing(running) -> None:
    client = running.client()
    first, second = (n.name for n in client.nodes())
    client.cordon(first)
    assert client.node(first).health == "cordoned"
    body = JOB_YAML.replace("count: 2", "count: 8")
    job_id = post_yaml(running.url, admin_token(running), "/v1/jobs", body).json()["id"]
    # 2 replicas of 8 cards need both nodes; with one cordoned the gang waits, with a reason
    view = wait_for(lambda: (v := client.job(job_id)).reason_code == "InsufficientCapacity" and v)
    assert "needs 16 h100; 8 of 8 cards are free" in view.reason
    client.cordon(first, False)
    wait_for(lambda: client.job(job_id).phase in ("running", "succeeded"))
    assert {r.node for r in client.job(job_id).running_replicas} == {first, second}


def test_draining_a_node_moves_its_work(running) -> None:
    client = running.client()
    body = JOB_YAML.replace("replicas: 2", "replicas: 1").replace("count: 2", "count: 8")
    body = body.replace("print('hi from', os.environ['RANK'], os.environ['CUDA_VISIBLE_DEVICES'])",
                        "import time; time.sleep(600)")  # fmt: skip
    job_id = post_yaml(running.url, admin_token(running), "/v1/jobs", body).json()["id"]
    view = wait_for(lambda: (v := client.job(job_id)).phase == "running" and v)
    first = view.running_replicas[0].node
    alice = running.client(client.create_token("alice", "team-a").token)
    with pytest.raises(BaigeError, match="admin"):
        alice.drain(first)
    assert client.drain(first).cordoned
    moved = wait_for(
        lambda: (
            (v := client.job(job_id)).phase == "running"
            and v.running_replicas
            and v.running_replicas[0].node != first
            and v.running_replicas[0].state == "running"
            and v
        ),
        timeout=30,
    )
    assert moved.restarts == 0  # moving is not a failure
    events = {e.type: e.message for e in client.events(job_id)}
    assert f"node {first} is draining" in events["Evicted"]
    node = client.node(first)
    assert node.cordoned and not node.draining and node.allocated == 0
    assert {"Draining", "Drained"} <= {e.type for e in client.node_events(first)}
    client.cancel(job_id)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ("kind: TrainingJob\nname: [oops\n", 400, "invalid YAML"),
        (JOB_YAML.replace("replicas: 2", "replicas: 2\ncolour: blue"), 400, "colour"),
        (JOB_YAML.replace("replicas: 2", "replicas: -2"), 400, "replicas"),
        (JOB_YAML.replace("types: [h100]", "types: [tpu-v9]"), 400, "unknown accelerator type"),
        (JOB_YAML.replace("queue: default", "queue: nowhere"), 404, "queue 'nowhere' not found"),
        (
            JOB_YAML.replace("kind: TrainingJob", "kind: InferenceService"),
            400,
            "expected a TrainingJob",
        ),
        ("", 400, "empty"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(running, body: str, status: int, words: str) -> None:
    response = post_yaml(running.url, admin_token(running), "/v1/jobs", body)
    assert response.status_code == status, response.text
    assert words in json.dumps(response.json())


def test_yaml_errors_carry_their_line(running) -> None:
    body = JOB_YAML.replace("count: 2", "count: -1")
    response = post_yaml(running.url, admin_token(running), "/v1/jobs", body)
    (problem,) = response.json()["problems"]
    assert (problem["field"], problem["line"]) == ("accelerators.count", 6)


def test_a_queue_that_does_not_fit_its_parent_is_refused(running) -> None:
    token = admin_token(running)
    org = "kind: Queue\nname: org\nquotas: {h100: {guaranteed: 8}}\n"
    assert post_yaml(running.url, token, "/v1/queues", org).status_code == 201
    team = "kind: Queue\nname: team\nparent: org\nquotas: {h100: {guaranteed: 12}}\n"
    response = post_yaml(running.url, token, "/v1/queues", team)
    assert response.status_code == 400 and "guaranteed" in response.text


def test_auth_and_tenant_isolation(running) -> None:
    admin = running.client()
    assert httpx.get(f"{running.url}/healthz").status_code == 200
    assert httpx.get(f"{running.url}/v1/jobs").status_code == 401
    assert (
        httpx.get(f"{running.url}/v1/jobs", headers={"Authorization": "Bearer no"}).status_code
        == 401
    )
    token = admin_token(running)
    for name in ("a", "b"):
        queue = f"kind: Queue\nname: q{name}\ntenant: team-{name}\n"
        assert post_yaml(running.url, token, "/v1/queues", queue).status_code == 201
    alice = running.client(admin.create_token("alice", "team-a").token)
    bob = running.client(admin.create_token("bob", "team-b").token)
    spec = JOB_YAML.replace("queue: default", "queue: qa")
    job_id = post_yaml(running.url, alice.token or "", "/v1/jobs", spec).json()["id"]
    assert [j.id for j in alice.jobs()] == [job_id]
    assert bob.jobs() == []
    for call in (
        lambda: bob.job(job_id),
        lambda: bob.cancel(job_id),
        lambda: list(bob.logs(job_id)),
    ):
        with pytest.raises(BaigeError) as caught:
            call()
        assert caught.value.status == 404
    response = post_yaml(running.url, bob.token or "", "/v1/jobs", spec)
    assert response.status_code == 404  # alice's queue does not exist for bob
    with pytest.raises(BaigeError) as caught:
        bob.create_token("mallory", "team-a")
    assert caught.value.status == 403
    assert job_id in {j.id for j in admin.jobs()}
