"""Trace readers on slices of the real traces (see the headers of the files in ``data/``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from baige.api.loader import SpecError
from baige.sim.traces import read_alibaba_nodes, read_alibaba_pods, read_job_csv, read_qps_curve
from tests.unit.sim.helpers import DATA


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
