"""Progress beacons: one small memory-mapped record per rank that the trainer writes on every
step and the agent reads whenever it looks.

A beacon must never slow the step it reports, so it is not a message: no socket, no pipe, no
``write`` call. The agent creates one file per rank in a tmpfs (``/dev/shm``, where a mapped
page is never written back to a disk and so never blocks a store), the trainer maps it and
overwrites a fixed record in place. Cumulative counters (steps, busy seconds) make the record
lossless however rarely the agent samples it, and a sequence lock (odd while writing) lets the
reader retry instead of seeing half a record, with no lock for the writer to wait on.

Times are ``time.monotonic()``: CLOCK_MONOTONIC is one clock for every process on a host.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import struct
import time
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

__all__ = [
    "BEACON_SIZE",
    "COMM_MARKS",
    "Beacon",
    "BeaconError",
    "BeaconReader",
    "BeaconWriter",
    "Source",
    "State",
    "beacon_path",
    "create_beacon",
]

_MAGIC = b"BAIGEBCN"
_VERSION = 1
# magic, version, rank, attempt
_HEADER = struct.Struct("<8sIii4x")
_SEQ = struct.Struct("<Q")
_SEQ_AT = _HEADER.size
_SEQ_INDEX = _SEQ_AT // 8  # the sequence word as a native 8-byte item: one aligned store
assert _SEQ_AT % 8 == 0
# pid, state, source, step, n_steps, total_steps, restored_step,
# t_attach, t_first, t_last, busy_total, wall_last, loss,
# then (appended, so the fields above keep their offsets; a beacon of an older writer reads
# zeros here) comm_total, comm_count, and the last COMM_MARKS collectives' (enter, exit)
# times, collective number n in slot n % COMM_MARKS
COMM_MARKS = 4
_BODY = struct.Struct("<qiiqqqqdddddd" + "dq" + "dd" * COMM_MARKS)
_BODY_AT = _SEQ_AT + _SEQ.size
BEACON_SIZE = 256
assert _BODY_AT + _BODY.size <= BEACON_SIZE


class BeaconError(RuntimeError):
    """A beacon file that is not one, or of another version."""


class State(IntEnum):
    """Where a rank is, as its beacon says."""

    CREATED = 0  # the agent made the file; no trainer has attached yet
    ATTACHED = 1  # attach() ran: stacks can be dumped, no step yet
    RUNNING = 2  # at least one step reported in this attempt
    FINISHED = 3  # the script said its training is complete


class Source(IntEnum):
    """Where a restarted trainer restored its state from (``Progress.restored``)."""

    NONE = 0
    MEMORY = 1
    DISK = 2
    OTHER = 3
    BUDDY = 4  # a peer node's memory (baige.ckpt peer-memory checkpoints)

    @classmethod
    def parse(cls, text: str) -> Source:
        known = {"": cls.NONE, "memory": cls.MEMORY, "disk": cls.DISK, "buddy": cls.BUDDY}
        return known.get(text, cls.OTHER)


@dataclass(frozen=True, slots=True)
class Beacon:
    """One consistent reading of a rank's record."""

    rank: int
    attempt: int
    seq: int
    pid: int
    state: State
    source: Source
    step: int  # last step reported, -1 before the first
    n_steps: int  # steps reported in this attempt
    total_steps: int  # -1 when the script did not say
    restored_step: int  # -1 unless Progress.restored was called
    t_attach: float
    t_first: float
    t_last: float
    busy_total: float  # CPU (or reported compute) seconds summed over the steps reported
    wall_last: float  # seconds between the last two steps
    loss: float
    # time in collectives, as timed by ``Progress.comm()`` (or reported as ``comm_s``)
    comm_total: float = 0.0
    comm_count: int = 0  # collectives timed by ``Progress.comm()`` in this attempt
    # (n, enter, exit) of the last few timed collectives (monotonic: one clock per host)
    comm_last: tuple[tuple[int, float, float], ...] = ()

    @property
    def attached(self) -> bool:
        return self.state >= State.ATTACHED

    @property
    def finished(self) -> bool:
        return self.state == State.FINISHED or (
            self.total_steps >= 0 and self.step >= self.total_steps - 1
        )


def beacon_path(directory: Path, rank: int) -> Path:
    return directory / f"rank-{rank:05d}.beacon"


def create_beacon(directory: Path, rank: int, attempt: int) -> Path:
    """Make (or remake) a rank's beacon for a new attempt, atomically, so a trainer never maps a
    half-written header."""
    directory.mkdir(parents=True, exist_ok=True)
    path = beacon_path(directory, rank)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    data = bytearray(BEACON_SIZE)
    _HEADER.pack_into(data, 0, _MAGIC, _VERSION, rank, attempt)
    _BODY.pack_into(
        data, _BODY_AT, 0, State.CREATED, 0, -1, 0, -1, -1, 0, 0, 0, 0, 0, math.nan, 0, 0,
        *([0.0] * 2 * COMM_MARKS),
    )  # fmt: skip
    tmp.write_bytes(bytes(data))
    tmp.replace(path)
    return path


def _map(path: Path) -> mmap.mmap:
    fd = os.open(path, os.O_RDWR)
    try:
        if os.fstat(fd).st_size < BEACON_SIZE:
            raise BeaconError(f"{path} is too short to be a beacon")
        return mmap.mmap(fd, BEACON_SIZE)
    finally:
        os.close(fd)


def _check_header(mm: mmap.mmap, path: Path) -> tuple[int, int]:
    magic, version, rank, attempt = _HEADER.unpack_from(mm, 0)
    if magic != _MAGIC:
        raise BeaconError(f"{path} is not a Baige beacon")
    if version != _VERSION:
        raise BeaconError(f"{path} is beacon version {version}; this Baige reads {_VERSION}")
    return int(rank), int(attempt)


class BeaconWriter:
    """The trainer's side. Every method is a handful of stores into mapped memory."""

    def __init__(self, path: Path, pid: int | None = None) -> None:
        self.path = path
        self._mm = _map(path)
        self.rank, self.attempt = _check_header(self._mm, path)
        self._words = memoryview(self._mm).cast("Q")
        self._seq = int(self._words[_SEQ_INDEX])
        if self._seq % 2:
            self._seq += 1
        self.pid = os.getpid() if pid is None else pid
        self.state = State.ATTACHED
        self.source = Source.NONE
        self.step = -1
        self.n_steps = 0
        self.total_steps = -1
        self.restored_step = -1
        self.t_attach = 0.0
        self.t_first = 0.0
        self.t_last = 0.0
        self.busy_total = 0.0
        self.wall_last = 0.0
        self.loss = math.nan
        self.comm_total = 0.0
        self.comm_count = 0
        self.comm_marks = [0.0] * (2 * COMM_MARKS)  # enter, exit per slot

    def mark_comm(self, enter: float, leave: float) -> None:
        """Record one timed collective (publish to make it visible)."""
        self.comm_count += 1
        slot = 2 * (self.comm_count % COMM_MARKS)
        self.comm_marks[slot] = enter
        self.comm_marks[slot + 1] = leave
        self.comm_total += leave - enter

    def publish(self) -> None:
        mm, words = self._mm, self._words
        self._seq += 1
        words[_SEQ_INDEX] = self._seq
        _BODY.pack_into(
            mm,
            _BODY_AT,
            self.pid,
            self.state,
            self.source,
            self.step,
            self.n_steps,
            self.total_steps,
            self.restored_step,
            self.t_attach,
            self.t_first,
            self.t_last,
            self.busy_total,
            self.wall_last,
            self.loss,
            self.comm_total,
            self.comm_count,
            *self.comm_marks,
        )
        self._seq += 1
        words[_SEQ_INDEX] = self._seq

    def close(self) -> None:
        self._words.release()
        with contextlib.suppress(BufferError, ValueError):
            self._mm.close()


class BeaconReader:
    """The agent's side: a mapping kept open for the attempt, read without locks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mm = _map(path)
        self.rank, self.attempt = _check_header(self._mm, path)
        self._words = memoryview(self._mm).cast("Q")
        self._last: Beacon | None = None

    def read(self) -> Beacon:
        """A consistent record. While the trainer is in the middle of a write (which takes
        microseconds) it retries, yielding the CPU after the first thousand tries; if no
        consistent reading comes within 50 ms (a trainer that died mid-write) it returns the
        last consistent one."""
        mm, words = self._mm, self._words
        deadline = 0.0
        tries = 0
        while True:
            before = int(words[_SEQ_INDEX])
            if not before % 2:
                body = _BODY.unpack_from(mm, _BODY_AT)
                if words[_SEQ_INDEX] == before:
                    self._last = self._decode(before, body)
                    return self._last
            tries += 1
            if tries >= 1000:
                now = time.monotonic()
                if not deadline:
                    deadline = now + 0.05
                elif now > deadline:
                    if self._last is not None:
                        return self._last
                    return self._decode(before, _BODY.unpack_from(mm, _BODY_AT))
                time.sleep(0.0001)

    def _decode(self, seq: int, body: tuple[Any, ...]) -> Beacon:
        pid, state, source, step, n_steps, total, restored, *times = body
        t_attach, t_first, t_last, busy, wall_last, loss, comm_total, comm_count = times[:8]
        marks = times[8:]
        last = []
        for n in range(max(1, comm_count - COMM_MARKS + 1), comm_count + 1):
            slot = 2 * (n % COMM_MARKS)
            last.append((n, marks[slot], marks[slot + 1]))
        return Beacon(
            rank=self.rank,
            attempt=self.attempt,
            seq=seq,
            pid=pid,
            state=State(state),
            source=Source(source),
            step=step,
            n_steps=n_steps,
            total_steps=total,
            restored_step=restored,
            t_attach=t_attach,
            t_first=t_first,
            t_last=t_last,
            busy_total=busy,
            wall_last=wall_last,
            loss=loss,
            comm_total=comm_total,
            comm_count=comm_count,
            comm_last=tuple(last),
        )

    def close(self) -> None:
        self._words.release()
        with contextlib.suppress(BufferError, ValueError):
            self._mm.close()
