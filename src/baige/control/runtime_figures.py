"""A training job's runtime figures: what `baige run` reported, folded into one record.

Kept apart from the HTTP side (``runtime_reports``) so the service layer can show them
without importing it. The record is a plain dict stored in ``workloads.runtime``; events are
folded in as they arrive, in any batch size, so it never needs the whole log.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from baige.api.views import RuntimeView
from baige.store.tables import WorkloadRow

__all__ = [
    "REPORT_TOKEN_PREFIX",
    "fold_event",
    "new_report_token",
    "num",
    "report_env",
    "runtime_view",
]

REPORT_TOKEN_PREFIX = "baige_run_"


def new_report_token() -> str:
    return secrets.token_urlsafe(24)


def num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _int(value: object) -> int | None:
    number = num(value)
    return None if number is None else int(number)


def _attempt_key(event: Mapping[str, Any], figures: Mapping[str, Any], node: str) -> str:
    """Which attempt of which run an event belongs to: every replica's agent reports the same
    fault and restart, and a replica the control plane restarts starts its attempts over
    (events without an attempt count on their own)."""
    attempt = _int(event.get("attempt"))
    if attempt is None:
        return f"event-{figures.get('events', 0)}"
    runs: Mapping[str, int] = figures.get("runs_by_node") or {}
    return f"{runs.get(node, 0)}.{attempt}"


MAX_ATTEMPTS = 1000  # attempts remembered for de-duplication (older ones are counted)
MAX_KINDS = 16  # distinct fault kinds kept by name; more are counted as "other"


def _recent(items: dict[str, Any]) -> dict[str, Any]:
    """The newest ``MAX_ATTEMPTS`` entries (dicts keep insertion order)."""
    if len(items) <= MAX_ATTEMPTS:
        return items
    return dict(list(items.items())[-MAX_ATTEMPTS:])


def fold_event(
    figures: dict[str, Any], name: str, event: Mapping[str, Any], node: str, ts: float
) -> None:
    """Add one event to the job's running figures."""
    figures["events"] = int(figures.get("events", 0)) + 1
    figures["updated_at"] = max(float(figures.get("updated_at") or 0.0), ts)
    if name == "run_started":
        runs: dict[str, int] = dict(figures.get("runs_by_node") or {})
        runs[node] = runs.get(node, 0) + 1
        figures["runs_by_node"] = runs
        started = figures.get("started_at")
        figures["started_at"] = ts if started is None else min(float(started), ts)
        figures["state"] = "running"
    elif name == "fault_detected":
        # one fault per attempt: with several replicas, every agent sees the group fail
        by_attempt: dict[str, str] = dict(figures.get("fault_attempts") or {})
        key = _attempt_key(event, figures, node)
        if key not in by_attempt:
            faults: dict[str, int] = dict(figures.get("faults") or {})
            kind = str(event.get("kind") or "unknown")[:32]
            if kind not in faults and len(faults) >= MAX_KINDS:
                kind = "other"  # a job cannot make /metrics grow a series per made-up kind
            by_attempt[key] = kind
            faults[kind] = faults.get(kind, 0) + 1  # counted as they come, never recounted
            figures["fault_attempts"] = _recent(by_attempt)
            figures["faults"] = faults
        detect = num(event.get("detect_s"))
        if detect is not None:
            figures["last_detection_s"] = detect
            figures["max_detection_s"] = max(float(figures.get("max_detection_s") or 0), detect)
    elif name == "restart":
        seen: list[str] = list(figures.get("restart_attempts", []))
        key = _attempt_key(event, figures, node)
        if key not in seen:
            seen.append(key)
            figures["restarts"] = int(figures.get("restarts", 0)) + 1
        figures["restart_attempts"] = seen[-MAX_ATTEMPTS:]
    elif name == "restored":
        lost: dict[str, int] = dict(figures.get("lost_by_attempt") or {})
        key = _attempt_key(event, figures, node)
        before = lost.get(key, 0)
        lost[key] = max(before, min(_int(event.get("lost_steps")) or 0, 10**12))
        figures["lost_by_attempt"] = _recent(lost)
        figures["lost_steps"] = int(figures.get("lost_steps", 0)) + lost[key] - before
        recovery = num(event.get("recovery_s"))
        if recovery is not None:
            figures["last_recovery_s"] = recovery
            figures["max_recovery_s"] = max(float(figures.get("max_recovery_s") or 0), recovery)
        if event.get("source"):
            figures["restored_from"] = str(event["source"])[:32]
    elif name == "straggler":
        figures["stragglers"] = int(figures.get("stragglers", 0)) + 1
    elif name in ("node_reported", "node_excluded") and node:
        key = "reported_nodes" if name == "node_reported" else "excluded_nodes"
        figures[key] = sorted({*figures.get(key, []), node})
    elif name == "progress":
        for field, out in (("steps_per_s", "steps_per_s"), ("median_step_s", "median_step_s")):
            value = num(event.get(field))
            if value is not None:
                figures[out] = value
        loss = num(event.get("loss"))
        if loss is not None:
            figures["loss"] = loss
    elif name == "run_finished":
        state = str(event.get("state") or "finished")[:32]
        # a node whose training succeeded says how it went: a spare that stood by to the end
        # (released, or cut off when the rendezvous went away with the job) does not
        if state != "released" and figures.get("state") != "succeeded":
            figures["state"] = state
            figures["finished_at"] = ts
    step = _int(event.get("step") if name != "run_finished" else event.get("last_step"))
    if step is not None and name in ("progress", "restored", "training_started", "run_finished"):
        figures["last_step"] = max(int(figures.get("last_step", -1)), step)


def runtime_view(figures: Mapping[str, Any] | None, now: float | None = None) -> RuntimeView | None:
    """The job's figures as the API shows them, with the ETTR estimate worked out."""
    if not figures:
        return None
    view = RuntimeView.model_validate(
        {k: v for k, v in figures.items() if k in RuntimeView.model_fields}
    )
    started, step_s = figures.get("started_at"), figures.get("median_step_s")
    if isinstance(started, int | float) and isinstance(step_s, int | float) and view.last_step >= 0:
        end = figures.get("finished_at") or (time.time() if now is None else now)
        wall = float(end) - float(started)
        if wall > 0:
            view.ettr = round(min(1.0, (view.last_step + 1) * float(step_s) / wall), 4)
    return view


def report_env(row: WorkloadRow, api_url: str | None) -> Sequence[tuple[str, str]]:
    """``BAIGE_URL`` and ``BAIGE_TOKEN`` for a job's replicas (none without a URL)."""
    if not api_url or not row.report_token or row.kind != "TrainingJob":
        return ()
    return (("BAIGE_URL", api_url), ("BAIGE_TOKEN", REPORT_TOKEN_PREFIX + row.report_token))
