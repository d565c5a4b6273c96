"""The probe: a small TCP responder that runs on every node under test, and the calls the
coordinator makes to it.

Why plain TCP streams and not torch.distributed (gloo send/recv or all-reduce): a pairwise
test must load one path at a time, between two nodes, without forming a process group of
all of them (gloo's rendezvous, a store, a torch import of seconds on every node, and a
group that breaks as a whole when one member is unreachable — the very case to diagnose).
gloo's own transport *is* TCP over the same links, so a TCP stream measures what gloo
would get; an all-reduce, by contrast, is paced by its slowest link and cannot say which
one that is. The probe needs nothing beyond the standard library.

One port per node. Every connection starts with one JSON line naming an operation:

- ``hello`` → ``{"name", "version"}``
- ``sink``: the peer streams bytes until it shuts its side; the reply is ``{"bytes",
  "seconds"}`` from the first byte to the end, measured where the data arrives
- ``echo``: fixed-size messages sent back until the peer closes
- ``send`` ``{"to", "seconds"}``: stream to another probe's ``sink``, reply with its figures
- ``ping`` ``{"to", "count"}``: round trips of 64-byte messages to another probe's ``echo``
- ``preflight`` ``{"rank", "world", "store", "mb"}``: this node's compute check and its part
  of a gloo all-reduce (``baige.diag.preflight``), in a child process that imports torch

It is a diagnostic tool that makes connections on request: bind it to the cluster's own
network, and run it only while diagnosing (``baige diagnose --serve``).
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import socketserver
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_SECONDS",
    "ProbeError",
    "ProbeServer",
    "call",
    "parse_address",
]

PROTOCOL = 1
MAX_SECONDS = 30.0
MAX_PINGS = 1000
_CHUNK = 1 << 20
_PING = 64
_SLACK_S = 10.0


class ProbeError(RuntimeError):
    """A probe that cannot be reached or answered with an error; the message names it."""


def parse_address(text: str, *, default_port: int | None = None) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as a pair; the message names what is wrong."""
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        if default_port is None:
            raise ValueError(f"{text!r}: expected HOST:PORT")
        host, port = text.strip(), str(default_port)
    host = host.strip("[]")
    if not host:
        raise ValueError(f"{text!r}: the host is empty (expected HOST:PORT)")
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"{text!r}: port {port!r} is not a number") from None
    if not 0 < number < 65536:
        raise ValueError(f"{text!r}: port {number} is out of range 1..65535")
    return host, number


def _connect(address: str, timeout: float) -> socket.socket:
    host, port = parse_address(address)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as err:
        raise ProbeError(f"cannot reach the probe at {address}: {err}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _send_line(sock: socket.socket, data: dict[str, Any]) -> None:
    sock.sendall(json.dumps(data).encode() + b"\n")


def _read_line(stream: Any, what: str) -> dict[str, Any]:
    line = stream.readline(65536)
    if not line:
        raise ProbeError(f"{what} closed the connection without an answer")
    try:
        data = json.loads(line)
    except ValueError:
        raise ProbeError(f"{what} answered something that is not JSON: {line[:80]!r}") from None
    if not isinstance(data, dict):
        raise ProbeError(f"{what} answered {data!r}, not an object")
    if "error" in data:
        raise ProbeError(f"{what}: {data['error']}")
    return data


def call(address: str, request: dict[str, Any], *, timeout: float = 10.0) -> dict[str, Any]:
    """One request to the probe at ``address`` and its one-line answer."""
    with _connect(address, timeout) as sock:
        try:
            _send_line(sock, request)
            with sock.makefile("rb") as stream:
                return _read_line(stream, f"the probe at {address}")
        except OSError as err:
            raise ProbeError(f"the probe at {address} failed: {err}") from None


# ---------------------------------------------------------------- measurements


def stream_to(address: str, seconds: float) -> dict[str, Any]:
    """Stream bytes to the sink at ``address`` until it has measured ``seconds`` and says
    so; the sink's figures. The connection is then reset, not closed: what still sits in
    the send buffer (megabytes, on a slow link seconds of draining) is dropped."""
    payload = memoryview(bytearray(_CHUNK))
    with _connect(address, seconds + _SLACK_S) as sock:
        _send_line(sock, {"op": "sink", "seconds": seconds})
        end = time.monotonic() + seconds + _SLACK_S
        sent = 0
        with contextlib.suppress(OSError):  # the sink may reset first; its answer is there
            while time.monotonic() < end:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                sent += sock.send(payload)
        with sock.makefile("rb") as stream:
            result = _read_line(stream, f"the sink at {address}")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    result["sent"] = sent
    return result


def ping(address: str, count: int) -> dict[str, Any]:
    """Round trips of small messages to the echo at ``address``: median and each one."""
    message = b"p" * _PING
    rtts: list[float] = []
    with _connect(address, _SLACK_S) as sock:
        _send_line(sock, {"op": "echo"})
        for _ in range(count):
            start = time.perf_counter()
            sock.sendall(message)
            got = 0
            while got < _PING:
                chunk = sock.recv(_PING - got)
                if not chunk:
                    raise ProbeError(f"the echo at {address} closed mid-test")
                got += len(chunk)
            rtts.append(time.perf_counter() - start)
    return {"rtt_s": statistics.median(rtts), "rtts": rtts}


# ---------------------------------------------------------------- the responder


@dataclass
class _Settings:
    name: str
    slow_compute: float = 1.0  # rehearsal: the pre-flight's compute check runs this much slower


class _Handler(socketserver.StreamRequestHandler):
    server: ProbeServer

    def handle(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request.settimeout(MAX_SECONDS + _SLACK_S)
        try:
            line = self.rfile.readline(65536)
            request = json.loads(line) if line else None
            if not isinstance(request, dict):
                raise ValueError("the first line must be a JSON object with an 'op'")
            answer = self._dispatch(request)
        except (ProbeError, ValueError, OSError) as err:
            answer = {"error": str(err)}
        if answer is not None:
            with contextlib.suppress(OSError):
                self.wfile.write(json.dumps(answer).encode() + b"\n")

    def _dispatch(self, request: dict[str, Any]) -> dict[str, Any] | None:
        op = request.get("op")
        if op == "hello":
            return {"name": self.server.settings.name, "protocol": PROTOCOL}
        if op == "sink":
            seconds = float(request.get("seconds", MAX_SECONDS))
            if not 0 < seconds <= MAX_SECONDS:
                raise ValueError(f"seconds must be in (0, {MAX_SECONDS:g}], got {seconds}")
            self._sink(seconds)
            return None
        if op == "echo":
            self._echo()
            return None
        if op == "send":
            seconds = float(request.get("seconds", 1.0))
            if not 0 < seconds <= MAX_SECONDS:
                raise ValueError(f"seconds must be in (0, {MAX_SECONDS:g}], got {seconds}")
            return stream_to(str(request.get("to", "")), seconds)
        if op == "ping":
            count = int(request.get("count", 20))
            if not 0 < count <= MAX_PINGS:
                raise ValueError(f"count must be in 1..{MAX_PINGS}, got {count}")
            return ping(str(request.get("to", "")), count)
        if op == "preflight":
            return self._preflight(request)
        raise ValueError(f"unknown op {op!r}; expected hello, sink, echo, send, ping or preflight")

    def _preflight(self, request: dict[str, Any]) -> dict[str, Any]:
        """Run this node's part of a pre-flight (``baige.diag.preflight_worker``) in a child
        process: torch is imported there, never in the probe."""
        mb = float(request.get("mb", 256))
        compute_s = float(request.get("compute_s", 1.0))
        if not 0 < mb <= 4096 or not 0 < compute_s <= MAX_SECONDS:
            raise ValueError("mb must be in (0, 4096] and compute_s in (0, 30]")
        cmd = [
            sys.executable, "-m", "baige.diag.preflight_worker",
            "--rank", str(int(request["rank"])), "--world", str(int(request["world"])),
            "--store", str(request["store"]), "--mb", str(mb),
            "--rounds", str(int(request.get("rounds", 2))), "--compute-s", str(compute_s),
            "--slow-compute", str(self.server.settings.slow_compute),
        ]  # fmt: skip
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        except subprocess.TimeoutExpired:
            raise ProbeError("the pre-flight worker did not finish in 300 s") from None
        lines = done.stdout.strip().splitlines()
        try:
            answer = json.loads(lines[-1]) if lines else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
            raise ProbeError(f"the pre-flight worker failed (exit {done.returncode}): {tail[0]}")
        return answer

    def _sink(self, seconds: float) -> None:
        """Measure ``seconds`` of arrivals, answer, then read (and drop) until the sender
        resets the connection. Figures: bytes and seconds from the end of the first read
        (its bytes arrived before the clock started), and ``rate``: the median over five
        equal slices of that time, so that a pause of the sender (a busy CPU, not the link)
        costs one slice instead of dragging down the whole figure."""
        view = memoryview(bytearray(_CHUNK))
        marks: list[tuple[float, int]] = []
        answered = False
        with contextlib.suppress(OSError):
            while True:
                # readinto1: what has arrived, one read at most (readinto waits to fill)
                n = self.rfile.readinto1(view)
                if not n:
                    break
                if answered:
                    continue
                now = time.perf_counter()
                marks.append((now, n))
                if now - marks[0][0] >= seconds:
                    self.wfile.write(json.dumps(_figures(marks)).encode() + b"\n")
                    answered = True
        if not answered:  # the sender stopped first
            with contextlib.suppress(OSError):
                self.wfile.write(json.dumps(_figures(marks)).encode() + b"\n")

    def _echo(self) -> None:
        while True:  # through rfile: the first message may already sit in its buffer
            data = self.rfile.read1(65536)
            if not data:
                return
            self.request.sendall(data)


def _figures(marks: list[tuple[float, int]], slices: int = 5) -> dict[str, Any]:
    """A sink's figures from (arrival time, bytes) of each read."""
    if len(marks) < 2:
        return {"bytes": 0, "seconds": 0.0, "rate": 0.0, "total": sum(n for _, n in marks)}
    start = marks[0][0]
    elapsed = marks[-1][0] - start
    size = sum(n for _, n in marks[1:])
    per = [0] * slices
    for t, n in marks[1:]:
        per[min(slices - 1, int((t - start) / elapsed * slices))] += n
    rate = statistics.median(b / (elapsed / slices) for b in per) if elapsed > 0 else 0.0
    return {"bytes": size, "seconds": elapsed, "rate": rate, "total": size + marks[0][1]}


class ProbeServer(socketserver.ThreadingTCPServer):
    """``ProbeServer((host, port), name).serve_forever()``; port 0 picks a free one."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], name: str, slow_compute: float = 1.0) -> None:
        super().__init__(address, _Handler)
        self.settings = _Settings(name=name, slow_compute=slow_compute)

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        return f"{host!s}:{port}"


@contextlib.contextmanager
def running(
    address: tuple[str, int], name: str, slow_compute: float = 1.0
) -> Iterator[ProbeServer]:
    """A probe served from a background thread for the block (tests)."""
    server = ProbeServer(address, name, slow_compute)
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name=f"probe-{name}", daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
