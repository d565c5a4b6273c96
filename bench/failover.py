"""Benchmark: how long the control plane is without a controller when its leader goes.

Two ``baige up`` on one PostgreSQL database (the declared fake backend: it launches
nothing, so a launch is a recorded decision), the second standing by. Each round the leader
— all its processes, as when its host dies or freezes — is either killed (SIGKILL: its
connections close, the lock is free at once) or paused (SIGSTOP: it stops answering and
loses the lead after ``--lease`` seconds), and a job is
submitted to the standby's API at that moment. Measured from the fault: the standby leading
(the lease row names it), and the job launched (its phase ``running``). Kill and pause
rounds alternate (A B A B); medians per kind and every round are printed.

    python bench/failover.py [--rounds 5] [--lease 8]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).parent))
from control_plane import wait_healthy  # (after the path)

ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
URL = "postgresql+psycopg://postgres@127.0.0.1:5432/baige_bench_failover"
JOB = {
    "kind": "TrainingJob",
    "name": "after-the-fault",
    "queue": "default",
    "accelerators": {"count": 1, "types": ["h100"]},
    "command": ["true"],
}


def fresh_database() -> None:
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text("DROP DATABASE IF EXISTS baige_bench_failover WITH (FORCE)"))
        connection.execute(text("CREATE DATABASE baige_bench_failover"))
    admin.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Up:
    def __init__(self, home: Path, lease: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = open(home / f"up-{self.port}.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "baige.cli.main", "up", "--db", URL, "--port", str(self.port),
             "--backend", "fake", "--fake-accelerators", "h100:8", "--fake-nodes", "2",
             "--lease", f"{lease:g}", "--home", str(home)],
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
        )  # fmt: skip
        wait_healthy(self.url, self.proc, Path(log.name))

    def fault(self, signum: int) -> None:
        """``signum`` to every process of this `baige up` (its supervisor, its controller and
        API processes), as a host that dies or freezes does."""
        os.killpg(self.proc.pid, signum)

    def end(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGCONT)
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def holder() -> str:
    engine = create_engine(URL)
    try:
        with engine.connect() as connection:
            return str(connection.execute(text("SELECT holder FROM leader_lease")).scalar())
    finally:
        engine.dispose()


def one_round(kind: str, lease: float) -> tuple[float, float]:
    """(fault → standby leading, fault → the job submitted at the fault launched), seconds."""
    fresh_database()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        leader = Up(home, lease)
        standby = Up(home, lease)
        try:
            token = (home / "admin-token").read_text().strip()
            api = httpx.Client(base_url=standby.url, headers={"Authorization": f"Bearer {token}"})
            mark = f"pid {standby.proc.pid} "
            assert mark not in holder(), "the second baige up leads"
            fault = time.monotonic()
            leader.fault(signal.SIGKILL if kind == "kill" else signal.SIGSTOP)
            job_id = api.post("/v1/jobs", json=JOB, timeout=30).json()["id"]
            leading = launched = None
            while launched is None:
                now = time.monotonic()
                if now - fault > 120:
                    raise SystemExit(f"no takeover within 120 s ({kind})")
                if leading is None and mark in holder():
                    leading = now - fault
                phase = api.get(f"/v1/jobs/{job_id}", timeout=10).json()["phase"]
                if phase in ("running", "succeeded"):
                    launched = now - fault
                time.sleep(0.05)
            assert leading is not None
            return leading, launched
        finally:
            leader.end()
            standby.end()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lease", type=float, default=8.0)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"kill": [], "pause": []}
    one_round("kill", args.lease)  # warm-up: imports, the database's first connections
    for i in range(args.rounds):
        for kind in ("kill", "pause"):
            lead, launch = one_round(kind, args.lease)
            results[kind].append((lead, launch))
            print(f"round {i + 1} {kind:5}: standby leads {lead:.2f} s, launches {launch:.2f} s",
                  flush=True)  # fmt: skip
    print(f"\nlease {args.lease:g} s, {args.rounds} rounds, medians (every round):")
    print("| fault | standby leading | first launch |")
    print("|---|---|---|")
    for kind, rows in results.items():
        leads, launches = [r[0] for r in rows], [r[1] for r in rows]
        print(f"| {kind} | {statistics.median(leads):.2f} s "
              f"({', '.join(f'{x:.1f}' for x in leads)}) | {statistics.median(launches):.2f} s "
              f"({', '.join(f'{x:.1f}' for x in launches)}) |")  # fmt: skip


if __name__ == "__main__":
    main()
