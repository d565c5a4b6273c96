"""Capability 4: a gang is packed into the smallest topology domain that fits."""

from __future__ import annotations

import pytest

from baige.sched import FIFO, Reason
from baige.sched.testing import make_cluster, make_job, make_snapshot

from .helpers import admitted, cycle, nodes_of

# 32 nodes: 4 per rack, 4 racks per block -> 8 racks, 2 blocks
CLUSTER = make_cluster(32, "h100")
RACK_OF = {n.name: n.topology[1] for n in CLUSTER}
BLOCK_OF = {n.name: n.topology[0] for n in CLUSTER}


def _fill(nodes: list[str], cards: int = 8) -> list:
    return [make_job(f"fill-{n}").gpus(cards).running("h100", [(n, range(cards))]) for n in nodes]


def domains(result, workload, table):
    return {table[n] for n in nodes_of(result, workload)}


@pytest.mark.parametrize(
    ("replicas", "gpus", "rack_span", "node_span", "rack"),
    [
        (1, 4, 1, 1, "h100-b0-r0"),  # onto the half-free node
        (2, 4, 1, 1, "h100-b0-r0"),  # 8 cards: one node, in the busiest rack
        (3, 8, 1, 3, "h100-b0-r0"),  # rack 0 has exactly 3 free nodes: tightest fit
        (4, 8, 1, 4, "h100-b0-r1"),  # a whole empty rack
        (8, 8, 2, 8, None),  # two whole racks of one block, not bits of three
        (16, 8, 4, 16, None),
    ],
)
def test_gang_in_smallest_domain(replicas, gpus, rack_span, node_span, rack):
    # one node of rack 0 is half busy
    snap = make_snapshot(
        CLUSTER,
        workloads=[*_fill([CLUSTER[0].name], 4), make_job("g").gpus(gpus).replicas(replicas)],
    )
    result = cycle(snap)
    assert "g" in admitted(result)
    assert len(domains(result, "g", RACK_OF)) == rack_span
    assert len(nodes_of(result, "g")) == node_span
    assert len(domains(result, "g", BLOCK_OF)) == 1
    if rack is not None:
        assert domains(result, "g", RACK_OF) == {rack}


def test_gang_prefers_a_busy_rack_keeping_empty_racks_whole():
    # rack 0 has 2 free nodes, the other racks are empty: a 2-node gang goes to rack 0
    busy = [CLUSTER[0].name, CLUSTER[1].name]
    snap = make_snapshot(CLUSTER, workloads=[*_fill(busy), make_job("g").gpus(8).replicas(2)])
    result = cycle(snap)
    assert domains(result, "g", RACK_OF) == {CLUSTER[0].topology[1]}


def test_single_node_job_goes_where_it_fragments_least():
    # a 4-card job lands on the half-free node, not on an idle one
    snap = make_snapshot(CLUSTER, workloads=[*_fill([CLUSTER[5].name], 4), make_job("g").gpus(4)])
    result = cycle(snap)
    assert set(nodes_of(result, "g")) == {CLUSTER[5].name}


def test_required_rack_waits_instead_of_spreading():
    # every rack has 3 free nodes; a 4-node gang that must stay in one rack waits
    busy = [n.name for n in CLUSTER[::4]]
    snap = make_snapshot(
        CLUSTER, workloads=[*_fill(busy), make_job("g").gpus(8).replicas(4).within("rack")]
    )
    result = cycle(snap)
    assert "g" not in admitted(result)
    assert result.pending["g"].reason in {Reason.TOPOLOGY, Reason.RESERVED}
    assert "rack" in result.pending["g"].message


def test_required_rack_satisfied():
    snap = make_snapshot(CLUSTER, workloads=[make_job("g").gpus(8).replicas(4).within("rack")])
    result = cycle(snap)
    assert len(domains(result, "g", RACK_OF)) == 1


def test_topology_unaware_profile_fills_in_node_order():
    busy = [n.name for n in CLUSTER[::4]]
    snap = make_snapshot(CLUSTER, workloads=[*_fill(busy, 4), make_job("g").gpus(8).replicas(4)])
    result = cycle(snap, FIFO)
    # first fit: nodes 1, 2, 3 (rack 0), then 5 (rack 1)
    assert set(nodes_of(result, "g")) == {CLUSTER[i].name for i in (1, 2, 3, 5)}


def test_an_elastic_gang_grows_next_to_its_replicas():
    # the job runs 2 replicas in rack 1; it grows into rack 1, not into an emptier rack
    nodes = [n.name for n in CLUSTER]
    job = (
        make_job("e")
        .gpus(8)
        .replicas(4)
        .elastic(2)
        .running("h100", [(nodes[4], range(8)), (nodes[5], range(8))])
    )
    busy = _fill([nodes[0], nodes[1], nodes[2]])  # rack 0 nearly full: tempting to pack
    result = cycle(make_snapshot(CLUSTER, workloads=[job, *busy]))
    (grow,) = result.decisions
    assert {RACK_OF[p.node] for p in grow.add} == {RACK_OF[nodes[4]]}


def test_growth_never_leaves_a_required_domain():
    nodes = [n.name for n in CLUSTER]
    job = (
        make_job("e")
        .gpus(8)
        .replicas(6)
        .elastic(2)
        .within("rack")
        .running("h100", [(nodes[4], range(8)), (nodes[5], range(8))])
    )
    result = cycle(make_snapshot(CLUSTER, workloads=[job]))
    (grow,) = result.decisions
    assert len(grow.add) == 2  # the rack has two more free nodes; no more
    assert {RACK_OF[p.node] for p in grow.add} == {RACK_OF[nodes[4]]}
