"""A mixed-chip scenario: a job class's ``mix`` reaches the simulated workloads, a class that
accepts one type cannot mix (the line and field are named), and a short run spans types."""

from __future__ import annotations

from pathlib import Path

import pytest

from baige.api.loader import SpecError
from baige.sched import Mix
from baige.sim.build import build
from baige.sim.engine import Engine
from baige.sim.run import engine_config, resolve_policy
from baige.sim.scenario import load_scenario, parse_scenario

EXAMPLE = Path(__file__).parents[3] / "examples" / "sim" / "mixed-chips.yaml"

SMALL = """\
kind: Simulation
name: tiny
duration: 6h
cluster:
  node_groups:
    - {count: 2, type: h100, devices: 8}
    - {count: 1, type: ascend-910b, devices: 8}
workloads:
  synthetic:
    jobs: 12
    classes:
      - {name: big, share: 1, gpus: 8, replicas: [3], duration: {median: 1h}, CLASS}
"""


def test_the_example_builds_jobs_that_may_mix() -> None:
    built = build(load_scenario(EXAMPLE))
    assert built.jobs and all(job.workload.mix is Mix.ALLOWED for job in built.jobs)


def test_a_class_of_one_type_cannot_mix() -> None:
    loaded = parse_scenario(SMALL.replace("CLASS", "types: [h100], mix: allowed"), "s.yaml")
    with pytest.raises(SpecError) as caught:
        build(loaded)
    (problem,) = caught.value.problems
    assert problem.line == 12 and problem.field.endswith("mix")
    assert "only h100" in problem.message


def test_three_node_gangs_run_only_when_they_may_span() -> None:
    """Three 8-card replicas, two H100 nodes and one Ascend node: without mixing no job can
    ever start; with mix: allowed they run, one after another, across both types."""
    started = {}
    for mix in ("never", "allowed"):
        loaded = parse_scenario(SMALL.replace("CLASS", f"mix: {mix}"), "s.yaml")
        engine = Engine(build(loaded), resolve_policy(loaded), engine_config(loaded))
        engine.run()
        started[mix] = sum(1 for job in engine.jobs.values() if job.started)
    assert started["never"] == 0 and started["allowed"] >= 2
