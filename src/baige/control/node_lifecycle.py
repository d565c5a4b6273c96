"""The node lifecycle: nodes silent past the heartbeat timeout are failed (the cycle then
moves their work), draining nodes have their work moved off.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from baige.api.workloads import Phase
from baige.control.recording import DecisionRecording, _life
from baige.control.service import record_event
from baige.sched import (
    lifecycle,
)
from baige.store.tables import NodeRow, WorkloadRow

__all__ = ["NodeLifecycle"]

log = logging.getLogger("baige.controller")


class NodeLifecycle(DecisionRecording):
    """Fails silent nodes and drains draining ones."""

    def _expire_nodes(self, now: float) -> int:
        """Nodes silent for longer than the heartbeat timeout are failed."""
        deadline = now - self.heartbeat_timeout
        with self.db.session() as session:
            stale = list(
                session.scalars(
                    select(NodeRow).where(
                        NodeRow.health == "ready", NodeRow.last_heartbeat < deadline
                    )
                )
            )
            for row in stale:
                row.health = "failed"
                row.reason = f"no heartbeat for {now - row.last_heartbeat:.0f} s"
                record_event(
                    session, "node", row.name, "Failed", "HeartbeatMissed", row.reason, now=now
                )
        return len(stale)

    def _drain_nodes(self, now: float) -> None:
        """Move the work off draining nodes: each workload placed there is stopped and goes
        back to pending (not a restart: nothing failed), and is placed again elsewhere."""
        with self.db.session() as session:
            draining = set(session.scalars(select(NodeRow.name).where(NodeRow.draining.is_(True))))
            if not draining:
                return
            active = session.scalars(
                select(WorkloadRow).where(
                    WorkloadRow.phase.in_((Phase.ADMITTED.value, Phase.RUNNING.value))
                )
            )
            for workload in active:
                nodes = {str(p.get("node")) for p in workload.placements or []}
                hit = sorted(nodes & draining)
                if not hit:
                    continue
                self._apply(session, workload, lifecycle.evicted(_life(workload), hit[0]), now)
            for name in sorted(draining):
                row = session.get(NodeRow, name)
                if row is not None:
                    row.draining = False  # its work is off; it stays cordoned
                    record_event(session, "node", name, "Drained", "Drain",
                                 f"node {name} drained: its work was moved", now=now)  # fmt: skip
