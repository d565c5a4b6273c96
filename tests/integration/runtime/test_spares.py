"""A training job with a hot spare under `baige up`: two replicas train and a third stands by
on `baige run`'s rendezvous. One training replica's whole process group (its "node") is
killed mid-run: the controller drops it without sending the job back to its queue (no
restart counted), the rendezvous admits the spare in its place, which restores from the
last checkpoint, and the job succeeds once two replicas exited 0 (the survivor and the spare that stood in;
the new spare the scheduler placed after the swap is stopped then)."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from baige.api import load_specs
from baige.store.tables import WorkloadRow
from tests.integration.conftest import wait_for
from tests.integration.runtime.harness import EXAMPLE

pytestmark = pytest.mark.slow


def _job(tmp_path: Path) -> str:
    command = [
        sys.executable, "-m", "baige.runtime", "--nproc-per-node", "1", "--node-timeout", "3",
        "--monitor-interval", "0.1", "--progress-every", "0.5", "--",
        sys.executable, str(EXAMPLE), "--steps", "1500", "--save-every", "10", "--log-every", "100",
        "--linger", "5", "--ckpt-dir", str(tmp_path / "ckpt"),
    ]  # fmt: skip
    return f"""\
kind: TrainingJob
name: spared
queue: default
replicas: 2
spares: 1
accelerators: {{count: 1, types: [h100]}}
command: {json.dumps(command)}
env: {{BAIGE_HOME: "{tmp_path / "home"}"}}
"""


def _groups() -> dict[int, list[tuple[int, str]]]:
    """Every process by process group: (pid, command line)."""
    out: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        pgrp = int(stat.rsplit(")", 1)[1].split()[2])
        out.setdefault(pgrp, []).append((int(entry.name), cmdline))
    return out


def _listeners(port: int) -> set[int]:
    """Pids holding a socket that listens on ``port`` (the rendezvous store's host)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(fields[9])
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    pids.add(int(entry.name))
        except OSError:
            continue
    return pids


def test_a_lost_replica_is_replaced_by_its_spare_without_requeue(
    make_platform, sqlite_url: str, tmp_path: Path
) -> None:
    running = make_platform(sqlite_url, nodes=3)
    client = running.client()
    job = client.submit(load_specs(_job(tmp_path))[0])  # type: ignore[arg-type]
    runs = running.platform.options.home / "runs"
    home = tmp_path / "home"  # BAIGE_HOME of the replicas: their `baige run` events

    def training() -> dict[str, int] | None:
        """Replica id -> process group, for the two replicas whose `baige run` started
        training (the spare's waits on the rendezvous), once training has made progress."""
        view = client.job(job.id)
        if view.runtime is None or view.runtime.last_step < 50:
            return None
        found = {}
        for pid_file in runs.glob(f"{job.id}-*/pid"):
            replica = pid_file.parent.name
            events = home / "runs" / job.id / replica / "events.jsonl"
            if events.exists() and '"training_started"' in events.read_text():
                found[replica] = int(pid_file.read_text())
        return found if len(found) == 2 else None

    trainers = wait_for(training, timeout=120, interval=0.5)
    assert isinstance(trainers, dict)
    with running.platform.db.session() as session:
        port = session.get(WorkloadRow, job.id).master_port  # type: ignore[union-attr]
    store = _listeners(int(port))
    # lose a training replica that does not host the rendezvous store (losing that one ends
    # every replica's rendezvous: torch's c10d store lives in one agent)
    groups = _groups()
    victim = next(
        (rid, pgid)
        for rid, pgid in sorted(trainers.items())
        if not store & {pid for pid, _ in groups.get(pgid, [])}
    )
    os.killpg(victim[1], signal.SIGKILL)

    done = wait_for(
        lambda: client.job(job.id).phase in ("succeeded", "failed"), timeout=240, interval=0.5
    )
    assert done
    view = client.job(job.id)
    events = client.events(job.id)
    history = [(e.type, e.message) for e in events]
    assert view.phase == "succeeded", (view.reason, history[-10:])
    assert view.restarts == 0, history  # never sent back to its queue
    swaps = [e.message for e in events if e.type == "SpareSwapped"]
    index = int(victim[0].rsplit("-r", 1)[1].split("-")[0])
    assert swaps and swaps[0].startswith(f"replica {index} was lost"), history
    # the only other drop allowed: the new spare, cut off when the job's rendezvous went away
    # at the end (its agent errors once the store does), before the finish was observed
    assert all("exited with code" in m for m in swaps[1:]), history
    runtime = view.runtime
    assert runtime is not None and runtime.restored_from is not None, runtime
    assert runtime.state == "succeeded" and runtime.last_step == 1499, runtime
    # the scheduler placed a new spare after the swap: four replicas in all, one generation
    replicas = sorted(p.name for p in runs.glob(f"{job.id}-*"))
    assert len(replicas) == 4 and all("-g1-" in r for r in replicas), replicas
