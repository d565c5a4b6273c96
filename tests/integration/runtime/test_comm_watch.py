"""A real 2-rank gloo run under ``baige run`` whose rank 1 has a slow network
(``BAIGE_FAULT=netslow:rank=1:factor=3``: its collectives take three times as long, its
compute does not change): the agent says network suspect, rank 1 — and not straggler."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.runtime.harness import run_baige

pytestmark = pytest.mark.slow

TRAINER = Path(__file__).parent / "comm_trainer.py"
WATCH = ["--nproc-per-node", "2", "--monitor-interval", "0.1", "--straggler-window", "1",
         "--straggler-report-after", "2", "--startup-timeout", "60", "--progress-every", "0"]  # fmt: skip


def test_a_rank_with_a_slow_network_is_a_network_suspect_not_a_straggler(
    tmp_path: Path,
) -> None:
    run = run_baige(
        tmp_path / "run",
        [*WATCH, "--", str(TRAINER), "--steps", "200"],  # ≥ 2 windows after the fault
        env={"BAIGE_FAULT": "netslow:rank=1:factor=3:step=10"},
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert not run.named("straggler"), run.named("straggler")
    suspects = run.named("network_suspect")
    assert suspects, [e["event"] for e in run.events]
    assert {e["rank"] for e in suspects} == {1}
    first = suspects[0]
    assert first["injected"] == "netslow:rank=1:step=10:factor=3"
    assert first["ratio"] > 1.8 and first["busy_ratio"] < 1.5
    assert "suspect its network link, not its chip" in first["message"]
    [fired] = run.named("fault_injected")
    assert fired["kind"] == "netslow" and fired["rank"] == 1
