"""The verdict, from made-up measurements: which node or link is named, and which is not."""

from __future__ import annotations

import itertools
import math

import pytest

from baige.diag.links import _disjoint, round_robin
from baige.diag.locate import Pair, Thresholds, locate

GOOD = 25e6  # bytes per second on a healthy link
RTT = 50e-6


def mesh(nodes: list[str], bw: dict[tuple[str, str], float] | None = None,
         rtt: dict[tuple[str, str], float] | None = None) -> list[Pair]:  # fmt: skip
    out = []
    for a, b in itertools.combinations(nodes, 2):
        value = (bw or {}).get((a, b), GOOD)
        out.append(Pair(a, b, value, value * 1.02, (rtt or {}).get((a, b), RTT)))
    return out


NODES = ["n0", "n1", "n2", "n3"]


@pytest.mark.parametrize(
    ("name", "pairs", "want"),
    [
        ("healthy", mesh(NODES), []),
        ("noise within 1.3x", mesh(NODES, {("n0", "n1"): GOOD / 1.3}), []),
        ("one slow link", mesh(NODES, {("n1", "n2"): GOOD / 5}), [("link", ("n1", "n2"))]),
        ("a link slowed 2x", mesh(NODES, {("n0", "n3"): GOOD / 2}), [("link", ("n0", "n3"))]),
        (
            "a slow node slows all its links, but only the node is named",
            mesh(NODES, {("n0", "n3"): GOOD / 5, ("n1", "n3"): GOOD / 5, ("n2", "n3"): GOOD / 5}),
            [("node", ("n3",))],
        ),
        (
            "a slow node and an unrelated slow link",
            mesh(
                [*NODES, "n4"],
                {
                    ("n0", "n4"): GOOD / 4,
                    ("n1", "n4"): GOOD / 4,
                    ("n2", "n4"): GOOD / 4,
                    ("n3", "n4"): GOOD / 4,
                    ("n0", "n1"): GOOD / 3,
                },
            ),
            [("node", ("n4",)), ("link", ("n0", "n1"))],
        ),
        (
            "high latency on one link",
            mesh(NODES, rtt={("n0", "n2"): 3e-3}),
            [("link", ("n0", "n2"))],
        ),
        ("latency 2x but under the floor", mesh(NODES, rtt={("n0", "n2"): 2 * RTT}), []),
    ],
)
def test_the_slow_part_is_named_and_nothing_else(
    name: str, pairs: list[Pair], want: list[tuple[str, tuple[str, ...]]]
) -> None:
    nodes = sorted({p.a for p in pairs} | {p.b for p in pairs})
    found = locate(nodes, pairs)
    assert sorted((s.kind, s.nodes) for s in found) == sorted(want), name


def test_a_suspect_carries_its_figures() -> None:
    [suspect] = locate(NODES, mesh(NODES, {("n1", "n2"): GOOD / 5}))
    assert suspect.name == "n1<->n2" and suspect.metric == "bandwidth"
    assert suspect.ratio == pytest.approx(5, rel=0.05)
    assert "n1<->n2" in suspect.evidence and "Gbit/s" in suspect.evidence
    assert suspect.to_json()["ratio"] == pytest.approx(5, rel=0.05)


def test_two_nodes_name_only_a_failed_link() -> None:
    assert locate(["a", "b"], [Pair("a", "b", GOOD / 10, GOOD, RTT)]) == []
    [failed] = locate(["a", "b"], [Pair("a", "b", None, GOOD, RTT, error="timed out")])
    assert failed.metric == "unreachable" and failed.nodes == ("a", "b")
    assert "timed out" in failed.evidence and math.isnan(failed.value)


def test_a_node_no_peer_can_reach_is_named_once() -> None:
    pairs = [
        p if "n2" not in (p.a, p.b) else Pair(p.a, p.b, None, None, None, error="refused")
        for p in mesh(NODES)
    ]
    found = locate(NODES, pairs)
    assert [(s.kind, s.nodes, s.metric) for s in found] == [("node", ("n2",), "unreachable")]


def test_thresholds_are_checked() -> None:
    with pytest.raises(ValueError, match="slowdown must be > 1"):
        Thresholds(slowdown=1.0)
    assert locate(NODES, mesh(NODES, {("n0", "n1"): GOOD / 1.3}), Thresholds(slowdown=1.2))


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 9])
def test_round_robin_meets_every_pair_once_and_no_node_twice_a_round(n: int) -> None:
    rounds = round_robin(n)
    seen = [pair for r in rounds for pair in r]
    assert sorted(seen) == list(itertools.combinations(range(n), 2))
    for r in rounds:
        members = [x for pair in r for x in pair]
        assert len(members) == len(set(members))


def test_retests_are_grouped_so_no_node_is_in_two_tests_at_once() -> None:
    rounds = _disjoint([(0, 3), (1, 3), (2, 3), (0, 1)])
    assert sorted(p for r in rounds for p in r) == [(0, 1), (0, 3), (1, 3), (2, 3)]
    for r in rounds:
        members = [x for pair in r for x in pair]
        assert len(members) == len(set(members))


def test_the_preflight_names_a_node_far_below_its_peers_and_a_failed_one() -> None:
    from baige.diag.preflight import NodeCheck, judge_compute  # noqa: PLC0415

    checks = [
        NodeCheck("a", "a:1", 100e9, 0.1, 1e9),
        NodeCheck("b", "b:1", 95e9, 0.1, 1e9),
        NodeCheck("c", "c:1", 30e9, 0.1, 1e9),
        NodeCheck("d", "d:1", None, None, None, error="worker exited 1"),
    ]
    found = judge_compute(checks, Thresholds())
    assert [(s.name, s.metric) for s in found] == [("d", "unreachable"), ("c", "compute")]
    assert found[1].ratio == pytest.approx(97.5 / 30, rel=0.01)  # the median of a and b
    assert "worker exited 1" in found[0].evidence
    assert judge_compute(checks[:2], Thresholds()) == []
