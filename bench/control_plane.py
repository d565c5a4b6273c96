"""Benchmark: the control plane at 10,000 nodes and 5,000 jobs, on SQLite and PostgreSQL.

Starts ``baige up`` in its own process with the declared fake backend (it launches nothing,
so 5,000 jobs fit on a 2-core machine), registers 10,000 nodes through the HTTP API (the
first 1,000 one per request, the rest in batches of 50), submits 5,000 jobs over 32
concurrent connections, then samples the controller's pass times from /healthz (snapshot
from the store, the scheduling cycle, recording decisions, carrying them out). Targets:
registration ≥ 500 nodes/s; controller pass p99 ≤ 500 ms.

    python bench/control_plane.py [--db sqlite|postgresql|both] [--nodes 10000] [--jobs 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import statistics
import subprocess
import sys
import tempfile
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


async def register(url: str, token: str, nodes: int) -> tuple[float, float]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300,
                                 limits=httpx.Limits(max_connections=16)) as http:  # fmt: skip
        single = min(1000, nodes)
        start = time.perf_counter()
        sem = asyncio.Semaphore(16)

        async def post(body: dict[str, object]) -> None:
            async with sem:
                response = await http.post("/v1/nodes", json=body)
                response.raise_for_status()

        await asyncio.gather(*(post({"nodes": [node(i)]}) for i in range(single)))
        single_rate = single / (time.perf_counter() - start)
        start = time.perf_counter()
        batches = [list(range(i, min(i + 50, nodes))) for i in range(single, nodes, 50)]
        await asyncio.gather(*(post({"nodes": [node(i) for i in batch]}) for batch in batches))
        batched = nodes - single
        batch_rate = batched / (time.perf_counter() - start) if batched else 0.0
    return single_rate, batch_rate


async def submit(url: str, token: str, jobs: int) -> float:
    rng = random.Random(7)
    bodies = [job(i, rng) for i in range(jobs)]
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300,
                                 limits=httpx.Limits(max_connections=32)) as http:  # fmt: skip
        sem = asyncio.Semaphore(32)

        async def post(i: int) -> None:
            async with sem:
                response = await http.post(
                    "/v1/jobs", json=bodies[i], headers={"Idempotency-Key": f"b{i}"}
                )
                response.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(post(i) for i in range(jobs)))
        return jobs / (time.perf_counter() - start)


def run(db_url: str, nodes: int, jobs: int, seconds: float) -> dict[str, float]:
    """Start ``baige up`` as its own process (the fake backend: nothing is launched), load it
    through its API, then sample its controller's pass times."""
    home = Path(tempfile.mkdtemp())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "baige.cli.main", "up", "--port", str(port), "--db", db_url,
         "--home", str(home), "--backend", "fake", "--heartbeat-timeout", "1000000",
         "--fake-accelerators", "h100:8"],
        stdout=subprocess.DEVNULL, stderr=open(home / "server.log", "wb"),
    )  # fmt: skip
    try:
        wait_healthy(url, server, home / "server.log")
        token = (home / "admin-token").read_text().strip()
        single, batched = asyncio.run(register(url, token, nodes))
        submissions = asyncio.run(submit(url, token, jobs))
        samples: list[float] = []
        last = None
        end = time.time() + seconds
        while time.time() < end:
            value = httpx.get(f"{url}/healthz", timeout=10).json()["controller_pass_seconds"]
            if value is not None and value != last:
                samples.append(value)
                last = value
            time.sleep(0.2)
        # the second half of the window: the passes after the burst of admissions settled
        steady = sorted(samples[len(samples) // 2 :]) or sorted(samples)
        return {
            "nodes": nodes,
            "jobs": jobs,
            "nodes_per_s_single": round(single, 1),
            "nodes_per_s_batched": round(batched, 1),
            "submissions_per_s": round(submissions, 1),
            "passes_sampled": len(steady),
            "pass_p50_ms": round(statistics.median(steady) * 1000, 1),
            "pass_p99_ms": round(
                steady[min(len(steady) - 1, round(0.99 * (len(steady) - 1)))] * 1000, 1
            ),
            "burst_pass_max_ms": round(max(samples) * 1000, 1),
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=40.0, help="how long to sample passes")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = {}
    for name in ("sqlite", "postgresql") if args.db == "both" else (args.db,):
        url = f"sqlite:///{tempfile.mkdtemp()}/bench.db" if name == "sqlite" else fresh_pg()
        report[name] = run(url, args.nodes, args.jobs, args.seconds)
        if not args.json:
            print(name, json.dumps(report[name]), flush=True)
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
