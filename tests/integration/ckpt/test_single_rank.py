"""One rank, real persister processes: round trips, retention, memory use, disk full,
corrupted files, and the errors a user can hit."""

from __future__ import annotations

import collections
import json
import os
import pickle
import random
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="baige.ckpt needs torch: pip install 'baige[train]'")

import numpy as np  # noqa: E402

from baige.ckpt import (  # noqa: E402
    Checkpointer,
    CheckpointInUse,
    FullDiskWriter,
    PersistError,
    read_manifest,
    rng_state,
    set_rng_state,
)
from baige.ckpt.manifest import complete_steps, list_step_dirs, step_dir  # noqa: E402
from baige.ckpt.shm import RankFiles, read_control, runtime_dir  # noqa: E402

from .conftest import start, wait_for  # noqa: E402

Point = collections.namedtuple("Point", "x y")


def rich_state(seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(3, 5)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    opt.step()
    sched.step()
    random.seed(seed)
    np.random.seed(seed)
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": rng_state(),
        "data": {"epoch": 3, "position": 1234 + seed, "order": np.arange(10) * seed},
        "dtypes": {
            "bf16": torch.randn(3, 3).to(torch.bfloat16),
            "f16": torch.randn(4).half(),
            "f64": torch.randn(2, dtype=torch.float64),
            "i8": torch.tensor([-3, 4], dtype=torch.int8),
            "u8": torch.tensor([1, 255], dtype=torch.uint8),
            "i32": torch.arange(5, dtype=torch.int32),
            "bool": torch.tensor([True, False, True]),
            "scalar": torch.tensor(3.5),
            "empty": torch.empty(0, 4),
            "strided": torch.arange(12.0).reshape(3, 4).t(),
            "odd_bytes": torch.arange(3, dtype=torch.uint8),
        },
        "tuple": (1, "two", torch.ones(2)),
        "point": Point(torch.zeros(1), 5),
        "ordered": collections.OrderedDict(b=1, a=torch.full((2,), 7.0)),
    }


def assert_same(a: Any, b: Any, where: str = "state") -> None:
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_round_trip_from_memory_then_from_disk(tmp_path: Path, shm_root: Path, no_leak) -> None:
    state = rich_state(1)
    ck = Checkpointer(tmp_path / "ck", shm_dir=shm_root)
    assert ck.load() is None
    stats = ck.save(7, state)
    assert stats.step == 7 and stats.nbytes > 0
    assert ck.wait() == 7
    restored = ck.load()
    assert restored is not None and (restored.step, restored.source) == (7, "memory")
    assert_same(restored.state, state)
    ck.close()
    no_leak()

    ck = Checkpointer(tmp_path / "ck", shm_dir=shm_root)
    restored = ck.load()
    assert restored is not None and (restored.step, restored.source) == (7, "disk")
    assert_same(restored.state, state)
    # RNG restored bit for bit: the next draws match the ones after the save.
    set_rng_state(restored.state["rng"])
    after = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_state(state["rng"])
    assert after[:2] == (random.random(), np.random.rand())
    assert torch.equal(after[2], torch.rand(3))
    ck.close()
    no_leak()


def test_load_with_a_template_fills_its_tensors_in_place(
    tmp_path: Path, shm_root: Path, no_leak
) -> None:
    """``load(template=...)`` copies straight into the template's tensors (from memory in
    a separate process and in the saving one, and from disk): the restored state holds the
    caller's own tensor objects, and the values are the saved ones, bit for bit."""
    state = rich_state(1)
    ck = Checkpointer(tmp_path / "ck", shm_dir=shm_root)
    ck.save(7, state)
    ck.wait()
    for source in ("memory", "disk"):
        if source == "disk":
            ck.close()
            no_leak()
            ck = Checkpointer(tmp_path / "ck", shm_dir=shm_root)
        template = rich_state(2)  # the same structure, other values
        weight = template["model"]["0.weight"]
        moment = template["optimizer"]["state"][0]["exp_avg"]
        restored = ck.load(template=template)
        assert restored is not None and restored.source == source
        assert restored.state["model"]["0.weight"] is weight
        assert restored.state["optimizer"]["state"][0]["exp_avg"] is moment
        assert_same(restored.state, state)
    ck.close()
    no_leak()


def test_disk_format_reads_without_baige(tmp_path: Path, shm_root: Path) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    state = rich_state(2)
    with Checkpointer(tmp_path, shm_dir=shm_root) as ck:
        ck.save(3, state)
    folder = step_dir(tmp_path, 3)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["step"] == 3 and manifest["world_size"] == 1
    tensors = safetensors_torch.load_file(folder / "rank-00000.safetensors")
    assert torch.equal(tensors["model.0.weight"], state["model"]["0.weight"])
    assert torch.equal(tensors["dtypes.strided"], state["dtypes"]["strided"])
    skeleton = pickle.loads((folder / "rank-00000.pkl").read_bytes())
    assert skeleton["data"]["position"] == 1236
    assert skeleton["model"]["0.weight"] == {"__baige_tensor__": "model.0.weight"}


def test_newest_wins_and_retention_keeps_n(tmp_path: Path, shm_root: Path, no_leak) -> None:
    with Checkpointer(tmp_path, shm_dir=shm_root, keep=2) as ck:
        for step in range(1, 6):
            ck.save(step, {"x": torch.full((10,), float(step))})
            ck.wait()
        assert [s for s, _ in complete_steps(tmp_path)] == [5, 4]
        assert [s for s, _ in list_step_dirs(tmp_path)] == [4, 5]
        restored = ck.load(step=4)
        assert restored is not None and restored.state["x"][0] == 4.0
    no_leak()


def test_memory_is_flat_across_saves(tmp_path: Path, shm_root: Path) -> None:
    ck = Checkpointer(tmp_path, shm_dir=shm_root, keep=1)
    state = {"w": torch.randn(2_000_000)}  # 8 MB
    files = RankFiles(runtime_dir(shm_root, tmp_path), 0)
    usage = []
    for step in range(20):
        state["w"].add_(1)
        ck.save(step, state)
        ck.wait()
        pid = int(files.pid.read_text())
        rss = next(
            int(line.split()[1])
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
        shm_bytes = sum(p.stat().st_blocks * 512 for p in shm_root.rglob("*") if p.is_file())
        usage.append((shm_bytes, rss))
    assert len({u[0] for u in usage[1:]}) == 1, f"shared memory changed: {usage}"
    assert usage[-1][0] < 3 * 8_000_000 + 8 * 2**20
    assert usage[-1][1] - usage[2][1] < 4096, f"persister RSS grew (KiB): {usage}"
    ck.close()


def test_disk_full_keeps_previous_step_and_says_so(tmp_path: Path, shm_root: Path) -> None:
    numel = 100_000  # 400 KB of tensors per step
    ck = Checkpointer(tmp_path, shm_dir=shm_root, writer=FullDiskWriter(after_bytes=600_000))
    ck.save(1, {"w": torch.full((numel,), 1.0)})
    assert ck.wait() == 1
    ck.save(2, {"w": torch.full((numel,), 2.0)})
    with pytest.raises(PersistError, match="No space left on device") as err:
        ck.wait(timeout=30)
    assert err.value.step == 2
    assert "No space left" in (ck.status().error or "")
    folder = step_dir(tmp_path, 2)
    assert not (folder / "manifest.json").exists()
    assert sorted(p.name for p in folder.iterdir()) == []  # no partial or temporary files
    assert [s for s, _ in complete_steps(tmp_path)] == [1]
    # The newest intact step is the one in memory; the disk still has step 1.
    restored = ck.load()
    assert restored is not None and (restored.step, restored.source) == (2, "memory")
    other_shm = shm_root / "elsewhere"
    other_shm.mkdir()
    with Checkpointer(tmp_path, shm_dir=other_shm) as disk_only:
        restored = disk_only.load()
        assert restored is not None and (restored.step, restored.source) == (1, "disk")
        assert restored.state["w"][0] == 1.0
    # Closing with a failing disk raises and keeps the memory rather than lose step 2.
    with pytest.raises(PersistError):
        ck.close()
    ctl = read_control(RankFiles(runtime_dir(shm_root, tmp_path), 0).control)
    assert (
        ctl is not None
        and ctl.slots[ctl.slots.index(max(ctl.slots, key=lambda s: s.seq))].step == 2
    )


def _flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(by: int) -> Any:
    def cut(path: Path) -> None:
        os.truncate(path, max(0, path.stat().st_size - by))

    return cut


def _zero(path: Path) -> None:
    os.truncate(path, 0)


def _uncommit(path: Path) -> None:
    """The persister died after writing data but before its shard manifest."""
    path.unlink()
    (path.parent / "rank-00000.json").unlink()


def _wrong_crc(path: Path) -> None:
    man = json.loads(path.read_text())
    man["shards"][0]["files"][0]["crc32"] ^= 1
    path.write_text(json.dumps(man))


CORRUPTIONS = [
    # (file damaged, how, is the step still listed as complete?, words in the reason)
    ("rank-00000.safetensors", _flip_middle, True, "CRC-32"),
    ("rank-00000.safetensors", _truncate(100), True, "bytes, manifest says"),
    ("rank-00000.safetensors", _zero, True, "0 bytes"),
    ("rank-00000.pkl", _truncate(5), True, "rank-00000.pkl"),
    ("rank-00000.safetensors", Path.unlink, True, "missing"),
    ("manifest.json", _wrong_crc, True, "CRC-32"),
    ("manifest.json", _truncate(40), False, ""),
    ("manifest.json", _uncommit, False, ""),
]


@pytest.mark.parametrize(
    ("name", "damage", "listed", "reason"),
    CORRUPTIONS,
    ids=[f"{c[0]}-{getattr(c[1], '__name__', 'truncate')}" for c in CORRUPTIONS],
)
def test_corrupted_step_falls_back_to_previous(
    tmp_path: Path, shm_root: Path, name: str, damage: Any, listed: bool, reason: str
) -> None:
    with Checkpointer(tmp_path, shm_dir=shm_root, keep=5) as ck:
        ck.save(1, {"w": torch.full((5000,), 1.0), "tag": "one"})
        ck.save(2, {"w": torch.full((5000,), 2.0), "tag": "two"})
    damage(step_dir(tmp_path, 2) / name)
    assert (2 in [s for s, _ in complete_steps(tmp_path)]) == listed
    with Checkpointer(tmp_path, shm_dir=shm_root) as ck:
        restored = ck.load()
        assert restored is not None
        assert (restored.step, restored.source, restored.state["tag"]) == (1, "disk", "one")
        assert torch.equal(restored.state["w"], torch.full((5000,), 1.0))
        if listed:
            assert [s.step for s in restored.skipped] == [2]
            assert reason in restored.skipped[0].reason
            # The bad step is moved aside, never offered again.
            assert not step_dir(tmp_path, 2).exists()
            assert (tmp_path / "step-000000002.corrupt").is_dir()
        else:
            assert restored.skipped == ()


def test_lost_manifest_is_recommitted_from_shard_manifests(tmp_path: Path, shm_root: Path) -> None:
    with Checkpointer(tmp_path, shm_dir=shm_root, keep=5) as ck:
        ck.save(1, {"tag": "one"})
        ck.save(2, {"tag": "two"})
    manifest = step_dir(tmp_path, 2) / "manifest.json"
    before = manifest.read_bytes()
    manifest.unlink()  # as if the persister died between the last shard and the commit
    assert [s for s, _ in complete_steps(tmp_path)] == [1]
    with Checkpointer(tmp_path, shm_dir=shm_root) as ck:  # its persister recovers
        wait_for(manifest.exists, 10, "the step to be committed again")
        assert manifest.read_bytes() == before
        restored = ck.load()
        assert restored is not None and (restored.step, restored.state["tag"]) == (2, "two")


def test_errors_name_what_is_wrong(tmp_path: Path, shm_root: Path) -> None:
    with pytest.raises(ValueError, match="keep must be >= 1"):
        Checkpointer(tmp_path, shm_dir=shm_root, keep=0)
    with pytest.raises(ValueError, match="rank must be in"):
        Checkpointer(tmp_path, shm_dir=shm_root, rank=2, world_size=2)
    with Checkpointer(tmp_path, shm_dir=shm_root) as ck:
        with pytest.raises(ValueError, match="step must be a non-negative integer"):
            ck.save(-1, {})
        with pytest.raises(TypeError, match=r"state\['m'\]\['c'\]: dtype complex64"):
            ck.save(1, {"m": {"c": torch.zeros(2, dtype=torch.complex64)}})
        with pytest.raises(ValueError, match=r"reserved by baige\.ckpt"):
            ck.save(1, {"m": {"__baige_tensor__": "x"}})
        # A refused save leaves nothing half-done: the next one works.
        ck.save(1, {"ok": torch.ones(1)})
        assert ck.wait() == 1


def test_second_live_trainer_is_refused(tmp_path: Path, shm_root: Path) -> None:
    marker = tmp_path / "attached"
    proc = start(
        "hold", "--dir", str(tmp_path / "ck"), "--shm", str(shm_root), "--marker", str(marker)
    )
    try:
        wait_for(marker.exists, 60, "the other trainer to attach")
        with pytest.raises(CheckpointInUse, match=rf"in use by live process {proc.pid}\b"):
            Checkpointer(tmp_path / "ck", shm_dir=shm_root)
    finally:
        proc.kill()
        proc.wait()
    # Once it is dead the directory is free again.
    Checkpointer(tmp_path / "ck", shm_dir=shm_root).detach()


def test_manifest_reader_matches_what_was_written(tmp_path: Path, shm_root: Path) -> None:
    with Checkpointer(tmp_path, shm_dir=shm_root) as ck:
        ck.save(11, {"a": torch.ones(3)})
    man = read_manifest(step_dir(tmp_path, 11))
    assert (man.step, man.world_size, man.timeline) == (11, 1, "root")
    names = [f.name for f in man.shard(0).files]
    assert names == ["rank-00000.safetensors", "rank-00000.pkl"]
