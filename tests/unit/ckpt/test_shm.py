"""Shared-memory plumbing: refusing states that do not fit, locks that survive cleanup."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from baige.ckpt.errors import SharedMemoryFull
from baige.ckpt.shm import Slot, check_space, locked, process_start, runtime_dir

SHM = Path("/dev/shm")


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    path = SHM / f"baige-unit-{uuid.uuid4().hex[:10]}"
    path.mkdir()
    yield path
    for p in path.iterdir():
        p.unlink()
    path.rmdir()


def test_a_state_that_does_not_fit_is_refused_with_figures() -> None:
    with pytest.raises(SharedMemoryFull) as err:
        check_space(SHM, 1 << 60, "a 512 PiB checkpoint")
    message = str(err.value)
    assert "a 512 PiB checkpoint needs" in message and "GiB" in message
    check_space(SHM, 4096, "a small one")  # fits: no error


def test_reserving_a_slot_that_cannot_fit_fails_cleanly(shm_dir: Path) -> None:
    with pytest.raises(SharedMemoryFull, match="reserving"):
        Slot(shm_dir / "huge", 1 << 50, create=True)


def test_slot_is_reserved_mapped_and_grows(shm_dir: Path) -> None:
    slot = Slot(shm_dir / "s", 1 << 20, create=True)
    slot.map[:4] = b"abcd"
    assert (shm_dir / "s").stat().st_blocks * 512 >= 1 << 20  # really allocated
    slot.grow(2 << 20)
    assert slot.capacity == 2 << 20 and slot.map[:4] == b"abcd"
    slot.close()
    again = Slot(shm_dir / "s", 2 << 20, create=False)
    assert again.map[:4] == b"abcd"
    again.close()


def test_lock_survives_its_file_being_replaced(shm_dir: Path) -> None:
    path = shm_dir / "lock"
    with locked(path):
        path.unlink()  # a persister freeing memory removes it
    with locked(path):
        assert path.exists()


def test_process_identity() -> None:
    assert process_start(os.getpid()) is not None
    assert process_start(2**22 + 12345) is None


def test_runtime_dir_is_per_checkpoint_directory(tmp_path: Path) -> None:
    a = runtime_dir(SHM, tmp_path / "a")
    assert a == runtime_dir(SHM, tmp_path / "x" / ".." / "a")
    assert a != runtime_dir(SHM, tmp_path / "b")
