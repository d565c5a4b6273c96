"""CPU-only workloads (host CPU and memory, no card) and types accepted as equals: one
placement decision scored across the nodes of every accepted type."""

from __future__ import annotations

from dataclasses import replace

import pytest

from baige.sched import Admit, Profile, Reason
from baige.sched.model import Request
from baige.sched.testing import make_cluster, make_job, make_snapshot

from .helpers import admitted, cycle, nodes_of


def _hosts(nodes, cpu_milli, memory_mib=0):
    return [replace(n, cpu_milli=cpu_milli, memory_mib=memory_mib) for n in nodes]


def test_a_cpu_only_request_must_ask_for_cpu_or_memory():
    with pytest.raises(ValueError, match="must ask for host CPU or memory"):
        Request(devices=0)
    with pytest.raises(ValueError, match="share of a card needs one device"):
        Request(devices=0, milli=500, cpu_milli=1000)
    assert Request(devices=0, cpu_milli=1000).host_only


def test_cpu_only_task_takes_host_cpu_and_no_card():
    snap = make_snapshot(
        _hosts(make_cluster(1, "h100"), cpu_milli=8000),
        workloads=[make_job("etl").cpu_only(6000)],
    )
    result = cycle(snap)
    (decision,) = result.decisions
    assert isinstance(decision, Admit)
    assert [p.devices for p in decision.placements] == [()]


def test_cpu_only_tasks_stop_when_host_cpu_runs_out():
    # two nodes of 8 cores: three tasks of 5 cores fit two at a time; the third waits with a
    # reason that names what it asks for
    snap = make_snapshot(
        _hosts(make_cluster(2, "h100"), cpu_milli=8000),
        workloads=[make_job(f"c{i}").cpu_only(5000).created(i) for i in range(3)],
    )
    result = cycle(snap)
    assert admitted(result) == {"c0", "c1"}
    assert result.pending["c2"].reason is Reason.CAPACITY
    assert "5 CPU" in result.pending["c2"].message


def test_cpu_only_task_uses_the_cpu_a_gpu_task_needs():
    # the paper's point: CPU-only tasks consume host CPU, so a GPU task that asks for more
    # CPU than is left cannot use the free cards
    snap = make_snapshot(
        _hosts(make_cluster(1, "h100"), cpu_milli=8000),
        workloads=[
            make_job("etl").cpu_only(6000).created(0),
            make_job("train").gpus(1).host(cpu_milli=4000).created(1),
        ],
    )
    result = cycle(snap)
    assert admitted(result) == {"etl"}
    assert result.pending["train"].reason is Reason.CAPACITY


def test_cpu_only_task_larger_than_any_node_never_fits():
    snap = make_snapshot(
        _hosts(make_cluster(2, "h100"), cpu_milli=8000),
        workloads=[make_job("huge").cpu_only(64000)],
    )
    result = cycle(snap)
    assert result.pending["huge"].reason is Reason.NEVER_FITS
    assert "64 CPU" in result.pending["huge"].message


def test_cpu_only_task_needs_a_node_that_tracks_what_it_asks():
    snap = make_snapshot(make_cluster(1, "h100"), workloads=[make_job("etl").cpu_only(1000)])
    result = cycle(snap)
    assert result.decisions == ()
    assert result.pending["etl"].reason is Reason.NEVER_FITS
    assert "no node tracks" in result.pending["etl"].message


def test_cpu_only_task_without_types_runs_on_any_type():
    nodes = _hosts(make_cluster(1, "h100"), cpu_milli=1000) + _hosts(
        make_cluster(1, "a100"), cpu_milli=8000
    )
    snap = make_snapshot(nodes, workloads=[make_job("etl").cpu_only(4000)])
    result = cycle(snap)
    assert set(nodes_of(result, "etl")) == {"a100-0000"}


def test_cpu_only_gang_is_all_or_nothing():
    snap = make_snapshot(
        _hosts(make_cluster(2, "h100"), cpu_milli=8000),
        workloads=[make_job("g").cpu_only(6000).replicas(3)],
    )
    result = cycle(snap)
    assert result.decisions == ()
    assert result.pending["g"].reason is Reason.CAPACITY


def test_a_gpu_task_asking_more_cpu_than_any_node_never_fits():
    snap = make_snapshot(
        _hosts(make_cluster(2, "h100"), cpu_milli=8000),
        workloads=[make_job("t").gpus(1).host(cpu_milli=9000)],
    )
    result = cycle(snap)
    assert result.pending["t"].reason is Reason.NEVER_FITS


def test_ranked_types_are_tried_in_order_unranked_by_best_node():
    # a100 is listed first; its only node is empty, the h100 node has one card left.
    # Ranked: the preference wins (a100). Unranked, binpack: the fuller h100 node wins.
    nodes = make_cluster(1, "a100") + make_cluster(1, "h100")
    busy = make_job("busy").gpus(7).types("h100").running("h100", [("h100-0000", range(7))])
    ranked = make_snapshot(nodes, workloads=[busy, make_job("t").types("a100", "h100")])
    assert set(nodes_of(cycle(ranked), "t")) == {"a100-0000"}
    unranked = make_snapshot(
        nodes, workloads=[busy, make_job("t").types("a100", "h100").unranked()]
    )
    assert set(nodes_of(cycle(unranked), "t")) == {"h100-0000"}


def test_fragmentation_keeps_the_cards_only_some_demand_can_use():
    # a g2-only job runs; a task that accepts g2 and t4 as equals goes to t4, leaving the
    # g2 cards to demand that can use nothing else (the paper's "no access" fragmentation).
    # Without that term both nodes score the same and the fuller g2 node would take it.
    fgd = Profile(name="fgd", scores=(("fragmentation", 1.0),))
    nodes = make_cluster(1, "g2") + make_cluster(1, "t4")
    g2_only = make_job("g2job").types("g2").running("g2", [("g2-0000", [0])])
    task = make_job("t").types("g2", "t4").unranked()
    result = cycle(make_snapshot(nodes, workloads=[g2_only, task]), fgd)
    assert set(nodes_of(result, "t")) == {"t4-0000"}
