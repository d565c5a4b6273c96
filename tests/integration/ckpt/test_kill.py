"""SIGKILL at the worst moments: the trainer in the middle of a save, the trainer while its
save is being persisted, the persister in the middle of writing. In each case ``load()``
returns the newest intact step and the disk ends up holding every step that was saved."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="baige.ckpt needs torch: pip install 'baige[train]'")


from baige.ckpt import Checkpointer, ThrottledWriter  # noqa: E402
from baige.ckpt.manifest import complete_steps, read_manifest, step_dir, verify_file  # noqa: E402
from baige.ckpt.shm import RankFiles, read_control, runtime_dir  # noqa: E402

from .conftest import start, wait_for  # noqa: E402
from .workers import small_state  # noqa: E402


def _control(shm_root: Path, ckdir: Path):
    return read_control(RankFiles(runtime_dir(shm_root, ckdir), 0).control)


def _assert_state(state: dict, step: int, numel: int = 1000) -> None:
    expected = small_state(step, numel)
    for key in ("w", "b", "half"):
        assert torch.equal(state[key], expected[key]), key
    assert state["meta"] == expected["meta"]


def _verified(ckdir: Path, step: int) -> None:
    folder = step_dir(ckdir, step)
    man = read_manifest(folder)
    for f in man.shard(0).files:
        verify_file(folder, f)


def test_trainer_killed_mid_save_leaves_previous_step(tmp_path: Path, shm_root: Path) -> None:
    ckdir, marker = tmp_path / "ck", tmp_path / "inside"
    proc = start("stall", "--dir", str(ckdir), "--shm", str(shm_root), "--marker", str(marker))
    try:
        wait_for(marker.exists, 60, "the trainer to be inside save(2)")
        ctl = _control(shm_root, ckdir)
        assert ctl is not None
        states = sorted((s.step, s.state) for s in ctl.slots)
        assert states == [(1, "ready"), (2, "writing")]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with Checkpointer(ckdir, shm_dir=shm_root) as ck:
        restored = ck.load()
        assert restored is not None and (restored.step, restored.source) == (1, "memory")
        _assert_state(restored.state, 1)
        # The torn slot is simply the next one written.
        ck.save(3, small_state(3))
        assert ck.wait() == 3
    assert [s for s, _ in complete_steps(ckdir)] == [3, 1]


def test_trainer_killed_mid_persist_is_finished_by_persister(
    tmp_path: Path, shm_root: Path
) -> None:
    ckdir, marker = tmp_path / "ck", tmp_path / "saved"
    numel = 250_000  # 1 MB at 1 MB/s: a second of persisting
    proc = start(
        "save_then_hang", "--dir", str(ckdir), "--shm", str(shm_root), "--marker", str(marker),
        "--rate", "1e6", "--numel", str(numel),
    )  # fmt: skip
    try:
        wait_for(marker.exists, 60, "save(2) to return")
        ctl = _control(shm_root, ckdir)
        assert ctl is not None and ctl.persisted_step == 1
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    # The persister outlives the trainer and commits step 2 on its own.
    wait_for(lambda: step_dir(ckdir, 2).joinpath("manifest.json").exists(), 30, "step 2 on disk")
    _verified(ckdir, 2)
    with Checkpointer(ckdir, shm_dir=shm_root) as ck:  # a restart on the same node
        restored = ck.load()
        assert restored is not None and (restored.step, restored.source) == (2, "memory")
        _assert_state(restored.state, 2, numel)


def test_persister_killed_mid_write_is_replaced(tmp_path: Path, shm_root: Path) -> None:
    ckdir = tmp_path / "ck"
    numel = 500_000  # 2 MB at 2 MB/s
    ck = Checkpointer(ckdir, shm_dir=shm_root, writer=ThrottledWriter(2e6))
    ck.save(1, small_state(1, 1000))
    assert ck.wait() == 1
    ck.save(2, small_state(2, numel))
    folder = step_dir(ckdir, 2)
    wait_for(
        lambda: folder.exists() and any(".tmp" in p.name for p in folder.iterdir()),
        30,
        "a partial file of step 2",
    )
    files = RankFiles(runtime_dir(shm_root, ckdir), 0)
    first = int(files.pid.read_text())
    os.kill(first, signal.SIGKILL)
    os.waitpid(first, 0)
    assert not (folder / "manifest.json").exists()
    # wait() notices the dead persister, starts another, which redoes step 2.
    assert ck.wait(timeout=60) == 2
    assert int(files.pid.read_text()) != first
    assert not any(".tmp" in p.name for p in folder.iterdir())
    _verified(ckdir, 2)
    _verified(ckdir, 1)
    ck.close()
    other = shm_root / "disk-only"
    other.mkdir()
    with Checkpointer(ckdir, shm_dir=other) as fresh:
        restored = fresh.load()
        assert restored is not None and (restored.step, restored.source) == (2, "disk")
        _assert_state(restored.state, 2, numel)
