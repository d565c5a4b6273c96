"""Trace readers on slices of the real traces (see the headers of the files in ``data/``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from baige.api.loader import SpecError
from baige.sim.build import build
from baige.sim.run import run_inflation_scenario
from baige.sim.traces import read_alibaba_nodes, read_alibaba_pods, read_job_csv, read_qps_curve
from tests.unit.sim.helpers import DATA, INFLATION, small


def test_alibaba_nodes() -> None:
    nodes = read_alibaba_nodes(DATA / "alibaba_nodes.csv")
    assert len(nodes) == 44
    assert sum(n.gpus for n in nodes) == 188
    assert {n.model for n in nodes if n.gpus} >= {"G2", "T4"}
    assert all(n.model == "" for n in nodes if not n.gpus)


def test_alibaba_pods_keep_their_lines() -> None:
    pods = read_alibaba_pods(DATA / "alibaba_pods.csv")
    assert len(pods) == 408
    first = pods[0]
    assert first.name == "openb-pod-0000" and first.line == 4  # after the 2-line header comment
    assert first.gpu_milli == 1000 and first.qos == "LS"
    shares = [p for p in pods if p.num_gpu == 1 and p.gpu_milli < 1000]
    assert shares, "the slice keeps fractional tasks"
    multi = [p for p in pods if p.num_gpu > 1]
    assert all(p.gpu_milli == 1000 for p in multi)


def test_qps_curve_is_normalised() -> None:
    curve = read_qps_curve(DATA / "qps.csv", bin_s=1800)
    assert max(curve) == 1.0 and min(curve) >= 0.0
    assert len(curve) == 39  # the slice spans about 19.5 hours, in half-hour bins


def test_job_csv(tmp_path: Path) -> None:
    path = tmp_path / "jobs.csv"
    path.write_text(
        "id,submit,duration,gpus,replicas,min_replicas,gpu_milli,kind,queue,priority,types,time_limit\n"
        "a,0,2h,8,4,2,,training,research,5,h100|a100-80g,4h\n"
        "b,30m,1d,1,3,,250,inference,serving,1000,,\n"
    )
    a, b = read_job_csv(path)
    assert (a.submit, a.duration, a.replicas, a.min_replicas, a.types) == (
        0.0,
        7200.0,
        4,
        2,
        ("h100", "a100-80g"),
    )
    assert a.time_limit == 14400.0 and a.priority == 5
    assert (b.kind, b.gpu_milli, b.submit, b.queue) == ("inference", 250, 1800.0, "serving")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ":1: no header row"),
        ("id,submit\na,0\n", "header lacks column(s) duration, gpus"),
        ("id,submit,duration,gpus\na,0,1h,1\na,0,1h,1\n", ":3: id: job 'a' appears twice"),
        ("id,submit,duration,gpus,gpu_milli\na,0,1h,2,500\n", ":2: gpu_milli: a share of a card"),
        ("id,submit,duration,gpus,kind\na,0,1h,1,batch\n", ":2: kind: must be training or"),
        ("id,submit,duration,gpus\na,0,soon,1\n", ":2: duration: duration 'soon' is not a time"),
    ],
)
def test_bad_job_rows(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "jobs.csv"
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        read_job_csv(path)
    assert f"{path}{expected}" in str(caught.value) or expected in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"nope\.csv: file not found"):
        read_alibaba_pods(tmp_path / "nope.csv")


# -- strict numbers, other column sets, BOM and nan (issue 21) ----------------------------

POD_HEADER = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,creation_time,deletion_time,scheduled_time\n"


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            "p,1000,1024,2.5,1000,,BE,0,10,0",
            r"pods.csv:2: num_gpu: must be a whole number, not '2.5'",
        ),
        ("p,1000,1024,1,320.7,,BE,0,10,0", r"pods.csv:2: gpu_milli: must be a whole number"),
        ("p,1000.5,1024,1,500,,BE,0,10,0", r"pods.csv:2: cpu_milli: must be a whole number"),
    ],
)
def test_fractions_are_errors_not_truncated(tmp_path: Path, row: str, expected: str) -> None:
    path = tmp_path / "pods.csv"
    path.write_text(POD_HEADER + row + "\n")
    with pytest.raises(SpecError, match=expected):
        read_alibaba_pods(path)


def test_whole_numbers_written_as_floats_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "pods.csv"
    path.write_text(POD_HEADER + "p,1000.0,1024,2.0,1000,,BE,0,1e3,0\n")
    (pod,) = read_alibaba_pods(path)
    assert (pod.cpu_milli, pod.num_gpu, pod.deletion) == (1000, 2, 1000.0)


def test_a_bom_and_pandas_nan_are_handled(tmp_path: Path) -> None:
    path = tmp_path / "pods.csv"
    path.write_text("\ufeff" + POD_HEADER + "p,1000,1024,1,500,nan,LS,0,10,0\n", encoding="utf-8")
    (pod,) = read_alibaba_pods(path)
    assert pod.name == "p" and pod.gpu_spec == ()  # nan is no model, not a model named nan


def test_the_papers_five_column_pod_lists_load(tmp_path: Path) -> None:
    path = tmp_path / "multigpu.csv"
    path.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np0,4000,8192,2,1000\n"
                    "p1,2000,4096,1,250\n")  # fmt: skip
    pods = read_alibaba_pods(path)
    assert [(p.num_gpu, p.gpu_milli, p.timed) for p in pods] == [(2, 1000, False),
                                                                 (1, 250, False)]  # fmt: skip


def test_the_2026_node_list_loads_as_a_cluster(tmp_path: Path) -> None:
    path = tmp_path / "nodes.csv"
    path.write_text("node_name,gpu_model,gpu_capacity_num,cpu_num\nn0,H800,8,96\n"
                    "n1,nan,0,64\nn2,A10,1,15.5\n")  # fmt: skip
    nodes = read_alibaba_nodes(path)
    assert [(n.name, n.model, n.gpus, n.cpu_milli, n.memory_mib) for n in nodes] == [
        ("n0", "H800", 8, 96000, 0), ("n1", "", 0, 64000, 0), ("n2", "A10", 1, 15500, 0)]  # fmt: skip
    bad = tmp_path / "bad.csv"
    bad.write_text("node_name,gpu_model,gpu_capacity_num,cpu_num\nn0,H800,8.5,96\n")
    with pytest.raises(SpecError, match=r"bad.csv:2: gpu_capacity_num: must be a whole number"):
        read_alibaba_nodes(bad)


def test_a_task_larger_than_any_node_is_named(tmp_path: Path) -> None:
    pods = tmp_path / "pods.csv"
    pods.write_text(
        POD_HEADER + "small,1000,1024,1,1000,,BE,0,10,0\nhuge,1000,1024,16,1000,,BE,0,10,0\n"
    )
    text = INFLATION.replace(str(DATA / "alibaba_pods.csv"), str(pods))
    with pytest.raises(SpecError, match=r"pods.csv:3: num_gpu: a task of 16 GPUs is larger"):
        run_inflation_scenario(small(text, "inflation.yaml"))


def test_a_timeline_replay_needs_the_times(tmp_path: Path) -> None:
    pods = tmp_path / "pods.csv"
    pods.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np0,1000,1024,1,1000\n")
    text = (
        "kind: Simulation\nname: t\nduration: 1h\ncluster:\n"
        f"  alibaba_nodes: {{path: {DATA / 'alibaba_nodes.csv'}, types: single}}\n"
        f"workloads:\n  alibaba_pods: {{path: {pods}}}\n"
    )
    with pytest.raises(SpecError, match="creation_time and deletion_time"):
        build(small(text, "replay.yaml"))
