"""A whole node lost under a training job on the real Slurm test cluster, and the job going on
on its hot spare from a buddy's memory, without going back to its queue.

Three logical Slurm nodes of one card each (a cluster of its own: the shared one in
test_slurm.py has two); a job of two training replicas and a spare, each running
`baige run` with the example transformer and a checkpoint directory of its node's own. The
controller wires peer-memory checkpoints (a buddy server per replica, at the address Slurm
reaches its node at). One training node is lost whole: its slurmd stopped, every process of
its replica killed, its shared memory and its checkpoint directory deleted. The rendezvous
admits the spare at the lost node's rank, the spare restores from a buddy's memory, the
controller swaps it in (``SpareSwapped``, no restart), and the job succeeds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from baige.api import load_specs
from baige.backends.slurm_cluster import SlurmCluster, SlurmNode
from baige.store.tables import WorkloadRow
from tests.integration.runtime.harness import (
    kill_replica,
    listeners,
    lose_node_storage,
    ranks_held,
    restore_sources,
    spared_job,
)

from .conftest import wait_for
from .slurm_fixtures import slurm_cluster, slurm_platform

pytestmark = pytest.mark.slow

STEPS = 2500


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory):
    yield from slurm_cluster(
        tmp_path_factory.mktemp("slurm3"), tuple(SlurmNode(f"gpu{i}", gpus=1) for i in (1, 2, 3))
    )


@pytest.fixture
def platform(slurm: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # its one test leaves a node down; the module's cluster is stopped after it
    yield from slurm_platform(slurm, tmp_path, monkeypatch, settle=False)


def _job(tmp_path: Path) -> str:
    train = ["--steps", str(STEPS), "--save-every", "10", "--log-every", "100", "--linger", "5"]
    return spared_job(tmp_path, train, tmp_path / "home-runs", f"working_dir: {tmp_path}\n")


def _replica_of(pid: int) -> str:
    """The replica a process belongs to (its BAIGE_REPLICA_ID), or "" for none."""
    for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        if item.startswith(b"BAIGE_REPLICA_ID="):
            return item.split(b"=", 1)[1].decode()
    return ""


def _started(runs: Path, replica: str) -> bool:
    events = runs / replica / "events.jsonl"
    return events.exists() and '"training_started"' in events.read_text()


def test_a_lost_slurm_node_is_replaced_by_the_spare_which_restores_from_a_buddy(
    platform, slurm: SlurmCluster, tmp_path: Path
) -> None:
    client = platform.client()
    job = client.submit(load_specs(_job(tmp_path))[0])  # type: ignore[arg-type]
    runs = tmp_path / "home-runs" / "runs" / job.id  # each replica's `baige run` events

    def training() -> list[str] | None:
        view = client.job(job.id)
        if view.runtime is None or view.runtime.last_step < 50:
            return None
        started = [r.id for r in view.running_replicas if _started(runs, r.id)]
        return started if len(started) == 2 else None

    trainers = wait_for(training, timeout=180, interval=0.5)
    assert isinstance(trainers, list)
    replicas = {r.id: r for r in client.job(job.id).running_replicas}
    assert len({r.node for r in replicas.values()}) == 3, replicas  # a node each
    servers = [f"127.0.0.1:{r.port}" for r in replicas.values()]
    secret = runs / trainers[0] / "peer.secret"
    assert wait_for(lambda: ranks_held(servers, secret, job.id) >= {0, 1}, timeout=60)

    # lose a training node that does not host the rendezvous store (torch's c10d store
    # lives in one agent: losing that one ends every replica's rendezvous)
    with platform.platform.db.session() as session:
        port = session.get(WorkloadRow, job.id).master_port  # type: ignore[union-attr]
    store_hosts = {_replica_of(pid) for pid in listeners(int(port))}
    victim = next(r for r in sorted(trainers) if r not in store_hosts)
    lost = replicas[victim].node
    slurm.stop_node(lost)
    kill_replica(victim)
    lose_node_storage(tmp_path / "ckpt" / lost)

    swapped = wait_for(
        lambda: [e for e in client.events(job.id) if e.type == "SpareSwapped"], timeout=120
    )
    assert swapped
    done = wait_for(
        lambda: client.job(job.id).phase in ("succeeded", "failed"), timeout=240, interval=0.5
    )
    assert done
    view = client.job(job.id)
    history = [(e.type, e.message) for e in client.events(job.id)]
    assert view.phase == "succeeded", (view.reason, history[-10:])
    assert view.restarts == 0, history  # never sent back to its queue
    assert not {t for t, _ in history} & {"Preempted", "Restarting"}, history
    assert view.runtime is not None and view.runtime.last_step == STEPS - 1, view.runtime
    # the spare found nothing on its node: it restored from a buddy's memory
    (spare,) = (r for r in replicas if r not in trainers)
    sources = restore_sources(runs / spare / "events.jsonl")
    assert sources == ["buddy"], sources
