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
from baige.backends.slurm_cluster import SlurmCluster, SlurmNode

from .conftest import wait_for
from .slurm_fixtures import slurm_cluster, slurm_platform


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory):
    yield from slurm_cluster(
        tmp_path_factory.mktemp("slurm"), (SlurmNode("gpu1", gpus=4), SlurmNode("gpu2", gpus=4))
    )


@pytest.fixture
def platform(slurm: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    yield from slurm_platform(slurm, tmp_path, monkeypatch)


def spec(text: str):
    return load_specs(text)[0]


GANG = """kind: TrainingJob
name: gang
queue: default
replicas: 2
accelerators: {count: 4, types: [h100]}
working_dir: WORKDIR
command: [sh, -c, 'echo node=$SLURMD_NODENAME baige=$BAIGE_NODE cuda=$CUDA_VISIBLE_DEVICES rank=$RANK master=$MASTER_ADDR; sleep SLEEP']
"""


def test_inventory_becomes_baige_nodes(platform) -> None:
    nodes = {n.name: n for n in platform.client().nodes()}
    assert set(nodes) == {"gpu1", "gpu2"}
    assert all(n.accelerator_type == "h100" and n.devices == 4 for n in nodes.values())


def test_a_cpu_only_job_gets_its_cpus_from_slurm(platform, tmp_path: Path) -> None:
    client = platform.client()
    assert {n.cpu for n in client.nodes()} == {32_000}  # each logical node's CPUs=32
    job = client.submit(
        spec(
            "kind: TrainingJob\nname: prep\nqueue: default\n"
            "resources: {cpu: 3, memory: 512Mi}\n"
            "command: [sh, -c, 'echo cpus=$SLURM_CPUS_PER_TASK mem=$SLURM_MEM_PER_NODE "
            "gpus=${CUDA_VISIBLE_DEVICES-unset}']\n"
        )
    )
    wait_for(lambda: client.job(job.id).phase == "succeeded", timeout=60)
    text = b"".join(client.logs(job.id)).decode()
    assert "cpus=3 mem=512" in text  # Slurm allocated what Baige placed
    assert "gpus=unset" in text or "gpus= " in text or text.rstrip().endswith("gpus=")


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
        assert "master=127.0.0.1" in line  # replica 0's node, at the NodeAddr Slurm knows


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


def test_draining_a_node_in_slurm_moves_its_work(platform, slurm: SlurmCluster, tmp_path) -> None:
    client = platform.client()
    one = GANG.replace("replicas: 2", "replicas: 1").replace("WORKDIR", str(tmp_path))
    job = client.submit(spec(one.replace("SLEEP", "600")))
    view = wait_for(lambda: (v := client.job(job.id)).phase == "running" and v, timeout=60)
    first = view.running_replicas[0].node
    other = ({"gpu1", "gpu2"} - {first}).pop()
    slurm._run("scontrol", "update", f"nodename={first}", "state=drain", "reason=disk-swap")
    try:
        moved = wait_for(
            lambda: (
                (v := client.job(job.id)).running_replicas
                and v.running_replicas[0].node == other
                and v.running_replicas[0].state == "running"
                and v
            ),
            timeout=60,
        )
        assert moved.restarts == 0
        evicted = [e.message for e in client.events(job.id) if e.type == "Evicted"]
        assert evicted and f"node {first} is draining" in evicted[0]
        node = client.node(first)
        assert node.cordoned and "disk-swap" in node.reason
        # Slurm ran the new replica where Baige placed it
        wait_for(lambda: f"node={other}" in b"".join(client.logs(job.id)).decode(), timeout=30)
    finally:
        client.cancel(job.id)
        slurm._run("scontrol", "update", f"nodename={first}", "state=resume")
        wait_for(lambda: not client.node(first).cordoned, timeout=30)


def test_baige_run_across_two_slurm_nodes_survives_a_killed_rank(platform, tmp_path) -> None:
    """torchrun's elastic agent under `baige run`, one per Slurm node, gloo between them: rank
    1 is killed mid-way; both groups restart, restore from shared memory and finish."""
    import json as _json  # noqa: PLC0415
    import sys  # noqa: PLC0415

    root = Path(__file__).parents[2]
    run = (
        f"exec {sys.executable} -m baige.runtime --nproc-per-node 1 --monitor-interval 0.2 "
        "--hang-timeout 20 --progress-every 1 "
        f"-- {root / 'examples/runtime/train_transformer.py'} --steps 60 --save-every 4 "
        "--log-every 10 --linger 30"
    )
    body = f"""kind: TrainingJob
name: elastic-gloo
queue: default
replicas: 2
accelerators: {{count: 4, types: [h100]}}
working_dir: {tmp_path}
env: {{BAIGE_FAULT: "kill:rank=1:step=20", BAIGE_HOME: "{tmp_path / "home"}"}}
command: [sh, -c, {_json.dumps(run)}]
"""
    client = platform.client()
    job = client.submit(spec(body))
    done = wait_for(
        lambda: (v := client.job(job.id)).phase in ("succeeded", "failed") and v,
        timeout=240,
        interval=0.5,
    )
    text = b"".join(client.logs(job.id)).decode()
    assert done.phase == "succeeded", (done.reason, text[-3000:])
    assert {r.node for r in done.running_replicas} == {"gpu1", "gpu2"}
    assert done.restarts == 0  # baige run recovered inside the replicas
    runtime = done.runtime
    assert runtime is not None, text[-2000:]
    assert runtime.faults == {"crash": 1}  # both agents saw it; it is one fault
    # one restart round; a node whose group restarted before the other reached the
    # rendezvous restarts once more to let it join (torch elastic's membership change)
    assert runtime.restarts in (1, 2)
    assert runtime.last_step == 59 and runtime.restored_from == "memory"
    assert runtime.max_detection_s is not None and runtime.max_detection_s < 5
    assert "restored step=" in text and "rank=1 step=59" in text


def test_a_node_that_goes_down_mid_job_has_its_work_rescheduled(
    platform, slurm: SlurmCluster, tmp_path
) -> None:
    client = platform.client()
    one = GANG.replace("replicas: 2", "replicas: 1").replace("WORKDIR", str(tmp_path))
    job = client.submit(spec(one.replace("SLEEP", "600")))
    view = wait_for(lambda: (v := client.job(job.id)).phase == "running" and v, timeout=60)
    first = view.running_replicas[0].node
    other = ({"gpu1", "gpu2"} - {first}).pop()
    slurm.stop_node(first)
    try:
        wait_for(lambda: client.node(first).health == "failed", timeout=90, interval=1)
        moved = wait_for(
            lambda: (
                (v := client.job(job.id)).running_replicas
                and v.running_replicas[0].node == other
                and v.running_replicas[0].state == "running"
                and v
            ),
            timeout=60,
        )
        assert moved.phase == "running"
        wait_for(lambda: f"node={other}" in b"".join(client.logs(job.id)).decode(), timeout=30)
    finally:
        _bring_back(client, slurm, job.id, first)


def _bring_back(client, slurm: SlurmCluster, job_id: str, node: str) -> None:
    """End the job and restart the node's slurmd, so the other tests find both nodes."""
    client.cancel(job_id)
    _kill_processes_of(job_id)  # the lost node's orphans (its slurmd was gone)
    slurm.start_node(node)
    wait_for(lambda: client.node(node).health == "ready", timeout=90, interval=1)
    slurm.wait_idle(timeout=120)  # Slurm finishes the orphans' jobs once slurmd is back


def _kill_processes_of(workload_id: str) -> None:
    import contextlib  # noqa: PLC0415
    import signal  # noqa: PLC0415

    needle = f"BAIGE_WORKLOAD_ID={workload_id}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                environ = (entry / "environ").read_bytes().split(b"\0")
                if needle in environ:
                    os.kill(int(entry.name), signal.SIGKILL)
