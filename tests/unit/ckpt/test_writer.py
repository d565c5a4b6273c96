"""The declared disk writers: a real one, one that fills up, one that is slow."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from baige.ckpt.writer import DiskWriter, FullDiskWriter, ThrottledWriter, writer_from_spec


def _write(writer: DiskWriter, path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        writer.write_all(fd, memoryview(data), str(path))
    finally:
        os.close(fd)


def test_full_disk_writer_fails_with_enospc_after_its_budget(tmp_path: Path) -> None:
    writer = FullDiskWriter(after_bytes=1000)
    path = tmp_path / "f"
    _write(writer, path, b"a" * 600)
    with pytest.raises(OSError) as err:
        _write(writer, path, b"b" * 600)
    assert err.value.errno == errno.ENOSPC
    assert path.stat().st_size == 1000  # like a real disk: it wrote what fitted
    with pytest.raises(OSError):
        _write(writer, path, b"c")


def test_throttled_writer_caps_bandwidth(tmp_path: Path) -> None:
    t0 = time.monotonic()
    _write(ThrottledWriter(bytes_per_second=400_000), tmp_path / "f", b"x" * 100_000)
    assert time.monotonic() - t0 >= 0.2
    assert (tmp_path / "f").stat().st_size == 100_000


@pytest.mark.parametrize("writer", [DiskWriter(), FullDiskWriter(5), ThrottledWriter(10.0)])
def test_specs_round_trip(writer: DiskWriter) -> None:
    again = writer_from_spec(writer.spec())
    assert type(again) is type(writer) and again.spec() == writer.spec()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "tape"}, "unknown kind 'tape'"),
        ({"kind": "full-disk"}, "after_bytes must be an integer"),
        ({"kind": "full-disk", "after_bytes": -1}, "after_bytes must be >= 0"),
        ({"kind": "throttled", "bytes_per_second": "fast"}, "bytes_per_second must be a number"),
        ({"kind": "throttled", "bytes_per_second": 0}, "bytes_per_second must be > 0"),
    ],
)
def test_bad_specs_name_the_field(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        writer_from_spec(spec)
