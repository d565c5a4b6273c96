"""Sim-to-live parity: the live controller and the simulator, given the same specs and the
same happenings, make the same decisions, step by step.

The live side is the real controller on SQLite with the declared fake backend (each replica
runs as the scenario says) and a clock the test steps; the node agent is the test, which
heartbeats every node that is up. The simulated side is ``baige.sim`` built from the very
same specs (``baige.sim.from_specs``, through ``baige.sched.from_api``), with the pass
interval as its tick and a detection delay equal to the controller's heartbeat timeout.
Both record events through ``baige.sched.lifecycle`` and size services through
``baige.sched.autoscale``: the test compares every event (time, workload, type, message)
and, after every pass, the replicas each workload holds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from baige.api.loader import load_specs
from baige.api.nodes import AcceleratorGroup, NodeSpec
from baige.api.queues import QueueSpec
from baige.api.workloads import InferenceServiceSpec, TrainingJobSpec
from baige.backends.base import ReplicaLaunch
from baige.backends.fake import Behaviour, FakeBackend, Run
from baige.control.auth import Principal
from baige.control.controller import Controller
from baige.control.service import ControlService
from baige.sched import BAIGE
from baige.sched.autoscale import LoadSample
from baige.sim.engine import Engine, EngineConfig, RestartCosts
from baige.sim.from_specs import Arrival, built_from_specs
from baige.sim.progress import Checkpointing
from baige.store.db import Database
from baige.store.tables import EventRow, WorkloadRow

ADMIN = Principal("test", None, admin=True)
STEP = 5.0  # seconds between controller passes (and the simulator's tick)
HEARTBEAT_TIMEOUT = 10.0
_COMPARED = {"Admitted", "Preempted", "Shrunk", "Grown", "Succeeded", "Failed", "Autoscaled",
             "Restarting"}  # fmt: skip


def _spec(text: str) -> TrainingJobSpec | InferenceServiceSpec:
    (spec,) = load_specs(text)
    assert isinstance(spec, TrainingJobSpec | InferenceServiceSpec)
    return spec


@dataclass
class Scenario:
    nodes: list[NodeSpec]
    arrivals: list[Arrival]
    horizon: float
    failures: list[tuple[float, str]] = field(default_factory=list)
    queues: list[QueueSpec] = field(default_factory=lambda: [QueueSpec(name="default")])


def _nodes(count: int, cards: int) -> list[NodeSpec]:
    return [
        NodeSpec(
            name=f"n{i}",
            accelerators=AcceleratorGroup(type="h100", count=cards),
            topology=("b0", "b0-r0"),
        )
        for i in range(count)
    ]


CHAT = """\
kind: InferenceService
name: chat
queue: default
replicas: 1
priority: 100
preemptible: false
accelerators: {count: 1, types: [h100]}
autoscale: {min_replicas: 1, max_replicas: 4, target_qps_per_replica: 2,
            scale_down_window: 30, cooldown: 10}
command: [serve]
"""
TRAIN = """\
kind: TrainingJob
name: train
queue: default
replicas: 7
min_replicas: 2
accelerators: {count: 1, types: [h100]}
command: [train]
"""
BATCH = """\
kind: TrainingJob
name: batch
queue: default
replicas: 1
priority: 50
accelerators: {count: 1, types: [h100]}
command: [batch]
"""
SMALL = """\
kind: TrainingJob
name: small
queue: default
replicas: 2
accelerators: {count: 1, types: [h100]}
command: [small]
"""

SPARED = """\
kind: TrainingJob
name: spared
queue: default
replicas: 2
spares: 1
accelerators: {count: 1, types: [h100]}
command: [train]
"""

SCENARIOS = {
    # a job with a spare loses a node: both worlds take it off that node without a requeue
    # and place a new spare on the free one
    "spares": Scenario(
        _nodes(4, 1), [Arrival(0, _spec(SPARED))], horizon=200, failures=[(60, "n1")]
    ),
    # co-location: a load rise scales the service up and shrinks the elastic job, the fall
    # scales it down after its window and the job grows back; a node dies under both
    "colocation": Scenario(
        _nodes(2, 4),
        [
            Arrival(0, _spec(CHAT), qps=((0, 2.0), (150, 7.0), (300, 1.0))),
            Arrival(0, _spec(BATCH), seconds=100),
            Arrival(0, _spec(TRAIN)),
        ],
        horizon=500,
        failures=[(400, "n1")],
    ),
    # arrivals and completions: a queue of fixed-size jobs drains in order
    "fifo-drain": Scenario(
        _nodes(1, 4),
        [
            Arrival(0, _spec(SMALL.replace("name: small", "name: a")), seconds=60),
            Arrival(10, _spec(SMALL.replace("name: small", "name: b")), seconds=60),
            Arrival(20, _spec(SMALL.replace("name: small", "name: c")), seconds=30),
            Arrival(30, _spec(BATCH), seconds=45),
        ],
        horizon=300,
    ),
}


def _live(scenario: Scenario, tmp_path: Path) -> tuple[list[tuple], list[tuple]]:
    t0 = round(time.time())
    now = [float(t0)]

    def clock() -> float:
        return now[0]

    seconds = {a.spec.name: a.seconds for a in scenario.arrivals}

    def script(replica: ReplicaLaunch) -> Behaviour:
        return Run(seconds.get(replica.env["BAIGE_WORKLOAD_NAME"]))

    qps = {a.spec.name: a.qps for a in scenario.arrivals if a.qps}
    names: dict[str, str] = {}  # workload id -> name
    backend = FakeBackend(clock=clock, script=script)

    def load(workload_id: str) -> LoadSample | None:
        steps = qps.get(names.get(workload_id, ""))
        if not steps:
            return None
        rate = 0.0
        for since, value in steps:
            if t0 + since <= now[0]:
                rate = value
        return LoadSample(rate, 0.0, 0)

    db = Database(f"sqlite:///{tmp_path / 'parity.db'}")
    controller = Controller(db, backend, BAIGE, heartbeat_timeout=HEARTBEAT_TIMEOUT,
                            interval=STEP, sample_interval=1e9, load=load,
                            clock=clock)  # fmt: skip
    service = ControlService(db, wake=controller.wake, clock=clock)
    for queue in scenario.queues:
        service.apply_queue(ADMIN, queue)
    service.register_nodes(ADMIN, scenario.nodes)
    dead: set[str] = set()
    waiting = sorted(scenario.arrivals, key=lambda a: a.at)
    held: list[tuple] = []
    t = 0.0
    while t <= scenario.horizon:
        now[0] = t0 + t
        dead |= {node for at, node in scenario.failures if at <= t}
        alive = [n.name for n in scenario.nodes if n.name not in dead]
        service.heartbeat(ADMIN, alive)
        while waiting and waiting[0].at <= t:
            view = service.submit(ADMIN, waiting.pop(0).spec)[0]
            names[view.id] = view.name
        controller.run_pass()
        with db.session() as session:
            rows = session.execute(select(WorkloadRow.name, WorkloadRow.placements))
            holding = {name: len(p) for name, p in rows if p}
        held.append((t, holding))
        t += STEP
    with db.session() as session:
        events = [
            (row.ts - t0, names[row.object_id], row.type, row.message)
            for row in session.scalars(
                select(EventRow).where(EventRow.object_kind == "workload").order_by(EventRow.id)
            )
            if row.type in _COMPARED
        ]
    return events, held


def _simulated(scenario: Scenario) -> tuple[list[tuple], list[tuple]]:
    built = built_from_specs(scenario.nodes, scenario.queues, scenario.arrivals,
                             failures=scenario.failures, tick=STEP, window=0)  # fmt: skip
    config = EngineConfig(
        horizon=scenario.horizon + STEP / 2,
        interval=STEP,
        every_interval=True,
        checkpointing=Checkpointing(0.0, 0.0),
        restart=RestartCosts(HEARTBEAT_TIMEOUT, 0.0, 0.0, 0.0),
        log_events=True,
    )
    engine = Engine(built, BAIGE, config)
    engine.run()
    events = [(e.time, e.workload, e.type, e.message) for e in engine.log if e.type in _COMPARED]
    return events, [(t, holding) for t, holding in engine.held]


def _first_difference(live: Sequence[tuple], sim: Sequence[tuple]) -> str:
    for index, (a, b) in enumerate(zip(live, sim, strict=False)):
        if a != b:
            return f"step {index}: live {a} != simulated {b}"
    return f"live has {len(live)} entries, simulated {len(sim)}"


@pytest.mark.parametrize("name", SCENARIOS)
def test_live_and_simulated_decide_alike(name: str, tmp_path: Path) -> None:
    scenario = SCENARIOS[name]
    live_events, live_held = _live(scenario, tmp_path)
    sim_events, sim_held = _simulated(scenario)
    assert live_events, "the scenario made no decision"
    assert live_events == sim_events, _first_difference(live_events, sim_events)
    assert live_held == sim_held, _first_difference(live_held, sim_held)


def test_the_colocation_scenario_exercises_every_move(tmp_path: Path) -> None:
    """The co-location scenario is worth comparing: it scales up, shrinks training to make
    room, scales down after the window, grows training back, and loses a node."""
    events, _ = _live(SCENARIOS["colocation"], tmp_path)
    seen = {(workload, kind) for _, workload, kind, _ in events}
    assert ("chat", "Autoscaled") in seen
    assert ("train", "Shrunk") in seen
    assert ("train", "Grown") in seen
    assert ("batch", "Succeeded") in seen
    ups = [m for _, w, k, m in events if w == "chat" and k == "Autoscaled" and "up" in m]
    downs = [m for _, w, k, m in events if w == "chat" and k == "Autoscaled" and "down" in m]
    assert ups and downs
    assert any("n1" in m and "failed" in m for _, _, k, m in events if k in ("Shrunk", "Preempted"))


def test_the_spares_scenario_loses_a_node_without_requeue(tmp_path: Path) -> None:
    """Worth comparing too: the job is taken off the failed node and a new spare placed,
    never preempted or restarted, in both worlds (the parametrized test above)."""
    events, _ = _live(SCENARIOS["spares"], tmp_path)
    kinds = [kind for _, _, kind, _ in events]
    assert kinds == ["Admitted", "Shrunk", "Grown"], events
    assert "n1" in events[1][3]
