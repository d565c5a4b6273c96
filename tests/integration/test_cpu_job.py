"""A CPU-only job in `baige up`: no accelerators section, only host CPU and memory. It runs
as a real process on a local node that offers this machine's CPU, sees no card, and a job
asking for more CPU than any node has is told it can never be placed."""

from __future__ import annotations

import os

from baige.api.loader import load_specs

from .conftest import wait_for

PREP = """\
kind: TrainingJob
name: prep
queue: default
resources: {cpu: 1, memory: 256Mi}
command: [python3, -c, "import os; print('visible', repr(os.environ.get('CUDA_VISIBLE_DEVICES')))"]
"""

HUGE = """\
kind: TrainingJob
name: huge
queue: default
resources: {cpu: 5000}
command: [python3, -c, "print('never')"]
"""


def test_cpu_only_job_runs_on_a_local_node_without_cards(make_platform, sqlite_url: str) -> None:
    running = make_platform(sqlite_url, nodes=2)
    client = running.client()
    assert {n.cpu for n in client.nodes()} == {(os.cpu_count() or 1) * 1000}
    job = client.submit(load_specs(PREP)[0]).id  # type: ignore[arg-type]
    wait_for(lambda: client.job(job).phase == "succeeded", timeout=60)
    output = b"".join(client.logs(job)).decode()
    assert "visible ''" in output  # the replica was handed no card

    huge = client.submit(load_specs(HUGE)[0]).id  # type: ignore[arg-type]
    reason = wait_for(lambda: (v := client.job(huge)).reason_code == "NeverFits" and v.reason)
    assert "5000 CPU" in str(reason)
    assert client.job(huge).phase == "pending"
