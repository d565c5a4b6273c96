"""How the persister writes bytes to disk, with two declared fault injectors.

The persister runs in another process, so a test cannot patch it; instead the trainer names
a writer by a small JSON spec (``DiskWriter.spec``) and the persister builds the same writer
from it. ``FullDiskWriter`` raises ENOSPC after a byte budget, as a full disk does, and
``ThrottledWriter`` caps bandwidth so a test can kill a process while a persist is under way.
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
from collections.abc import Callable, Mapping

__all__ = [
    "DiskWriter",
    "FullDiskWriter",
    "ThrottledWriter",
    "start_writeback",
    "writer_from_spec",
]

_CHUNK = 64 << 20


class DiskWriter:
    """Writes every byte of a buffer to a file descriptor, in chunks, retrying short writes."""

    def write_all(self, fd: int, data: memoryview, path: str) -> None:
        view = data.cast("B") if data.format != "B" else data
        done = 0
        while done < len(view):
            end = min(done + _CHUNK, len(view))
            done += self._write(fd, view[done:end], path)

    def _write(self, fd: int, data: memoryview, path: str) -> int:
        return os.write(fd, data)

    def spec(self) -> dict[str, object]:
        """The JSON-able description the persister process rebuilds this writer from."""
        return {"kind": "disk"}


class FullDiskWriter(DiskWriter):
    """A disk that fills up: the writes of this persister process succeed until
    ``after_bytes`` bytes in all, then raise ``OSError(ENOSPC)`` like a full file system."""

    def __init__(self, after_bytes: int) -> None:
        if after_bytes < 0:
            raise ValueError(f"FullDiskWriter.after_bytes must be >= 0, got {after_bytes}")
        self.after_bytes = after_bytes
        self.written = 0

    def _write(self, fd: int, data: memoryview, path: str) -> int:
        room = self.after_bytes - self.written
        if room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        n = os.write(fd, data[:room])
        self.written += n
        return n

    def spec(self) -> dict[str, object]:
        return {"kind": "full-disk", "after_bytes": self.after_bytes}


class ThrottledWriter(DiskWriter):
    """A slow disk: at most ``bytes_per_second``, so a persist takes long enough to be
    interrupted on purpose."""

    def __init__(self, bytes_per_second: float) -> None:
        if not bytes_per_second > 0:
            raise ValueError(
                f"ThrottledWriter.bytes_per_second must be > 0, got {bytes_per_second}"
            )
        self.bytes_per_second = float(bytes_per_second)

    def _write(self, fd: int, data: memoryview, path: str) -> int:
        piece = max(4096, int(self.bytes_per_second / 20))
        n = os.write(fd, data[:piece])
        time.sleep(n / self.bytes_per_second)
        return n

    def spec(self) -> dict[str, object]:
        return {"kind": "throttled", "bytes_per_second": self.bytes_per_second}


def writer_from_spec(spec: Mapping[str, object]) -> DiskWriter:
    """Rebuild a writer from ``DiskWriter.spec``; a bad spec is an error naming the field."""
    kind = spec.get("kind")
    if kind == "disk":
        return DiskWriter()
    if kind == "full-disk":
        after = spec.get("after_bytes")
        if not isinstance(after, int) or isinstance(after, bool):
            raise ValueError(f"writer spec: after_bytes must be an integer, got {after!r}")
        return FullDiskWriter(after)
    if kind == "throttled":
        rate = spec.get("bytes_per_second")
        if not isinstance(rate, int | float) or isinstance(rate, bool):
            raise ValueError(f"writer spec: bytes_per_second must be a number, got {rate!r}")
        return ThrottledWriter(float(rate))
    raise ValueError(f"writer spec: unknown kind {kind!r} (disk, full-disk, throttled)")


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_SFR = _sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing these bytes to disk now, without waiting (Linux
    ``sync_file_range(SYNC_FILE_RANGE_WRITE)``), so the disk works while the next bytes are
    copied and the file's one ``fsync`` finds little left to do. Durability still comes
    only from that fsync; where the call is missing this does nothing."""
    if _SFR is not None and length > 0:
        _SFR(fd, offset, length, _SYNC_FILE_RANGE_WRITE)
