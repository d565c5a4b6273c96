"""The run's event log: one JSON object per line, appended as things happen.

A file first, because it is there even when nothing else is: no control plane, a network
partition, a crashed agent (each line is flushed before the next thing happens, so a
``kill -9`` of the agent loses at most the line being written). Sinks (the control-plane
reporter) get the same dicts; a sink that fails never stops the log.

Every line has ``ts`` (Unix time), ``event``, ``run_id`` and ``node``. The events:

- ``run_started``: command, ranks, limits, fault plan
- ``workers_started``: attempt, pids by rank
- ``training_started``: attempt 0's first step, and how long start-up took
- ``fault_injected``: a ``BAIGE_FAULT`` fault fired (kind, rank, step)
- ``fault_detected``: kind (crash, hang, early_exit, no_progress), ranks, step, and
  ``detect_s`` when the fault was injected (so its start is known)
- ``stacks``: every rank's Python stacks, dumped before a hung group is killed
- ``restart``: attempt, restarts left, why
- ``restored``: the first step of a restarted group: step restored, source, ``lost_steps``,
  ``recovery_s`` (detection → training again)
- ``straggler``: a rank whose compute per step is ``ratio`` times the others' median
- ``network_suspect``: a rank whose own time in collectives (waiting for late peers left
  out) is ``ratio`` times the others' while its compute is not slow: its link, not its chip
- ``node_reported``: a node reported for cordoning (repeated straggling)
- ``node_excluded``: this node left the job after repeated faults on it
- ``progress``: step and step rate, every ``--progress-every`` seconds
- ``run_finished``: state, exit code, restarts, last step, message
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

__all__ = ["EVENT_NAMES", "EventLog", "Sink", "read_events"]

log = logging.getLogger("baige.runtime")

EVENT_NAMES: Final = (
    "run_started",
    "workers_started",
    "training_started",
    "fault_injected",
    "fault_detected",
    "stacks",
    "restart",
    "restored",
    "straggler",
    "network_suspect",
    "node_reported",
    "node_excluded",
    "progress",
    "run_finished",
)

Sink = Callable[[Mapping[str, Any]], None]


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity; write null rather than an unreadable line."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


class EventLog:
    """Append-only JSON lines, safe to call from the agent's threads."""

    def __init__(self, path: Path, *, run_id: str, node: str) -> None:
        self.path = path
        self.run_id = run_id
        self.node = node
        self.sinks: list[Sink] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        if event not in EVENT_NAMES:
            raise ValueError(f"unknown event {event!r}")
        record: dict[str, Any] = {
            "ts": round(time.time(), 6),
            "event": event,
            "run_id": self.run_id,
            "node": self.node,
        }
        record.update(_clean(fields))
        line = json.dumps(record, default=str)
        with self._lock:
            if not self._file.closed:
                self._file.write(line + "\n")
                self._file.flush()
        for sink in self.sinks:
            try:
                sink(record)
            except Exception:
                log.exception("event sink %r failed", sink)
        return record

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """The events in a log, skipping a torn last line."""
    with path.open(encoding="utf-8") as src:
        for line in src:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record
