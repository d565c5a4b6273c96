"""Mixed-chip data parallelism trains exactly like a homogeneous run.

Real processes (one per rank, torchrun-style environment, gloo on 127.0.0.1) train a tiny
MLP on an uneven split between two fake chip types. Their loss at every step and their final
parameters must match one process training on the whole global batch, and a run that
averages the ranks' gradients instead of weighting them by samples must not.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="baige.train needs torch: pip install 'baige[train]'")

from torch.utils.data import DataLoader  # noqa: E402

from baige.train.plan import PLAN_ENV, HeteroPlan, parse_plan  # noqa: E402
from baige.train.sampler import HeteroSampler  # noqa: E402
from tests.integration.train import workers  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
STEPS = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_ranks(plan: dict, tmp: Path, timeout: float = 90) -> list[dict]:
    """Start one process per rank of ``plan``, wait for all, return their records."""
    plan_file = tmp / "plan.json"
    plan_file.write_text(json.dumps(plan))
    world = len(plan["ranks"])
    port = free_port()
    procs = []
    for rank in range(world):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO), str(REPO / "src"), env.get("PYTHONPATH", "")]
        )
        env.update(
            RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1",
            **{PLAN_ENV: str(plan_file)},
        )  # fmt: skip
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.integration.train.workers", str(tmp), str(STEPS)],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    deadline = time.monotonic() + timeout
    outputs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(
                "ranks hung:\n" + "\n---\n".join(str(q.communicate()[0][-3000:]) for q in procs)
            )
        outputs.append(out.decode(errors="replace"))
    if any(p.returncode for p in procs):
        pytest.fail(
            f"ranks failed {[p.returncode for p in procs]}:\n"
            + "\n---\n".join(o[-3000:] for o in outputs)
        )
    return [json.loads((tmp / f"rank-{r}.json").read_text()) for r in range(world)]


def reference(global_batch: int) -> tuple[list[float], torch.Tensor]:
    """One process, the whole global batch per step, no torch.distributed at all."""
    one: HeteroPlan = parse_plan(
        {
            "global_batch": global_batch,
            "ranks": [
                {"rank": 0, "type": "ref", "micro_batches": 1, "micro_batch_size": global_batch}
            ],
        },
        "reference",
    )
    data = workers.dataset(global_batch * STEPS + 5)
    sampler = HeteroSampler(data, one, 0, seed=workers.SHUFFLE_SEED)
    model = workers.model()
    opt = workers.optimizer(model)
    losses = []
    for x, y in DataLoader(data, batch_size=global_batch, sampler=sampler, drop_last=True):
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        losses.append(loss.item())
        opt.step()
        opt.zero_grad()
    params = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return losses[:STEPS], params


def rank(n: int, chip: str, micro_batches: int, micro_batch_size: int) -> dict:
    return {
        "rank": n,
        "type": chip,
        "micro_batches": micro_batches,
        "micro_batch_size": micro_batch_size,
    }


SPLITS = {
    # two types of two ranks, interleaved (leaders 0 and 1); A takes 12 samples in three
    # micro-batches, B takes 4 in one
    "2x2-interleaved": {
        "global_batch": 32,
        "ranks": [
            rank(0, "fast", 3, 4),
            rank(1, "slow", 1, 4),
            rank(2, "fast", 3, 4),
            rank(3, "slow", 1, 4),
        ],
    },
    # a type with a single rank (no within-type legs) next to a type of two
    "1+2": {
        "global_batch": 16,
        "ranks": [rank(0, "big", 2, 5), rank(1, "small", 1, 3), rank(2, "small", 1, 3)],
    },
}


@pytest.mark.parametrize("split", list(SPLITS))
def test_mixed_run_matches_the_homogeneous_run_step_by_step(split: str, tmp_path: Path) -> None:
    plan = SPLITS[split]
    records = run_ranks(plan, tmp_path)
    want_losses, want_params = reference(plan["global_batch"])
    assert len(want_losses) == STEPS
    assert want_losses[-1] < 0.8 * want_losses[0], "the model must actually train"
    assert [r["local_batch"] for r in records] == [
        s["micro_batches"] * s["micro_batch_size"] for s in plan["ranks"]
    ]

    for r in records:
        got = torch.tensor(r["hetero"], dtype=torch.float64)
        torch.testing.assert_close(
            got, torch.tensor(want_losses, dtype=torch.float64), rtol=1e-5, atol=1e-7
        )
        # every rank ends with the very same parameters, those of the homogeneous run
        assert r["params"] == records[0]["params"], f"rank {r['rank']} drifted from rank 0"
    torch.testing.assert_close(
        torch.tensor(records[0]["params"]), want_params, rtol=1e-5, atol=1e-6
    )

    # averaging by ranks starts at the same loss but then walks another way
    naive = torch.tensor(records[0]["naive"], dtype=torch.float64)
    want = torch.tensor(want_losses, dtype=torch.float64)
    assert naive[0].item() == pytest.approx(want[0].item(), rel=1e-6)
    assert ((naive - want).abs() / want).max().item() > 1e-3, "the weighting made no difference"
