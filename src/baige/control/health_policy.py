"""What a node's device conditions mean for it: a policy, as data, and a pure assessment.

The node agent reports the conditions its cards are in (:mod:`baige.hw.health`); the policy
maps each to an action — ``drain`` (cordon and move the work off: training resumes from its
checkpoint), ``cordon`` (no new work) or ``event`` (record it, nothing else) — by severity,
with overrides by kind (``thermal-throttle``) or XID (``xid:63``). Self-heal: a node cordoned
for its health whose checks pass for ``heal_after`` is uncordoned; a node that goes bad
``flap_limit`` times within ``flap_window`` stays out, marked for repair, until an operator
uncordons it. A node an operator cordoned is never uncordoned by the policy.

:func:`assess` is pure (time is an argument): the control plane applies what it returns.

A policy file (``baige up --health-policy FILE``), every field optional::

    actions: {fatal: drain, degraded: cordon, info: event, unknown: event}
    overrides: {thermal-throttle: event, "xid:63": cordon}
    heal_after: 5m
    flap_window: 1h
    flap_limit: 2
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from baige.api.quantities import DurationSeconds
from baige.hw.health import Condition, Kind, Severity

__all__ = ["Action", "Assessment", "HealthPolicy", "NodeHealth", "assess", "load_policy"]


class Action(StrEnum):
    DRAIN = "drain"
    CORDON = "cordon"
    EVENT = "event"


_STRENGTH = {Action.EVENT: 0, Action.CORDON: 1, Action.DRAIN: 2}


class HealthPolicy(BaseModel):
    """Which action each condition takes, and when a node comes back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actions: dict[Severity, Action] = Field(
        default_factory=lambda: {
            Severity.FATAL: Action.DRAIN,
            Severity.DEGRADED: Action.CORDON,
            Severity.INFO: Action.EVENT,
            Severity.UNKNOWN: Action.EVENT,
        }
    )
    overrides: dict[str, Action] = Field(default_factory=dict)  # "kind" or "xid:CODE"
    heal_after: DurationSeconds = Field(default=300.0, ge=0)
    flap_window: DurationSeconds = Field(default=3600.0, ge=0)
    flap_limit: int = Field(default=2, ge=1)

    def action(self, condition: Condition) -> Action:
        if condition.kind is Kind.XID and f"xid:{condition.code}" in self.overrides:
            return self.overrides[f"xid:{condition.code}"]
        if condition.kind.value in self.overrides:
            return self.overrides[condition.kind.value]
        return self.actions.get(condition.severity, Action.EVENT)


def load_policy(path: Path) -> HealthPolicy:
    """A policy file; a ``ValueError`` names the file and the field at fault."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: {err}") from None
    try:
        return HealthPolicy.model_validate(data)
    except ValidationError as err:
        problem = err.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "(top level)"
        raise ValueError(f"{path}: {where}: {problem['msg']}") from None


@dataclass(frozen=True, slots=True)
class NodeHealth:
    """What the control plane remembers of a node's health between reports."""

    conditions: tuple[Condition, ...] = ()
    cordoned: bool = False  # cordoned by this policy (not by an operator)
    drained: bool = False
    last_bad: float | None = None  # last report with a cordon or drain condition
    bad_times: tuple[float, ...] = ()  # when it went bad, within the flap window
    repair: bool = False  # flapped: stays out until an operator uncordons it
    operator: bool = False  # an operator had cordoned it before it went bad: theirs to lift


@dataclass(frozen=True, slots=True)
class Assessment:
    """The node's new health state and what to do: ``cordon``/``drain``/``uncordon`` and
    the events to record as (type, message)."""

    health: NodeHealth
    cordon: bool = False
    drain: bool = False
    uncordon: bool = False
    events: tuple[tuple[str, str], ...] = field(default=())


def _describe(conditions: Sequence[Condition]) -> str:
    parts = [
        f"{'node' if c.device < 0 else f'card {c.device}'}: {c.reason} ({c.severity.value})"
        for c in conditions
    ]
    return "; ".join(parts[:8]) + ("; …" if len(parts) > 8 else "")


def assess(
    policy: HealthPolicy,
    health: NodeHealth,
    conditions: Sequence[Condition],
    now: float,
    *,
    operator_cordoned: bool = False,
) -> Assessment:
    """What a node's latest report means, given what was known of it."""
    conditions = tuple(conditions)
    actions = [(policy.action(c), c) for c in conditions]
    strongest = max((a for a, _ in actions), key=_STRENGTH.__getitem__, default=None)
    bad = [c for a, c in actions if a in (Action.CORDON, Action.DRAIN)]
    new = [c for c in conditions if c not in health.conditions]
    events: list[tuple[str, str]] = []
    state = replace(health, conditions=conditions)
    if bad:
        cordon = drain = False
        if not health.cordoned:
            times = (*(t for t in health.bad_times if now - t <= policy.flap_window), now)
            state = replace(state, cordoned=True, bad_times=times, operator=operator_cordoned)
            cordon = not operator_cordoned
            verb = "drained" if strongest is Action.DRAIN else "cordoned"
            events.append(("HealthCordoned", f"{verb}: {_describe(bad)}"))
            if len(times) >= policy.flap_limit and not health.repair:
                state = replace(state, repair=True)
                events.append((
                    "MarkedForRepair",
                    f"went bad {len(times)} times within {policy.flap_window:g} s; it stays "
                    "cordoned until an operator uncordons it",
                ))  # fmt: skip
        elif new:
            events.append(("HealthCondition", _describe(new)))
        if strongest is Action.DRAIN and not state.drained:
            state = replace(state, drained=True)
            drain = True
        return Assessment(replace(state, last_bad=now), cordon, drain, False, tuple(events))
    if new:
        events.append(("HealthCondition", _describe(new)))
    if health.cordoned and not health.repair:
        since = health.last_bad if health.last_bad is not None else now
        if now - since >= policy.heal_after:
            events.append(("Healed", f"checks passed for {now - since:.0f} s; uncordoned"))
            held = operator_cordoned or health.operator
            healed = replace(state, cordoned=False, drained=False, operator=False)
            if held:
                events[-1] = ("Healed", f"checks passed for {now - since:.0f} s; it stays "
                              "cordoned: an operator cordoned it")  # fmt: skip
            return Assessment(healed, False, False, not held, tuple(events))
    return Assessment(state, events=tuple(events))
