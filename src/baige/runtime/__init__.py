"""Fault-tolerant training (``baige run``): a launcher around PyTorch's elastic agent that
watches each rank's progress, detects crashes, hangs and slow ranks, restarts the worker group
(which restores from a ``baige.ckpt`` flash checkpoint) and records everything in an event log.
See ``docs/runtime.md``.

In a training script::

    progress = baige.runtime.attach(total_steps=N)
    for step in range(start, N):
        ...
        progress.step(step, loss=loss_value)

Names are imported lazily: a trainer importing ``attach`` pays for neither torch's elastic
agent nor an HTTP client, and ``attach`` never imports torch at all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from baige.runtime.agent import AgentSettings, BaigeAgent
    from baige.runtime.beacon import Beacon, BeaconReader, BeaconWriter
    from baige.runtime.events import EventLog, read_events
    from baige.runtime.faults import Fault, FaultPlan, FaultSpecError, parse_faults
    from baige.runtime.launch import RunConfig, RunOutcome, UsageError, run
    from baige.runtime.progress import Progress, attach
    from baige.runtime.watch import WatchConfig

__all__ = [
    "AgentSettings",
    "BaigeAgent",
    "Beacon",
    "BeaconReader",
    "BeaconWriter",
    "EventLog",
    "Fault",
    "FaultPlan",
    "FaultSpecError",
    "Progress",
    "RunConfig",
    "RunOutcome",
    "UsageError",
    "WatchConfig",
    "attach",
    "parse_faults",
    "read_events",
    "run",
]

_WHERE = {
    "AgentSettings": "agent",
    "BaigeAgent": "agent",
    "Beacon": "beacon",
    "BeaconReader": "beacon",
    "BeaconWriter": "beacon",
    "EventLog": "events",
    "read_events": "events",
    "Fault": "faults",
    "FaultPlan": "faults",
    "FaultSpecError": "faults",
    "parse_faults": "faults",
    "RunConfig": "launch",
    "RunOutcome": "launch",
    "UsageError": "launch",
    "run": "launch",
    "Progress": "progress",
    "attach": "progress",
    "WatchConfig": "watch",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'baige.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(f"baige.runtime.{module}"), name)
