"""The service gateway in a real `baige up`: a stable endpoint per service in front of real
replica processes (the fake engine), streaming, tenancy, and load that scales the service."""

from __future__ import annotations

import json
import threading
import time

import httpx

from .conftest import wait_for

SERVICE = """\
kind: InferenceService
name: chat
queue: default
replicas: 1
accelerators: {share: 0.25, types: [h100]}
engine: {name: fake, model: toy, token_latency: 0.05, max_concurrency: 4}
autoscale: {min_replicas: 1, max_replicas: 3, target_qps_per_replica: 1,
            target_cache_usage: 0.95, scale_down_window: 600s}
"""


def test_a_service_behind_the_gateway(make_platform, sqlite_url: str) -> None:
    running = make_platform(sqlite_url, nodes=1)
    admin = (running.platform.options.home / "admin-token").read_text().strip()
    auth = {"Authorization": f"Bearer {admin}"}
    posted = httpx.post(f"{running.url}/v1/services", content=SERVICE, headers={
        **auth, "Content-Type": "application/yaml"})  # fmt: skip
    assert posted.status_code == 201, posted.text
    service = posted.json()["id"]
    endpoint = f"{running.url}/s/{service}"

    def ask(prompt: str = "a b c") -> httpx.Response:
        return httpx.post(f"{endpoint}/v1/completions", headers=auth, timeout=30,
                          json={"prompt": prompt, "max_tokens": 3})  # fmt: skip

    reply = wait_for(lambda: (r := ask()).status_code == 200 and r, timeout=60)
    assert reply.json()["choices"][0]["text"] == "c b a "
    assert reply.headers["x-baige-replica"].startswith(service)
    by_name = httpx.post(f"{running.url}/s/chat/v1/completions", headers=auth,
                         json={"prompt": "x", "max_tokens": 1}, timeout=30)  # fmt: skip
    assert by_name.status_code == 200
    # the replica's own engine metrics reach the autoscaler (read every 5 s)
    sample = wait_for(lambda: (v := running.platform.board.sample(service)) and
                      v.cache_usage is not None and v, timeout=30)  # fmt: skip
    assert 0 <= sample.cache_usage <= 1 and sample.waiting is not None

    # streamed through unbuffered: the first token arrives long before the last
    started = time.monotonic()
    arrivals = []
    with httpx.stream("POST", f"{endpoint}/v1/completions", headers=auth, timeout=30,
                      json={"prompt": "p q", "max_tokens": 20, "stream": True}) as stream:  # fmt: skip
        for line in stream.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                arrivals.append(time.monotonic() - started)
                json.loads(line[6:])
    assert len(arrivals) == 21 and arrivals[0] < arrivals[-1] - 0.5

    # another tenant's token cannot reach it, nor learn that it exists
    other = httpx.post(f"{running.url}/v1/tokens", headers=auth,
                       json={"name": "bob", "tenant": "team-b"}).json()["token"]  # fmt: skip
    denied = httpx.post(f"{endpoint}/v1/completions", json={"prompt": "x"},
                        headers={"Authorization": f"Bearer {other}"})  # fmt: skip
    assert denied.status_code == 404
    assert httpx.get(f"{endpoint}/health").status_code == 401

    # sustained load above 1 request/s per replica scales it up, and says why
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            ask()

    workers = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        view = wait_for(
            lambda: (v := running.client().job(service)).replicas == 3 and v, timeout=60
        )
        assert view.replicas == 3
        scaled = [e for e in running.client().events(service) if e.type == "Autoscaled"]
        assert scaled and "requests/s" in scaled[0].message
        metrics = httpx.get(f"{running.url}/metrics", headers=auth).text
        assert (
            f'baige_service_replicas{{kind="wanted",queue="default",service="{service}"}} 3.0'
            in metrics
        )
        assert f'baige_service_requests_total{{service="{service}"}}' in metrics
        # the new replicas take requests too
        seen = wait_for(lambda: len({ask().headers.get("x-baige-replica") for _ in range(12)}) > 1,
                        timeout=60)  # fmt: skip
        assert seen
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)


SCALING = """\
kind: InferenceService
name: scaling
queue: default
replicas: 1
accelerators: {share: 0.25, types: [h100]}
engine: {name: fake, model: toy, token_latency: 0.02, max_concurrency: 8}
autoscale: {min_replicas: 1, max_replicas: 3, target_qps_per_replica: 1,
            scale_down_window: 5s, cooldown: 5s}
"""


def test_autoscaling_up_and_down_loses_no_request(make_platform, sqlite_url: str) -> None:
    """The issue's example: load through the stable endpoint scales the service up, the
    load falling scales it back down, and every request, including streams in flight on a
    replica that leaves, completes."""
    running = make_platform(sqlite_url, nodes=1)
    admin = (running.platform.options.home / "admin-token").read_text().strip()
    auth = {"Authorization": f"Bearer {admin}"}
    posted = httpx.post(f"{running.url}/v1/services", content=SCALING, headers={
        **auth, "Content-Type": "application/yaml"})  # fmt: skip
    assert posted.status_code == 201, posted.text
    service = posted.json()["id"]
    endpoint = f"{running.url}/s/{service}/v1/completions"
    wait_for(lambda: httpx.post(endpoint, headers=auth, json={"prompt": "x", "max_tokens": 1},
                                timeout=30).status_code == 200, timeout=60)  # fmt: skip
    failures: list[str] = []
    served = [0]
    replicas_seen: set[str] = set()

    def stream(tokens: int) -> None:
        try:
            with httpx.stream("POST", endpoint, headers=auth, timeout=60,
                              json={"prompt": "a b", "max_tokens": tokens,
                                    "stream": True}) as reply:  # fmt: skip
                lines = [ln for ln in reply.iter_lines() if ln.startswith("data: ")]
                replicas_seen.add(reply.headers.get("x-baige-replica", ""))
            if reply.status_code != 200 or lines[-1:] != ["data: [DONE]"]:
                failures.append(f"{reply.status_code}: {lines[-2:]}")
            elif len(lines) != tokens + 2:
                failures.append(f"{len(lines)} lines for {tokens} tokens")
            else:
                served[0] += 1
        except httpx.HTTPError as err:
            failures.append(repr(err))

    heavy, trickle = threading.Event(), threading.Event()

    def worker(stop: threading.Event, tokens: int) -> None:
        while not stop.is_set():
            stream(tokens)

    threads = [threading.Thread(target=worker, args=(heavy, 5), daemon=True) for _ in range(4)]
    # two long streams at a time (12 s, longer than the backend's 10 s stop grace): without
    # drain-then-stop, one on a replica that leaves would be cut
    threads += [threading.Thread(target=worker, args=(trickle, 600), daemon=True) for _ in "ab"]
    for thread in threads:
        thread.start()
    client = running.client()
    try:
        wait_for(lambda: client.job(service).replicas == 3, timeout=90)
        heavy.set()  # the load falls to two long streams at a time
        view = wait_for(
            lambda: (v := client.job(service)).replicas == 1
            and [r.state for r in v.running_replicas].count("running") == 1 and v,
            timeout=120)  # fmt: skip
        assert view.replicas == 1
    finally:
        heavy.set()
        trickle.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not failures, failures[:5]
    assert served[0] >= 8 and len(replicas_seen) >= 2
    moves = [e.message for e in client.events(service) if e.type == "Autoscaled"]
    assert any("scaled up" in m for m in moves) and any("scaled down" in m for m in moves)
