"""A mixed fake cluster in `baige up`: nodes of two types, and replicas on the slower type
told their declared speed (BAIGE_FAKE_SPEED), so a training script can pace itself."""

from __future__ import annotations

from baige.api.loader import load_specs
from baige.hw.discovery import fake_speed

from .conftest import wait_for

JOB = """\
kind: TrainingJob
name: speed
queue: default
replicas: 1
accelerators: {count: 1, types: [a100-80g]}
command: [python3, -c, "import os; print('speed', os.environ['BAIGE_FAKE_SPEED'])"]
"""


def test_nodes_of_two_types_and_their_declared_speeds(make_platform, sqlite_url: str) -> None:
    running = make_platform(sqlite_url, nodes=2, accel="h100:8,a100-80g:4")
    client = running.client()
    types = sorted((n.accelerator_type, n.devices) for n in client.nodes())
    assert types == [("a100-80g", 4), ("a100-80g", 4), ("h100", 8), ("h100", 8)]
    assert all("a100-80g" in n.name or "h100" in n.name for n in client.nodes())
    job = client.submit(load_specs(JOB)[0]).id  # type: ignore[arg-type]
    wait_for(lambda: client.job(job).phase == "succeeded", timeout=60)
    output = b"".join(client.logs(job)).decode()
    assert f"speed {fake_speed('a100-80g'):g}" in output
