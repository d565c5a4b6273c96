"""The controller loop: observe, decide with ``baige.sched``, record, then carry out.

Level-triggered: each pass compares what the store wants with what the backend reports and
closes the gap, so a controller killed at any moment and started again loses nothing and
launches nothing twice. Decisions are committed to the store before any process starts
(replica rows are written "pending" in the same transaction as the admission); the backend
launches by replica id, which it refuses to launch twice.

A pass runs its parts in order, each in its own module: the node lifecycle
(:mod:`~baige.control.node_lifecycle`), observation (:mod:`~baige.control.observing`),
cancellations and decision recording (:mod:`~baige.control.recording`, which applies the pure
:mod:`baige.sched.lifecycle`), autoscaling and the scheduling cycle (here), launching and
draining (:mod:`~baige.control.launching`), and usage sampling (:mod:`~baige.control.usage`).
Time comes from the injected ``clock``, so a test steps it (``tests/unit/control``).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Mapping

from sqlalchemy import select

from baige.api.workloads import InferenceServiceSpec, Phase
from baige.backends.base import Backend
from baige.control.launching import DRAIN_SETTLE_S, Launching
from baige.control.leadership import Deposed
from baige.control.node_lifecycle import NodeLifecycle
from baige.control.observing import Observation
from baige.control.preflight_gate import PreflightGate
from baige.control.recording import PassStats
from baige.control.service import record_event
from baige.control.snapshot import (
    SnapshotCache,
    load_snapshot,
    parse_spec,
)
from baige.control.usage import record_service_load, record_usage
from baige.sched import (
    BAIGE,
    CycleResult,
    Profile,
    Snapshot,
    apply_decisions,
    run_cycle,
)
from baige.sched.autoscale import AutoscaleState, LoadSample, recommend
from baige.sched.from_api import autoscale_policy
from baige.store.db import Database
from baige.store.tables import WorkloadRow

__all__ = ["DRAIN_SETTLE_S", "Controller", "PassStats"]

log = logging.getLogger("baige.controller")


class Controller(NodeLifecycle, Observation, Launching):
    """One control loop over one store and one backend."""

    def __init__(
        self,
        db: Database,
        backend: Backend,
        profile: Profile = BAIGE,
        *,
        heartbeat_timeout: float = 10.0,
        interval: float = 1.0,
        sample_interval: float = 30.0,
        api_url: str | None = None,
        max_launches_per_pass: int = 256,
        load: Callable[[str], LoadSample | None] | None = None,
        in_flight: Callable[[str], int] | None = None,
        figures: Callable[[], Mapping[str, Mapping[str, float]]] | None = None,
        drain_timeout: float = 30.0,
        preflight: PreflightGate | None = None,
        recheck_interval: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        # big gangs' pre-flight (None: never); its checks wake the loop when they end
        self.preflight = preflight
        if preflight is not None:
            preflight.wake = self.wake
        self.clock = clock  # wall-clock time of a pass (a test steps it)
        self.load = load  # a service's measured load (the gateway's board), for autoscaling
        self._autoscale_state: dict[str, AutoscaleState] = {}
        # requests in flight to a service replica (the gateway's count): drain, then stop
        self.in_flight = in_flight
        self.figures = figures  # the gateway's per-service figures, sampled for the console
        self.drain_timeout = drain_timeout
        self._draining: dict[str, float] = {}  # replica id -> when it left the rotation
        self.max_launches_per_pass = max_launches_per_pass
        self.api_url = api_url
        self.backend = backend
        self.profile = profile
        self.heartbeat_timeout = heartbeat_timeout
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.last: PassStats = PassStats()
        self._cache = SnapshotCache()
        # The last cycle that decided nothing, its snapshot and when it ran: while the next
        # snapshot equals it, the cycle would decide nothing again (it is a pure function
        # of the snapshot and the time; the time only moves backfill reservations and the
        # "starts in about N s" of a reason), so it is skipped for up to
        # ``recheck_interval`` seconds. An idle pass at 10,000 nodes and 5,000 jobs then
        # costs the snapshot's read, not the cycle's 100-300 ms.
        self.recheck_interval = recheck_interval
        self._idle: tuple[Snapshot, CycleResult, float] | None = None
        self.sample_interval = sample_interval
        self._last_sample = 0.0
        self.pass_seconds: list[float] = []
        # called once when a pass finds another controller leads (control.leadership)
        self.on_deposed: Callable[[], None] | None = None

    def wake(self) -> None:
        """Run the next pass now (after a submission, a cancel, a scale)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self.preflight is not None:
            self.preflight.close()

    def run_forever(self) -> None:
        """Pass every ``interval`` seconds, or sooner when woken; but after a pass of t
        seconds, rest at least t (and 50 ms): under a stream of submissions the loop then
        takes at most half the interpreter from the API threads that accept them."""
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.run_pass()
            except Deposed as err:  # another controller leads now: write nothing more
                log.error("controller stopped: %s", err)
                self._stop.set()
                if self.on_deposed is not None:
                    self.on_deposed()
                return
            except Exception:  # a pass must never kill the loop; the next one retries
                log.exception("controller pass failed; retrying")
            took = time.monotonic() - started
            self._stop.wait(max(0.05, min(took, self.interval)))
            self._wake.wait(max(0.0, self.interval - took))
            self._wake.clear()

    def run_pass(self) -> PassStats:
        """One pass. The cyclic garbage collector is paused during it and the pass's young
        garbage collected at its end: a full collection walks every object the process holds
        (tens of thousands at 10,000 nodes) and would otherwise land inside passes at random,
        adding 50–100 ms to one in a few."""
        enabled = gc.isenabled()
        started = time.perf_counter()
        gc.disable()
        try:
            stats = self._run_pass()
        finally:
            if enabled:
                gc.collect(1)
                gc.enable()
        stats.phases["gc"] = time.perf_counter() - started - stats.seconds
        stats.seconds = time.perf_counter() - started
        self.pass_seconds[-1] = stats.seconds
        return stats

    def _run_pass(self) -> PassStats:
        started = time.perf_counter()
        stats = PassStats()
        now = self.clock()
        mark = started

        def lap(phase: str) -> None:
            nonlocal mark
            current = time.perf_counter()
            stats.phases[phase] = current - mark
            mark = current

        stats.failed_nodes = self._expire_nodes(now)
        self._drain_nodes(now)
        lap("nodes")
        self._observe(now, stats)
        lap("observe")
        self._finish_cancellations(now)
        lap("cancel")
        self._autoscale(now)
        lap("autoscale")
        self._schedule(now, stats)
        lap("schedule")
        self._reconcile(stats)
        lap("reconcile")
        stats.seconds = time.perf_counter() - started
        self.last = stats
        self.pass_seconds.append(stats.seconds)
        del self.pass_seconds[:-1000]
        return stats

    def _autoscale(self, now: float) -> None:
        """Set each autoscaled service's wanted replicas from its measured load (the pure
        :func:`baige.sched.autoscale.recommend`); the scheduling cycle then grows or shrinks
        it like any resize, preempting or shrinking training when there is no free room."""
        if self.load is None:
            return
        with self.db.session() as session:
            services = session.scalars(
                select(WorkloadRow).where(
                    WorkloadRow.kind == "InferenceService",
                    WorkloadRow.phase.in_(
                        (Phase.PENDING.value, Phase.ADMITTED.value, Phase.RUNNING.value)
                    ),
                    WorkloadRow.cancel_requested.is_(False),
                )
            )
            active: set[str] = set()
            for row in services:
                spec = parse_spec(row.kind, row.spec)
                if not isinstance(spec, InferenceServiceSpec) or spec.autoscale is None:
                    continue
                active.add(row.id)
                policy = autoscale_policy(spec.autoscale)
                state = self._autoscale_state.get(row.id, AutoscaleState())
                result = recommend(policy, state, row.replicas, self.load(row.id), now)
                self._autoscale_state[row.id] = result.state
                if not result.changed:
                    continue
                data = dict(row.spec)
                data["replicas"] = result.replicas
                row.spec, row.replicas = data, result.replicas
                record_event(session, "workload", row.id, "Autoscaled", "Load", result.reason,
                             tenant=row.tenant, now=now)  # fmt: skip
            for gone in set(self._autoscale_state) - active:
                del self._autoscale_state[gone]

    def _schedule(self, now: float, stats: PassStats) -> None:
        loading = time.perf_counter()
        with self.db.session() as session:
            snapshot, rows = load_snapshot(session, self._cache)
        stats.phases["snapshot"] = time.perf_counter() - loading
        idle = self._idle
        if idle is not None and idle[0] == snapshot and 0 <= now - idle[2] < self.recheck_interval:
            result = idle[1]
            stats.cycle_skipped = True
        else:
            self._idle = None
            started = time.perf_counter()
            result = run_cycle(snapshot, now, self.profile)
            stats.cycle_seconds = time.perf_counter() - started
            stats.decisions = len(result.decisions)
            for warning in result.warnings:
                log.warning("snapshot: %s", warning)
            with self.db.session() as session:
                self._record(session, result, rows, now)
            if not result.decisions:
                self._idle = (snapshot, result, now)
        if now - self._last_sample >= self.sample_interval:
            self._last_sample = now
            with self.db.session() as session:
                record_usage(session, apply_decisions(snapshot, result), now)
                record_service_load(session, now, self.figures() if self.figures else {})
