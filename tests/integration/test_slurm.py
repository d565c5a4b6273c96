"""The Slurm backend against a real Slurm 22.05 (several logical nodes, fake typed GPUs).

The harness (baige.backends.slurm_cluster) starts munge, slurmctld and one slurmd per node
as root; without root or Slurm these tests skip with the reason, and under CI=true they fail.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from baige.api import load_specs
from baige.backends.slurm_cluster import SlurmCluster, SlurmNode, slurm_available
from baige.control.platform import Platform, PlatformOptions

from .conftest import RunningPlatform, wait_for


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory):
    reason = slurm_available()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Slurm tests cannot run: {reason}")
        pytest.skip(reason)
    cluster = SlurmCluster(
        tmp_path_factory.mktemp("slurm"), (SlurmNode("gpu1", gpus=4), SlurmNode("gpu2", gpus=4))
    ).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def platform(slurm: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    options = PlatformOptions(
        db_url=f"sqlite:///{tmp_path / 'baige.db'}",
        home=tmp_path / "home",
        accelerators=None,
        backend="slurm",
        interval=0.3,
    )
    running = RunningPlatform(Platform(options)).__enter__()
    yield running
    running.__exit__()
    slurm._run("scancel", "--full", "-u", "root", check=False)
    slurm.wait_idle()


def spec(text: str):
    return load_specs(text)[0]


GANG = """kind: TrainingJob
name: gang
queue: default
replicas: 2
accelerators: {count: 4, types: [h100]}
working_dir: WORKDIR
command: [sh, -c, 'echo node=$SLURMD_NODENAME baige=$BAIGE_NODE cuda=$CUDA_VISIBLE_DEVICES rank=$RANK; sleep SLEEP']
"""


def test_inventory_becomes_baige_nodes(platform) -> None:
    nodes = {n.name: n for n in platform.client().nodes()}
    assert set(nodes) == {"gpu1", "gpu2"}
    assert all(n.accelerator_type == "h100" and n.devices == 4 for n in nodes.values())


def test_a_gang_lands_on_the_nodes_baige_chose(platform, tmp_path: Path) -> None:
    client = platform.client()
    job = client.submit(spec(GANG.replace("WORKDIR", str(tmp_path)).replace("SLEEP", "1")))
    view = wait_for(lambda: (v := client.job(job.id)).phase == "succeeded" and v, timeout=60)
    chosen = {r.index: r.node for r in view.running_replicas}
    assert set(chosen.values()) == {"gpu1", "gpu2"}
    text = b"".join(client.logs(job.id)).decode()
    for index, node in chosen.items():
        line = next(ln for ln in text.splitlines() if f"rank={index}" in ln)
        assert f"node={node} baige={node}" in line  # Slurm ran it where Baige placed it
        cuda = line.split("cuda=")[1].split()[0]
        assert len(cuda.split(",")) == 4  # Slurm bound four cards and named them


def test_slurmctld_restart_loses_nothing(platform, slurm: SlurmCluster, tmp_path: Path) -> None:
    client = platform.client()
    body = GANG.replace("WORKDIR", str(tmp_path)).replace("SLEEP", "6")
    body = body.replace("echo node=", "echo $BAIGE_REPLICA_ID >> starts; echo node=")
    job = client.submit(spec(body))
    wait_for(lambda: client.job(job.id).phase == "running", timeout=60)
    slurm.stop_controller()
    try:
        time.sleep(3)  # passes go on; Slurm cannot be asked; nothing is declared lost
        assert client.job(job.id).phase == "running"
    finally:  # the other tests share this Slurm
        slurm.start_controller()
    wait_for(lambda: client.job(job.id).phase == "succeeded", timeout=90)
    starts = (tmp_path / "starts").read_text().split()
    assert len(starts) == 2 == len(set(starts))


def test_drain_and_cordon_stay_in_step(platform, slurm: SlurmCluster) -> None:
    client = platform.client()
    slurm._run("scontrol", "update", "nodename=gpu1", "state=drain", "reason=maintenance")
    wait_for(lambda: client.node("gpu1").cordoned, timeout=20)
    client.cordon("gpu2")
    wait_for(
        lambda: "DRAIN" in slurm._run("sinfo", "-h", "-n", "gpu2", "-o", "%T").stdout.upper(),
        timeout=20,
    )
    client.cordon("gpu2", False)
    slurm._run("scontrol", "update", "nodename=gpu1", "state=resume")
    wait_for(lambda: not client.node("gpu1").cordoned, timeout=20)
    wait_for(
        lambda: "DRAIN" not in slurm._run("sinfo", "-h", "-n", "gpu2", "-o", "%T").stdout.upper(),
        timeout=20,
    )


def test_a_service_shrinks_an_elastic_job_which_grows_back(platform, tmp_path: Path) -> None:
    client = platform.client()
    elastic = GANG.replace("replicas: 2", "replicas: 2\nmin_replicas: 1").replace(
        "WORKDIR", str(tmp_path)).replace("SLEEP", "600")  # fmt: skip
    job = client.submit(spec(elastic))
    wait_for(
        lambda: sum(r.state == "running" for r in client.job(job.id).running_replicas) == 2,
        timeout=60,
    )
    service = client.submit(spec(
        "kind: InferenceService\nname: chat\nqueue: default\nreplicas: 1\npriority: 1000\n"
        f"accelerators: {{count: 4, types: [h100]}}\nworking_dir: {tmp_path}\n"
        "command: [sh, -c, 'sleep 600']\n"
    ))  # fmt: skip
    wait_for(lambda: client.job(service.id).phase == "running", timeout=60)
    shrunk = wait_for(lambda: (v := client.job(job.id)) and v.phase == "running" and
                      sum(r.state == "running" for r in v.running_replicas) == 1 and v, timeout=60)  # fmt: skip
    assert any(e.type == "Shrunk" for e in client.events(job.id))
    assert shrunk.restarts == 0  # shrinking is not a restart
    client.cancel(service.id)
    wait_for(
        lambda: sum(r.state == "running" for r in client.job(job.id).running_replicas) == 2,
        timeout=60,
    )
    assert any(e.type == "Grown" for e in client.events(job.id))
    client.cancel(job.id)
    wait_for(lambda: client.job(job.id).phase == "cancelled", timeout=60)
