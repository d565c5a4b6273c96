"""The autoscaler: how many replicas a service wants, from the load observed on it.

Pure, like the rest of ``baige.sched``: time and observations are arguments, the state it
needs between calls (its recent recommendations, its last change) is a value it returns, and
the same function runs in the simulator and in the live control plane.

The algorithm is Kubernetes' HorizontalPodAutoscaler's, which operators already know:

* a raw recommendation from each metric — ``ceil(qps / target_qps_per_replica)``,
  ``ceil(in_flight / target_in_flight_per_replica)``, and from the engines' own metrics
  ``ceil(waiting / target_waiting_per_replica)`` and
  ``ceil(replicas × cache_usage / target_cache_usage)`` — the largest wins, clamped to
  ``[min_replicas, max_replicas]``; a metric within ``tolerance`` of its target changes
  nothing (no flapping around the target);
* stabilization: a scale-up takes the *smallest* recommendation of the last
  ``scale_up_window`` seconds (0: react at once), a scale-down the *largest* of the last
  ``scale_down_window`` seconds (so a brief lull never drops capacity that is needed again
  a minute later);
* a cool-down: no scale-down within ``cooldown`` seconds of the last change;
* no observation (the service has no ready replica, or the gateway saw nothing for a
  while): no change, and the reason says so;
* a fresh state (a new service, a restarted controller) counts the current size as its
  last recommendation, so a scale-down waits out its window even then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = [
    "MEASURE_WINDOW_S",
    "AutoscalePolicy",
    "AutoscaleState",
    "LoadSample",
    "Recommendation",
    "recommend",
]

# requests per second are counted over this trailing window (the gateway's board, and the
# simulator's model of it): the autoscaler sees a rise only as it fills the window
MEASURE_WINDOW_S = 15.0


@dataclass(frozen=True, slots=True)
class AutoscalePolicy:
    min_replicas: int
    max_replicas: int
    target_qps_per_replica: float | None = 10.0
    target_in_flight_per_replica: float | None = None
    scale_up_window: float = 0.0
    scale_down_window: float = 300.0
    cooldown: float = 30.0
    tolerance: float = 0.1
    target_waiting_per_replica: float | None = None  # requests queued inside the engine
    target_cache_usage: float | None = None  # mean KV-cache use of the replicas, 0..1


@dataclass(frozen=True, slots=True)
class LoadSample:
    """What the gateway measured over its last window for one service."""

    qps: float
    in_flight: float
    ready_replicas: int
    # from the replicas' own metrics, when their engine exports them (None: not measured)
    waiting: float | None = None  # requests queued inside the engines, all replicas
    cache_usage: float | None = None  # mean KV-cache use, 0..1


@dataclass(frozen=True, slots=True)
class AutoscaleState:
    """What the autoscaler remembers: (time, raw recommendation) pairs inside the longer of
    its windows, and when it last changed the replica count."""

    history: tuple[tuple[float, int], ...] = ()
    last_change: float | None = None
    since: float | None = None  # its first observation


@dataclass(frozen=True, slots=True)
class Recommendation:
    replicas: int
    state: AutoscaleState
    reason: str
    changed: bool = field(default=False)


def _raw(policy: AutoscalePolicy, load: LoadSample, current: int) -> tuple[int, str]:
    """The replicas each metric asks for (the largest wins), and why."""
    wants: list[tuple[int, str]] = []
    base = max(load.ready_replicas or current, 1)  # the load is spread over ready replicas
    for value, target, name in (
        (load.qps, policy.target_qps_per_replica, "requests/s"),
        (load.in_flight, policy.target_in_flight_per_replica, "in-flight requests"),
    ):
        if target is None or target <= 0:
            continue
        per_replica = value / base
        if current > 0 and abs(per_replica / target - 1) <= policy.tolerance:
            wants.append((current, f"{value:.1f} {name} is on target ({target:g} per replica)"))
            continue
        needed = math.ceil(value / target - 1e-9)
        wants.append(
            (needed, f"{value:.1f} {name} needs {needed} replica(s) at {target:g} per replica")
        )
    engine = (
        (load.waiting, policy.target_waiting_per_replica, "requests waiting in the engines", 1.0),
        (load.cache_usage, policy.target_cache_usage, "KV-cache use", float(base)),
    )
    for measured, target, name, scale in engine:
        if measured is None or target is None or target <= 0:
            continue
        # a total (waiting) over a per-replica target; a mean (cache) times the replicas
        needed = math.ceil(measured * scale / target - 1e-9)
        if current > 0 and abs(measured * scale / base / target - 1) <= policy.tolerance:
            wants.append((current, f"{measured:.2f} {name} is on target ({target:g})"))
            continue
        wants.append((needed, f"{measured:.2f} {name} needs {needed} replica(s) at {target:g}"))
    if not wants:
        return current, "no metric to scale on"
    return max(wants, key=lambda item: item[0])


def recommend(
    policy: AutoscalePolicy,
    state: AutoscaleState,
    current: int,
    load: LoadSample | None,
    now: float,
) -> Recommendation:
    """The replicas the service should have now, the autoscaler's next state, and why."""
    if load is None:
        return Recommendation(current, state, "no load measured yet; keeping the replica count")
    raw, why = _raw(policy, load, current)
    raw = min(policy.max_replicas, max(policy.min_replicas, raw))
    keep = max(policy.scale_up_window, policy.scale_down_window)
    history = (*((t, r) for t, r in state.history if now - t <= keep), (now, raw))
    # a fresh autoscaler (a new service, a restarted controller) has seen nothing before
    # ``since``: it may not scale down until it has watched a whole scale-down window
    since = now if state.since is None else state.since
    if raw > current:
        window = [r for t, r in history if now - t <= policy.scale_up_window]
        target = max(current, min(window))
    elif raw < current:
        window = [r for t, r in history if now - t <= policy.scale_down_window]
        target = min(current, max(window))
        if now - since < policy.scale_down_window:
            target = current
        if (
            target < current
            and state.last_change is not None
            and now - state.last_change < policy.cooldown
        ):
            left = policy.cooldown - (now - state.last_change)
            return Recommendation(
                current,
                AutoscaleState(history, state.last_change, since),
                f"{why}; cooling down for {left:.0f} s after the last change",
            )
    else:
        target = current
    target = min(policy.max_replicas, max(policy.min_replicas, target))
    if target == current:
        held = (
            f"; held at {current} by the {policy.scale_down_window:g} s scale-down window"
            if raw < current
            else ""
        )
        return Recommendation(
            current, AutoscaleState(history, state.last_change, since), why + held
        )
    direction = "up" if target > current else "down"
    return Recommendation(
        target,
        AutoscaleState(history, now, since),
        f"scaled {direction} from {current} to {target}: {why}",
        changed=True,
    )
