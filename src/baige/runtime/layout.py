"""Where a run keeps its things, and the environment that tells a trainer where they are.

One place for both, because the agent writes what the trainer reads (beacons, the fault
ledger, stack files) and they must agree on every name::

    RUN_DIR/events.jsonl                   the event log
    RUN_DIR/logs/…                         every rank's stdout and stderr, per attempt
    RUN_DIR/stacks/attempt-NNN/rank-R.txt  faulthandler dumps
    RUN_DIR/faults/fired-N.json            the fault ledger
    /dev/shm/baige-run-…/rank-R.beacon     beacons (tmpfs: never written back to a disk)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = [
    "ENV_BEACON_DIR",
    "ENV_FAULT",
    "ENV_RUN_DIR",
    "ENV_RUN_ID",
    "ENV_RUN_START",
    "beacon_dir_for",
    "default_run_dir",
    "events_path",
]

ENV_RUN_DIR = "BAIGE_RUN_DIR"
ENV_BEACON_DIR = "BAIGE_BEACON_DIR"
ENV_RUN_ID = "BAIGE_RUN_ID"
ENV_RUN_START = "BAIGE_RUN_START"
ENV_FAULT = "BAIGE_FAULT"

_SHM = Path("/dev/shm")


def default_run_dir(run_id: str) -> Path:
    """``~/.baige/runs/RUN_ID``; under the control plane, one folder per replica below it, as
    several replicas of one job may share a machine (and so a home)."""
    home = Path(os.environ.get("BAIGE_HOME", Path.home() / ".baige")).expanduser()
    replica = os.environ.get("BAIGE_REPLICA_ID") if os.environ.get("BAIGE_WORKLOAD_ID") else None
    return home / "runs" / run_id / replica if replica else home / "runs" / run_id


def events_path(run_dir: Path) -> Path:
    return run_dir / "events.jsonl"


def beacon_dir_for(run_dir: Path, agent_pid: int) -> Path:
    """A tmpfs folder for this agent's beacons, or the run directory where there is none."""
    digest = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:12]
    if _SHM.is_dir() and os.access(_SHM, os.W_OK):
        return _SHM / f"baige-run-{digest}-{agent_pid}"
    return run_dir / "beacons"
