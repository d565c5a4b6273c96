"""``hetero.init`` and the context in one process (a one-rank job, no launcher): micro-batch
accumulation gives the full-batch gradient, and launch mistakes are refused clearly. The
many-rank behaviour is tested with real processes in tests/integration/train."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="baige.train needs torch: pip install 'baige[train]'")

import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from baige.train import hetero  # noqa: E402
from baige.train.plan import PLAN_ENV, PlanError, parse_plan  # noqa: E402

LAUNCH = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", PLAN_ENV)


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in LAUNCH:
        monkeypatch.delenv(key, raising=False)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def one_rank(micro_batches: int, size: int) -> dict:
    return {
        "global_batch": micro_batches * size,
        "ranks": [
            {"rank": 0, "type": "cpu", "micro_batches": micro_batches, "micro_batch_size": size}
        ],
        "backends": {"cpu": "gloo"},
    }


def test_micro_batches_add_up_to_the_full_batch_gradient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(one_rank(3, 4)))
    monkeypatch.setenv(PLAN_ENV, str(path))
    torch.manual_seed(0)
    x, y = torch.randn(12, 5), torch.randn(12, 1)
    with hetero.init() as ctx:
        assert (ctx.local_batch_size, ctx.micro_batches, ctx.weight) == (12, 3, 1.0)
        assert ctx.source == str(path) and ctx.backend == "gloo" and ctx.is_leader
        model = ctx.wrap(torch.nn.Linear(5, 1))
        for mx, my in ctx.micro_steps(model, x, y):
            assert mx.shape == (4, 5)
            (F.mse_loss(model(mx), my) / ctx.micro_batches).backward()
        got = [p.grad.clone() for p in model.module.parameters()]
        plain = torch.nn.Linear(5, 1)
        plain.load_state_dict(model.module.state_dict())
        F.mse_loss(plain(x), y).backward()
        for g, p in zip(got, plain.parameters(), strict=True):
            torch.testing.assert_close(g, p.grad)
        assert ctx.global_mean(torch.tensor(0.25)) == pytest.approx(0.25)
        with pytest.raises(ValueError, match="a local batch of 5 samples, but rank 0 takes 12"):
            next(iter(ctx.micro_steps(model, x[:5])))
        with pytest.raises(TypeError, match="process group"):
            ctx.wrap(torch.nn.Linear(5, 1), process_group=None)
    assert not dist.is_initialized(), "close() ends the group init() made"


def test_a_many_rank_plan_without_a_launcher_says_what_is_missing() -> None:
    plan = parse_plan({**one_rank(1, 4), "global_batch": 8, "ranks": [
        {"rank": 0, "type": "a", "micro_batches": 1, "micro_batch_size": 4},
        {"rank": 1, "type": "b", "micro_batches": 1, "micro_batch_size": 4},
    ], "backends": {}}, "p")  # fmt: skip
    with pytest.raises(
        PlanError,
        match="the plan has 2 ranks but RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT is not set",
    ):
        hetero.init(plan)
    assert not dist.is_initialized()


def test_a_plan_for_another_world_size_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"global_batch": 8, "ranks": [
        {"rank": 0, "type": "a", "micro_batches": 1, "micro_batch_size": 4},
        {"rank": 1, "type": "b", "micro_batches": 1, "micro_batch_size": 4},
    ]}))  # fmt: skip
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    with pytest.raises(PlanError, match=rf"^{path}: ranks: the plan has 2 ranks but the job has 1"):
        hetero.init(path)
    assert dist.is_initialized(), "a group the caller made is left alone"


def test_no_plan_at_all_names_the_variable() -> None:
    with pytest.raises(PlanError, match=PLAN_ENV):
        hetero.init()
