"""``baige diagnose --preflight`` for real: two probes on this machine, each running its part
in a child process (torch, a gloo all-reduce through a TCPStore the coordinator hosts, a
compute check); one probe rehearses a slow node (``--slow-compute 3``: its check really does
three times the work) and is the one named."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from typer.testing import CliRunner

from baige.cli.main import app
from baige.diag.probe import running

pytestmark = pytest.mark.slow


@pytest.fixture
def probes() -> Iterator[list[str]]:
    with ExitStack() as stack:
        fast = stack.enter_context(running(("127.0.0.1", 0), "fast"))
        slow = stack.enter_context(running(("127.0.0.1", 0), "slow", slow_compute=3.0))
        yield [fast.address, slow.address]


def test_the_preflight_names_the_slow_node_and_measures_the_all_reduce(
    probes: list[str],
) -> None:
    result = CliRunner().invoke(
        app, ["diagnose", "--preflight", "--json", "--mb", "8", "--compute-seconds", "0.3", *probes]
    )
    assert result.exit_code == 3, result.output
    document = json.loads(result.output)
    assert [(s["name"], s["metric"]) for s in document["suspects"]] == [("slow", "compute")]
    assert document["suspects"][0]["ratio"] > 2
    for node in document["nodes"]:
        assert node["error"] is None and node["allreduce_s"] > 0
    assert document["bus_bandwidth"] > 0 and document["allreduce_mb"] == 8
