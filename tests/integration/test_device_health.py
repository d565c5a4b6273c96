"""Device health in a running `baige up`: a condition raised on a fake card (`baige fault
inject`, the declared fake health source) takes the action its policy names within a beat,
a healed node comes back after the quiet window, and a flapping one stays out."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from baige.api.loader import load_specs
from baige.control.health_policy import HealthPolicy

from .conftest import wait_for

JOB = """\
kind: TrainingJob
name: on-any-node
queue: default
replicas: 1
accelerators: {count: 8, types: [h100]}
command: [sleep, "600"]
"""


def _fault(home: object, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "baige.cli.main", "fault", *args, "--home", str(home)],
                   check=True, capture_output=True, timeout=60)  # fmt: skip


def test_conditions_take_their_actions_and_nodes_heal(make_platform, sqlite_url: str) -> None:
    policy = HealthPolicy(heal_after=3, flap_window=3600, flap_limit=3)
    running = make_platform(sqlite_url, nodes=2, health_policy=policy)
    home = running.platform.options.home
    client = running.client()
    node_a, node_b = running.platform.node_names
    job = client.submit(load_specs(JOB)[0]).id  # type: ignore[arg-type]

    def node_of_job() -> str | None:
        nodes = [r.node for r in client.job(job).running_replicas if r.state == "running"]
        return nodes[0] if nodes else None

    where = str(wait_for(node_of_job, timeout=30))
    other = node_b if where == node_a else node_a

    # informational (XID 13, the application's fault): an event, nothing else
    _fault(home, "inject", where, "--xid", "13")
    wait_for(lambda: any(e.type == "HealthCondition" for e in client.node_events(where)))
    assert not client.node(where).cordoned

    # fatal (XID 79, fell off the bus): cordoned and drained, the job moves to the other node
    _fault(home, "inject", where, "--card", "3", "--xid", "79")
    wait_for(lambda: client.node(where).cordoned, timeout=10)
    wait_for(lambda: node_of_job() == other, timeout=30)
    cordon = [e for e in client.node_events(where) if e.type == "HealthCordoned"]
    assert cordon and "XID 79" in cordon[0].message and "card 3" in cordon[0].message
    admin = (home / "admin-token").read_text().strip()
    metrics = httpx.get(f"{running.url}/metrics", headers={"Authorization": f"Bearer {admin}"})
    assert 'baige_device_conditions{kind="xid",severity="fatal"} 1.0' in metrics.text
    assert 'baige_nodes_held_by_health{state="cordoned"} 1.0' in metrics.text

    # healed: checks pass for heal_after (3 s), and it is uncordoned
    _fault(home, "clear", where)
    wait_for(lambda: not client.node(where).cordoned, timeout=15)
    assert any(e.type == "Healed" for e in client.node_events(where))

    # degraded (thermal throttling) cordons without moving work
    _fault(home, "inject", other, "--condition", "thermal-throttle")
    wait_for(lambda: client.node(other).cordoned, timeout=10)
    assert node_of_job() == other  # still running there
    _fault(home, "clear", other)

    # an operator's cordon is never lifted by the policy
    client.cordon(where)
    _fault(home, "inject", where, "--condition", "thermal-throttle")
    wait_for(lambda: any(e.type == "HealthCordoned" for e in client.node_events(where)
                         if "thermal" in e.message))  # fmt: skip
    _fault(home, "clear", where)
    time.sleep(5)
    assert client.node(where).cordoned


def test_a_flapping_node_stays_out(make_platform, sqlite_url: str) -> None:
    policy = HealthPolicy(heal_after=1, flap_window=3600, flap_limit=2)
    running = make_platform(sqlite_url, nodes=1, health_policy=policy)
    home = running.platform.options.home
    client = running.client()
    (node,) = running.platform.node_names
    for round_ in range(2):
        _fault(home, "inject", node, "--xid", "48")
        wait_for(lambda: client.node(node).cordoned, timeout=10)
        _fault(home, "clear", node)
        if round_ == 0:
            wait_for(lambda: not client.node(node).cordoned, timeout=10)
    wait_for(lambda: any(e.type == "MarkedForRepair" for e in client.node_events(node)))
    time.sleep(4)
    assert client.node(node).cordoned  # healthy checks, but kept out for repair
    client.cordon(node, False)  # the operator brings it back
    assert not client.node(node).cordoned
