"""Inflation mode (the FGD paper's method) on slices of the Alibaba node and pod lists."""

from __future__ import annotations

import pytest

from baige.api.loader import SpecError
from baige.sim.inflation import InflationResult
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
