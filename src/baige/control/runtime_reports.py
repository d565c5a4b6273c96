"""What `baige run` inside a training job reports to the control plane.

The agent in each replica posts its event log's lines (``baige.runtime.report``) to
``POST /v1/jobs/{id}/runtime-events``. Here they become three things an operator reads:

* job events (``baige job ID``, the console): every fault detected, restart, recovery,
  straggler and node report, in words, with the figures that matter (detection and recovery
  seconds, lost steps); ``progress`` lines only update the figures below;
* the job's ``runtime`` figures (``WorkloadView.runtime`` and ``/metrics``): restarts, faults
  by kind, lost steps, the last and worst detection and recovery times, step rate, loss, and
  an ETTR estimate (steps reached × fault-free step time / wall time since the run started,
  the measure ``bench/runtime_faults.py`` reports);
* a cordon of a node the agent reports for repeated straggling (``node_reported``), so the
  scheduler stops placing work there until an operator looks.

Replicas authenticate with a token made for their job at submission and handed to them in
``BAIGE_TOKEN``: it can post this job's runtime events and nothing else. No other token may
post them, not a tenant's (its owner could forge the figures that ``/metrics`` and the
console show), nor an admin's: a valid user token is answered 403, before the job is looked
up, so the answer says nothing of which jobs exist.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from baige.control.auth import authenticate
from baige.control.errors import Forbidden, Unauthorized
from baige.control.runtime_figures import REPORT_TOKEN_PREFIX, fold_event, num
from baige.control.service import record_event
from baige.store.db import Database
from baige.store.tables import NodeRow, WorkloadRow

__all__ = ["RuntimeEventsRequest", "accept_runtime_events"]

_MAX_EVENTS = 1000
_SHOWN = {  # event -> (event type, reason) for the job's event list; the rest only count
    "run_started": ("RunStarted", "BaigeRun"),
    "training_started": ("TrainingStarted", "BaigeRun"),
    "fault_detected": ("FaultDetected", "Fault"),
    "restart": ("RunRestarting", "Fault"),
    "restored": ("Restored", "Recovery"),
    "straggler": ("Straggler", "SlowRank"),
    "network_suspect": ("NetworkSuspect", "SlowNetwork"),
    "node_reported": ("NodeReported", "SlowRank"),
    "node_excluded": ("NodeExcluded", "Fault"),
    "run_finished": ("RunFinished", "BaigeRun"),
}


class RuntimeEventsRequest(BaseModel):
    """A batch of event-log lines from one replica's agent."""

    replica_id: str = Field(default="", max_length=64)
    node: str = Field(default="", max_length=253)
    events: list[dict[str, Any]] = Field(min_length=1, max_length=_MAX_EVENTS)


_CLOCK_SLACK_S = 86400.0
_MAX_TEXT = 300
_MAX_RANKS = 64


def _clean(event: Mapping[str, Any]) -> dict[str, Any]:
    """An event as the figures and messages use it: scalars only (strings cut short, numbers
    finite), ``ranks`` a short list of integers; anything else a job sent is dropped."""
    out: dict[str, Any] = {}
    for key, value in list(event.items())[:64]:
        name = str(key)[:64]
        if name == "ranks" and isinstance(value, list):
            out[name] = [int(r) for r in value[:_MAX_RANKS] if num(r) is not None]
        elif isinstance(value, str):
            out[name] = value[:_MAX_TEXT]
        elif isinstance(value, bool) or value is None or num(value) is not None:
            out[name] = value
    return out


def _report_token(db: Database, header: str | None) -> str:
    """The report token in ``header`` (without its prefix); any other token is refused:
    401 when it is no valid token, 403 when it is a user's."""
    given = header[7:].strip() if header and header.lower().startswith("bearer ") else ""
    if given.startswith(REPORT_TOKEN_PREFIX):
        return given.removeprefix(REPORT_TOKEN_PREFIX)
    authenticate(db, header, for_metrics=True)  # 401 unless it is some valid token
    raise Forbidden(
        "only the job's own report token (BAIGE_TOKEN in its replicas) may post its runtime events"
    )


def _authorized(row: WorkloadRow, given: str) -> None:
    if not (row.report_token and hmac.compare_digest(given, row.report_token)):
        raise Unauthorized("invalid report token for this job")


def _message(name: str, event: Mapping[str, Any], node: str) -> str:
    """One line for the job's event list."""
    where = f" on {node}" if node else ""
    detect = num(event.get("detect_s"))
    if name == "fault_detected":
        listed = event.get("ranks")
        ranks = ", ".join(str(r) for r in listed) if isinstance(listed, list) else str(listed)
        ranks = ranks if listed else "?"
        took = f" {detect:.1f} s after it happened" if detect is not None else ""
        text = str(event.get("message") or "")[:300]
        return f"{event.get('kind', 'fault')} of rank(s) {ranks}{where} detected{took}: {text}"
    if name == "restart":
        return (
            f"restarting the worker group{where} (attempt {event.get('attempt')}, "
            f"{event.get('restarts_left')} restart(s) left): {event.get('reason', '')}"
        )
    if name == "restored":
        return (
            f"training again{where} from step {event.get('step')} "
            f"({event.get('source') or 'no checkpoint'}), {event.get('lost_steps')} step(s) lost, "
            f"{num(event.get('recovery_s')) or 0:.1f} s after detection"
        )
    if name == "straggler":
        return (
            f"rank {event.get('rank')}{where} is {num(event.get('ratio')) or 0:.1f}x slower "
            f"than the others (step {event.get('step')}, {event.get('count')} in a row)"
        )
    if name == "run_started":
        return f"baige run started{where} ({event.get('ranks', '?')} rank(s))"
    if name == "training_started":
        return f"first step{where} {num(event.get('startup_s')) or 0:.1f} s after launch"
    if name == "run_finished":
        return (
            f"baige run {event.get('state', 'ended')}{where} at step {event.get('last_step')} "
            f"after {event.get('restarts', 0)} restart(s): {str(event.get('message') or '')[:300]}"
        )
    return str(event.get("message") or name)[:500]


def _cordon_reported(session: Session, row: WorkloadRow, node: str, why: str) -> None:
    """Cordon a node the job's agent reports for straggling — only one the job runs on: a
    report token is the job's, and a job must not be able to take other tenants' nodes."""
    # only a job holding whole cards there: one with a sliver of a card on every node could
    # otherwise cordon them all
    placed = {
        str(p.get("node")) for p in row.placements or [] if (num(p.get("milli")) or 1000) >= 1000
    }
    if node not in placed:
        record_event(session, "workload", row.id, "ReportIgnored", "NotPlacedThere",
                     f"a report named node {node[:100]!r}, where this job holds no whole "
                     "card; not cordoned", tenant=row.tenant)  # fmt: skip
        return
    target = session.get(NodeRow, node)
    if target is None or target.cordoned:
        return
    target.cordoned = True
    target.reason = f"reported by job {row.id}: {why}"[:500]
    record_event(session, "node", node, "Cordoned", "ReportedByJob",
                 f"node {node} cordoned: {why}")  # fmt: skip


def accept_runtime_events(
    db: Database, workload_id: str, header: str | None, body: RuntimeEventsRequest
) -> int:
    """Record a batch; returns how many events it held. Unknown event names are counted in
    ``events`` but otherwise ignored, so a newer agent can talk to an older control plane."""
    given = _report_token(db, header)
    with db.session() as session:
        row = session.get(WorkloadRow, workload_id)
        if row is None or row.kind != "TrainingJob":
            # the same answer as a wrong token: a guessed token must not tell which ids exist
            hmac.compare_digest(given, "0" * 32)
            raise Unauthorized("invalid report token for this job")
        _authorized(row, given)
        figures: dict[str, Any] = dict(row.runtime or {})
        reported: list[tuple[str, str]] = []
        now = time.time()
        for raw in body.events:
            event = _clean(raw)
            name = str(event.get("event") or "")[:64]
            node = str(event.get("node") or body.node)[:253]
            ts = num(event.get("ts")) or now
            if abs(ts - now) > _CLOCK_SLACK_S:
                ts = now  # a clock a day off (or 1e308) would sort first forever
            fold_event(figures, name, event, node, ts)
            shown = _SHOWN.get(name)
            if shown is not None:
                record_event(session, "workload", row.id, shown[0], shown[1],
                             _message(name, event, node), tenant=row.tenant, now=ts)  # fmt: skip
            if name == "node_reported" and node:
                reported.append((node, str(event.get("message") or "reported by baige run")))
        row.runtime = figures
        for node, why in reported:
            _cordon_reported(session, row, node, why)
    return len(body.events)
