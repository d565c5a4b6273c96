"""Device health reports, applied: a node agent's conditions through the policy
(:mod:`baige.control.health_policy`) onto the node's row — cordon, drain (the controller then
moves the work off), uncordon when healed — with an event for every transition that carries
the evidence.

The policy's memory of a node lives in ``NodeRow.device_health`` (JSON), so a restarted
control plane keeps counting flaps and quiet windows where it left off. An operator's
``baige uncordon`` clears it: the operator has looked at the node.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from baige.control.errors import NotFound
from baige.control.health_policy import Assessment, HealthPolicy, NodeHealth, assess
from baige.control.service import record_event
from baige.hw.health import Condition
from baige.store.db import Database
from baige.store.tables import NodeRow

__all__ = ["NodeHealthReports", "apply_conditions", "health_from_json", "health_to_json"]


def health_to_json(health: NodeHealth) -> dict[str, Any]:
    return {
        "conditions": [c.to_json() for c in health.conditions],
        "cordoned": health.cordoned,
        "drained": health.drained,
        "last_bad": health.last_bad,
        "bad_times": list(health.bad_times),
        "repair": health.repair,
        "operator": health.operator,
    }


def health_from_json(data: dict[str, Any] | None) -> NodeHealth:
    """The stored state; anything unreadable counts as no memory (a fresh start)."""
    if not data:
        return NodeHealth()
    try:
        return NodeHealth(
            conditions=tuple(Condition.from_json(c) for c in data.get("conditions", ())),
            cordoned=bool(data.get("cordoned")),
            drained=bool(data.get("drained")),
            last_bad=None if data.get("last_bad") is None else float(data["last_bad"]),
            bad_times=tuple(float(t) for t in data.get("bad_times", ())),
            repair=bool(data.get("repair")),
            operator=bool(data.get("operator")),
        )
    except (TypeError, ValueError):
        return NodeHealth()


class NodeHealthReports:
    """Applies node agents' health reports with one policy."""

    def __init__(
        self,
        db: Database,
        policy: HealthPolicy | None = None,
        *,
        clock: Callable[[], float] = time.time,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.policy = policy or HealthPolicy()
        self.clock = clock
        self.wake = wake or (lambda: None)

    def report(self, node: str, conditions: Sequence[Condition]) -> Assessment:
        """Apply one report of ``node``'s conditions (all of them: a condition missing from a
        report has cleared)."""
        return self.report_many({node: conditions})[node]

    def report_many(self, reports: Mapping[str, Sequence[Condition]]) -> dict[str, Assessment]:
        """Apply the reports of many nodes in one transaction (an agent's beat)."""
        now = self.clock()
        out: dict[str, Assessment] = {}
        moved = False
        with self.db.session() as session:
            rows = {
                r.name: r
                for r in session.scalars(select(NodeRow).where(NodeRow.name.in_(list(reports))))
            }
            missing = sorted(set(reports) - set(rows))
            if missing:
                raise NotFound(f"node(s) not registered: {', '.join(missing)}")
            for node, conditions in reports.items():
                row = rows[node]
                if not conditions and not row.device_health:
                    out[node] = Assessment(NodeHealth())  # healthy, and nothing to remember
                    continue
                out[node] = result = apply_conditions(session, row, conditions, self.policy,
                                                      now)  # fmt: skip
                moved = moved or result.cordon or result.drain or result.uncordon
        if moved:
            self.wake()
        return out


def apply_conditions(
    session: Session,
    row: NodeRow,
    conditions: Sequence[Condition],
    policy: HealthPolicy,
    now: float,
) -> Assessment:
    """Assess a node's conditions with ``policy`` and write the outcome to its row: the
    policy's memory, cordon, drain or uncordon, and an event per transition. Shared by the
    node agents' reports and the pre-flight's findings (:mod:`~baige.control.preflight_gate`)."""
    health = health_from_json(row.device_health)
    operator = row.cordoned and not health.cordoned
    result = assess(policy, health, conditions, now, operator_cordoned=operator)
    stored = health_to_json(result.health)
    if stored != row.device_health:
        row.device_health = stored
    if result.cordon or result.drain:
        row.cordoned = True
        row.reason = (result.events[0][1] if result.events else "device health")[:500]
    if result.drain:
        row.draining = True
    if result.uncordon:
        row.cordoned = row.draining = False
        row.reason = ""
    for kind, message in result.events:
        record_event(session, "node", row.name, kind, "DeviceHealth", message[:2000],
                     now=now)  # fmt: skip
    return result
