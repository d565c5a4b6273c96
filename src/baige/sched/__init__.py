"""The scheduling library: a pure function from a cluster snapshot and a time to decisions.

``run_cycle(snapshot, now, profile)`` is the whole interface. It reads no clock, opens no
file or socket, and imports nothing from the control plane, the store, the backends or the
simulator; the simulator and the live control plane drive the very same code.
"""

from baige.sched.apply import apply_decisions
from baige.sched.cycle import run_cycle, workload_mix
from baige.sched.decisions import (
    Admit,
    CycleResult,
    CycleStats,
    Decision,
    Grow,
    Pending,
    Preempt,
    Reason,
    Reservation,
    Shrink,
)
from baige.sched.model import (
    MILLI,
    Assignment,
    Health,
    Kind,
    Mix,
    Node,
    Placement,
    Queue,
    Quota,
    Request,
    Snapshot,
    Workload,
)
from baige.sched.profile import BAIGE, FIFO, PROFILES, Profile, ProfileError, get_profile
from baige.sched.verify import check_result

__all__ = [
    "BAIGE",
    "FIFO",
    "MILLI",
    "PROFILES",
    "Admit",
    "Assignment",
    "CycleResult",
    "CycleStats",
    "Decision",
    "Grow",
    "Health",
    "Kind",
    "Mix",
    "Node",
    "Pending",
    "Placement",
    "Preempt",
    "Profile",
    "ProfileError",
    "Queue",
    "Quota",
    "Reason",
    "Request",
    "Reservation",
    "Shrink",
    "Snapshot",
    "Workload",
    "apply_decisions",
    "check_result",
    "get_profile",
    "run_cycle",
    "workload_mix",
]
