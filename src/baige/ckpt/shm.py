"""Host shared memory for one checkpoint directory and rank: slot files, the control record,
and the locks that let a trainer and its persister (or their successors) share them.

Slots are plain files in a tmpfs (``/dev/shm``), mapped with mmap, rather than
``multiprocessing.shared_memory``: Python 3.11's resource tracker unlinks a segment when the
process that made it dies, which is exactly the crash a flash checkpoint must survive.
Space is reserved with ``posix_fallocate`` when a slot is made, so a full tmpfs is a clear
error at allocation, never a SIGBUS in the middle of a save.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from baige.ckpt.control import Control
from baige.ckpt.errors import SharedMemoryFull

__all__ = [
    "DEFAULT_SHM_ROOT",
    "RankFiles",
    "Slot",
    "check_space",
    "locked",
    "open_wake",
    "process_start",
    "read_control",
    "runtime_dir",
    "try_lock",
    "wake",
    "write_control",
]

DEFAULT_SHM_ROOT = Path("/dev/shm")
_GIB = 1 << 30


def runtime_dir(shm_root: Path, ckpt_dir: Path) -> Path:
    """The node-local folder for one checkpoint directory: same directory, same folder, so a
    restarted trainer finds its predecessor's memory."""
    digest = hashlib.sha256(str(ckpt_dir.resolve()).encode()).hexdigest()[:16]
    return shm_root / f"baige-ckpt-{digest}"


@dataclass(frozen=True)
class RankFiles:
    """The files one rank uses inside the runtime folder."""

    root: Path
    rank: int

    def _p(self, suffix: str) -> Path:
        return self.root / f"r{self.rank:05d}.{suffix}"

    @property
    def lock(self) -> Path:
        return self._p("lock")

    @property
    def pid(self) -> Path:
        return self._p("pid")

    @property
    def control(self) -> Path:
        return self._p("ctl")

    @property
    def wake(self) -> Path:
        """A FIFO the trainer writes a byte to when there is work, so an idle persister
        sleeps in select() instead of polling."""
        return self._p("wake")

    def slot(self, i: int) -> Path:
        return self._p(f"slot{i}")

    def memory_files(self) -> list[Path]:
        """The slots and the control record, plus temporary files a killed process left."""
        stale = self.root.glob(f"r{self.rank:05d}.*.tmp*") if self.root.is_dir() else []
        return [self.slot(0), self.slot(1), self.control, self.wake, *stale]


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``path``, re-opening if the file was unlinked and recreated
    while we waited (a persister cleaning up may remove it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                return
        finally:
            os.close(fd)


def open_wake(path: Path) -> int:
    """The persister's end of the wake-up FIFO (read-write, so it never sees end-of-file)."""
    with contextlib.suppress(FileExistsError):
        os.mkfifo(path, 0o600)
    return os.open(path, os.O_RDWR | os.O_NONBLOCK)


def wake(path: Path) -> None:
    """Nudge the persister; harmless if none is listening or a nudge is already pending."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no FIFO yet, or no reader: the persister polls on start anyway
        return
    try:
        os.write(fd, b"\0")
    except BlockingIOError:
        pass
    finally:
        os.close(fd)


def try_lock(path: Path) -> int | None:
    """Take an exclusive flock without waiting; return the open descriptor, or None if some
    other process holds it. Used as a liveness probe: a dead process holds no flock."""
    for attempt in range(5):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            break
        # the folder was removed (a persister cleaning up) meanwhile: mkdir saw it exist and
        # then not be a folder (FileExistsError), or open found it gone
        except (FileNotFoundError, FileExistsError):
            if attempt == 4:
                raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def read_control(path: Path) -> Control | None:
    """The control record, or None if there is none (fresh start or cleaned up)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return Control.from_json(text, str(path))


def write_control(path: Path, ctl: Control) -> None:
    """Replace the record atomically, so a process killed mid-write leaves the old one."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(ctl.to_json())
    os.replace(tmp, path)


def process_start(pid: int) -> int | None:
    """The start time of a live process in clock ticks since boot, or None if it is gone;
    (pid, start) names a process even when the pid is later reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def check_space(root: Path, extra: int, what: str) -> None:
    """Refuse to grow shared memory by ``extra`` bytes when the tmpfs or the host cannot hold
    it, with the figures needed to fix it."""
    if extra <= 0:
        return
    st = os.statvfs(root)
    free = st.f_bavail * st.f_frsize
    if extra > free:
        raise SharedMemoryFull(
            f"{what} needs {extra / _GIB:.2f} GiB more shared memory but {root} has "
            f"{free / _GIB:.2f} GiB free (of {st.f_blocks * st.f_frsize / _GIB:.2f} GiB); "
            f"enlarge it (docker run --shm-size, or mount -o remount,size=… {root}) "
            "or save a smaller state"
        )
    available = _mem_available()
    if available is not None and extra > available:
        raise SharedMemoryFull(
            f"{what} needs {extra / _GIB:.2f} GiB more shared memory but the host has "
            f"{available / _GIB:.2f} GiB of memory available"
        )


def _mem_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class Slot:
    """One shared-memory slot, mapped read-write. ``capacity`` bytes are reserved in the
    tmpfs up front; ``grow`` only ever enlarges it."""

    def __init__(self, path: Path, capacity: int, *, create: bool) -> None:
        self.path = path
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        self.fd = os.open(path, flags, 0o600)
        try:
            size = os.fstat(self.fd).st_size
            if size < capacity:
                if not create:
                    raise FileNotFoundError(f"{path}: {size} bytes, expected {capacity}")
                self._reserve(capacity)
                size = capacity
            self.capacity = size
            self.map = self._map(size)
        except BaseException:
            os.close(self.fd)
            raise

    def _reserve(self, capacity: int) -> None:
        try:
            os.posix_fallocate(self.fd, 0, capacity)
        except OSError as exc:
            raise SharedMemoryFull(
                f"reserving {capacity / _GIB:.2f} GiB in {self.path} failed: {exc.strerror}"
            ) from None

    def _map(self, size: int) -> mmap.mmap:
        # No MAP_POPULATE: prefaulting costs more than the faults of the first copy into
        # the slot (measured: 0.64 s vs 0.42 s per GiB), and it would be paid for both slots
        # in the first save. The mapping is kept, so only a slot's first save faults.
        return mmap.mmap(self.fd, size, flags=mmap.MAP_SHARED)

    def grow(self, capacity: int) -> None:
        """Enlarge to ``capacity`` bytes; the caller must hold no views of the old mapping."""
        if capacity <= self.capacity:
            return
        self._reserve(capacity)
        self.map.close()
        self.map = self._map(capacity)
        self.capacity = capacity

    def close(self) -> None:
        with contextlib.suppress(BufferError):
            self.map.close()
        os.close(self.fd)
