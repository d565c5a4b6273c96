"""Followed log streams cannot starve the API: each one sleeps on the event loop rather
than holding a worker thread, and one token may follow at most 16 at once.

Before, 40 followers (the size of the server's thread pool) left no thread for any other
request: ``/healthz`` hung until a job ended."""

from __future__ import annotations

import threading
import time

import httpx

from .conftest import wait_for

JOB = {
    "name": "chatty",
    "queue": "default",
    "accelerators": {"count": 1, "types": ["h100"]},
    "command": ["python3", "-c",
                "import time\nfor i in range(600):\n print('tick', i, flush=True); time.sleep(0.1)"],
}  # fmt: skip


def test_many_followers_leave_the_api_responsive(make_platform, sqlite_url: str) -> None:
    running = make_platform(sqlite_url, nodes=1)
    admin = (running.platform.options.home / "admin-token").read_text().strip()

    def headers(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    job = httpx.post(f"{running.url}/v1/jobs", json=JOB, headers=headers(admin)).json()
    wait_for(lambda: running.client().job(job["id"]).phase == "running", timeout=30)
    tokens = [
        httpx.post(f"{running.url}/v1/tokens", json={"name": f"ops{i}", "admin": True},
                   headers=headers(admin)).json()["token"]
        for i in range(4)
    ]  # fmt: skip
    stop = threading.Event()
    received = [0] * 48

    def follow(slot: int, token: str) -> None:
        with (
            httpx.Client(timeout=None) as http,
            http.stream(
                "GET", f"{running.url}/v1/jobs/{job['id']}/logs?follow=true", headers=headers(token)
            ) as response,
        ):
            for chunk in response.iter_bytes():
                received[slot] += len(chunk)
                if stop.is_set():
                    return

    threads = [
        threading.Thread(target=follow, args=(slot, tokens[slot // 12]), daemon=True)
        for slot in range(48)
    ]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: all(received), timeout=30)  # every follower is streaming
        for _ in range(3):
            started = time.monotonic()
            assert httpx.get(f"{running.url}/healthz", timeout=10).status_code == 200
            listed = httpx.get(f"{running.url}/v1/jobs", headers=headers(admin), timeout=10)
            assert listed.status_code == 200
            assert time.monotonic() - started < 5
        # a 13th..16th stream for one token is fine; the 17th is refused
        extra = [
            httpx.Client(timeout=None).send(
                httpx.Request("GET", f"{running.url}/v1/jobs/{job['id']}/logs?follow=true",
                              headers=headers(tokens[0])), stream=True)
            for _ in range(4)
        ]  # fmt: skip
        refused = httpx.get(
            f"{running.url}/v1/jobs/{job['id']}/logs?follow=true", headers=headers(tokens[0])
        )
        assert refused.status_code == 429 and "log streams" in refused.json()["error"]
        for response in extra:
            response.close()
    finally:
        stop.set()
        running.client().cancel(job["id"])
        for thread in threads:
            thread.join(timeout=15)
