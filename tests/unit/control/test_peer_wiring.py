"""Peer-memory checkpoints wired by the controller: every replica of a multi-replica training
job gets a port, a buddy in another failure domain (with fallbacks on other nodes), every
server of the job to restore from, and the job's secret; the backend renders the addresses.
The pairing is checked on topologies of several shapes, the launches on a real controller
pass (SQLite, the fake backend)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from baige.api.loader import load_specs
from baige.api.nodes import AcceleratorGroup, NodeSpec
from baige.api.queues import QueueSpec
from baige.backends.fake import FakeBackend
from baige.backends.peers import PeerWiring, peer_env
from baige.ckpt.peer_client import PeerConfig
from baige.control.auth import Principal
from baige.control.controller import Controller
from baige.control.peer_wiring import FALLBACK_BUDDIES, PeerMember, job_secret, wire
from baige.control.service import ControlService
from baige.store.db import Database

ADMIN = Principal("test", None, admin=True)


def _racks(blocks: int, racks: int, nodes: int) -> list[PeerMember]:
    """A replica per node, every node on port 7070."""
    return [
        PeerMember(f"r{b}-{r}-{n}", f"n{b}-{r}-{n}", 7070, ("zone", f"b{b}", f"rack{r}"))
        for b in range(blocks) for r in range(racks) for n in range(nodes)
    ]  # fmt: skip


def test_a_buddy_is_on_another_rack_of_the_block_and_every_rack_receives_its_share() -> None:
    members = _racks(blocks=2, racks=4, nodes=4)
    wired = wire(members, "s" * 64)
    where = {m.replica: m for m in members}
    received: Counter[str] = Counter()
    for replica, wiring in wired.items():
        me = where[replica]
        buddy = next(m for m in members if (m.node, m.port) == wiring.buddies[0])
        assert buddy.topology[:2] == me.topology[:2], "same block"
        assert buddy.topology[2] != me.topology[2], "another rack"
        received[buddy.node] += 1
        assert len(wiring.buddies) == 1 + FALLBACK_BUDDIES
        assert len({n for n, _ in wiring.buddies} | {me.node}) == 2 + FALLBACK_BUDDIES
    assert set(received.values()) == {1}  # equal racks: one node's snapshots each


def test_a_lone_rack_goes_to_another_block_then_to_another_node_of_its_rack() -> None:
    members = [
        *(PeerMember(f"a{n}", f"a{n}", 1, ("z", "b0", "rack0")) for n in range(3)),
        PeerMember("c0", "c0", 1, ("z", "b1", "rack9")),  # alone in its block
    ]
    wired = wire(members, "x" * 64)
    assert wired["c0"].buddies[0][0].startswith("a")  # another block
    # a0's choices: the other block first, then the other nodes of its own rack
    assert [n for n, _ in wired["a0"].buddies] == ["c0", "a1", "a2"]


def test_replicas_sharing_a_node_push_to_other_nodes_first_then_to_each_other() -> None:
    members = [PeerMember(f"r{k}", "n0", 100 + k) for k in range(3)]
    members.append(PeerMember("r9", "n1", 200))
    wired = wire(members, "x" * 64)
    for k in range(3):
        assert wired[f"r{k}"].buddies[0] == ("n1", 200)
        assert all(n == "n0" for n, _ in wired[f"r{k}"].buddies[1:])  # its node's others
    alone = wire([PeerMember("only", "n0", 1)], "x" * 64)["only"]
    assert alone.buddies == () and alone.fetch_from == (("n0", 1),)


@pytest.mark.parametrize("seed", range(20))
def test_random_topologies_never_pair_a_replica_with_itself_and_prefer_other_nodes(
    seed: int,
) -> None:
    rng = random.Random(seed)
    members = [
        PeerMember(
            f"r{i}", f"n{rng.randrange(12)}", 1000 + i,
            tuple(f"d{rng.randrange(2)}" for _ in range(rng.randrange(4))),
        )
        for i in range(rng.randrange(1, 40))
    ]  # fmt: skip
    # a node has one topology path: the first replica's on it
    path = {}
    for i, m in enumerate(members):
        members[i] = PeerMember(m.replica, m.node, m.port, path.setdefault(m.node, m.topology))
    wired = wire(members, "x" * 64)
    nodes = {m.node for m in members}
    for m in members:
        w = wired[m.replica]
        assert (m.node, m.port) not in w.buddies
        assert len(set(w.buddies)) == len(w.buddies)
        if len(nodes) > 1:
            assert w.buddies[0][0] != m.node, (m, w.buddies)
        assert set(w.fetch_from) == {(x.node, x.port) for x in members}


def test_the_secret_is_per_job_and_generation_and_long_enough() -> None:
    a = job_secret("token", "job-1", 1)
    assert a == job_secret("token", "job-1", 1) and len(a) == 64
    assert len({a, job_secret("token", "job-1", 2), job_secret("token", "job-2", 1),
                job_secret("other", "job-1", 1)}) == 4  # fmt: skip


def test_the_backend_renders_addresses_and_workers_read_buddy_and_fallbacks(
    tmp_path: Path,
) -> None:
    wiring = PeerWiring("a", 1, (("b", 2), ("c", 3)), (("a", 1), ("b", 2), ("c", 3)), "k" * 64)
    env = peer_env(wiring, {"a": "10.0.0.1", "b": "fd00::2", "c": "10.0.0.3"}.__getitem__)
    assert env["BAIGE_PEER_BIND"] == "10.0.0.1:1"
    assert env["BAIGE_PEER_BUDDY"] == "[fd00::2]:2,10.0.0.3:3"
    assert env["BAIGE_PEER_FETCH_FROM"] == "10.0.0.1:1,[fd00::2]:2,10.0.0.3:3"
    assert peer_env(wiring)["BAIGE_PEER_BIND"] == "127.0.0.1:1"  # the local backend
    config = PeerConfig.from_env(
        {**env, "BAIGE_PEER_SECRET_FILE": str(tmp_path / "s"), "BAIGE_WORKLOAD_ID": "j"}
    )
    assert config is not None
    assert config.buddy == "[fd00::2]:2" and config.fallbacks == ("10.0.0.3:3",)
    assert len(config.sources) == 3


# ------------------------------------------------------------------ on a controller pass


def _platform(tmp_path: Path) -> tuple[Controller, ControlService, FakeBackend]:
    db = Database(f"sqlite:///{tmp_path / 'b.db'}")
    backend = FakeBackend()
    controller = Controller(db, backend)
    service = ControlService(db, wake=controller.wake)
    service.apply_queue(ADMIN, QueueSpec(name="default"))
    nodes = [
        NodeSpec(
            name=f"n{i}",
            accelerators=AcceleratorGroup(type="h100", count=1),
            topology=("z", "b0", f"rack{i % 2}"),
        )
        for i in range(4)
    ]
    service.register_nodes(ADMIN, nodes)
    return controller, service, backend


def _submit(service: ControlService, text: str) -> str:
    (spec,) = load_specs(text)
    return service.submit(ADMIN, spec)[0].id  # type: ignore[arg-type]


JOB = """\
kind: TrainingJob
name: wired
queue: default
replicas: 2
spares: 1
accelerators: {count: 1, types: [h100]}
command: [sleep, '100']
"""


def test_every_replica_of_a_job_is_launched_with_its_peer_wiring(tmp_path: Path) -> None:
    controller, service, backend = _platform(tmp_path)
    job = _submit(service, JOB)
    controller.run_pass()
    launched = [r for r in backend.launched.values() if r.workload_id == job]
    assert len(launched) == 3
    binds = {r.env["BAIGE_PEER_BIND"] for r in launched}
    assert len(binds) == 3  # a port each
    rack = {f"n{i}": i % 2 for i in range(4)}  # three replicas on four nodes: both racks
    for r in launched:
        assert r.peer is not None and r.peer.node == r.node
        assert rack[r.peer.buddies[0][0]] != rack[r.node]  # the buddy is on the other rack
        assert set(r.env["BAIGE_PEER_FETCH_FROM"].split(",")) == binds
        assert len(r.env["BAIGE_PEER_SECRET"]) == 64
    assert len({r.env["BAIGE_PEER_SECRET"] for r in launched}) == 1  # one secret per job
    # the port is the replica's, shown in its view
    view = service.get(ADMIN, job)
    ports = {f"127.0.0.1:{r.port}" for r in view.running_replicas}
    assert ports == binds


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (JOB.replace("spares: 1\n", "").replace("replicas: 2", "replicas: 1"), "one replica"),
        (JOB + "checkpoint: {peer_memory: false}\n", "turned off"),
        (JOB.replace("kind: TrainingJob", "kind: InferenceService").replace("spares: 1\n", ""),
         "a service"),
    ],
)  # fmt: skip
def test_no_wiring_where_peer_memory_cannot_help_or_is_off(
    tmp_path: Path, text: str, why: str
) -> None:
    controller, service, backend = _platform(tmp_path)
    job = _submit(service, text)
    controller.run_pass()
    launched = [r for r in backend.launched.values() if r.workload_id == job]
    assert launched, why
    assert all(r.peer is None and "BAIGE_PEER_BIND" not in r.env for r in launched), why


def test_a_spec_may_not_set_the_peer_variables_itself(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="BAIGE_PEER_SECRET"):
        load_specs(JOB + "env: {BAIGE_PEER_SECRET: mine}\n")
