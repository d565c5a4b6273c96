"""The plan file: a valid one is read as written, a bad one is refused with the file and the
field named, and split_by_speed shares micro-batches in proportion to speed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from baige.train.plan import (
    PLAN_ENV,
    PlanError,
    load_plan,
    parse_plan,
    plan_from_env,
    split_by_speed,
)


def rank(n: int, chip: str, micro_batches: int, size: int) -> dict[str, Any]:
    return {"rank": n, "type": chip, "micro_batches": micro_batches, "micro_batch_size": size}


GOOD: dict[str, Any] = {
    "version": 1,
    "global_batch": 40,
    "ranks": [
        rank(2, "910b", 1, 8),
        rank(0, "h100", 2, 8),
        rank(1, "910b", 1, 8),
        rank(3, "h100", 1, 8),
    ],
    "backends": {"h100": "nccl", "910b": "hccl"},
}


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
    return path


def test_a_good_plan_reads_back_sorted_with_offsets_and_weights(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, GOOD))
    assert [r.rank for r in plan.ranks] == [0, 1, 2, 3]
    assert plan.types == ("h100", "910b")  # by lowest rank: the group-creation order
    assert plan.ranks_of("910b") == (1, 2)
    assert plan.leader_of("910b") == 1
    assert [plan.offset(r) for r in range(4)] == [0, 16, 24, 32]
    assert [plan.weight(r) for r in range(4)] == [16 / 40, 8 / 40, 8 / 40, 8 / 40]
    assert plan.backend_of("910b") == "hccl"


def test_backends_default_to_auto(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, {**GOOD, "backends": {}}))
    assert plan.backend_of("h100") == "auto"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["ranks"][1].update(micro_batches=0),
            "ranks[1].micro_batches: Input should be greater than or equal to 1",
        ),
        (
            lambda d: d["ranks"][0].update(micro_batch_size="8"),
            "ranks[0].micro_batch_size: Input should be a valid integer",
        ),
        (
            lambda d: d["ranks"][3].update(speed=1.0),
            "ranks[3].speed: Extra inputs are not permitted",
        ),
        (lambda d: d["ranks"][2].pop("type"), "ranks[2].type: Field required"),
        (
            lambda d: d.update(global_batch=48),
            "global_batch: 48 is not the sum of the ranks' micro_batches × micro_batch_size (16 + 8 + 8 + 8 = 40)",
        ),
        (lambda d: d["ranks"][0].update(rank=1), "ranks: rank 1 appears more than once"),
        (
            lambda d: d["ranks"][0].update(rank=7),
            "ranks: ranks must be numbered 0..3, each once; missing [2]",
        ),
        (lambda d: d.update(backends={"a100": "nccl"}), "backends: ['a100'] name no rank's type"),
        (lambda d: d.update(version=2), "version: Input should be 1"),
        (lambda d: d.update(ranks=[]), "ranks: Tuple should have at least 1 item"),
    ],
)
def test_a_bad_plan_names_the_file_and_the_field(
    tmp_path: Path, change: Any, expected: str
) -> None:
    data = json.loads(json.dumps(GOOD))
    change(data)
    path = write(tmp_path, data)
    with pytest.raises(PlanError) as err:
        load_plan(path)
    assert f"{path}: {expected}" in str(err.value)


def test_broken_json_and_missing_files_say_where(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n  "global_batch": 8,\n  "ranks": [}\n')
    with pytest.raises(PlanError, match=rf"^{path}:3: not valid JSON: "):
        load_plan(path)
    with pytest.raises(PlanError, match="expected a JSON object"):
        load_plan(write(tmp_path, "[1, 2]"))
    with pytest.raises(PlanError, match=r"nope\.json: cannot read the plan file: No such file"):
        load_plan(tmp_path / "nope.json")


def test_the_environment_variable_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    assert plan_from_env({PLAN_ENV: str(path)}).global_batch == 40
    with pytest.raises(PlanError, match=f"{PLAN_ENV} is not set"):
        plan_from_env({})


def test_split_by_speed_is_proportional_whole_and_complete() -> None:
    plan = split_by_speed([("fast", 1.0), ("fast", 1.0), ("slow", 0.4), ("slow", 0.4)], 140, 10)
    assert [r.micro_batches for r in plan.ranks] == [5, 5, 2, 2]
    assert plan.global_batch == 140 == sum(r.samples for r in plan.ranks)
    # a very slow rank still gets one micro-batch, taken from the fast one
    plan = split_by_speed([("fast", 1.0), ("crawl", 0.001)], 40, 10)
    assert [r.micro_batches for r in plan.ranks] == [3, 1]
    # remainders go to the most under-served rank
    plan = split_by_speed([("a", 1.0), ("b", 1.0), ("c", 1.0)], 40, 10)
    assert sorted(r.micro_batches for r in plan.ranks) == [1, 1, 2]
    with pytest.raises(PlanError, match="not a multiple"):
        split_by_speed([("a", 1.0)], 30, 8)
    with pytest.raises(PlanError, match="cannot give each of 3 ranks one"):
        split_by_speed([("a", 1.0)] * 3, 20, 10)
    with pytest.raises(PlanError, match="positive"):
        split_by_speed([("a", 1.0), ("b", 0.0)], 20, 10)


def test_the_plan_in_the_docs_is_valid() -> None:
    text = (Path(__file__).resolve().parents[3] / "docs" / "train.md").read_text()
    block = text.split("```json\n", 1)[1].split("```", 1)[0]
    plan = parse_plan(json.loads(block), "docs/train.md")
    assert plan.types == ("h100", "910b")
    assert [plan.weight(r) for r in range(3)] == [0.4, 0.4, 0.2]
