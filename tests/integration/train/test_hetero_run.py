"""A mixed-chip job under ``baige run``: the example trains across two chip types with an
uneven split, agrees step by step with a one-type run of the same global batch, and a killed
rank of the slower type restarts the group, which resumes from memory and ends with the
fault-free run's final loss, bit for bit."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from baige.train.plan import HeteroPlan, RankShare
from tests.integration.runtime.harness import ROOT, Run, run_baige

EXAMPLE = ROOT / "examples" / "runtime" / "train_hetero.py"
STEPS = 30
LOSS = re.compile(r"rank=0 step=(\d+) loss=(\S+) ")


def write_plan(path: Path, shares: list[tuple[str, int]]) -> Path:
    """Micro-batches of 4 samples: (type, micro-batch count) per rank."""
    ranks = [RankShare(rank=i, type=t, micro_batches=n, micro_batch_size=4)
             for i, (t, n) in enumerate(shares)]  # fmt: skip
    plan = HeteroPlan(global_batch=sum(r.samples for r in ranks), ranks=tuple(ranks))
    path.write_text(plan.model_dump_json())
    return path


def train(tmp: Path, name: str, plan: Path, fault: str = "") -> tuple[Run, dict[int, float]]:
    env = {"BAIGE_HETERO_PLAN": str(plan)}
    if fault:
        env["BAIGE_FAULT"] = fault
    nproc = len(json.loads(plan.read_text())["ranks"])
    out = tmp / f"{name}-final-loss.json"
    run = run_baige(
        tmp / name,
        ["--nproc-per-node", str(nproc), "--max-restarts", "2", "--",
         sys.executable, str(EXAMPLE), "--steps", str(STEPS), "--save-every", "4",
         "--linger", "60", "--out", str(out)],
        env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    losses = {int(m[1]): float(m[2]) for m in LOSS.finditer(run.stdout)}
    losses[STEPS - 1] = json.loads(out.read_text())["loss"]
    return run, losses


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run, dict[int, float]]:
    tmp = tmp_path_factory.mktemp("hetero-run")
    plan = write_plan(tmp / "mixed.json", [("h100", 3), ("h100", 3), ("ascend-910b", 1)])
    run, losses = train(tmp, "mixed", plan)
    return plan, run, losses


def test_the_mixed_run_trains_as_one_machine_with_the_whole_batch_would(
    mixed: tuple[Path, Run, dict[int, float]], tmp_path: Path
) -> None:
    _, run, losses = mixed
    assert "type=ascend-910b local_batch=4 of 28" in run.stdout
    one = write_plan(tmp_path / "one.json", [("h100", 7)])  # the same 28 samples, one rank
    _, reference = train(tmp_path, "one", one)
    assert sorted(losses) == sorted(reference) == list(range(STEPS))
    for step in range(STEPS):
        assert losses[step] == pytest.approx(reference[step], rel=1e-5, abs=1e-7), step
    assert losses[STEPS - 1] < losses[0] / 4  # and it learns


def test_a_killed_rank_of_the_slower_type_resumes_from_memory_with_the_same_final_loss(
    mixed: tuple[Path, Run, dict[int, float]], tmp_path: Path
) -> None:
    plan, _, clean = mixed
    faulted, losses = train(tmp_path, "killed", plan, fault="kill:rank=2:step=14")
    (crash,) = [e for e in faulted.named("fault_detected") if e["kind"] == "crash"]
    assert crash["ranks"] == [2]
    (restored,) = faulted.named("restored")
    assert (restored["step"], restored["source"]) == (11, "memory")
    assert losses[STEPS - 1].hex() == clean[STEPS - 1].hex()
