"""Sweeps over scenario settings, the Young/Daly figures beside them, and measured restart
models: the simulator's ETTR for one big job should agree with the closed form."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from baige.api.loader import SpecError
from baige.cli.main import app
from baige.sim.run import restart_costs
from baige.sim.scenario import parse_scenario
from baige.sim.sweep import largest_job, parse_axis, run_sweep, scenario_with, young_daly

BIG_JOBS = """\
kind: Simulation
name: big-jobs
seed: 3
duration: 20d
scheduler: {interval: 60s}
cluster:
  node_groups:
    - {count: 40, type: h100, devices: 8}
queues:
  - {name: train, quotas: {h100: {guaranteed: 320, limit: 320}}}
workloads:
  synthetic:
    jobs: 4
    arrive_within: 0.01
    classes:
      - {name: big, share: 1, gpus: 8, replicas: [32], duration: {median: 4d, sigma: 0.0}, queue: train}
training:
  checkpoint: {interval: 10m, stall: 10s}
  restart: {detection: 30s, rescheduling: 30s, initialization: 60s, checkpoint_load: 30s}
faults:
  node_failures_per_1000_node_days: 20
  repair: 1h
"""


def loaded(text: str = BIG_JOBS, tmp_path: Path | None = None):
    source = "<test>" if tmp_path is None else str(tmp_path / "scenario.yaml")
    if tmp_path is not None:
        Path(source).write_text(text)
    return parse_scenario(text, source)


@pytest.mark.parametrize("text", ["nope", "a.b=", "=1,2", "a..b"])
def test_a_malformed_axis_names_the_argument(text: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_axis(text)
    assert caught.value.problems[0].source == "--set"


def test_an_axis_sets_a_nested_field_and_bad_values_name_it() -> None:
    scenario = loaded()
    axis = parse_axis("training.checkpoint.interval=1m, 5m")
    assert axis.values == ("1m", "5m")
    changed = scenario_with(scenario, {axis.path: "5m"})
    assert changed.scenario.training.checkpoint.interval == 300
    with pytest.raises(SpecError) as caught:
        scenario_with(scenario, {("training", "checkpoint", "interval"): "soon"})
    problem = caught.value.problems[0]
    assert problem.source == "--set" and "training.checkpoint.interval" in problem.field
    with pytest.raises(SpecError, match="no field 'nope'"):
        scenario_with(scenario, {("nope", "x"): "1"})


def test_young_daly_is_the_closed_form() -> None:
    scenario = loaded()
    assert largest_job(scenario.scenario) == ("big", 32)
    theory = young_daly(scenario, 32)
    assert theory is not None
    mtbf = 1 / (20 / 1000 / 86400 * 32)
    assert theory.mtbf_s == pytest.approx(mtbf)
    assert theory.optimal_interval_s == pytest.approx(math.sqrt(2 * 10 * mtbf))
    assert theory.restart_s == 150
    waste = 10 / 600 + (300 + 150) / mtbf
    assert theory.ettr_at_interval == pytest.approx(1 - waste)
    assert theory.ettr_at_optimum >= theory.ettr_at_interval


def test_the_simulated_ettr_of_big_jobs_agrees_with_young_daly() -> None:
    axes = [parse_axis("training.checkpoint.interval=2m,40m")]
    points = run_sweep(loaded(), axes)
    assert [p.settings["training.checkpoint.interval"] for p in points] == ["2m", "40m"]
    for point in points:
        theory = point.theory
        assert theory is not None and theory.ettr_at_interval is not None
        simulated = point.summary["per_class"]["big"]["ettr"]
        # the closed form ignores start-up and queueing: a few tenths of a point apart
        assert abs(simulated - theory.ettr_at_interval) < 0.015, (point.settings, simulated)
    assert points[0].summary["ettr"] < points[1].summary["ettr"]  # a 2-min interval wastes


def test_a_measured_restart_model_replaces_the_costs(tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text(
        json.dumps({"detection": 0.4, "initialization": 2.1, "source": "bench", "extra": 1})
    )
    text = BIG_JOBS.replace("checkpoint_load: 30s}", "checkpoint_load: 30s, measured: model.json}")
    costs = restart_costs(loaded(text, tmp_path))
    assert (costs.detection, costs.rescheduling, costs.initialization) == (0.4, 0.0, 2.1)
    (tmp_path / "model.json").write_text('{"detection": -1}')
    with pytest.raises(SpecError) as caught:
        restart_costs(loaded(text, tmp_path))
    assert caught.value.problems[0].field == "training.restart.measured"


def test_the_sweep_command_prints_json_and_writes_a_plot(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(BIG_JOBS.replace("duration: 20d", "duration: 2d"))
    result = CliRunner().invoke(
        app,
        ["sim", "sweep", str(path), "--set", "training.checkpoint.stall=1s,30s",
         "--out", str(tmp_path / "out"), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [d["settings"]["training.checkpoint.stall"] for d in data] == ["1s", "30s"]
    assert data[0]["young_daly"]["nodes"] == 32
    assert (tmp_path / "out" / "sweep.png").stat().st_size > 1000
    bad = CliRunner().invoke(app, ["sim", "sweep", str(path), "--set", "x", "--json"])
    assert bad.exit_code == 2 and "--set" in json.loads(bad.output)["problems"][0]["source"]
