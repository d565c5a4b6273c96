"""Bad scenario files and traces: every error names the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from baige.api.loader import SpecError
from baige.sim.build import build
from baige.sim.run import resolve_policy, run_scenario
from baige.sim.scenario import load_scenario, parse_scenario
from tests.unit.sim.helpers import DATA, SMALL, small, write


def _problem(text: str, source: str = "s.yaml") -> str:
    with pytest.raises(SpecError) as caught:
        loaded = parse_scenario(text, source)
        resolve_policy(loaded)
        build(loaded)
    return str(caught.value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # unknown key, with the line of the key and a suggestion
        (
            ("  checkpoint: {interval: 15m", "  checkpont: {interval: 15m"),
            "s.yaml:30: training.checkpont: unknown field; did you mean 'checkpoint'?",
        ),
        # negative and zero counts
        (
            ("{count: 8, type: h100", "{count: -8, type: h100"),
            "s.yaml:9: cluster.node_groups[0].count: Input should be greater than or equal to 1",
        ),
        (("jobs: 400", "jobs: 0"), "s.yaml:17: workloads.synthetic.jobs: Input should be greater"),
        # a duration that is not one
        (("repair: 2h", "repair: 2x"), "s.yaml:34: faults.repair: duration '2x' is not a time"),
        # a policy nobody defined
        (("policy: baige", "policy: baig"), "s.yaml:5: policy: unknown profile 'baig'"),
        # a queue the workloads use but the file does not define
        (
            ("queues: [research, product]}", "queues: [research, produce]}"),
            "workloads use queue 'produce', which is not defined here",
        ),
        # a trace file that does not exist: the line of its path
        (
            ("path: " + str(DATA / "qps.csv"), "path: /nope/qps.csv"),
            "s.yaml:24: workloads.inference.curve.path: file not found: /nope/qps.csv",
        ),
        # a service that asks for a share of several cards
        (
            ("gpus: 1, milli: 250}", "gpus: 2, milli: 250}"),
            "s.yaml:28: workloads.inference.services[1]: a share of a card (milli < 1000) needs gpus: 1",
        ),
        (
            ("policy: baige", "policy: baige\npolicy_settings: {candidate_node: 3}"),
            "s.yaml:6: policy_settings: unknown profile setting(s) candidate_node",
        ),
    ],
)
def test_bad_scenarios_name_file_line_and_field(change: tuple[str, str], expected: str) -> None:
    assert change[0] in SMALL
    assert expected in _problem(SMALL.replace(*change))


def test_not_a_scenario() -> None:
    assert "s.yaml:1: kind: expected 'Simulation', found 'Queue'" in _problem("kind: Queue\n")
    assert "expected one document, but the file is empty" in _problem("")
    assert "s.yaml:2: invalid YAML" in _problem("kind: Simulation\nname: x: y\n")
    with pytest.raises(SpecError, match="file not found"):
        load_scenario("/nope.yaml")


def test_missing_sections_are_named() -> None:
    text = "kind: Simulation\nname: x\ncluster: {node_groups: []}\nworkloads: {}\n"
    message = _problem(text)
    assert "s.yaml:3: cluster: give either node_groups or alibaba_nodes" in message
    assert "s.yaml:4: workloads: name at least one of" in message


def test_malformed_csv_rows_name_file_line_and_column(tmp_path: Path) -> None:
    jobs = write(
        tmp_path,
        "jobs.csv",
        "# two bad rows\nid,submit,duration,gpus\na,0,1h,1\nb,10,1h,x\nc,-5,1h,1\nd,0,1h\n",
    )
    text = (
        "kind: Simulation\nname: x\ncluster:\n  node_groups: [{count: 2, type: h100}]\n"
        f"workloads:\n  csv: {{path: {jobs}}}\n"
    )
    message = _problem(text)
    assert f"{jobs}:4: gpus: must be an integer, not 'x'" in message
    assert f"{jobs}:5: submit:" in message
    assert f"{jobs}:6: has 3 fields, the header 4" in message


def test_unknown_csv_column_is_refused(tmp_path: Path) -> None:
    jobs = write(tmp_path, "jobs.csv", "id,submit,duration,gpus,gpu\na,0,1h,1,1\n")
    text = (
        "kind: Simulation\nname: x\ncluster:\n  node_groups: [{count: 2, type: h100}]\n"
        f"workloads:\n  csv: {{path: {jobs}}}\n"
    )
    assert f"{jobs}:1: gpu: unknown column" in _problem(text)


def test_bad_pod_rows_are_reported(tmp_path: Path) -> None:
    header = (DATA / "alibaba_pods.csv").read_text().splitlines()[2]
    pods = write(
        tmp_path,
        "pods.csv",
        header + "\np1,1000,100,1,0,,LS,Running,0,10,0\np2,1000,100,1,500,,XX,Running,0,10,0\n",
    )
    text = (
        "kind: Simulation\nname: x\ncluster:\n  node_groups: [{count: 2, type: h100}]\n"
        f"workloads:\n  alibaba_pods: {{path: {pods}}}\n"
    )
    message = _problem(text)
    assert f"{pods}:2: gpu_milli: a task with one GPU needs a share in 1..1000" in message
    assert f"{pods}:3: qos: must be LS, BE, Burstable or Guaranteed, not 'XX'" in message


def test_relative_trace_paths_resolve_next_to_the_scenario(tmp_path: Path) -> None:
    (tmp_path / "jobs.csv").write_text(
        "id,submit,duration,gpus,replicas,kind,gpu_milli\n"
        "a,0,1h,1,1,training,\nsvc,10m,1h,1,3,inference,500\n"
    )
    scenario = write(
        tmp_path,
        "s.yaml",
        "kind: Simulation\nname: x\nduration: 2h\ncluster:\n  node_groups: [{count: 1, type: h100}]\n"
        "workloads:\n  csv: {path: jobs.csv}\n",
    )
    summary = run_scenario(load_scenario(scenario)).summary
    assert summary["jobs_completed"] == 1
    assert summary["inference_replicas_started"] == 3  # the service's three replicas
    assert summary["inference_demand_met"] == 1.0


def test_the_small_scenario_is_valid() -> None:
    assert small().scenario.workloads.synthetic is not None
