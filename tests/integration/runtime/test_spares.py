"""A training job with a hot spare under `baige up`: two replicas train and a third stands by
on `baige run`'s rendezvous, each on a node of its own with its own checkpoint directory
(``--ckpt-dir …/$(BAIGE_NODE)``: a node's local disk) and so its own shared memory. The
controller wires peer-memory checkpoints: every replica's `baige run` serves a buddy server
and its ranks push each persisted step to a buddy on another node.

One training replica's whole node is lost mid-run: every process of the replica (agent,
worker, checkpoint persister) killed, its shared memory and its checkpoint directory
deleted. The controller drops it without sending the job back to its queue (no restart
counted), the rendezvous admits the spare in its place, which finds nothing on its own
node and restores from a buddy's memory, and the job succeeds once two replicas exited 0
(the survivor and the spare that stood in; the new spare the scheduler placed after the
swap is stopped then)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from baige.api import load_specs
from baige.store.tables import WorkloadRow
from tests.integration.conftest import wait_for
from tests.integration.runtime.harness import (
    kill_replica,
    listeners,
    lose_node_storage,
    ranks_held,
    reference_loss,
    restore_sources,
    spared_job,
)

pytestmark = pytest.mark.slow


STEPS = 600
TRAIN = ["--steps", str(STEPS), "--save-every", "10", "--log-every", "100", "--linger", "5"]


def _job(tmp_path: Path) -> str:
    return spared_job(tmp_path, [*TRAIN, "--out", str(tmp_path / "final.json")], tmp_path / "home")


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


def test_a_lost_node_is_replaced_by_the_spare_which_restores_from_a_buddy(
    make_platform, sqlite_url: str, tmp_path: Path
) -> None:
    running = make_platform(sqlite_url, nodes=3, accel="h100:1")  # a node per replica
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
    replicas = {r.id: r for r in client.job(job.id).running_replicas}
    servers = [f"127.0.0.1:{r.port}" for r in replicas.values()]
    assert len(set(servers)) == 3, replicas  # every replica serves its buddies
    # both training ranks' snapshots have reached a buddy before the loss
    secret = home / "runs" / job.id / next(iter(trainers)) / "peer.secret"
    assert secret.stat().st_mode & 0o077 == 0
    assert wait_for(lambda: ranks_held(servers, secret, job.id) >= {0, 1}, timeout=60)
    with running.platform.db.session() as session:
        port = session.get(WorkloadRow, job.id).master_port  # type: ignore[union-attr]
    store = listeners(int(port))
    # lose a training replica that does not host the rendezvous store (losing that one ends
    # every replica's rendezvous: torch's c10d store lives in one agent)
    groups = _groups()
    victim = next(
        (rid, pgid)
        for rid, pgid in sorted(trainers.items())
        if not store & {pid for pid, _ in groups.get(pgid, [])}
    )
    os.killpg(victim[1], signal.SIGKILL)
    kill_replica(victim[0])
    lose_node_storage(tmp_path / "ckpt" / replicas[victim[0]].node)

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
    assert runtime.state == "succeeded" and runtime.last_step == STEPS - 1, runtime
    # the spare that stood in found nothing on its node: it restored from a buddy's memory
    (spare,) = (r for r in replicas if r not in trainers)
    sources = restore_sources(home / "runs" / job.id / spare / "events.jsonl")
    assert sources == ["buddy"], sources
    # and the run ends bit for bit where a run that lost nothing ends
    expected = reference_loss(tmp_path / "reference", TRAIN)
    assert json.loads((tmp_path / "final.json").read_text())["loss_hex"] == expected
    # the scheduler placed a new spare after the swap: four replicas in all, one generation
    replicas = sorted(p.name for p in runs.glob(f"{job.id}-*"))
    assert len(replicas) == 4 and all("-g1-" in r for r in replicas), replicas
