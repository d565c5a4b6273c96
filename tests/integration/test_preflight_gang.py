"""The pre-flight in a running `baige up` (real probes, real torch workers, a real gloo
all-reduce): a fake node slowed with `baige fault slow` passes its own health checks, but
the pre-flight before a 3-node gang names it; it is cordoned with the evidence and the gang
starts on three other nodes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from baige.api.loader import load_specs
from baige.control.preflight_gate import PreflightSettings

from .conftest import wait_for

GANG = (Path(__file__).parents[2] / "examples" / "gang-preflight.yaml").read_text()


def test_a_slow_node_is_left_out_before_the_gang_starts(make_platform, sqlite_url: str) -> None:
    # small figures: four probes' workers share this machine's two cores
    settings = PreflightSettings(min_nodes=3, mb=4.0, compute_s=0.3)
    running = make_platform(sqlite_url, nodes=4, preflight=settings)
    home = running.platform.options.home
    client = running.client()
    # the placer fills nodes in name order on an empty cluster, so the first node is in the
    # first placement; the test checks that below rather than trusting it
    slow = running.platform.node_names[0]
    subprocess.run([sys.executable, "-m", "baige.cli.main", "fault", "slow", slow,
                    "--factor", "4", "--home", str(home)],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    job = client.submit(load_specs(GANG)[0]).id  # type: ignore[arg-type]

    def running_nodes() -> set[str]:
        replicas = client.job(job).running_replicas
        nodes = {r.node for r in replicas if r.state == "running"}
        return nodes if len(nodes) == 3 else set()

    nodes = wait_for(running_nodes, timeout=180)
    assert slow not in nodes  # type: ignore[operator]
    types = [e.type for e in client.events(job)]
    assert types.count("PreflightStarted") == 2, types
    started = next(e for e in client.events(job) if e.type == "PreflightStarted")
    assert slow in started.message  # it was in the first placement, and was left out
    failed = next(e for e in client.events(job) if e.type == "PreflightFailed")
    assert f"leave out {slow}" in failed.message and "GFLOP/s" in failed.message
    passed = next(e for e in client.events(job) if e.type == "PreflightPassed")
    assert "bus bandwidth" in passed.message
    node = client.node(slow)
    assert node.cordoned and not client.job(job).restarts
    cordon = [e for e in client.node_events(slow) if e.type == "HealthCordoned"]
    assert cordon and "pre-flight of big-gang" in cordon[0].message
