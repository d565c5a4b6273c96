"""Retention rules and manifest validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from baige.ckpt.errors import CorruptCheckpoint
from baige.ckpt.manifest import (
    FileEntry,
    Manifest,
    ShardManifest,
    apply_retention,
    complete_steps,
    read_manifest,
    retention_plan,
    step_dir,
)

RETENTION = [
    # (complete, incomplete, keep, deleted)
    ([], [1, 2], 1, []),  # nothing complete: delete nothing, not even partial steps
    ([3], [], 1, []),
    ([1, 2, 3], [], 2, [1]),
    ([1, 2, 3], [], 5, []),
    ([5, 1, 3], [2, 4, 6], 1, [1, 2, 3, 4]),  # 6 may still be being written
    ([10], [11, 12], 1, []),
]


@pytest.mark.parametrize(("complete", "incomplete", "keep", "deleted"), RETENTION)
def test_retention_plan(complete, incomplete, keep, deleted) -> None:
    assert retention_plan(complete, incomplete, keep) == deleted


def test_retention_never_goes_below_one() -> None:
    with pytest.raises(ValueError, match="keep must be >= 1"):
        retention_plan([1], [], 0)


def _manifest(step: int) -> Manifest:
    shard = ShardManifest(0, 1, step, step, "root", (FileEntry("rank-00000.pkl", 1, 2),))
    return Manifest(step, 1, "root", (shard,))


def _write(root: Path, step: int, body: object) -> Path:
    folder = step_dir(root, step)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(body))
    return folder


def test_apply_retention_removes_old_and_abandoned_steps(tmp_path: Path) -> None:
    for step in (1, 2, 4):
        _write(tmp_path, step, _manifest(step).to_dict())
    step_dir(tmp_path, 3).mkdir()  # never completed
    step_dir(tmp_path, 5).mkdir()  # being written
    assert apply_retention(tmp_path, keep=2) == [1, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step-000000002", "step-000000004", "step-000000005",
    ]  # fmt: skip
    assert [s for s, _ in complete_steps(tmp_path)] == [4, 2]


def test_manifest_round_trip(tmp_path: Path) -> None:
    man = _manifest(7)
    folder = _write(tmp_path, 7, man.to_dict())
    assert read_manifest(folder) == man


def _bad(change) -> dict:
    body = _manifest(7).to_dict()
    change(body)
    return body


BAD = [
    (_bad(lambda b: b.update(format="other")), "format/version"),
    (_bad(lambda b: b.update(step=-1)), "step must be a non-negative integer"),
    (_bad(lambda b: b.update(shards=[])), "shards must list 1 ranks"),
    (_bad(lambda b: b["shards"][0].update(rank=3)), "shards[0] is rank 3"),
    (_bad(lambda b: b["shards"][0]["files"][0].update(size="1")), "shards[0].files[0].size"),
    (_bad(lambda b: b["shards"][0]["files"][0].update(name="../x")), "must be a relative path"),
    (_bad(lambda b: b["shards"][0].update(files=[])), "shards[0].files must be a non-empty"),
    (_bad(lambda b: b.update(timeline=3)), "timeline must be a string"),
]


@pytest.mark.parametrize(("body", "message"), BAD)
def test_bad_manifests_name_file_and_field(tmp_path: Path, body: dict, message: str) -> None:
    folder = _write(tmp_path, 7, body)
    with pytest.raises(CorruptCheckpoint) as err:
        read_manifest(folder)
    assert str(err.value).startswith(str(folder / "manifest.json"))
    assert message in str(err.value)
    assert complete_steps(tmp_path) == []
