"""The control-plane reporter against a real HTTP server on a local port."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from baige.runtime.report import ControlPlaneReporter, reporter_from_env


class Recorder(ThreadingHTTPServer):
    status = 200
    bodies: list[dict[str, Any]]
    headers_seen: list[str]
    paths: list[str]


class Handler(BaseHTTPRequestHandler):
    server: Recorder

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.server.bodies.append(json.loads(self.rfile.read(length)))
        self.server.headers_seen.append(self.headers.get("Authorization", ""))
        self.server.paths.append(self.path)
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Recorder]:
    srv = Recorder(("127.0.0.1", 0), Handler)
    srv.bodies, srv.headers_seen, srv.paths = [], [], []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def url(srv: Recorder) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}"


def test_events_arrive_in_batches_with_the_token(server: Recorder) -> None:
    reporter = ControlPlaneReporter(url(server), "job-1", token="t0k", replica_id="r-0", node="n")
    for i in range(5):
        reporter({"event": "progress", "step": i})
    reporter.close()
    events = [e for body in server.bodies for e in body["events"]]
    assert [e["step"] for e in events] == [0, 1, 2, 3, 4]
    assert server.paths[0] == "/v1/jobs/job-1/runtime-events"
    assert server.bodies[0]["replica_id"] == "r-0" and server.bodies[0]["node"] == "n"
    assert set(server.headers_seen) == {"Bearer t0k"}
    assert reporter.sent == 5 and reporter.dropped == 0


def test_a_service_without_the_endpoint_turns_reporting_off(server: Recorder) -> None:
    server.status = 404
    reporter = ControlPlaneReporter(url(server), "job-1")
    reporter({"event": "restart"})
    deadline = time.monotonic() + 10
    while reporter.disabled is None and time.monotonic() < deadline:
        time.sleep(0.01)
    reporter({"event": "restart"})
    reporter.close()
    assert reporter.disabled is not None and "404" in reporter.disabled
    assert len(server.bodies) == 1


def test_an_unreachable_service_never_blocks_the_caller() -> None:
    reporter = ControlPlaneReporter("http://127.0.0.1:9", "job-1", timeout_s=0.2)
    t0 = time.monotonic()
    for i in range(1000):
        reporter({"event": "progress", "step": i})
    assert time.monotonic() - t0 < 0.5
    reporter.close(timeout_s=1.0)
    assert reporter.sent == 0


def test_only_when_started_by_the_control_plane(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BAIGE_URL", raising=False)
    monkeypatch.setenv("BAIGE_WORKLOAD_ID", "job-9")
    assert reporter_from_env("n") is None
    monkeypatch.setenv("BAIGE_URL", "http://127.0.0.1:9/")
    reporter = reporter_from_env("n")
    assert reporter is not None
    assert reporter.endpoint == "http://127.0.0.1:9/v1/jobs/job-9/runtime-events"
    reporter.close(timeout_s=0.5)
