"""The declared fake engine, over real HTTP: completions, streaming, the concurrency limit,
health while loading, and vLLM-named metrics."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def engine() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "baige.engines.fake", "--port", str(port), "--model", "toy",
         "--token-latency", "0.05", "--max-concurrency", "2", "--load-seconds", "1"],
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{url}/metrics", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def metrics(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics").text
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_health_says_loading_then_ok(engine: str) -> None:
    first = httpx.get(f"{engine}/health")
    time.sleep(1.2)
    assert first.status_code in (200, 503)
    assert httpx.get(f"{engine}/health").status_code == 200


def test_completion_and_chat_and_streaming(engine: str) -> None:
    time.sleep(1.1)
    reply = httpx.post(f"{engine}/v1/completions", json={"prompt": "a b c", "max_tokens": 3})
    assert reply.status_code == 200
    assert reply.json()["choices"][0]["text"] == "c b a "
    chat = httpx.post(f"{engine}/v1/chat/completions",
                      json={"messages": [{"role": "user", "content": "x y"}], "max_tokens": 2})  # fmt: skip
    assert chat.json()["choices"][0]["message"]["content"] == "y x "
    chunks = []
    with httpx.stream("POST", f"{engine}/v1/completions",
                      json={"prompt": "p q", "max_tokens": 4, "stream": True}) as stream:  # fmt: skip
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                chunks.append(line[6:])
    assert chunks[-1] == "[DONE]" and len(chunks) == 6  # 4 tokens, a finish chunk, DONE
    bad = httpx.post(f"{engine}/v1/completions", json={"prompt": "x", "max_tokens": 0})
    assert bad.status_code == 400 and "max_tokens" in bad.text


def test_requests_beyond_the_limit_wait_and_show_in_metrics(engine: str) -> None:
    time.sleep(1.1)
    threads = [
        threading.Thread(target=httpx.post, args=(f"{engine}/v1/completions",),
                         kwargs={"json": {"prompt": "z", "max_tokens": 20}, "timeout": 30})
        for _ in range(5)
    ]  # fmt: skip
    for thread in threads:
        thread.start()
    time.sleep(0.4)
    during = metrics(engine)
    assert during["vllm:num_requests_running"] == 2
    assert during["vllm:num_requests_waiting"] == 3
    for thread in threads:
        thread.join()
    after = metrics(engine)
    assert after["vllm:num_requests_running"] == 0
    assert after["vllm:request_success_total"] == 5
