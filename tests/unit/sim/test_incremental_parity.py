"""The kept-state scheduler gives exactly what ``run_cycle`` gives on the same snapshot.

The simulator drives ``baige.sched.incremental.Scheduler`` instead of rebuilding a snapshot
per pass; these tests hold it to the contract that makes that legitimate: every cycle's
result equals ``run_cycle(scheduler.snapshot(), now, profile)``, and the state afterwards
equals ``apply_decisions`` of that result — through arrivals, completions, failures,
repairs, cordons and services scaled up and down.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import pytest

from baige.sched import (
    BAIGE,
    FIFO,
    Health,
    Kind,
    Node,
    Profile,
    Snapshot,
    apply_decisions,
    run_cycle,
)
from baige.sched.incremental import Scheduler
from baige.sim.synthetic import LEVELS, ClusterShape, make_nodes, make_queues, make_workloads

SHAPE = ClusterShape(
    groups=(("h100", 12), ("a100-80g", 8)), nodes_per_rack=4, racks_per_block=2, blocks_per_zone=2
)


def _canonical(snapshot: Snapshot) -> tuple[object, ...]:
    return (snapshot.nodes, snapshot.queues, tuple(sorted(snapshot.workloads, key=lambda w: w.id)))


def _mixed_nodes() -> list[Node]:
    """Nodes of 4 and 8 cards, small racks: failures empty racks and change the largest
    node of a type, which the kept indexes must follow."""
    nodes = make_nodes(replace(SHAPE, nodes_per_rack=2))
    return [replace(n, devices=4) if i % 3 == 0 else n for i, n in enumerate(nodes)]


def _drive(seed: int, profile: Profile, steps: int = 60, *, mixed: bool = False) -> Counter[str]:
    rng = random.Random(seed)
    nodes = _mixed_nodes() if mixed else make_nodes(SHAPE)
    queues = make_queues(SHAPE, orgs=2, teams=2)
    arrivals = make_workloads(500, SHAPE, queues, seed=seed)
    scheduler = Scheduler(nodes, queues, profile, LEVELS)
    seen: Counter[str] = Counter()
    now = 0.0
    cursor = 0
    for _ in range(steps):
        for _ in range(rng.randint(0, 25)):
            if cursor < len(arrivals):
                scheduler.submit(replace(arrivals[cursor], created_at=now))
                cursor += 1
        running = sorted(scheduler.state.running)
        for workload_id in rng.sample(running, min(len(running), rng.randint(0, 8))):
            scheduler.remove(workload_id)
        if rng.random() < (0.7 if mixed else 0.3):
            health = rng.choice([Health.FAILED, Health.READY, Health.CORDONED, Health.READY])
            scheduler.set_health(rng.choice(nodes).name, health)
            seen["health"] += 1
        if scheduler.pending and rng.random() < 0.3:
            scheduler.remove(rng.choice(sorted(scheduler.pending)))
        services = sorted(
            (
                r.workload
                for r in scheduler.state.running.values()
                if r.workload.kind is Kind.INFERENCE
            ),
            key=lambda w: w.id,
        )
        if services and rng.random() < 0.5:
            service = rng.choice(services)
            scheduler.update(replace(service, replicas=rng.randint(max(1, service.floor), 5)))
        snapshot = scheduler.snapshot()
        expected = run_cycle(snapshot, now, profile)
        got = scheduler.cycle(now)
        assert got == expected, f"seed {seed}, {profile.name}: cycle at t={now} differs"
        assert _canonical(scheduler.snapshot()) == _canonical(apply_decisions(snapshot, expected))
        seen.update(type(d).__name__ for d in got.decisions)
        seen["reservations"] += len(got.reservations)
        now += rng.choice([1.0, 30.0, 600.0])
    return seen


@pytest.mark.parametrize("profile", [BAIGE, FIFO], ids=["baige", "fifo"])
@pytest.mark.parametrize("seed", range(4))
def test_cycles_match_run_cycle(profile: Profile, seed: int) -> None:
    seen = _drive(seed, profile)
    assert seen["Admit"] > 50 and seen["health"] > 5
    if profile is BAIGE:  # the mechanisms a fresh cycle would use were exercised too
        assert seen["Preempt"] and seen["Shrink"] and seen["Grow"]


@pytest.mark.parametrize("seed", range(3))
def test_health_changes_keep_the_indexes_fresh(seed: int) -> None:
    seen = _drive(100 + seed, BAIGE, steps=50, mixed=True)
    assert seen["health"] > 20


def test_from_snapshot_matches_a_fresh_cycle() -> None:
    nodes = make_nodes(SHAPE)
    queues = make_queues(SHAPE, orgs=2, teams=2)
    snapshot = Snapshot(
        tuple(nodes), tuple(queues), tuple(make_workloads(300, SHAPE, queues, seed=9)), LEVELS
    )
    for _ in range(3):
        result = run_cycle(snapshot, 0.0, BAIGE)
        assert Scheduler.from_snapshot(snapshot, BAIGE).cycle(0.0) == result
        snapshot = apply_decisions(snapshot, result)


def test_inconsistent_input_is_refused() -> None:
    nodes = make_nodes(SHAPE)
    queues = make_queues(SHAPE, orgs=2, teams=2)
    scheduler = Scheduler(nodes, queues, BAIGE, LEVELS)
    workload = make_workloads(1, SHAPE, queues, seed=1)[0]
    scheduler.submit(workload)
    with pytest.raises(ValueError, match="already known"):
        scheduler.submit(workload)
    with pytest.raises(KeyError):
        scheduler.remove("nope")
    with pytest.raises(KeyError):
        scheduler.set_health("nope", Health.FAILED)
