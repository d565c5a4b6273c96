"""One slot written to disk and read back in this process: the persister's write path, the
loader's verification, and a disk that fills up mid-write."""

from __future__ import annotations

import mmap
import pickle
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="baige.ckpt needs torch: pip install 'baige[train]'")

from baige.ckpt import restore  # noqa: E402
from baige.ckpt.control import SlotRecord  # noqa: E402
from baige.ckpt.errors import CorruptCheckpoint  # noqa: E402
from baige.ckpt.flatten import tensor_leaves, unflatten  # noqa: E402
from baige.ckpt.hostcopy import SlotView  # noqa: E402
from baige.ckpt.image import plan_image, write_image  # noqa: E402
from baige.ckpt.manifest import (  # noqa: E402
    empty_trash,
    list_step_dirs,
    read_manifest,
    shard_file,
    step_dir,
)
from baige.ckpt.persist import persist_slot  # noqa: E402
from baige.ckpt.restore import read_disk_shard, read_slot  # noqa: E402
from baige.ckpt.writer import DiskWriter, FullDiskWriter  # noqa: E402


def slot_of(state: dict[str, Any], step: int, seq: int = 1) -> tuple[mmap.mmap, SlotRecord]:
    """Exactly what a trainer puts in shared memory, in an anonymous mapping."""
    plan = plan_image(state, step, rank=0)
    pkl = pickle.dumps(plan.skeleton)
    mm = mmap.mmap(-1, plan.image_len + len(pkl))
    view = SlotView(mm, pin=False)
    write_image(plan, view)
    view.close()
    mm[plan.image_len :] = pkl
    rec = SlotRecord("ready", seq, step, len(mm), plan.image_len, len(pkl))
    return mm, rec


STATE = {
    "w": torch.randn(64, 64),
    "i": torch.arange(10, dtype=torch.int32),
    "flag": torch.tensor([True, False]),
    "meta": {"epoch": 2},
}


def test_persisted_shard_reads_back_equal_and_commits(tmp_path: Path) -> None:
    mm, rec = slot_of(STATE, 5)
    result = persist_slot(memoryview(mm), rec, tmp_path, 0, DiskWriter(), keep=3)
    assert result.committed is not None and result.committed.step == 5
    folder = step_dir(tmp_path, 5)
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json", "rank-00000.json", "rank-00000.pkl", "rank-00000.safetensors",
    ]  # fmt: skip
    shard = read_disk_shard(folder, read_manifest(folder).shard(0))
    state = unflatten(shard.skeleton, shard.tensors)
    for k in ("w", "i", "flag"):
        assert torch.equal(state[k], STATE[k])
    assert state["meta"] == {"epoch": 2}
    # The file on disk is the slot image byte for byte: no re-encoding on the way.
    assert (folder / "rank-00000.safetensors").read_bytes() == mm[: rec.image_len]


def test_a_rank_of_two_does_not_commit_alone(tmp_path: Path) -> None:
    mm, rec = slot_of(STATE, 5)
    rec.world_size = 2
    result = persist_slot(memoryview(mm), rec, tmp_path, 1, DiskWriter(), keep=3)
    assert result.committed is None
    assert not (step_dir(tmp_path, 5) / "manifest.json").exists()
    result = persist_slot(memoryview(mm), rec, tmp_path, 0, DiskWriter(), keep=3)
    assert result.committed is not None and len(result.committed.shards) == 2


@pytest.mark.parametrize(
    ("offset", "message"),
    [(-1, "CRC-32"), (100, "header is not JSON"), (None, "bytes, manifest says")],
)
def test_damaged_shard_is_refused(tmp_path: Path, offset: int | None, message: str) -> None:
    mm, rec = slot_of(STATE, 5)
    persist_slot(memoryview(mm), rec, tmp_path, 0, DiskWriter(), keep=3)
    folder = step_dir(tmp_path, 5)
    path = folder / shard_file(0, "safetensors")
    data = bytearray(path.read_bytes())
    if offset is None:
        del data[-3:]
    else:
        data[offset] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpoint, match=message) as err:
        read_disk_shard(folder, read_manifest(folder).shard(0))
    assert str(path) in str(err.value)


@pytest.mark.parametrize("threads", [1, 3])
def test_a_disk_shard_read_in_pieces_by_threads_is_whole_and_checked(
    tmp_path: Path, threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Threads each reading their range of the file in pieces that cut across tensors (and
    the last one shorter) read every byte back, and one flipped byte anywhere in the
    tensors fails the CRC-32."""
    monkeypatch.setattr(restore, "_threads", lambda nbytes, most: threads)
    monkeypatch.setattr(restore, "_READ_PIECE", 1000)
    mm, rec = slot_of(STATE, 5)
    persist_slot(memoryview(mm), rec, tmp_path, 0, DiskWriter(), keep=3)
    folder = step_dir(tmp_path, 5)
    shard = read_disk_shard(folder, read_manifest(folder).shard(0))
    for key in ("w", "i", "flag"):
        assert torch.equal(shard.tensors[key], STATE[key]), key
    path = folder / shard_file(0, "safetensors")
    intact = path.read_bytes()
    for where in (len(intact) // 3, len(intact) // 2, len(intact) - 1):
        data = bytearray(intact)
        data[where] ^= 0x10
        path.write_bytes(bytes(data))
        with pytest.raises(CorruptCheckpoint, match="CRC-32"):
            read_disk_shard(folder, read_manifest(folder).shard(0))


def test_disk_full_mid_write_leaves_no_partial_files(tmp_path: Path) -> None:
    mm1, rec1 = slot_of(STATE, 1, seq=1)
    writer = FullDiskWriter(after_bytes=20_000)
    persist_slot(memoryview(mm1), rec1, tmp_path, 0, writer, keep=3)
    mm2, rec2 = slot_of(STATE, 2, seq=2)
    with pytest.raises(OSError, match="No space left"):
        persist_slot(memoryview(mm2), rec2, tmp_path, 0, writer, keep=3)
    assert list(step_dir(tmp_path, 2).iterdir()) == []
    assert read_manifest(step_dir(tmp_path, 1)).step == 1


def test_restore_fills_the_templates_tensors_in_place(tmp_path: Path) -> None:
    """A template's tensors of the same shape and dtype receive the bytes (no new memory,
    a Parameter stays the caller's object); a mismatched one gets a new tensor instead."""
    mm, rec = slot_of(STATE, 5)
    persist_slot(memoryview(mm), rec, tmp_path, 0, DiskWriter(), keep=3)
    folder = step_dir(tmp_path, 5)
    rec = replace(rec, crc_image=zlib.crc32(mm[: rec.image_len]))
    for read in (
        lambda into: read_slot(Path("unused"), rec, into, mapping=mm),
        lambda into: read_disk_shard(folder, read_manifest(folder).shard(0), into),
    ):
        w = torch.nn.Parameter(torch.zeros(64, 64))
        wrong = torch.zeros(3, dtype=torch.int32)  # saved "i" has 10 elements
        template = {"w": w, "i": wrong, "flag": torch.zeros(2, dtype=torch.bool)}
        flag_ptr = template["flag"].data_ptr()
        shard = read(tensor_leaves(template))
        assert shard.tensors["w"] is w and torch.equal(w.detach(), STATE["w"])
        assert shard.tensors["flag"].data_ptr() == flag_ptr
        assert shard.tensors["i"] is not wrong and torch.equal(shard.tensors["i"], STATE["i"])
        assert torch.equal(wrong, torch.zeros(3, dtype=torch.int32))


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("chunk", [64, 512 << 10])
def test_a_memory_slot_whose_bytes_changed_fails_its_crc(
    threads: int, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy and the CRC made piece by piece, by one thread or by several whose CRCs
    are joined (pieces smaller than a tensor and cutting across tensors, or larger than the
    whole slot), restore every byte and catch one changed byte anywhere."""
    monkeypatch.setattr(restore, "_threads", lambda nbytes, most: threads)
    monkeypatch.setattr(restore, "_CHUNK", chunk)
    mm, rec = slot_of(STATE, 5)
    rec = replace(rec, crc_image=zlib.crc32(mm[: rec.image_len]))
    shard = read_slot(Path("unused"), rec, None, mapping=mm)  # intact: no error
    for key, value in STATE.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(shard.tensors[key], value), key
    for where in (0, rec.image_len // 2, rec.image_len - 1):  # header, middle, last byte
        mm, rec = slot_of(STATE, 5)
        rec = replace(rec, crc_image=zlib.crc32(mm[: rec.image_len]))
        mm[where] ^= 0xFF
        with pytest.raises(CorruptCheckpoint, match=r"CRC-32|header"):
            read_slot(Path("unused"), rec, None, mapping=mm)


def test_retention_can_set_folders_aside_and_free_them_later(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        mm, rec = slot_of(STATE, step, seq=step)
        result = persist_slot(
            memoryview(mm), rec, tmp_path, 0, DiskWriter(), keep=1, defer_deletes=True
        )
    assert result.deleted == (2,)
    assert [s for s, _ in list_step_dirs(tmp_path)] == [3]
    assert any(p.name.startswith(".trash-") for p in tmp_path.iterdir())
    empty_trash(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000003"]
