"""Benchmark: the control plane at 10,000 nodes and 5,000 jobs, on SQLite and PostgreSQL.

Starts ``baige up`` with the declared fake backend (it launches nothing, so 5,000 jobs fit on
a 2-core machine): on SQLite one process; on PostgreSQL a leader (a controller process and
``--api-workers`` API processes) and a standby `baige up` on the same database. Then, through
the HTTP API:

1. registers 10,000 nodes, the first 1,000 one per request, the rest in batches of 50;
2. submits 5,000 jobs over 32 concurrent connections;
3. waits ``--seconds``, then sends every node's heartbeat once every 10 s
   (``--heartbeat-batch`` nodes a request, paced evenly) for ``--seconds``, while a probe
   lists jobs every 0.1 s: the latency of both (p50/p99);
4. samples the controller's pass times from /healthz: for ``--seconds`` after the
   submissions (the second half: once the burst of admissions settled), and under the
   heartbeats.

``--rounds`` rounds per database, SQLite and PostgreSQL alternating, each on a fresh
database and a fresh `baige up`; every round is printed, then the medians.

The load generator writes HTTP/1.1 by hand (``RawHttp``): with httpx it used about as much
CPU as the server and capped the figures on this 2-core machine. The benchmark also reads
the API's CPU time per phase (from /proc: the API processes when split, the one process,
controller included, on SQLite): CPU milliseconds per registration, submission and heartbeat
request say what a request costs whatever the machine, where requests per second on a shared
2-core machine also count the load generator's and PostgreSQL's CPU. Targets: registration
and submissions ≥ 500/s; controller pass p99 ≤ 500 ms; heartbeats absorbed with API p99
≤ 100 ms.

    python bench/control_plane.py [--db sqlite|postgresql|both] [--rounds 3] [--seconds 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/baige_bench"
TYPES = ("h100", "a100-80g", "ascend-910b")


def wait_healthy(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    """Until ``baige up`` at ``url`` answers /healthz (60 s at most, or until it exits)."""
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.time() > deadline or server.poll() is not None:
            raise RuntimeError(f"baige up did not start; see {log}")
        time.sleep(0.1)


def api_cpu_s(root: int) -> float:
    """CPU seconds (user + system) of the API's processes under `baige up` ``root``: its API
    workers when it runs split (PostgreSQL), else the one process (controller included)."""
    tick = os.sysconf("SC_CLK_TCK")
    pending, total, split = [root], 0.0, False
    while pending:
        pid = pending.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"baige.control.processes" in argv:
                split = True
                if argv[argv.index(b"baige.control.processes") + 1].startswith(b"api-"):
                    total += (int(fields[11]) + int(fields[12])) / tick
            elif pid == root:
                own = (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total if split else own


def fresh_pg() -> str:
    admin = create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/test", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(text("DROP DATABASE IF EXISTS baige_bench WITH (FORCE)"))
        connection.execute(text("CREATE DATABASE baige_bench"))
    admin.dispose()
    return PG


def node(i: int) -> dict[str, object]:
    rack, block = i // 16, i // 128
    return {
        "name": f"n{i:05d}",
        "accelerators": {"type": TYPES[i % 3], "count": 8},
        "topology": [f"z{block // 8}", f"b{block}", f"r{rack}"],
    }


def job(i: int, rng: random.Random) -> dict[str, object]:
    count, replicas = rng.choice(((1, 1), (1, 1), (2, 1), (4, 1), (8, 1), (8, 2), (8, 4)))
    return {
        "kind": "TrainingJob",
        "name": f"bench-{i}",
        "queue": "default",
        "replicas": replicas,
        "accelerators": {"count": count, "types": list(rng.sample(TYPES, rng.choice((1, 2, 3))))},
        "priority": rng.choice((0, 0, 10, 100)),
        "command": ["true"],
    }


class RawHttp:
    """The load generator's HTTP/1.1: keep-alive connections over asyncio streams, requests
    written and responses read by hand (JSON bodies, Content-Length). It costs a few
    microseconds a request where httpx costs about a millisecond, which on a 2-core machine
    shared with the server would cap the very figure being measured."""

    def __init__(self, url: str, token: str, connections: int) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port, self.token = host, int(port), token
        self.size = connections
        self.pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.opened = 0

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.pool.empty() and self.opened < self.size:
            self.opened += 1
            return await asyncio.open_connection(self.host, self.port)
        return await self.pool.get()

    async def request(
        self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """(status, body); raises for a status of 400 or more."""
        data = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {self.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
            + "\r\n"
        )
        reader, writer = await self._connection()
        try:
            writer.write(head.encode() + data)
            status = int((await reader.readline()).split()[1])
            length, close = 0, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and value.strip().lower() == "close":
                    close = True
            answer = await reader.readexactly(length)
        except BaseException:
            writer.close()
            self.opened -= 1
            raise
        if close:
            writer.close()
            self.opened -= 1
        else:
            self.pool.put_nowait((reader, writer))
        if status >= 400:
            raise RuntimeError(f"{method} {path}: {status} {answer[:200]!r}")
        return status, answer

    async def close(self) -> None:
        while not self.pool.empty():
            _, writer = self.pool.get_nowait()
            writer.close()


async def register(url: str, token: str, nodes: int) -> tuple[float, float]:
    http = RawHttp(url, token, 16)
    sem = asyncio.Semaphore(16)

    async def post(body: dict[str, object]) -> None:
        async with sem:
            await http.request("POST", "/v1/nodes", body)

    single = min(1000, nodes)
    start = time.perf_counter()
    await asyncio.gather(*(post({"nodes": [node(i)]}) for i in range(single)))
    single_rate = single / (time.perf_counter() - start)
    start = time.perf_counter()
    batches = [list(range(i, min(i + 50, nodes))) for i in range(single, nodes, 50)]
    await asyncio.gather(*(post({"nodes": [node(i) for i in batch]}) for batch in batches))
    batched = nodes - single
    batch_rate = batched / (time.perf_counter() - start) if batched else 0.0
    await http.close()
    return single_rate, batch_rate


async def submit(url: str, token: str, jobs: int) -> float:
    rng = random.Random(7)
    bodies = [job(i, rng) for i in range(jobs)]
    http = RawHttp(url, token, 32)
    sem = asyncio.Semaphore(32)

    async def post(i: int) -> None:
        async with sem:
            await http.request("POST", "/v1/jobs", bodies[i], {"Idempotency-Key": f"b{i}"})

    start = time.perf_counter()
    await asyncio.gather(*(post(i) for i in range(jobs)))
    took = time.perf_counter() - start
    await http.close()
    return jobs / took


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else math.nan


async def heartbeats(
    url: str, token: str, nodes: int, batch: int, seconds: float, every: float = 10.0
) -> dict[str, float]:
    """Every node's heartbeat once per ``every`` seconds, ``batch`` nodes a request, paced
    evenly, for ``seconds``; a probe lists jobs every 0.1 s meanwhile. Latencies in ms."""
    names = [node(i)["name"] for i in range(nodes)]
    batches = [names[i : i + batch] for i in range(0, nodes, batch)]
    gap = every / len(batches)
    beat_ms: list[float] = []
    probe_ms: list[float] = []
    late = 0
    http = RawHttp(url, token, 64)
    probing = RawHttp(url, token, 1)

    async def beat(names: list[str]) -> None:
        started = time.perf_counter()
        await http.request("POST", "/v1/nodes/heartbeat", {"nodes": names})
        beat_ms.append((time.perf_counter() - started) * 1000)

    async def probe(until: float) -> None:
        while time.perf_counter() < until:
            started = time.perf_counter()
            await probing.request("GET", "/v1/jobs?limit=20")
            probe_ms.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.1)

    start = time.perf_counter()
    prober = asyncio.create_task(probe(start + seconds))
    due = [start + i * gap for i in range(int(seconds / gap))]
    sent = 0

    async def sender() -> None:
        # 64 senders share the schedule (a generator that fell behind would otherwise pile
        # up requests without bound); one that finds its beat a second late counts it
        nonlocal sent, late
        while sent < len(due):
            at = due[sent]
            sent += 1
            wait = at - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -1.0:
                late += 1
            await beat(batches[sent % len(batches)])

    await asyncio.gather(*(sender() for _ in range(64)), prober)
    await http.close()
    await probing.close()
    took = time.perf_counter() - start
    return {
        "heartbeat_batch": batch,
        "heartbeat_nodes_per_s": round(sent * batch / took, 1),
        "heartbeat_requests_per_s": round(sent / took, 1),
        "heartbeat_p50_ms": round(statistics.median(beat_ms), 1),
        "heartbeat_p99_ms": round(quantile(beat_ms, 0.99), 1),
        "probe_p50_ms": round(statistics.median(probe_ms), 1),
        "probe_p99_ms": round(quantile(probe_ms, 0.99), 1),
        "generator_fell_behind": late,
    }


def start_up(db_url: str, home: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "baige.cli.main", "up", "--port", str(port), "--db", db_url,
         "--home", str(home), "--backend", "fake", "--heartbeat-timeout", "1000000",
         "--fake-accelerators", "h100:8", *extra],
        stdout=subprocess.DEVNULL, stderr=open(home / "server.log", "wb"),
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(
    db_url: str, nodes: int, jobs: int, seconds: float, batch: int, api_workers: int
) -> dict[str, float]:
    """Start ``baige up`` (and on PostgreSQL a standby), load it through its API, then send
    heartbeats while sampling its controller's pass times and the API's latency."""
    home = Path(tempfile.mkdtemp())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    pg = db_url.startswith("postgresql")
    extra = ("--api-workers", str(api_workers)) if pg else ()
    server = start_up(db_url, home / "leader", port, *extra)
    standby = None
    try:
        wait_healthy(url, server, home / "leader" / "server.log")
        if pg:  # the standby: its own API, its controller waiting for the lead
            standby_port = free_port()
            standby = start_up(db_url, home / "standby", standby_port, *extra)
            wait_healthy(f"http://127.0.0.1:{standby_port}", standby,
                         home / "standby" / "server.log")  # fmt: skip
        token = (home / "leader" / "admin-token").read_text().strip()
        cpu = api_cpu_s(server.pid)
        single, batched = asyncio.run(register(url, token, nodes))
        cpu, cpu_register = api_cpu_s(server.pid), api_cpu_s(server.pid) - cpu
        submissions = asyncio.run(submit(url, token, jobs))
        cpu, cpu_submit = api_cpu_s(server.pid), api_cpu_s(server.pid) - cpu
        samples: list[float] = []
        stop = False

        def sample_passes() -> None:
            last = None
            while not stop:
                value = httpx.get(f"{url}/healthz", timeout=10).json()["controller_pass_seconds"]
                if value is not None and value != last:
                    samples.append(value)
                    last = value
                time.sleep(0.2)

        sampler = threading.Thread(target=sample_passes, daemon=True)
        sampler.start()
        time.sleep(seconds)  # the admissions settle; nothing else asks anything
        quiet = samples[len(samples) // 2 :]  # the second half: after the burst
        beats_from = len(samples)
        cpu = api_cpu_s(server.pid)
        beats = asyncio.run(heartbeats(url, token, nodes, batch, seconds))
        cpu_beats = api_cpu_s(server.pid) - cpu
        stop = True
        sampler.join()
        loaded = samples[beats_from:]
        beat_requests = beats["heartbeat_requests_per_s"] * seconds
        return {
            "nodes": nodes,
            "jobs": jobs,
            "api_workers": api_workers if pg else 0,
            "nodes_per_s_single": round(single, 1),
            "nodes_per_s_batched": round(batched, 1),
            "submissions_per_s": round(submissions, 1),
            "api_cpu_ms_per_registration_request": round(
                cpu_register * 1000 / (min(1000, nodes) + (nodes - min(1000, nodes)) / 50), 2
            ),
            "api_cpu_ms_per_submission": round(cpu_submit * 1000 / jobs, 2),
            **beats,
            "api_cpu_ms_per_heartbeat_request": round(cpu_beats * 1000 / beat_requests, 2),
            "passes_sampled": len(quiet),
            "pass_p50_ms": round(statistics.median(quiet) * 1000, 1),
            "pass_p99_ms": round(quantile(quiet, 0.99) * 1000, 1),
            "pass_p99_ms_under_heartbeats": round(quantile(loaded, 0.99) * 1000, 1),
            "burst_pass_max_ms": round(max(samples) * 1000, 1),
        }
    finally:
        for process in (standby, server):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=40.0,
                        help="how long to send heartbeats and sample passes")  # fmt: skip
    parser.add_argument("--heartbeat-batch", type=int, default=1,
                        help="nodes per heartbeat request (1: each node its own)")  # fmt: skip
    parser.add_argument("--api-workers", type=int, default=2, help="PostgreSQL: API processes")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds per database, interleaved; medians are reported")  # fmt: skip
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for number in range(1, args.rounds + 1):  # A B A B: a noisy minute spoils one round
        for name in names:
            url = f"sqlite:///{tempfile.mkdtemp()}/bench.db" if name == "sqlite" else fresh_pg()
            figures = run(url, args.nodes, args.jobs, args.seconds, args.heartbeat_batch,
                          args.api_workers)  # fmt: skip
            rounds[name].append(figures)
            if not args.json:
                print(f"round {number} {name}", json.dumps(figures), flush=True)
    report = {
        name: {key: round(statistics.median(r[key] for r in results), 2) for key in results[0]}
        for name, results in rounds.items()
    }
    if args.json:
        print(json.dumps({"median": report, "rounds": rounds}, indent=2))
        return
    print(f"\nmedians of {args.rounds} round(s):")
    for name, figures in report.items():
        print(name, json.dumps(figures))


if __name__ == "__main__":
    main()
