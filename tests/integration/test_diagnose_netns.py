"""``baige diagnose`` on a real network: four network namespaces on a bridge, every port
shaped to 200 Mbit/s with HTB, then one link or one node's port slowed 5× with ``tc`` — the
diagnosis, run as a user runs it (the CLI, from a namespace of its own), must name exactly
that link or node. The namespaces go away even when a test fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from baige.diag.netlab import NetLab, lab_available, namespaces_left

pytestmark = pytest.mark.slow


def _why_not() -> str | None:
    why = lab_available()
    if why is not None and os.geteuid() != 0 and os.environ.get("CI") != "true":
        return why
    return None


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[NetLab, list[str]]]:
    why = _why_not()
    if why is not None:
        pytest.skip(f"the network lab {why}; CI runs it as root")
    with NetLab(4, rate_mbit=200) as built:
        addresses = built.start_probes()
        yield built, addresses
    assert namespaces_left(built.tag) == []


def _diagnose(lab: NetLab, addresses: list[str]) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [*lab.exec_prefix(lab.ctl), sys.executable, "-m", "baige.cli.main", "diagnose",
         "--json", "--seconds", "0.15", "--pings", "5", "--no-ring", *addresses],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode in (0, 3), done.stderr[-3000:] + done.stdout[-3000:]
    return done.returncode, json.loads(done.stdout)


def _named(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["kind"], s["name"]) for s in document["suspects"]]


def test_a_link_slowed_5x_is_the_one_named(lab: tuple[NetLab, list[str]]) -> None:
    net, addresses = lab
    net.slow_link(1, 2, 5)
    try:
        code, document = _diagnose(net, addresses)
    finally:
        net.heal()
    assert code == 3
    assert _named(document) == [("link", "node1<->node2")], document["suspects"]
    [suspect] = document["suspects"]
    assert suspect["metric"] == "bandwidth" and 3 < suspect["ratio"] < 8


def test_a_node_whose_port_is_slowed_5x_is_named_not_its_links(
    lab: tuple[NetLab, list[str]],
) -> None:
    net, addresses = lab
    net.slow_node(3, 5)
    try:
        code, document = _diagnose(net, addresses)
    finally:
        net.heal()
    assert code == 3
    assert _named(document) == [("node", "node3")], document["suspects"]


def test_a_healthy_network_names_nothing(lab: tuple[NetLab, list[str]]) -> None:
    net, addresses = lab
    code, document = _diagnose(net, addresses)
    assert (code, document["suspects"]) == (0, [])
    rates = [v for p in document["pairs"] for v in (p["bandwidth_ab"], p["bandwidth_ba"])]
    assert all(150e6 / 8 < v < 230e6 / 8 for v in rates), rates  # the 200 Mbit/s shaping


def test_the_lab_leaves_nothing_behind_even_when_building_fails() -> None:
    if _why_not() is not None:
        pytest.skip("needs root")
    net = NetLab(2, tag=f"bgx{os.getpid() % 100000}")
    with pytest.raises(ValueError, match=r"a lab has 2\.\.200 nodes"):
        NetLab(1)
    with net:
        assert len(namespaces_left(net.tag)) == 4  # switch, two nodes, the coordinator
        net.slow_link(0, 1, 2)  # shaping works on a fresh lab
    assert namespaces_left(net.tag) == []
