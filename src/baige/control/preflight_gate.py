"""The pre-flight gate: before a big training gang starts, its nodes run a short collective
test and a compute check (:func:`baige.diag.preflight.preflight`); a node far below its peers
is cordoned with the evidence and the gang is placed again without it — in seconds, before
the job has started, instead of after it has failed or crawled for hours at the slow node's
pace.

Why at launch and not in the scheduling cycle: the cycle is pure and decides from a
snapshot; a pre-flight is seconds of I/O on the nodes, which a pure pass cannot do and a
controller pass must not wait for. So the admission is recorded as usual, the gang's launch
is held while its check runs in a worker thread (the controller keeps passing, and is woken
when the check ends), and then the gang launches (passed) or goes back to pending (failed):
the slow node is cordoned through the device-health policy, as a ``preflight-failed``
condition, so the policy decides what it does (``cordon`` by default; an override may make
it ``drain`` or only an ``event``), it heals after the policy's quiet window and a node that
fails again within the flap window stays out, marked for repair.

A check that cannot run (a node without a probe, a probe that does not answer at all) lets
the gang start and says so in an event: a broken diagnostic must not hold every big job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy.orm import Session

from baige.api.workloads import Phase
from baige.control.health_policy import HealthPolicy
from baige.control.node_health import apply_conditions
from baige.control.recording import DecisionRecording, _life
from baige.control.service import record_event
from baige.diag.preflight import PreflightReport
from baige.hw.health import Condition, Kind, Severity
from baige.sched import lifecycle
from baige.store.tables import NodeRow, WorkloadRow

__all__ = ["PreflightGate", "PreflightGating", "PreflightSettings", "Runner", "Verdict"]


@dataclass(frozen=True, slots=True)
class PreflightSettings:
    """When a gang is checked and how hard (``baige up --preflight-*``)."""

    min_nodes: int = 8  # a training gang placed on at least this many nodes; 0: never
    mb: float = 256.0  # the all-reduce's size
    compute_s: float = 1.0  # CPU seconds of each node's compute check
    slowdown: float = 1.5  # named when this many times below the median of its peers

    def __post_init__(self) -> None:
        if self.min_nodes < 0 or self.min_nodes == 1:
            raise ValueError("pre-flight nodes: 0 (off) or at least 2")
        if not 0 < self.mb <= 4096:
            raise ValueError("pre-flight all-reduce size must be in (0, 4096] MB")
        if not 0 < self.compute_s <= 30:
            raise ValueError("pre-flight compute check must be in (0, 30] s")
        if not self.slowdown > 1:
            raise ValueError("pre-flight slow-down threshold must be > 1")


# runs the pre-flight on the named nodes; raises when it cannot run at all
Runner = Callable[[Sequence[str], PreflightSettings], PreflightReport]


class Verdict(StrEnum):
    GO = "go"  # passed (or could not run): launch
    WAIT = "wait"  # running: hold the launch
    FAILED = "failed"  # a node is far below its peers: place the gang again


@dataclass
class _Check:
    nodes: tuple[str, ...]
    started: float
    future: Future[PreflightReport]
    told: bool = False  # its verdict was handed to the controller (it is told once)
    finished: float | None = None
    accepted: bool = False  # failed, but to start anyway (the policy kept the nodes)


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    report: PreflightReport | None = None
    error: str | None = None
    seconds: float = 0.0
    started: bool = False  # this call started the check
    first: bool = False  # the first time this verdict is handed out (record it then)


@dataclass
class PreflightGate:
    """The checks in flight and their results, one per workload (for its current nodes)."""

    runner: Runner
    settings: PreflightSettings = field(default_factory=PreflightSettings)
    policy: HealthPolicy = field(default_factory=HealthPolicy)
    wake: Callable[[], None] = lambda: None
    clock: Callable[[], float] = time.monotonic
    _checks: dict[str, _Check] = field(default_factory=dict)
    _pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=2, thread_name_prefix="preflight")
    )

    def applies(self, nodes: Sequence[str]) -> bool:
        return self.settings.min_nodes > 0 and len(set(nodes)) >= self.settings.min_nodes

    def outcome(self, workload_id: str, nodes: Sequence[str]) -> Outcome:
        """Where the check of ``workload_id`` on ``nodes`` stands; starts it the first time.
        A failure is handed out once: the gang is then placed again, and its new nodes get
        a new check."""
        key = tuple(sorted(set(nodes)))
        check = self._checks.get(workload_id)
        if check is None or check.nodes != key:
            new = _Check(key, self.clock(), self._pool.submit(self.runner, key, self.settings))

            def done(_: object) -> None:
                new.finished = self.clock()
                self.wake()  # the controller launches (or re-places) the gang at once

            new.future.add_done_callback(done)
            self._checks[workload_id] = new
            return Outcome(Verdict.WAIT, started=True)
        if not check.future.done():
            return Outcome(Verdict.WAIT)
        first, check.told = not check.told, True
        if check.accepted:
            return Outcome(Verdict.GO)
        seconds = (check.finished or self.clock()) - check.started
        error = check.future.exception()
        if error is not None:
            return Outcome(Verdict.GO, error=str(error) or type(error).__name__,
                           seconds=seconds, first=first)  # fmt: skip
        report = check.future.result()
        if report.healthy:
            return Outcome(Verdict.GO, report, seconds=seconds, first=first)
        # once handed out, the controller is placing the gang again: hold meanwhile
        return Outcome(Verdict.FAILED if first else Verdict.WAIT, report, seconds=seconds,
                       first=first)  # fmt: skip

    def accept(self, workload_id: str) -> None:
        """Let a failed check's gang start where it is."""
        if workload_id in self._checks:
            self._checks[workload_id].accepted = True

    def forget(self, keep: set[str]) -> None:
        """Drop the finished checks of workloads not in ``keep`` (no longer waiting to
        launch on the nodes that were checked)."""
        for gone in set(self._checks) - keep:
            if self._checks[gone].future.done():
                del self._checks[gone]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _figures(report: PreflightReport) -> str:
    bus = report.bus_bandwidth
    rate = f"bus bandwidth {bus / 1e9:.2f} GB/s" if bus is not None else "no bus bandwidth"
    flops = [n.flops for n in report.nodes if n.flops]
    compute = f", {min(flops) / 1e9:.1f}–{max(flops) / 1e9:.1f} GFLOP/s" if flops else ""
    return f"{rate} ({report.mb:g} MB all-reduce){compute}"


class PreflightGating(DecisionRecording):
    """The controller's side: which gangs wait for their check, and what a failure does."""

    preflight: PreflightGate | None

    def _preflight_holds(
        self, session: Session, workloads: Mapping[str, WorkloadRow], now: float
    ) -> set[str]:
        """The ids of ``workloads`` whose launch waits (a check running, or a failure just
        handled: those go back to pending)."""
        gate = self.preflight
        if gate is None:
            return set()
        held: set[str] = set()
        checked: set[str] = set()
        for workload in workloads.values():
            nodes = [str(p.get("node")) for p in workload.placements or []]
            if workload.kind != "TrainingJob" or workload.phase != Phase.ADMITTED.value:
                continue
            if not gate.applies(nodes):
                continue
            checked.add(workload.id)
            result = gate.outcome(workload.id, nodes)
            if result.started:
                distinct = sorted(set(nodes))
                record_event(session, "workload", workload.id, "PreflightStarted", "Preflight",
                             f"pre-flight on {len(distinct)} nodes: {', '.join(distinct)}",
                             tenant=workload.tenant, now=now)  # fmt: skip
            if result.verdict is Verdict.GO:
                if result.first:
                    self._preflight_passed(session, workload, result, now)
                continue
            failed = result.verdict is Verdict.FAILED and result.report is not None
            if failed and not self._preflight_failed(session, workload, result, now):
                gate.accept(workload.id)  # the policy keeps the nodes: launch anyway
                continue
            held.add(workload.id)
        gate.forget(checked)
        return held

    def _preflight_passed(
        self, session: Session, workload: WorkloadRow, result: Outcome, now: float
    ) -> None:
        if result.error is not None:
            kind = "PreflightSkipped"
            message = f"pre-flight could not run ({result.error[:300]}); launching without it"
        else:
            assert result.report is not None
            kind = "PreflightPassed"
            message = (f"{result.report.summary()} in {result.seconds:.1f} s: "
                       f"{_figures(result.report)}")  # fmt: skip
        record_event(session, "workload", workload.id, kind, "Preflight", message,
                     tenant=workload.tenant, now=now)  # fmt: skip

    def _preflight_failed(
        self, session: Session, workload: WorkloadRow, result: Outcome, now: float
    ) -> bool:
        """Cordon each node the check named (through the health policy) and put the gang
        back to pending; the next cycle places it on other nodes. False when the policy
        cordoned none of them (``overrides: {preflight-failed: event}``): placing the gang
        again would only find the same nodes, so it starts where it is."""
        gate, report = self.preflight, result.report
        assert gate is not None and report is not None
        excluded = False
        for suspect in report.suspects:
            for name in suspect.nodes:
                row = session.get(NodeRow, name)
                if row is None:
                    continue
                why = f"pre-flight of {workload.name}: {suspect.evidence}"
                condition = Condition(Kind.PREFLIGHT_FAILED, Severity.DEGRADED, -1, why)
                apply_conditions(session, row, [condition], gate.policy, now)
                excluded = excluded or row.cordoned
        evidence = f"pre-flight ({result.seconds:.1f} s) failed: {report.summary()}"
        if not excluded:
            record_event(session, "workload", workload.id, "PreflightFailed", "Preflight",
                         f"{evidence}; the health policy keeps the node(s) in service, so it "
                         "starts where it was placed", tenant=workload.tenant, now=now)  # fmt: skip
            return False
        self._apply(session, workload, lifecycle.preflight_failed(_life(workload), evidence), now)
        return True
