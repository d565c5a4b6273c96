"""The discrete-event simulator: a simulated clock and cluster driving the real scheduler.

Events — arrivals, completions, node failures, their detection and repair, the autoscaler's
ticks, scheduler passes — are taken from a heap in time order. A pass calls
:meth:`baige.sched.incremental.Scheduler.cycle`, which returns exactly what
``run_cycle(snapshot, now, profile)`` would for the cluster as it stands (the control
plane's function), and the decisions are carried out on the simulated jobs.

When passes happen: at most one per ``interval``, as a controller loop would run them, and
only when something changed since the last pass (an event, or decisions of the last pass,
which may let more happen). A pass that would see exactly what the last decision-free pass
saw is skipped: time alone changes no decision (backfill windows only shrink as the clock
advances). ``every-interval`` runs every pass regardless, as a polling controller.

Physical truth and the scheduler's view differ on purpose: a node that dies stops its jobs at
once, but the scheduler learns of it only ``detection`` seconds later; work it places there
meanwhile does not start. Training progress follows :mod:`baige.sim.progress`.
"""

from __future__ import annotations

import dataclasses
import gc
import heapq
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from baige.sched import (
    Admit,
    CycleResult,
    Grow,
    Health,
    Kind,
    Node,
    Placement,
    Preempt,
    Profile,
    Shrink,
    Snapshot,
    check_result,
    lifecycle,
)
from baige.sched.autoscale import AutoscaleState, LoadSample, recommend
from baige.sched.incremental import Scheduler
from baige.sched.lifecycle import Life, Outcome, ReplicaEnd, Step
from baige.sim.build import Built, Service, TrainingJob, rng_for
from baige.sim.metrics import Bins, Level
from baige.sim.progress import Checkpointing, Segment
from baige.sim.recovery import Recovery, RestoreSource

__all__ = ["Engine", "EngineConfig", "FaultModel", "LoggedEvent", "Loss", "RestartCosts"]

# event kinds, in the order they are handled at one instant (the pass comes last)
_FINISH, _END, _FAIL, _DETECT, _REPAIR, _ARRIVE, _START, _TICK, _PASS = range(9)
_SPARE = 9  # a repaired node rejoins the spare pool

PENDING, RUNNING, CRASHED, DONE = "pending", "running", "crashed", "done"


@dataclass(frozen=True, slots=True)
class RestartCosts:
    detection: float = 60.0
    rescheduling: float = 30.0
    initialization: float = 120.0
    checkpoint_load: float = 60.0

    @property
    def first_start(self) -> float:
        return self.rescheduling + self.initialization

    @property
    def restart(self) -> float:
        return self.rescheduling + self.initialization + self.checkpoint_load


@dataclass(frozen=True, slots=True)
class FaultModel:
    per_1000_node_days: float = 0.0
    repair: float = 4 * 3600.0
    flaky_share: float = 0.0
    flaky_factor: float = 10.0
    cordon_after: int = 0
    cordon_window: float = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class EngineConfig:
    horizon: float
    seed: int = 1
    interval: float = 60.0
    every_interval: bool = False
    checkpointing: Checkpointing = field(default_factory=lambda: Checkpointing(1800.0, 30.0))
    checkpoint_on_preemption: bool = False
    restart: RestartCosts = field(default_factory=RestartCosts)
    recovery: Recovery | None = None  # spares and buddy restores (baige.sim.recovery)
    faults: FaultModel = field(default_factory=FaultModel)
    timeline_points: int = 480
    verify: bool = False  # check every cycle's invariants (slow; for tests)
    log_events: bool = False  # keep every workload event (the parity test compares them)


@dataclass(frozen=True, slots=True)
class Loss:
    """Work a job lost: at ``time``, ``work`` replica-seconds, because of ``cause``."""

    time: float
    job: str
    cause: str  # "failure" or "preemption"
    work: float


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """A workload event, as the control plane records it (``EngineConfig.log_events``)."""

    time: float
    workload: str
    type: str
    message: str
    replicas: int  # replicas it holds after the event


@dataclass(slots=True)
class _Job:
    spec: TrainingJob
    life: Life = field(default_factory=lambda: Life(Kind.TRAINING))
    state: str = PENDING
    segment: Segment | None = None
    epoch: int = 0  # bumped whenever the segment changes: older finish events are stale
    replicas: int = 0
    accel: str = ""
    started: bool = False
    first_start: float = math.nan
    end: float = math.nan
    done: float = 0.0  # replica-seconds done and not lost, at the last segment close
    saved: float = 0.0
    lost: float = 0.0
    progress: float = 0.0  # replica-seconds of progress made, lost or not
    productive: float = 0.0  # seconds of progress kept
    interruptions: int = 0
    preemptions: int = 0
    restore_from: RestoreSource | None = None  # after a node loss: where the restart reads
    last_save: float = -math.inf  # when the checkpoint a failure would restore was taken


@dataclass(slots=True)
class _ServiceState:
    """One service: a single workload of ``wanted`` replicas in the scheduler (as live)."""

    service: Service
    life: Life = field(default_factory=lambda: Life(Kind.INFERENCE))
    needed: int = 0  # replicas the demand needs now
    wanted: int = 0  # replicas the autoscaler asks for (the workload's size)
    known: bool = False  # submitted to the scheduler
    submitted: float = 0.0  # when it last was
    autoscale: AutoscaleState = field(default_factory=AutoscaleState)
    accel: str = ""
    started: int = 0  # replicas placed over the run (admissions and growth)
    serving: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    since: float = 0.0
    demand_time: float = 0.0
    met_time: float = 0.0
    useful: dict[str, float] = field(default_factory=dict)  # current useful milli by type


class _Group:
    """Levels for one queue or accelerator type (or the whole cluster)."""

    __slots__ = ("allocated", "available", "useful_area")

    def __init__(self, bins: Bins | None = None) -> None:
        self.allocated = Level(bins)
        self.available = Level()
        self.useful_area = 0.0


class Engine:
    """One run of one scheduling profile over one built scenario."""

    def __init__(self, built: Built, profile: Profile, config: EngineConfig) -> None:
        recovery = config.recovery
        # failures are drawn over every node, spares too (a failure of an idle spare is
        # ignored), so runs with and without spares see the same faults
        self._failure_nodes = [n.name for n in built.nodes]
        self.spares: dict[str, int] = {}  # hot spare nodes free now, per accelerator type
        self.spares_held: dict[str, int] = {}
        if recovery is not None and recovery.spares:
            built, self.spares_held = _hold_spares(built, recovery.spares)
            self.spares = dict(self.spares_held)
        self.spare_swaps = 0
        self.restores: dict[str, int] = {}  # restarts after a failure, by restore source
        self.memory_lost: dict[str, float] = {}  # node -> when it last lost its memory
        self.built = built
        self.rack_of = {n.name: (n.topology[-1] if n.topology else "") for n in built.nodes}
        self.type_of = {n.name: n.accel_type for n in built.nodes}
        self.profile = profile
        self.config = config
        self.ckpt = config.checkpointing
        self.scheduler = Scheduler(built.nodes, built.queues, profile, built.levels)
        self.now = 0.0
        self._events: list[tuple[float, int, int, str]] = []
        self._seq = 0
        self._pass_at = math.inf  # the scheduled pass, if any
        self._last_pass = -math.inf
        self._dirty = True
        self.jobs: dict[str, _Job] = {}
        self.services: dict[str, _ServiceState] = {}
        self._curve_services: list[_ServiceState] = []
        self.losses: list[Loss] = []
        self.on_node: dict[str, dict[str, int]] = {n.name: {} for n in built.nodes}
        self.alloc: dict[str, tuple[str, str, int]] = {}  # workload -> (queue, type, milli)
        self.dead: set[str] = set()  # nodes physically down
        self.failures: dict[str, list[float]] = {}
        self.cordoned: set[str] = set()
        points = config.timeline_points
        self.bins = {
            "allocated_training": Bins(config.horizon, points),
            "allocated_inference": Bins(config.horizon, points),
            "useful_training": Bins(config.horizon, points),
            "useful_inference": Bins(config.horizon, points),
            "available": Bins(config.horizon, points),
        }
        self.total = _Group()
        self.total.available.bins = self.bins["available"]
        self.by_kind = {
            Kind.TRAINING: Level(self.bins["allocated_training"]),
            Kind.INFERENCE: Level(self.bins["allocated_inference"]),
        }
        self.inference_useful = Level(self.bins["useful_inference"])
        self.by_type: dict[str, _Group] = {}
        self.by_queue: dict[str, _Group] = {q.name: _Group() for q in built.queues}
        self._useful_by_type: dict[str, Level] = {}  # inference useful capacity, as rates
        self._useful_by_queue: dict[str, Level] = {}
        self._workload_nodes: dict[str, tuple[str, ...]] = {}
        self.cycles = 0
        self.cycle_seconds = 0.0
        self.events = 0
        self.decisions = 0
        self.preemptions = 0
        self.shrinks = 0
        self.node_failures = 0
        self.violations: list[str] = []
        self.log: list[LoggedEvent] = []
        self.held: list[tuple[float, dict[str, int]]] = []  # after each pass, when logging
        for node in built.nodes:
            group = self.by_type.setdefault(node.accel_type, _Group())
            if node.schedulable:
                group.available.move(0.0, node.devices * 1000)
                self.total.available.move(0.0, node.devices * 1000)

    def by_kind_area(self, kind: str) -> float:
        """Accelerator time (milli-seconds) allocated to training or inference."""
        return self.by_kind[Kind(kind)].area

    # -- the event heap -------------------------------------------------------------------

    def _push(self, at: float, kind: int, key: str = "") -> None:
        self._seq += 1
        heapq.heappush(self._events, (at, kind, self._seq, key))

    def _want_pass(self) -> None:
        self._dirty = True
        if self.config.every_interval or self._pass_at < math.inf:
            return
        at = max(self.now, self._last_pass + self.config.interval)
        self._pass_at = at
        self._push(at, _PASS)

    # -- set-up -------------------------------------------------------------------------------

    def _schedule_inputs(self) -> None:
        for job in self.built.jobs:
            self.jobs[job.workload.id] = _Job(job, Life(Kind.TRAINING, keep=job.size or 0))
            if job.submit < self.config.horizon:
                self._push(job.submit, _ARRIVE, job.workload.id)
        for service in self.built.services:
            state = _ServiceState(service)
            self.services[service.name] = state
            if service.follows_load:
                self._curve_services.append(state)
            elif service.start < self.config.horizon:
                self._push(service.start, _START, service.name)
                if service.end < self.config.horizon:
                    self._push(service.end, _END, service.name)
        if self._curve_services:
            self._push(0.0, _TICK)
        self._schedule_failures()
        for at, node in self.built.failures:
            if at < self.config.horizon:
                self._push(at, _FAIL, node)
        if self.config.every_interval:
            self._pass_at = 0.0
            self._push(0.0, _PASS)

    def _schedule_failures(self) -> None:
        faults = self.config.faults
        nodes = self._failure_nodes
        if faults.per_1000_node_days <= 0 or not nodes:
            return
        rng = rng_for(self.config.seed, "failures")
        flaky = set(rng.sample(nodes, round(len(nodes) * faults.flaky_share)))
        weights = [faults.flaky_factor if n in flaky else 1.0 for n in nodes]
        rate = sum(weights) * faults.per_1000_node_days / 1000 / 86400  # failures per second
        clock = 0.0
        while True:
            clock += rng.expovariate(rate)
            if clock >= self.config.horizon:
                break
            self._push(clock, _FAIL, rng.choices(nodes, weights)[0])

    # -- allocation bookkeeping -------------------------------------------------------------

    def _placements_changed(
        self, workload: str, kind: Kind, queue: str, accel: str, placements: tuple[Placement, ...]
    ) -> None:
        """Record the workload's placements as they now are (empty: it holds nothing)."""
        old = self.alloc.pop(workload, None)
        if old is not None:
            old_queue, old_accel, milli = old
            self._charge(kind, old_queue, old_accel, -milli)
        for node_map in (self.on_node[n] for n in self._nodes_of(workload)):
            node_map.pop(workload, None)
        if not placements:
            self._workload_nodes.pop(workload, None)
            return
        milli = sum(len(p.devices) * p.milli for p in placements)
        self.alloc[workload] = (queue, accel, milli)
        self._charge(kind, queue, accel, milli)
        counts: dict[str, int] = {}
        for placement in placements:
            counts[placement.node] = counts.get(placement.node, 0) + 1
        for node, count in counts.items():
            self.on_node[node][workload] = count
        self._workload_nodes[workload] = tuple(counts)

    def _nodes_of(self, workload: str) -> tuple[str, ...]:
        return self._workload_nodes.get(workload, ())

    def _charge(self, kind: Kind, queue: str, accel: str, milli: int) -> None:
        now = self.now
        self.total.allocated.move(now, milli)
        self.by_kind[kind].move(now, milli)
        self.by_type[accel].allocated.move(now, milli)
        self.by_queue[queue].allocated.move(now, milli)

    def _on_dead_node(self, workload: str) -> bool:
        return any(n in self.dead for n in self._nodes_of(workload))

    # -- the lifecycle (baige.sched.lifecycle, as the controller applies it) -------------------

    def _step(self, workload: str, step: Step) -> Life:
        if self.config.log_events and step.event is not None:
            event = step.event
            self.log.append(
                LoggedEvent(self.now, workload, event.type, event.message, step.life.replicas)
            )
        return step.life

    # -- training jobs ----------------------------------------------------------------------

    def _start_segment(self, job: _Job, overhead: float) -> None:
        job.epoch += 1
        job.saved = job.done
        if self._on_dead_node(job.spec.workload.id):
            job.segment = None
            job.state = CRASHED  # placed on a node that is down: it never starts
            return
        job.state = RUNNING
        job.life = lifecycle.started(job.life).life
        training = job.replicas if job.spec.size is None else min(job.replicas, job.spec.size)
        job.segment = Segment(self.now, overhead, training, job.done, job.saved)
        finish = job.segment.finish(job.spec.work, self.ckpt)
        if finish < self.config.horizon:
            self._push(finish, _FINISH, f"{job.spec.workload.id}#{job.epoch}")

    def _close_segment(self, job: _Job, *, keep: bool, cause: str = "") -> None:
        """Stop the running segment at ``now``: ``keep`` saves its progress (a graceful stop
        or completion), otherwise what the last checkpoint did not hold is lost."""
        segment = job.segment
        job.segment = None
        job.epoch += 1
        if segment is None:
            return
        now = self.now
        done = min(segment.done_at(now, self.ckpt), job.spec.work)
        made = done - segment.done
        job.progress += made
        kept_until = now
        if keep:
            kept = made
            job.last_save = now
        else:
            saved = min(segment.saved_at(now, self.ckpt), done)
            kept = saved - segment.done
            lost = done - saved
            if lost > 1e-9:
                job.lost += lost
                self.losses.append(Loss(now, job.spec.workload.id, cause, lost))
            kept_until = segment.last_save(now, self.ckpt)
            done = saved
        job.done = done
        job.saved = done
        if segment.replicas and kept > 0:
            seconds = kept / segment.replicas
            job.productive += seconds
            devices = job.spec.workload.request.total_milli * segment.replicas
            useful = seconds * devices
            self.total.useful_area += useful
            self.by_type[job.accel].useful_area += useful
            self.by_queue[job.spec.workload.queue].useful_area += useful
            self.bins["useful_training"].add(
                segment.progress_from,
                kept_until,
                useful / max(kept_until - segment.progress_from, 1e-9),
            )

    def _interrupt(self, job: _Job) -> None:
        """A node under the job died: its replicas crashed; the scheduler will act once the
        failure is detected."""
        if job.state == RUNNING:
            self._close_segment(job, keep=False, cause="failure")
            job.interruptions += 1
        job.state = CRASHED

    def _job_decision(self, job: _Job, decision: Admit | Preempt | Shrink | Grow) -> None:
        workload = job.spec.workload
        restart = self.config.restart
        graceful = self.config.checkpoint_on_preemption
        job.life = self._step(workload.id, lifecycle.decided(job.life, decision))
        if isinstance(decision, Admit):
            job.replicas = len(decision.placements)
            job.accel = decision.accel_type
            self._placements_changed(
                workload.id, Kind.TRAINING, workload.queue, job.accel, decision.placements
            )
            if not job.started:
                job.started = True
                job.first_start = self.now
                self._start_segment(job, restart.first_start)
            else:
                self._start_segment(job, self._restart_overhead(job))
            return
        if isinstance(decision, Preempt):
            if job.state == RUNNING:
                self._close_segment(job, keep=graceful, cause="preemption")
            if decision.by is not None:
                job.preemptions += 1
                self.preemptions += 1
            job.state = PENDING
            job.replicas = 0
            self._placements_changed(workload.id, Kind.TRAINING, workload.queue, job.accel, ())
            return
        assignment = self.scheduler.assignment(workload.id)
        placements = () if assignment is None else assignment.placements
        if isinstance(decision, Shrink) and decision.by is not None:
            self.shrinks += 1
        if job.state == RUNNING:
            if isinstance(decision, Grow):
                self._close_segment(job, keep=True)
            else:
                self._close_segment(job, keep=graceful, cause="preemption")
        job.replicas = len(placements)
        self._placements_changed(workload.id, Kind.TRAINING, workload.queue, job.accel, placements)
        if job.state != CRASHED or not self._on_dead_node(workload.id):
            self._start_segment(job, self._restart_overhead(job))

    def _finish(self, key: str) -> None:
        workload_id, _, epoch = key.rpartition("#")
        job = self.jobs[workload_id]
        if job.state != RUNNING or job.epoch != int(epoch):
            return  # stale: the job was resized, interrupted or preempted since
        self._close_segment(job, keep=True)
        ended = [ReplicaEnd(i, Outcome.SUCCEEDED, 0) for i in range(job.replicas)]
        job.life = self._step(workload_id, lifecycle.replicas_ended(job.life, ended, job.replicas))
        job.state = DONE
        job.end = self.now
        self.scheduler.remove(workload_id)
        self._placements_changed(workload_id, Kind.TRAINING, job.spec.workload.queue, job.accel, ())
        self._want_pass()

    # -- inference ----------------------------------------------------------------------------

    def _service_flush(self, state: _ServiceState) -> None:
        now = self.now
        if now > state.since:
            if state.needed > 0:
                state.demand_time += now - state.since
                if state.serving >= state.needed:
                    state.met_time += now - state.since
            state.since = now

    def _service_changed(self, state: _ServiceState) -> None:
        """Recompute the service's useful capacity: serving replicas up to the demand."""
        now = self.now
        per = state.service.template.request.total_milli
        scale = min(1.0, state.needed / state.serving) if state.serving else 0.0
        useful = {accel: count * per * scale for accel, count in state.by_type.items()}
        queue = state.service.template.queue
        for accel in set(useful) | set(state.useful):
            delta = useful.get(accel, 0.0) - state.useful.get(accel, 0.0)
            if delta:
                self.inference_useful.move(now, delta)
                self._useful_by_type.setdefault(accel, Level()).move(now, delta)
                self._useful_by_queue.setdefault(queue, Level()).move(now, delta)
        state.useful = useful

    def _refresh_serving(self, state: _ServiceState) -> None:
        """Count the service's replicas that serve: placed, on a node that is up."""
        assignment = self.scheduler.assignment(state.service.name) if state.known else None
        placements = () if assignment is None else assignment.placements
        serving = sum(1 for p in placements if p.node not in self.dead)
        by_type = {state.accel: serving} if serving else {}
        if serving == state.serving and by_type == state.by_type:
            return
        self._service_flush(state)
        state.serving = serving
        state.by_type = by_type
        self._service_changed(state)

    def _scale(self, state: _ServiceState) -> None:
        """Size the service from its load now, through the live autoscaler."""
        service = state.service
        self._service_flush(state)
        now = self.now
        state.needed = service.needed(now)
        if state.needed == 0:
            wanted = 0
        else:
            policy = service.autoscale
            load = LoadSample(service.offered(now), 0.0, state.serving)
            current = state.wanted or service.initial or policy.min_replicas
            result = recommend(policy, state.autoscale, current, load, now)
            state.autoscale = result.state
            wanted = result.replicas
            if result.changed and self.config.log_events:
                self.log.append(LoggedEvent(now, service.name, "Autoscaled", result.reason,
                                            state.life.replicas))  # fmt: skip
        changed = wanted != state.wanted
        state.wanted = wanted
        if wanted == 0 and state.known:
            self.scheduler.remove(service.name)
            state.known = False
            self._placements_changed(service.name, Kind.INFERENCE, service.template.queue,
                                     state.accel, ())  # fmt: skip
            self._refresh_serving(state)
        elif wanted > 0 and not state.known:
            self.scheduler.submit(service.workload(wanted, now))
            state.known = True
            state.submitted = now
        elif changed and state.known:
            self.scheduler.update(service.workload(wanted, state.submitted))
        self._service_changed(state)
        if changed:
            self._want_pass()

    def _service_decision(
        self, state: _ServiceState, decision: Admit | Preempt | Shrink | Grow
    ) -> None:
        name = state.service.name
        queue = state.service.template.queue
        state.life = self._step(name, lifecycle.decided(state.life, decision))
        state.life = lifecycle.started(state.life).life
        if isinstance(decision, Admit):
            state.accel = decision.accel_type
            state.started += len(decision.placements)
        elif isinstance(decision, Grow):
            state.started += len(decision.add)
        assignment = self.scheduler.assignment(name)
        placements = () if assignment is None else assignment.placements
        if isinstance(decision, Shrink) and decision.by is not None:
            self.shrinks += 1
        if isinstance(decision, Preempt) and decision.by is not None:
            self.preemptions += 1
        self._placements_changed(name, Kind.INFERENCE, queue, state.accel, placements)
        self._refresh_serving(state)

    def _tick(self) -> None:
        for state in self._curve_services:
            self._scale(state)
        next_tick = self.now + self.built.tick
        if next_tick < self.config.horizon:
            self._push(next_tick, _TICK)

    # -- faults -----------------------------------------------------------------------------

    def _fail(self, node: str) -> None:
        if node in self.dead or node in self.cordoned or node not in self.on_node:
            return
        if self.config.recovery is not None and self._swap(node):
            return
        self.node_failures += 1
        self.dead.add(node)
        self.failures.setdefault(node, []).append(self.now)
        for workload in list(self.on_node[node]):
            job = self.jobs.get(workload)
            if job is not None:
                if self.config.recovery is not None and job.state == RUNNING:
                    job.restore_from = self._restore_source(job, node)
                self._interrupt(job)
            else:
                self._refresh_serving(self.services[workload])
        faults = self.config.faults
        self._push(self.now + self.config.restart.detection, _DETECT, node)
        self._push(self.now + max(faults.repair, self.config.restart.detection), _REPAIR, node)

    # -- recovery: hot spares and buddy restores (EngineConfig.recovery) --------------------

    def _restart_overhead(self, job: _Job) -> float:
        """Start-up of a restart: the fixed costs, or the recovery model's for where the job
        restores from (a buddy's memory or disk after a node loss; otherwise — a preemption,
        a resize — wherever the model says a lost node's state comes from)."""
        recovery = self.config.recovery
        if recovery is None:
            return self.config.restart.restart
        source = job.restore_from or recovery.after_node_loss
        if job.restore_from is not None:
            self.restores[source.value] = self.restores.get(source.value, 0) + 1
            job.restore_from = None
        return recovery.requeued(source)

    def _buddy(self, workload: str, node: str) -> str | None:
        """The node holding ``node``'s replica: the next of the job's nodes in another rack
        (a failure domain), else the next node; None for a one-node job."""
        nodes = self._nodes_of(workload)
        if len(nodes) < 2 or node not in nodes:
            return None
        at = nodes.index(node)
        rack = self.rack_of.get(node, "")
        following = nodes[at + 1 :] + nodes[:at]
        return next((n for n in following if self.rack_of.get(n, "") != rack), following[0])

    def _restore_source(self, job: _Job, node: str) -> RestoreSource:
        """Where a running job that loses ``node`` restores from: the buddy's memory if
        replicas are on and the buddy still holds the last save (it is up and has not lost
        its memory since), else disk."""
        recovery = self.config.recovery
        if recovery is None or not recovery.peer or job.segment is None:
            return RestoreSource.DISK
        buddy = self._buddy(job.spec.workload.id, node)
        if buddy is None or buddy in self.dead:
            return RestoreSource.DISK
        segment = job.segment
        if self.ckpt.saved_time(self.now - segment.progress_from) > 0:
            job.last_save = segment.last_save(self.now, self.ckpt)
        if self.memory_lost.get(buddy, -math.inf) >= job.last_save:
            return RestoreSource.DISK  # the buddy lost its memory since that save
        return RestoreSource.PEER_MEMORY

    def _swap(self, node: str) -> bool:
        """A failed node under training jobs only, with a spare free: the spare takes its
        place (and its name: the scheduler never learns of the failure, so no job is
        requeued); each job there restarts in place after detection, swap, restart and a
        restore from its buddy or disk. The failed node joins the pool after repair."""
        recovery = self.config.recovery
        workloads = list(self.on_node[node])
        accel = self.type_of[node]
        if recovery is None or not workloads or self.spares.get(accel, 0) <= 0:
            return False
        if any(w not in self.jobs for w in workloads):
            return False  # an inference replica there: the ordinary path
        self.spares[accel] -= 1
        self.spare_swaps += 1
        self.node_failures += 1
        for workload in workloads:
            job = self.jobs[workload]
            if job.state != RUNNING:
                continue
            source = self._restore_source(job, node)
            self._close_segment(job, keep=False, cause="failure")
            job.interruptions += 1
            self.restores[source.value] = self.restores.get(source.value, 0) + 1
            self._start_segment(job, recovery.swapped(source))
        self.memory_lost[node] = self.now
        self._push(self.now + self.config.faults.repair, _SPARE, accel)
        return True

    def _detect(self, node: str) -> None:
        if node in self.dead:
            self._set_health(node, Health.FAILED)

    def _repair(self, node: str) -> None:
        self.dead.discard(node)
        self.memory_lost[node] = self.now
        faults = self.config.faults
        recent = [t for t in self.failures.get(node, ()) if t > self.now - faults.cordon_window]
        if faults.cordon_after and len(recent) >= faults.cordon_after:
            self.cordoned.add(node)
            self._set_health(node, Health.CORDONED)
        else:
            self._set_health(node, Health.READY)
        for workload in list(self.on_node[node]):  # work the scheduler never took off it
            job = self.jobs.get(workload)
            if job is None:
                self._refresh_serving(self.services[workload])  # its replicas here serve again
            elif job.state == CRASHED and not self._on_dead_node(workload):
                self._start_segment(job, self._restart_overhead(job))

    def _set_health(self, node: str, health: Health) -> None:
        slot = self.scheduler.cluster.slot(node)
        assert slot is not None
        before = slot.node.schedulable
        self.scheduler.set_health(node, health)
        after = slot.node.schedulable
        if before != after:
            milli = slot.node.devices * 1000 * (1 if after else -1)
            self.total.available.move(self.now, milli)
            self.by_type[slot.node.accel_type].available.move(self.now, milli)
        self._want_pass()

    # -- passes ------------------------------------------------------------------------------

    def _pass(self) -> None:
        self._pass_at = math.inf
        if self.config.every_interval:
            next_pass = self.now + self.config.interval
            if next_pass < self.config.horizon:
                self._pass_at = next_pass
                self._push(next_pass, _PASS)
        elif not self._dirty:
            return
        self._last_pass = self.now
        self._dirty = False
        before = self.scheduler.snapshot() if self.config.verify else None
        started = time.perf_counter()
        result = self.scheduler.cycle(self.now)
        self.cycle_seconds += time.perf_counter() - started
        self.cycles += 1
        self._apply(result)
        if self.config.log_events:
            self.held.append((self.now, {w: len(p) for w, p in self._held()}))
        if before is not None:
            self._verify(before, result)
        if result.decisions:
            self._want_pass()

    def _apply(self, result: CycleResult) -> None:
        self.decisions += len(result.decisions)
        for decision in result.decisions:
            job = self.jobs.get(decision.workload)
            if job is not None:
                self._job_decision(job, decision)
            else:
                self._service_decision(self.services[decision.workload], decision)

    def _held(self) -> list[tuple[str, tuple[Placement, ...]]]:
        """Every running workload and its placements."""
        return [
            (w.id, w.assignment.placements)
            for w in self.scheduler.snapshot().workloads
            if w.assignment is not None
        ]

    def _verify(self, before: Snapshot, result: CycleResult) -> None:
        self.violations += [
            f"t={self.now}: {p}" for p in check_result(before, result, self.profile)
        ]
        allocated = 0
        for node, free in self.scheduler.nodes():
            if any(f < 0 or f > 1000 for f in free):
                self.violations.append(f"t={self.now}: node {node.name} devices {free}")
            allocated += node.devices * 1000 - sum(free)
        if allocated != round(self.total.allocated.value):
            self.violations.append(
                f"t={self.now}: engine counts {self.total.allocated.value} milli allocated, "
                f"the scheduler {allocated}"
            )
        capacity = sum(n.devices * 1000 for n, _ in self.scheduler.nodes())
        if allocated > capacity:
            self.violations.append(f"t={self.now}: {allocated} milli allocated of {capacity}")

    # -- the run -----------------------------------------------------------------------------

    def run(self, progress: Callable[[float], None] | None = None) -> None:
        """Run to the horizon. The young-generation threshold of Python's collector is raised
        meanwhile: a run allocates millions of short-lived objects, and the default makes
        the collector rescan the long-lived cluster state thousands of times (about a tenth
        of the run time at 10,000 accelerators)."""
        thresholds = gc.get_threshold()
        gc.set_threshold(50_000, thresholds[1], thresholds[2])
        try:
            self._run(progress)
        finally:
            gc.set_threshold(*thresholds)

    def _run(self, progress: Callable[[float], None] | None) -> None:
        self._schedule_inputs()
        horizon = self.config.horizon
        report_every = horizon / 200
        next_report = 0.0
        events = self._events
        while events:
            at, kind, _, key = heapq.heappop(events)
            if at >= horizon:
                break
            self.now = at
            self.events += 1
            if kind == _PASS:
                self._pass()
            elif kind == _FINISH:
                self._finish(key)
            elif kind == _ARRIVE:
                self.scheduler.submit(self.jobs[key].spec.workload)
                self._want_pass()
            elif kind == _TICK:
                self._tick()
            elif kind in (_START, _END):
                self._scale(self.services[key])
            elif kind == _FAIL:
                self._fail(key)
            elif kind == _DETECT:
                self._detect(key)
            elif kind == _REPAIR:
                self._repair(key)
            elif kind == _SPARE:
                self.spares[key] += 1
            if progress is not None and at >= next_report:
                progress(at)
                next_report = at + report_every
        self.now = horizon
        self._close(horizon)
        if progress is not None:
            progress(horizon)

    def _close(self, horizon: float) -> None:
        """Account everything still running at the horizon, and flush every level."""
        for job in self.jobs.values():
            if job.state == RUNNING and job.segment is not None:
                self._close_segment(job, keep=True)
                job.state = RUNNING
        for state in self.services.values():
            self._service_flush(state)
        levels = [self.total.allocated, self.total.available, self.inference_useful]
        levels += list(self.by_kind.values())
        for group in (*self.by_type.values(), *self.by_queue.values()):
            levels += [group.allocated, group.available]
        levels += [*self._useful_by_type.values(), *self._useful_by_queue.values()]
        for level in levels:
            level.flush(horizon)
        for accel, level in self._useful_by_type.items():
            self.by_type[accel].useful_area += level.area
            self.total.useful_area += level.area
        for queue, level in self._useful_by_queue.items():
            self.by_queue[queue].useful_area += level.area


def _hold_spares(built: Built, per_type: int) -> tuple[Built, dict[str, int]]:
    """``per_type`` nodes of each accelerator type (the last ones: a spare rack) taken out
    of the cluster the scheduler sees, as hot spares."""
    held: dict[str, int] = {}
    keep: list[Node] = []
    for node in reversed(built.nodes):
        if held.get(node.accel_type, 0) < per_type:
            held[node.accel_type] = held.get(node.accel_type, 0) + 1
        else:
            keep.append(node)
    keep.reverse()
    return dataclasses.replace(built, nodes=keep), held
