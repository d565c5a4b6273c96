"""Several ranks over gloo: a DDP run killed with SIGKILL resumes from memory with the very
same loss curve; ranks agree on one step when one rank's shard is bad; FSDP2 state saved at
4 ranks loads at 2 (through torch.distributed.checkpoint), also with plain DCP."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="baige.ckpt needs torch: pip install 'baige[train]'")

from baige.ckpt.manifest import complete_steps, step_dir  # noqa: E402

from .conftest import run_ranks  # noqa: E402


def _losses(folder: Path, rank: int) -> tuple[dict[int, str], list[str]]:
    losses, events = {}, []
    for line in (folder / f"rank{rank}.txt").read_text().splitlines():
        head, value = line.split(" ", 1)
        if head == "resumed":
            events.append(value)
        else:
            losses[int(head)] = value
    return losses, events


def test_ddp_killed_run_resumes_from_memory_bit_identical(tmp_path: Path, shm_root: Path) -> None:
    steps, every, die_at = 10, 3, 7
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    clean.mkdir()
    crashed.mkdir()
    common = ["--shm", str(shm_root), "--steps", str(steps), "--every", str(every)]
    assert run_ranks(
        "ddp", 2, "--dir", str(tmp_path / "ck-clean"), "--out", str(clean), *common
    ) == [0, 0]
    killed = run_ranks(
        "ddp",
        2,
        "--dir",
        str(tmp_path / "ck"),
        "--out",
        str(crashed),
        *common,
        "--die-at",
        str(die_at),
    )
    assert killed == [-9, -9]
    assert run_ranks(
        "ddp", 2, "--dir", str(tmp_path / "ck"), "--out", str(crashed), *common, "--resume"
    ) == [0, 0]
    for rank in (0, 1):
        reference, _ = _losses(clean, rank)
        got, events = _losses(crashed, rank)
        assert events == ["6 memory"], events
        assert sorted(reference) == list(range(steps))
        # Steps 6 was run twice (before the kill, and after resuming from step 6).
        assert got == reference, f"rank {rank}: loss curves differ"
    assert next(s for s, _ in complete_steps(tmp_path / "ck")) == 9


def test_ranks_agree_on_a_step_every_rank_has_intact(tmp_path: Path, shm_root: Path) -> None:
    ck = tmp_path / "ck"
    args = ["--dir", str(ck), "--shm", str(shm_root), "--out", str(tmp_path)]
    run_ranks("agree", 2, *args, "--phase", "save")
    # Rank 1's shard of step 2 is damaged: rank 0's is fine but must not be used alone.
    shard = step_dir(ck, 2) / "rank-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0x55
    shard.write_bytes(bytes(data))
    run_ranks("agree", 2, *args, "--phase", "load")
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank, rep in enumerate(reports):
        assert (rep["step"], rep["source"], rep["equal"], rep["rank_in_state"]) == (
            1,
            "disk",
            True,
            rank,
        )
        assert [s[0] for s in rep["skipped"]] == [2]
        assert (
            "rank 1: [disk]" in rep["skipped"][0][1]
            and "rank-00001.safetensors" in rep["skipped"][0][1]
        )


def test_fsdp_state_reshards_from_4_to_2_ranks_and_restores_from_memory(
    tmp_path: Path, shm_root: Path
) -> None:
    ck = tmp_path / "ck"
    args = ["--dir", str(ck), "--shm", str(shm_root), "--out", str(tmp_path)]
    run_ranks("fsdp", 4, *args, "--phase", "save", "--step", "2", timeout=180)
    folder = step_dir(ck, 2)
    assert (folder / "dcp" / ".metadata").is_file()
    distcp = sorted(p.name for p in (folder / "dcp").glob("*.distcp"))
    assert distcp == [f"__{r}_0.distcp" for r in range(4)]
    assert os.listdir(shm_root) == []  # closed: the 4-rank run freed its memory
    # 2 ranks load the 4-rank checkpoint (DCP reshards), check it also with plain DCP, then
    # save step 3 at their own layout and leave it in memory, as a crash would.
    run_ranks("fsdp", 2, *args, "--phase", "load", "--direct", "--resave", "3", timeout=180)
    for rank in (0, 1):
        rep = json.loads((tmp_path / f"load2-step2-rank{rank}.json").read_text())
        assert (rep["step"], rep["source"], rep["note"]) == (2, "disk", "saved by 4 ranks")
        assert rep["equal"] == rep["keys"] and len(rep["keys"]) >= 8
        assert rep["direct_equal"] is True
    # A restart at the same layout copies the shards straight from shared memory.
    run_ranks("fsdp", 2, *args, "--phase", "load", "--reference", "3", timeout=180)
    for rank in (0, 1):
        rep = json.loads((tmp_path / f"load2-step3-rank{rank}.json").read_text())
        assert (rep["step"], rep["source"], rep["note"]) == (3, "memory", "saved by 2 ranks")
        assert rep["equal"] == rep["keys"]
