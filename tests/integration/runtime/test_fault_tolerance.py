"""A real 2-rank gloo training run under ``baige run`` with a crash, a hang and a slow rank
injected: each is detected, the group comes back from its flash checkpoint in shared memory,
and the run ends with exactly the loss of a run without faults."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.runtime.harness import EXAMPLE, Run, processes_of, run_baige

pytestmark = pytest.mark.slow

STEPS = 90
TRAIN = [str(EXAMPLE), "--steps", str(STEPS), "--save-every", "4", "--log-every", "30",
         "--linger", "60"]  # fmt: skip
WATCH = ["--nproc-per-node", "2", "--monitor-interval", "0.1", "--hang-timeout", "2",
         "--startup-timeout", "60", "--straggler-window", "1", "--straggler-report-after", "2",
         "--progress-every", "0"]  # fmt: skip
FAULTS = "kill:rank=1:step=12,hang:rank=0:step=30,slow:rank=1:step=40:factor=5"


@dataclass
class Finished:
    run: Run
    loss_hex: str
    leftovers: list[int]


def _train(run_dir: Path, fault: str | None) -> Finished:
    out = run_dir.parent / f"{run_dir.name}-loss.json"
    env = {"BAIGE_FAULT": fault} if fault else {}
    run = run_baige(run_dir, [*WATCH, "--", *TRAIN, "--out", str(out)], env=env, timeout=240)
    deadline = time.monotonic() + 10
    left = processes_of(run_dir)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = processes_of(run_dir)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    loss = ""
    if out.exists():
        import json  # noqa: PLC0415

        loss = json.loads(out.read_text())["loss_hex"]
    return Finished(run, loss, left)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Finished:
    return _train(tmp_path_factory.mktemp("reference") / "run", None)


@pytest.fixture(scope="module")
def faulted(tmp_path_factory: pytest.TempPathFactory) -> Finished:
    return _train(tmp_path_factory.mktemp("faulted") / "run", FAULTS)


def one(events: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [e for e in events if all(e.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, [e["event"] for e in events])
    return found[0]


def test_the_faulted_run_finishes_with_the_loss_of_a_clean_run(
    reference: Finished, faulted: Finished
) -> None:
    assert reference.run.returncode == 0, reference.run.stderr[-3000:]
    assert faulted.run.returncode == 0, faulted.run.stderr[-5000:]
    assert f"finished at step {STEPS - 1} after 2 restarts" in faulted.run.stderr
    assert reference.loss_hex and faulted.loss_hex == reference.loss_hex
    assert [e["kind"] for e in faulted.run.named("fault_detected")] == ["crash", "hang"]
    assert not reference.run.named("fault_detected") and not reference.run.named("restart")
    finished = one(faulted.run.events, event="run_finished")
    assert (finished["state"], finished["restarts"], finished["last_step"]) == (
        "succeeded",
        2,
        STEPS - 1,
    )


def test_a_killed_rank_is_detected_within_5_s_and_training_resumes_from_memory(
    faulted: Finished,
) -> None:
    events = faulted.run.events
    crash = one(events, event="fault_detected", kind="crash")
    assert crash["ranks"] == [1] and crash["signals"] == {"1": "SIGKILL"}
    assert crash["injected"] == "kill:rank=1:step=12"
    assert 0 <= crash["detect_s"] < 5
    assert "rank 1 (pid" in crash["message"] and "was killed by SIGKILL" in crash["message"]
    restart = one(events, event="restart", attempt=1)
    assert restart["reason"] == "crash" and restart["ts"] >= crash["ts"]
    restored = one(events, event="restored", attempt=1)
    # saves after steps 3, 7, 11; rank 0 got to step 12, rank 1 died reporting it
    assert (restored["step"], restored["first_step"], restored["source"]) == (11, 12, "memory")
    assert restored["lost_steps"] == 1
    assert restored["recovery_s"] < 30
    assert "was killed by SIGKILL after step 11" in faulted.run.stderr


def test_a_hung_rank_is_detected_its_stacks_dumped_and_the_group_restarted(
    faulted: Finished,
) -> None:
    events = faulted.run.events
    hang = one(events, event="fault_detected", kind="hang")
    # rank 0 stopped reporting step 30; rank 1 reported it, then waited for rank 0
    assert hang["ranks"] == [0] and 0 in hang["stalled"] and hang["step"] == 29
    assert hang["injected"] == "hang:rank=0:step=30"
    assert 2 <= hang["detect_s"] < 2 + 5
    stacks = one(events, event="stacks")["stacks"]
    assert "in hang_forever" in stacks["0"]  # the rank that stopped, where it stopped
    assert "torch/nn/parallel/distributed.py" in stacks["1"]  # its peer, in a collective
    assert "in hang_forever" in faulted.run.stderr
    assert one(events, event="restart", attempt=2)["reason"] == "hang"
    restored = one(events, event="restored", attempt=2)
    # saves after steps 27 and 31; rank 1 finished step 30, rank 0 hung reporting it
    assert (restored["step"], restored["source"], restored["lost_steps"]) == (27, "memory", 3)
    assert restored["recovery_s"] < 30


def test_a_slow_rank_is_flagged_and_its_node_reported(faulted: Finished) -> None:
    events = faulted.run.events
    flagged = [e for e in events if e["event"] == "straggler"]
    assert flagged and {e["rank"] for e in flagged} == {1}
    first = flagged[0]
    assert first["count"] == 1 and first["injected"] == "slow:rank=1:step=40:factor=5"
    assert first["ratio"] > 2 and first["detect_s"] < 10
    report = one(events, event="node_reported")
    assert report["rank"] == 1 and report["reason"] == "straggler"
    assert "cordon" in report["message"]


def test_every_injected_fault_is_in_the_log_once(faulted: Finished) -> None:
    injected = faulted.run.named("fault_injected")
    assert [(e["kind"], e["rank"], e["step"]) for e in injected] == [
        ("kill", 1, 12),
        ("hang", 0, 30),
        ("slow", 1, 40),
    ]
    order = [e["event"] for e in faulted.run.events]
    assert order[0] == "run_started" and order[-1] == "run_finished"
    assert order.count("workers_started") == 3


def test_nothing_is_left_running(reference: Finished, faulted: Finished) -> None:
    assert reference.leftovers == [] and faulted.leftovers == []
