"""The workload lifecycle, pure: what a workload becomes when something happens to it.

Both drivers call these functions and neither keeps its own copy of the rules: the live
controller (``baige.control``) applies the returned :class:`Step` to its store rows and
backend, the simulator (``baige.sim``) to its simulated jobs and services. Time and
observations are arguments; nothing here reads a clock or does I/O.

What can happen to a workload, and the function that says what follows:

=====================================  ==================================================
a cycle's decision (admit, preempt,    :func:`decided` (:func:`admitted`, :func:`preempted`,
shrink, grow)                          :func:`shrunk`, :func:`grown`)
its first replica was launched         :func:`started`
replicas ended (exit 0, exit ≠ 0,      :func:`replicas_ended`: a job succeeds when every
lost)                                  replica exited 0; a failure restarts the whole gang
                                       while the restart budget lasts, then fails it; a
                                       service replica is started again in place
                                       (a training job with spares drops an ended replica
                                       instead while enough remain: its spares stand in; it
                                       succeeds once as many as its size exited 0)
a replica cannot be started at all     :func:`launch_refused`: fails at once (a missing
                                       binary stays missing: no restart can cure it)
its node is drained                    :func:`evicted`: back to pending, no restart counted
cancelled                              :func:`cancelled`: stop everything, then cancelled
=====================================  ==================================================

A node failure is not here: the cycle sees the failed node and preempts or shrinks the work
on it (:mod:`baige.sched.cycle`), in both worlds, so it arrives through :func:`decided`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from baige.api.workloads import Phase
from baige.sched.decisions import Admit, Decision, Grow, Preempt, Shrink
from baige.sched.model import Kind

__all__ = [
    "Event",
    "Life",
    "Outcome",
    "ReplicaEnd",
    "Step",
    "admitted",
    "cancelled",
    "decided",
    "evicted",
    "grown",
    "launch_refused",
    "preempted",
    "preflight_failed",
    "replicas_ended",
    "shrunk",
    "started",
]


class Outcome(StrEnum):
    """How a replica ended."""

    SUCCEEDED = "succeeded"  # exited 0
    FAILED = "failed"  # exited with another code
    LOST = "lost"  # vanished: its node or process went away without an exit code


@dataclass(frozen=True, slots=True)
class Life:
    """What the lifecycle needs to know of a workload."""

    kind: Kind
    phase: Phase = Phase.PENDING
    restarts: int = 0
    max_restarts: int = 0  # a training job's restart budget; a service restarts replicas
    generation: int = 0  # bumped at every admission: replicas of older ones are stale
    replicas: int = 0  # replicas it holds now
    # a training job with spares: the size it runs at; a lost replica is dropped (a spare
    # takes its place) while at least this many remain. 0: every loss restarts the gang.
    keep: int = 0


@dataclass(frozen=True, slots=True)
class ReplicaEnd:
    """One replica that ended: which, how, and, when it could not start at all, why."""

    index: int
    outcome: Outcome
    exit_code: int | None = None
    detail: str = ""  # why it was lost
    cannot_start: str | None = None  # the launcher's complaint (e.g. no such file)


@dataclass(frozen=True, slots=True)
class Event:
    """What to record: the event's type, its reason code, a sentence for people."""

    type: str
    reason: str
    message: str
    status: bool = True  # also the workload's status line (False: a note in its history)


@dataclass(frozen=True, slots=True)
class Step:
    """A workload's new state, and what its driver must do about it."""

    life: Life
    event: Event | None = None
    stop_all: bool = False  # stop every replica of the current generation
    restart: tuple[int, ...] = ()  # service replicas to start again in place
    drop: tuple[int, ...] = ()  # lost replicas a job goes on without (its spares stand in)
    exit_code: int | None = None  # of a workload that ended

    @property
    def ended(self) -> bool:
        return self.life.phase.terminal


def _node_list(nodes: Sequence[str]) -> str:
    shown = sorted(set(nodes))
    return ", ".join(shown[:4]) + ("…" if len(shown) > 4 else "")


def _types(decision: Admit) -> str:
    if not decision.mixed:
        return decision.accel_type
    return " + ".join(f"{count} {accel}" for accel, count in decision.mixed)


def admitted(life: Life, decision: Admit) -> Step:
    """Placed: a new generation of replicas is to start."""
    how = " (backfilled)" if decision.backfill else ""
    how += ", borrowing idle capacity" if decision.borrowing else ""
    count = len(decision.placements)
    message = (
        f"admitted{how}: {count} replica(s) on {_types(decision)} "
        f"({_node_list([p.node for p in decision.placements])})"
    )
    new = replace(life, phase=Phase.ADMITTED, generation=life.generation + 1, replicas=count)
    return Step(new, Event("Admitted", "Admitted", message))


def started(life: Life) -> Step:
    """A replica of an admitted workload was launched: it is running."""
    if life.phase is not Phase.ADMITTED:
        return Step(life)
    return Step(replace(life, phase=Phase.RUNNING))


def preempted(life: Life, decision: Preempt) -> Step:
    """Stopped by the scheduler (a higher-priority workload, a reclaim, a failed node, a
    scale to zero): back to its queue, no restart counted."""
    new = replace(life, phase=Phase.PENDING, replicas=0)
    return Step(new, Event("Preempted", "Preempted", decision.reason), stop_all=True)


def shrunk(life: Life, decision: Shrink) -> Step:
    message = f"{decision.reason}; now {decision.replicas} replica(s)"
    event = Event("Shrunk", "Shrunk", message, False)
    return Step(replace(life, replicas=decision.replicas), event)


def grown(life: Life, decision: Grow) -> Step:
    message = f"grown to {decision.replicas} replica(s)"
    return Step(replace(life, replicas=decision.replicas), Event("Grown", "Grown", message, False))


def decided(life: Life, decision: Decision) -> Step:
    """What a cycle's decision does to the workload it names."""
    if isinstance(decision, Admit):
        return admitted(life, decision)
    if isinstance(decision, Preempt):
        return preempted(life, decision)
    if isinstance(decision, Shrink):
        return shrunk(life, decision)
    return grown(life, decision)


def _ended_phase(life: Life, phase: Phase) -> Life:
    return replace(life, phase=phase, replicas=0)


def _what(end: ReplicaEnd) -> str:
    if end.outcome is Outcome.LOST:
        return f"replica {end.index} was lost ({end.detail})"
    text = f"replica {end.index} exited with code {end.exit_code}"
    return text + (f": {end.cannot_start}" if end.cannot_start else "")


def replicas_ended(life: Life, ended: Sequence[ReplicaEnd], wanted: int) -> Step:
    """Replicas of the current generation ended (``wanted``: how many it runs).

    A training job succeeds when all ``wanted`` replicas exited 0. A replica that failed or
    was lost stops the whole gang (its peers cannot go on without it); the job goes back to
    pending for a restart while ``restarts < max_restarts``, and fails otherwise, or at once
    when the replica could not start at all. A service replica that ends is started again in
    place, unless it could not start at all: the service fails once, saying why."""
    if life.phase.terminal or not ended:
        return Step(life)
    if life.kind is Kind.INFERENCE:
        for end in ended:
            if end.outcome is Outcome.FAILED and end.cannot_start is not None:
                failed = _ended_phase(life, Phase.FAILED)
                event = Event("Failed", "failed", _what(end))
                return Step(failed, event, stop_all=True, exit_code=end.exit_code)
        restart = tuple(sorted(end.index for end in ended))
        messages = "; ".join(
            f"replica {e.index} ended ({e.outcome.value}, code {e.exit_code}); restarted"
            for e in sorted(ended, key=lambda e: e.index)
        )
        new = replace(life, restarts=life.restarts + len(restart))
        event = Event("ReplicaRestarted", "ReplicaEnded", messages, False)
        return Step(new, event, restart=restart)
    broken = [e for e in ended if e.outcome is not Outcome.SUCCEEDED]
    if life.keep and len(ended) - len(broken) >= life.keep:
        # as many replicas as the job's size finished: it is done, whatever its spares did
        # (a spare still waiting when the rendezvous goes away may exit with an error)
        done = _ended_phase(life, Phase.SUCCEEDED)
        event = Event("Succeeded", "succeeded", f"{life.keep} replicas exited 0")
        return Step(done, event, stop_all=True, exit_code=0)
    if not broken:
        if len(ended) >= wanted > 0:
            done = _ended_phase(life, Phase.SUCCEEDED)
            return Step(done, Event("Succeeded", "succeeded", "all replicas exited 0"), exit_code=0)
        return Step(life)  # some exited 0; the others still run
    startable = all(e.cannot_start is None for e in broken)
    if life.keep and startable and wanted - len(broken) >= life.keep:
        return _spares_stand_in(life, broken, wanted)
    first = min(broken, key=lambda e: e.index)
    what = _what(first)
    if life.restarts < life.max_restarts and first.cannot_start is None:
        restarts = life.restarts + 1
        new = replace(life, phase=Phase.PENDING, restarts=restarts, replicas=0)
        message = f"{what}; restart {restarts} of {life.max_restarts}"
        return Step(new, Event("Restarting", "ReplicaFailed", message), stop_all=True)
    failed = _ended_phase(life, Phase.FAILED)
    return Step(failed, Event("Failed", "failed", what), stop_all=True, exit_code=first.exit_code)


def _spares_stand_in(life: Life, lost: Sequence[ReplicaEnd], wanted: int) -> Step:
    """Replicas were lost (or their agents gave up) and enough remain, spares included, to
    run at the job's size: the job goes on without them, no restart counted; its rendezvous
    admits waiting spares in their places (a lost spare needs none), and the scheduler places
    new spares when there is room."""
    indices = tuple(sorted(e.index for e in lost))
    left = wanted - len(lost) - life.keep
    what = "; ".join(_what(e) for e in sorted(lost, key=lambda e: e.index))
    message = (
        f"{what}; {'a spare takes its' if len(lost) == 1 else 'spares take their'} place "
        f"({left} spare{'s' if left != 1 else ''} left until new ones are placed)"
    )
    new = replace(life, replicas=max(0, life.replicas - len(lost)))
    reason = "ReplicaLost" if all(e.outcome is Outcome.LOST for e in lost) else "ReplicaEnded"
    return Step(new, Event("SpareSwapped", reason, message, False), drop=indices)


def launch_refused(life: Life, index: int, why: str) -> Step:
    """The backend cannot start replica ``index`` (its command or working directory cannot
    run): the workload fails at once, the cause as its reason. Not retried: a launch error is
    not a fault a restart could cure."""
    if life.phase.terminal:
        return Step(life)
    message = f"replica {index} cannot be launched: {why}"[:1000]
    failed = _ended_phase(life, Phase.FAILED)
    return Step(failed, Event("Failed", "failed", message), stop_all=True)


def evicted(life: Life, node: str) -> Step:
    """Its node is being drained: stopped and back to pending to be placed elsewhere; not a
    restart (nothing failed)."""
    new = replace(life, phase=Phase.PENDING, replicas=0)
    message = f"node {node} is draining; moved to other nodes"
    return Step(new, Event("Evicted", "NodeDraining", message), stop_all=True)


def preflight_failed(life: Life, evidence: str) -> Step:
    """The pre-flight before its gang started found a node far below its peers: nothing
    ran, so back to pending (not a restart) to be placed again without that node."""
    new = replace(life, phase=Phase.PENDING, replicas=0)
    return Step(new, Event("PreflightFailed", "Preflight", f"{evidence}; placing it again"),
                stop_all=True)  # fmt: skip


def cancelled(life: Life, still_running: int) -> Step:
    """Cancelled by its owner: every replica is stopped; once none runs, it is cancelled."""
    if life.phase.terminal:
        return Step(life)
    if still_running:
        return Step(life, stop_all=True)
    return Step(_ended_phase(life, Phase.CANCELLED), Event("Cancelled", "cancelled", "cancelled"),
                stop_all=True)  # fmt: skip
