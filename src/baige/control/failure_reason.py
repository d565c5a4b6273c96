"""Why a replica could not start, read from its log: the shim's own words beat an exit code.

The process shim (``baige.backends.shim``) cannot report a failed ``exec`` except through the
replica's ``output.log`` (a line ``baige: cannot start 'x': [Errno 2] …``) and exit code 127.
The controller reads that line back so the workload's reason says what went wrong, instead of
only "exited with code 127".
"""

from __future__ import annotations

import os

__all__ = ["LAUNCH_EXIT_CODES", "launch_failure_message"]

LAUNCH_EXIT_CODES = frozenset({126, 127})  # the shell's "cannot execute" / "not found"
_PREFIX = "baige: cannot start"
_TAIL_BYTES = 4096  # the line is the last thing the shim writes: the tail is enough
_MAX_CHARS = 300


def launch_failure_message(log_path: str | None, exit_code: int | None) -> str | None:
    """The shim's "cannot start …" line (without the ``baige: `` prefix) when a replica that
    exited with 126/127 logged one among its last lines, else None. Never raises: a missing or
    unreadable log just means there is nothing to add."""
    if not log_path or exit_code not in LAUNCH_EXIT_CODES:
        return None
    try:
        with open(log_path, "rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(0, size - _TAIL_BYTES))
            tail = log.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    for line in reversed(tail.splitlines()[-5:]):
        line = line.strip()
        if line.startswith(_PREFIX):
            return line.removeprefix("baige: ")[:_MAX_CHARS]
    return None
