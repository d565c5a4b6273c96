"""Recovery models and how the simulator charges node failures with them: hot spares (no
requeue), restores from a buddy's memory (disk when the buddy lost its memory too),
step-granular saves, the Young/Daly figures, and ``baige sim ettr``."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from baige.api.loader import SpecError
from baige.cli.main import app
from baige.cli.sim_ettr import waste
from baige.sim.build import build
from baige.sim.engine import Engine
from baige.sim.recovery import (
    Recovery,
    RecoveryModel,
    load_recovery_model,
    parse_recovery_model,
)
from baige.sim.run import engine_config, resolve_policy
from baige.sim.scenario import LoadedScenario, parse_scenario
from baige.sim.sweep import young_daly

EXAMPLES = Path(__file__).parents[3] / "examples" / "sim"

MODEL = {
    "kind": "RecoveryModel",
    "version": 1,
    "source": "a test",
    "detection": 1.0,
    "swap": 2.0,
    "reschedule": 30.0,
    "restart": 4.0,
    "restore": {"local_memory": 0.5, "peer_memory": 3.0, "disk": 60.0},
    "checkpoint_stall": 0.5,
}

# one 2-node job on racks of one node (so each node's buddy is the other), two more nodes
# (spares, or to requeue onto), failures only where a test scripts them
TWO_NODES = """\
kind: Simulation
name: two-nodes
duration: 1d
scheduler: {interval: 10s}
cluster:
  node_groups:
    - {count: 4, type: h100, devices: 8, nodes_per_rack: 1}
workloads:
  synthetic:
    jobs: 1
    arrive_within: 0.00001
    classes:
      - {name: job, share: 1, gpus: 8, replicas: [2], duration: {median: 2d, sigma: 0}}
training:
  checkpoint: {interval: 10m}
  recovery: {model: model.json, spares: SPARES}
"""


def scenario(tmp_path: Path, spares: int, model: dict[str, object] = MODEL) -> LoadedScenario:
    (tmp_path / "model.json").write_text(json.dumps(model))
    path = tmp_path / "s.yaml"
    path.write_text(TWO_NODES.replace("SPARES", str(spares)))
    return parse_scenario(path.read_text(), str(path))


def run(loaded: LoadedScenario, failures: list[tuple[float, int]]) -> Engine:
    """Run with node failures at the given times, on the job's nodes by position."""
    built = build(loaded)
    config = dataclasses.replace(engine_config(loaded), log_events=True)
    probe = Engine(built, resolve_policy(loaded), config)  # where the job lands
    probe.config = dataclasses.replace(config, horizon=1.0)
    probe.run()
    nodes = probe._nodes_of(next(iter(probe.jobs)))
    scripted = tuple((at, nodes[index]) for at, index in failures)
    engine = Engine(dataclasses.replace(built, failures=scripted), resolve_policy(loaded), config)
    engine.run()
    return engine


# -- the model file ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"restore": {"local_memory": 0.5, "peer_memory": 3.0, "disk": -1}}, "restore.disk"),
        ({"detection": "soon"}, "detection"),
        ({"swapp": 1}, "swapp"),
        ({"version": 2}, "version"),
        ({"source": ""}, "source"),
    ],
)
def test_a_bad_field_in_a_model_file_is_named(change: dict[str, object], field: str) -> None:
    text = json.dumps(MODEL | change, indent=2)
    with pytest.raises(SpecError) as caught:
        parse_recovery_model(text, "m.json")
    problem = caught.value.problems[0]
    assert (problem.source, problem.field) == ("m.json", field)
    assert problem.line is not None and problem.line > 1


def test_a_model_file_missing_a_figure_or_not_an_object_says_so(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        parse_recovery_model(json.dumps({k: v for k, v in MODEL.items() if k != "swap"}))
    assert caught.value.problems[0].field == "swap"
    with pytest.raises(SpecError, match="one JSON object"):
        parse_recovery_model("[1, 2]")
    with pytest.raises(SpecError, match="file not found"):
        load_recovery_model(tmp_path / "nope.json")


def test_the_shipped_models_load_and_say_where_their_figures_came_from() -> None:
    for name in ("recovery-measured.json", "recovery-default.json"):
        model = load_recovery_model(EXAMPLES / name)
        assert model.source and {"detection", "restart"} <= model.sources.keys()
    measured = load_recovery_model(EXAMPLES / "recovery-measured.json")
    assert "bench/runtime_faults.py" in measured.source


def test_a_scenario_naming_a_missing_model_names_its_field(tmp_path: Path) -> None:
    loaded = scenario(tmp_path, 0)
    (tmp_path / "model.json").unlink()
    with pytest.raises(SpecError) as caught:
        engine_config(loaded)
    assert caught.value.problems[0].field == "training.recovery.model"


# -- the engine's paths ----------------------------------------------------------------------


def test_a_spare_swap_keeps_the_job_in_place_and_restores_from_the_buddy(
    tmp_path: Path,
) -> None:
    engine = run(scenario(tmp_path, spares=1), [(3600.0, 0)])
    job = next(iter(engine.jobs.values()))
    assert engine.spare_swaps == 1 and engine.restores == {"peer_memory": 1}
    assert engine.decisions == 1  # the first admission only: no requeue, no new placement
    assert [e.type for e in engine.log if e.time >= 3600] == []
    assert job.interruptions == 1 and engine.node_failures == 1
    lost = sum(loss.work for loss in engine.losses) / job.replicas
    assert 0 < lost <= 600  # at most one checkpoint interval
    # the job was back after detection + swap + restart + buddy restore, no later
    down = 1.0 + 2.0 + 4.0 + 3.0
    horizon = 86400.0
    first_start = job.first_start + 30.0 + 4.0  # reschedule + restart before any progress
    stalls = math.floor((horizon - first_start) / 600) * 0.5
    assert job.productive == pytest.approx(horizon - first_start - down - lost - stalls, abs=1.0)


def test_without_spares_a_failed_node_requeues_the_job(tmp_path: Path) -> None:
    engine = run(scenario(tmp_path, spares=0), [(3600.0, 0)])
    assert engine.spare_swaps == 0 and engine.restores == {"peer_memory": 1}
    assert engine.decisions >= 2  # taken off the failed node, placed again
    assert any(e.time >= 3600 for e in engine.log)


def test_a_buddy_that_lost_its_memory_too_means_a_restore_from_disk(tmp_path: Path) -> None:
    # node 1 fails (its buddy, node 0, holds its replica); a minute later, before the next
    # save, node 0 fails: its replica was on node 1, whose memory is gone -> disk
    engine = run(scenario(tmp_path, spares=2), [(3600.0, 1), (3660.0, 0)])
    assert engine.spare_swaps == 2
    assert engine.restores == {"peer_memory": 1, "disk": 1}


def test_after_a_new_save_the_buddy_holds_the_replica_again(tmp_path: Path) -> None:
    engine = run(scenario(tmp_path, spares=2), [(3600.0, 1), (3600.0 + 1800.0, 0)])
    assert engine.restores == {"peer_memory": 2}


def test_without_peer_replicas_every_node_loss_reads_disk(tmp_path: Path) -> None:
    loaded = scenario(tmp_path, spares=1)
    text = Path(loaded.source).read_text().replace("spares: 1}", "spares: 1, peer: false}")
    Path(loaded.source).write_text(text)
    engine = run(parse_scenario(text, loaded.source), [(3600.0, 0)])
    assert engine.restores == {"disk": 1}


def test_step_granular_saves_lose_at_most_one_interval(tmp_path: Path) -> None:
    loaded = scenario(tmp_path, spares=1)
    text = Path(loaded.source).read_text()
    text = text.replace(
        "checkpoint: {interval: 10m}", "checkpoint: {every_steps: 3}\n  step_time: 2s"
    )
    Path(loaded.source).write_text(text)
    loaded = parse_scenario(text, loaded.source)
    assert loaded.scenario.training.checkpoint_interval == 6.0
    engine = run(loaded, [(3601.0, 0), (7203.5, 1)])
    job = next(iter(engine.jobs.values()))
    assert len(engine.losses) == 2
    assert all(0 < loss.work <= 6.0 * job.replicas for loss in engine.losses)
    with pytest.raises(SpecError, match="step_time"):
        parse_scenario(text.replace("  step_time: 2s\n", ""), "s.yaml")


# -- Young/Daly ------------------------------------------------------------------------------


def test_young_daly_charges_the_recovery_model(tmp_path: Path) -> None:
    text = TWO_NODES.replace("spares: SPARES", "spares: 1").replace(
        "training:", "faults: {node_failures_per_1000_node_days: 10}\ntraining:"
    )
    (tmp_path / "model.json").write_text(json.dumps(MODEL))
    (tmp_path / "s.yaml").write_text(text)
    loaded = parse_scenario(text, str(tmp_path / "s.yaml"))
    theory = young_daly(loaded, 2)
    assert theory is not None
    mtbf = 1 / (10 / 1000 / 86400 * 2)
    assert theory.stall_s == 0.5  # the model's stall: the scenario gives none
    assert theory.restart_s == 1.0 + 2.0 + 4.0 + 3.0  # detection, swap, restart, buddy
    assert theory.optimal_interval_s == pytest.approx(math.sqrt(2 * 0.5 * mtbf))
    assert theory.ettr_at_interval == pytest.approx(1 - (0.5 / 600 + (300 + 10) / mtbf))
    parts = waste(dataclasses.asdict(theory), theory.interval_s)
    assert parts is not None
    assert sum(parts.values()) == pytest.approx(1 - theory.ettr_at_interval)
    no_spares = Recovery.from_model(load_model(tmp_path), spares=0, peer=False)
    assert no_spares.failure_cost() == 1.0 + 30.0 + 4.0 + 60.0  # requeue, then disk


def load_model(tmp_path: Path) -> RecoveryModel:
    return load_recovery_model(tmp_path / "model.json")


# -- the command -----------------------------------------------------------------------------


def test_sim_ettr_prints_json_and_writes_a_plot(tmp_path: Path) -> None:
    loaded = scenario(tmp_path, spares=1)
    text = (
        Path(loaded.source)
        .read_text()
        .replace(
            "training:", "faults: {node_failures_per_1000_node_days: 50, repair: 1h}\ntraining:"
        )
    )
    Path(loaded.source).write_text(text)
    result = CliRunner().invoke(
        app,
        ["sim", "ettr", loaded.source, "--interval", "5m,20m", "--spares", "0,1",
         "--out", str(tmp_path / "out"), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [(d["settings"]["training.checkpoint.interval"], d["settings"]["training.recovery.spares"])
            for d in data] == [("5m", "0"), ("5m", "1"), ("20m", "0"), ("20m", "1")]  # fmt: skip
    for point in data:
        assert 0 < point["ettr_largest"] <= 1
        assert point["young_daly"]["nodes"] == 2
        assert set(point["young_daly_waste"]) == {"stall", "lost_work", "restart"}
    assert data[1]["recovery"]["spare_nodes"] == {"h100": 1}
    assert data[0]["recovery"]["spare_swaps"] == 0
    assert (tmp_path / "out" / "ettr.png").stat().st_size > 1000
    bad = CliRunner().invoke(app, ["sim", "ettr", loaded.source, "--spares", "-1", "--json"])
    assert bad.exit_code == 2
    assert "training.recovery.spares" in json.loads(bad.output)["problems"][0]["field"]
