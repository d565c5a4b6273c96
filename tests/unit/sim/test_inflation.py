"""Inflation mode (the FGD paper's method) on slices of the Alibaba node and pod lists."""

from __future__ import annotations

import pytest

from baige.api.loader import SpecError
from baige.sched import Request
from baige.sim.inflation import InflationResult, _stream
from baige.sim.run import run_inflation_scenario
from tests.unit.sim.helpers import INFLATION, small


@pytest.fixture(scope="module")
def result() -> InflationResult:
    return run_inflation_scenario(small(INFLATION, "inflation.yaml"))


def test_curves_cover_the_arrived_workload(result: InflationResult) -> None:
    assert result.capacity_gpus == 188  # the GPU nodes of the slice
    assert len(result.curves) == 4  # two policies, two seeds
    for curve in result.curves:
        assert curve.arrived == [float(p) for p in range(5, 101, 5)]
        for arrived, unallocated, fragmented in zip(
            curve.arrived, curve.unallocated, curve.fragmented, strict=True
        ):
            # nothing more than what arrived can be allocated, and never more than the cluster
            assert 1 - arrived / 100 - 0.06 <= unallocated <= 1.0
            assert 0.0 <= fragmented <= unallocated + 1e-9
        assert curve.unallocated == sorted(curve.unallocated, reverse=True)


def test_same_seed_same_curve(result: InflationResult) -> None:
    again = run_inflation_scenario(small(INFLATION, "inflation.yaml"), policies=["fgd"])
    first = [c for c in result.curves if c.policy == "fgd"]
    assert [c.unallocated for c in again.curves] == [c.unallocated for c in first]


def test_table_reports_each_policy(result: InflationResult) -> None:
    table = result.table()
    assert set(table) == {"random", "fgd"}
    for row in table.values():
        assert 0.0 <= row["unallocated_at_100"] <= row["unallocated_at_90"] <= 1.0


def test_unknown_policy_names_its_line() -> None:
    loaded = small(INFLATION.replace("[random, fgd]", "[random, fdg]"), "inflation.yaml")
    with pytest.raises(SpecError, match=r"inflation.yaml:10: inflation.policies\[1\]: unknown"):
        run_inflation_scenario(loaded)


def test_cpu_only_tasks_are_submitted_but_add_no_arrival(result: InflationResult) -> None:
    assert result.cpu_only_tasks == 47  # of the slice's 408 tasks
    without = run_inflation_scenario(
        small(
            INFLATION.replace("alibaba_pods.csv}", "alibaba_pods.csv, host_resources: false}"),
            "inflation.yaml",
        ),
        policies=["fgd"],
    )
    kept = [c for c in result.curves if c.policy == "fgd"]
    # the same GPUs arrive either way; with CPU-only tasks in the stream more tasks are sent
    assert [c.arrived for c in without.curves] == [c.arrived for c in kept]
    assert all(a.tasks > b.tasks for a, b in zip(kept, without.curves, strict=True))


def test_stream_is_the_whole_list_shuffled_then_drawn_with_replacement() -> None:
    requests = [Request(1), Request(2), Request(0, cpu_milli=1000), Request(4)]
    order = _stream(requests, limit=30_000, seed=3)
    assert sorted(order[:4]) == [0, 1, 2, 3]  # every task once, in a shuffled order
    assert sum(requests[i].total_milli for i in order) >= 30_000
    assert sum(requests[i].total_milli for i in order[:-1]) < 30_000  # stops once there
    assert order == _stream(requests, limit=30_000, seed=3)
