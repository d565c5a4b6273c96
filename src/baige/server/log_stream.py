"""Streaming a workload's logs without letting one client hold the server.

A followed log stream lives as long as its job: minutes or days. Written as a plain generator
it would hold one of the server's worker threads for all that time, and a few dozen followers
would leave none for any other request (``/healthz`` included). So the stream is an async
generator that sleeps on the event loop and borrows a thread only for each short read; every
read is bounded (``CHUNK``), so a job that writes gigabytes of output cannot make the API
read them into memory at once; and ``tail`` seeks from the end instead of reading the whole
file. How many streams one caller may follow at once is capped by :class:`FollowLimit`.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

from starlette.concurrency import run_in_threadpool

from baige.api.workloads import Phase
from baige.control.auth import Principal
from baige.control.errors import ApiError
from baige.control.service import ControlService

__all__ = ["CHUNK", "FollowLimit", "TooManyFollowers", "followed", "stream_logs", "tail_offset"]

CHUNK = 1 << 20  # bytes read (and sent) at a time
_TAIL_SCAN = 4 << 20  # how far back from the end ``tail`` looks for line breaks


class TooManyFollowers(ApiError):
    status = 429


class FollowLimit:
    """At most ``per_caller`` followed streams per token at once (429 beyond)."""

    def __init__(self, per_caller: int = 16) -> None:
        self.per_caller = per_caller
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def acquire(self, who: Principal) -> Callable[[], None]:
        """Count one more stream for ``who``; the returned function ends it (once, however
        often it is called: both the stream's end and the response's clean-up call it)."""
        with self._lock:
            if self._open[who.name] >= self.per_caller:
                raise TooManyFollowers(
                    f"{who.name} already follows {self._open[who.name]} log streams, the most "
                    "one token may; close one (or read without follow)"
                )
            self._open[who.name] += 1
        done = threading.Event()

        def release() -> None:
            with self._lock:
                if done.is_set():
                    return
                done.set()
                self._open[who.name] -= 1
                if self._open[who.name] <= 0:
                    del self._open[who.name]

        return release

    def open_streams(self, who: Principal) -> int:
        with self._lock:
            return self._open[who.name]


def _read_from(path: Path, offset: int) -> tuple[bytes, int]:
    """At most ``CHUNK`` bytes of ``path`` from ``offset``, and the offset after them."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(CHUNK)
    except OSError:
        return b"", offset
    return data, offset + len(data)


def tail_offset(path: Path, lines: int) -> int:
    """Where the last ``lines`` lines of ``path`` begin (0 if it has fewer), found by reading
    backwards in blocks (``bytes.rfind``, not a Python loop per byte); never more than
    ``_TAIL_SCAN`` bytes back, so output with no line breaks costs one bounded read."""
    try:
        with open(path, "rb") as handle:
            end = handle.seek(0, 2)
            position, found, block = end, 0, 1 << 16
            if end and _last_byte(handle, end) == b"\n":
                found = -1  # the final newline ends the last line; it does not start one
            while position > 0 and end - position < _TAIL_SCAN:
                start = max(0, position - block, end - _TAIL_SCAN)
                handle.seek(start)
                data = handle.read(position - start)
                cut = len(data)
                while (cut := data.rfind(b"\n", 0, cut)) >= 0:
                    found += 1
                    if found == lines:
                        return start + cut + 1
                position = start
            return position
    except OSError:
        return 0


def _last_byte(handle: BinaryIO, end: int) -> bytes:
    handle.seek(end - 1)
    return handle.read(1)


def _label(data: bytes, label: bytes, at_start: bool) -> tuple[bytes, bool]:
    """Prefix ``label`` to every line that starts in ``data``; whether the next chunk starts
    a line."""
    out = []
    for line in data.splitlines(keepends=True):
        out.append(label + line if at_start else line)
        at_start = line.endswith((b"\n", b"\r"))
    return b"".join(out), at_start


async def followed(
    release: Callable[[], None], stream: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """``stream``, counted against its caller's follow limit until it ends or is dropped."""
    try:
        async for data in stream:
            yield data
    finally:
        release()


async def stream_logs(
    service: ControlService,
    who: Principal,
    workload_id: str,
    replica: int | None,
    follow: bool,
    tail: int | None,
    poll_s: float,
    stopping: threading.Event,
) -> AsyncIterator[bytes]:
    """The replicas' output (labelled ``[r0] …`` when there are several), then, with
    ``follow``, what they write until the workload ends or the server stops."""
    offsets: dict[str, int] = {}
    at_start: dict[str, bool] = {}
    many = False

    async def drain(files: list[tuple[str, Path]]) -> AsyncIterator[bytes]:
        for replica_id, path in files:
            if replica_id not in offsets:
                offsets[replica_id] = (
                    0 if tail is None else await run_in_threadpool(tail_offset, path, tail)
                )
            while not stopping.is_set():
                data, offsets[replica_id] = await run_in_threadpool(
                    _read_from, path, offsets[replica_id]
                )
                if not data:
                    break
                if many:
                    label = f"[{replica_id}] ".encode()
                    data, at_start[replica_id] = _label(data, label, at_start.get(replica_id, True))
                yield data
                if len(data) < CHUNK:
                    break

    while True:
        files = await run_in_threadpool(service.log_files, who, workload_id, replica)
        many = many or len(files) > 1
        async for data in drain(files):
            yield data
        if not follow or stopping.is_set():
            return
        view = await run_in_threadpool(service.get, who, workload_id)
        if Phase(view.phase).terminal:
            files = await run_in_threadpool(service.log_files, who, workload_id, replica)
            async for data in drain(files):
                yield data
            return
        waited = 0.0
        while waited < poll_s:
            if stopping.is_set():
                return
            step = min(0.1, poll_s - waited)
            await asyncio.sleep(step)
            waited += step
