"""Every rank's Python stacks, taken before a hung group is killed.

A hang is only fixed by knowing where it was: which rank sat in which collective, which one
was somewhere else. ``attach()`` registers ``faulthandler`` on SIGUSR1 in each trainer,
writing to a per-attempt, per-rank file; faulthandler's handler is C code that walks every
thread's frames without the GIL holder's cooperation, so it answers even when the main thread
is stuck inside gloo or NCCL. The agent signals, waits for the files to stop growing, and puts
the text in the event log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = ["STACKS_SIGNAL", "dump_stacks", "innermost_frame", "stacks_path"]

STACKS_SIGNAL = signal.SIGUSR1
_MAX_CHARS = 20_000


def stacks_path(run_dir: Path, attempt: int, rank: int) -> Path:
    return run_dir / "stacks" / f"attempt-{attempt:03d}" / f"rank-{rank:05d}.txt"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def dump_stacks(
    pids: Mapping[int, int], files: Mapping[int, Path], timeout_s: float = 3.0
) -> dict[int, str]:
    """Signal each rank's pid and return, by rank, what its stack file gained (the last
    ``_MAX_CHARS`` characters), or a note saying why there is nothing."""
    before = {rank: max(0, _size(files[rank])) for rank in pids}
    out: dict[int, str] = {}
    signalled: list[int] = []
    for rank, pid in pids.items():
        try:
            os.kill(pid, STACKS_SIGNAL)
            signalled.append(rank)
        except ProcessLookupError:
            out[rank] = f"(pid {pid} had already exited)"
    deadline = time.monotonic() + timeout_s
    last: dict[int, int] = {}
    stable_since: dict[int, float] = {}
    while signalled and time.monotonic() < deadline:
        now = time.monotonic()
        for rank in list(signalled):
            size = _size(files[rank])
            if size > before[rank] and size == last.get(rank):
                if now - stable_since[rank] >= 0.1:
                    signalled.remove(rank)
            else:
                last[rank], stable_since[rank] = size, now
        time.sleep(0.02)
    for rank in pids:
        if rank in out:
            continue
        text = ""
        with contextlib.suppress(OSError), files[rank].open("rb") as src:
            src.seek(before[rank])
            text = src.read().decode("utf-8", errors="replace")
        if not text:
            text = f"(no stacks written to {files[rank]} within {timeout_s:g} s)"
        out[rank] = text[-_MAX_CHARS:]
    return out


def innermost_frame(text: str) -> str | None:
    """Where the dumped thread was (faulthandler lists the most recent call first): the first
    frame of the "Current thread" (the main thread, which takes the signal), else of any."""
    current = False
    first: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("Current thread", "Thread ")):
            current = stripped.startswith("Current thread")
            continue
        if stripped.startswith("File "):
            if current:
                return stripped
            first = first or stripped
    return first
