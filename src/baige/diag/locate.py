"""Naming the slow node or link from pairwise measurements. Pure: numbers in, suspects out,
so every rule is tested with made-up figures (``tests/unit/diag/test_locate.py``).

Why per node first, then per link: in a star (every node on one switch port) a node whose own
port, cable or NIC is slow makes *all* its pairs slow, while one bad path between two nodes
makes one pair slow. Judging a node by the median of its own pairs keeps one slow pair from
condemning either end, and judging "typical" by the median over nodes keeps one slow node
(which touches N-1 of the N(N-1)/2 pairs — half of them when N is 4) from dragging the
yardstick down. With two nodes there is one pair and nothing to tell node from link: the
link is named.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Pair", "Suspect", "Thresholds", "locate", "pair_key"]


def pair_key(a: str, b: str) -> tuple[str, str]:
    """A link's name: its two ends in sorted order (links are judged both ways at once)."""
    return (a, b) if a <= b else (b, a)


@dataclass(frozen=True, slots=True)
class Pair:
    """What was measured between two nodes. Bandwidths in bytes per second, one per direction
    (``None``: that direction failed); ``rtt_s`` the median round trip of small messages."""

    a: str
    b: str
    bw_ab: float | None
    bw_ba: float | None
    rtt_s: float | None
    error: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return pair_key(self.a, self.b)

    @property
    def bandwidth(self) -> float | None:
        """The worse direction: a link is as slow as its slow side."""
        values = [v for v in (self.bw_ab, self.bw_ba) if v is not None]
        if len(values) < 2:
            return None
        return min(values)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """How far below its peers a node or link must be before it is named.

    ``slowdown`` applies to bandwidth (typical / measured) and to round trips (measured /
    typical); a round trip is only judged when it exceeds the typical one by at least
    ``rtt_floor_s`` as well, since on a LAN 60 µs against 30 µs is noise, not a fault."""

    slowdown: float = 1.5
    rtt_floor_s: float = 0.0005

    def __post_init__(self) -> None:
        if not self.slowdown > 1:
            raise ValueError(f"slowdown must be > 1, got {self.slowdown}")
        if self.rtt_floor_s < 0:
            raise ValueError("rtt_floor_s must be >= 0")


@dataclass(frozen=True, slots=True)
class Suspect:
    """A node or link named slow, with the figures that convicted it."""

    kind: Literal["node", "link"]
    nodes: tuple[str, ...]  # one for a node, two (sorted) for a link
    metric: Literal["bandwidth", "latency", "unreachable", "compute"]
    value: float  # the suspect's bandwidth (B/s) or round trip (s); nan when unreachable
    typical: float  # the same figure for healthy peers
    ratio: float  # how many times worse than typical
    evidence: str

    @property
    def name(self) -> str:
        return self.nodes[0] if self.kind == "node" else f"{self.nodes[0]}<->{self.nodes[1]}"

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "name": self.name,
            "nodes": list(self.nodes),
            "metric": self.metric,
            "value": None if math.isnan(self.value) else self.value,
            "typical": None if math.isnan(self.typical) else self.typical,
            "ratio": None if math.isnan(self.ratio) else round(self.ratio, 3),
            "evidence": self.evidence,
        }


def _gbps(value: float) -> str:
    return f"{value * 8 / 1e9:.3g} Gbit/s"


def _ms(value: float) -> str:
    return f"{value * 1e3:.3g} ms"


def _by_node(nodes: Sequence[str], values: Mapping[tuple[str, str], float]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for node in nodes:
        mine = [v for (a, b), v in values.items() if node in (a, b)]
        if mine:
            scores[node] = statistics.median(mine)
    return scores


def _judge(
    nodes: Sequence[str],
    values: Mapping[tuple[str, str], float],
    *,
    worse: Literal["lower", "higher"],
    metric: Literal["bandwidth", "latency"],
    thresholds: Thresholds,
) -> list[Suspect]:
    """Suspect nodes, then suspect links not explained by a suspect node."""
    if not values:
        return []
    fmt = _gbps if metric == "bandwidth" else _ms

    def ratio(value: float, typical: float) -> float:
        if worse == "lower":
            return typical / value if value > 0 else math.inf
        return value / typical if typical > 0 else math.inf

    def bad(value: float, typical: float) -> bool:
        if ratio(value, typical) < thresholds.slowdown:
            return False
        return worse == "lower" or value - typical >= thresholds.rtt_floor_s

    found: list[Suspect] = []
    slow_nodes: set[str] = set()
    if len(nodes) > 2:
        scores = _by_node(nodes, values)
        typical = statistics.median(scores.values())
        for node in nodes:
            score = scores.get(node)
            if score is not None and bad(score, typical):
                slow_nodes.add(node)
                found.append(
                    Suspect(
                        kind="node",
                        nodes=(node,),
                        metric=metric,
                        value=score,
                        typical=typical,
                        ratio=ratio(score, typical),
                        evidence=f"{node}: median {fmt(score)} over its links against "
                        f"{fmt(typical)} for a typical node",
                    )
                )
    rest = {k: v for k, v in values.items() if not (set(k) & slow_nodes)} or dict(values)
    typical = statistics.median(rest.values())
    if len(values) == 1:  # two nodes: compare the link with nothing but the thresholds' sense
        return []
    for key, value in sorted(values.items()):
        if set(key) & slow_nodes:
            continue
        if bad(value, typical):
            found.append(
                Suspect(
                    kind="link",
                    nodes=key,
                    metric=metric,
                    value=value,
                    typical=typical,
                    ratio=ratio(value, typical),
                    evidence=f"{key[0]}<->{key[1]}: {fmt(value)} against {fmt(typical)} "
                    "for a typical link",
                )
            )
    return found


def locate(
    nodes: Sequence[str], pairs: Iterable[Pair], thresholds: Thresholds | None = None
) -> list[Suspect]:
    """Every suspect node and link, worst first. A pair that could not be measured at all
    names its link (or its node, when every pair of that node failed)."""
    limits = thresholds or Thresholds()
    pairs = list(pairs)
    bandwidth = {p.key: bw for p in pairs if (bw := p.bandwidth) is not None}
    rtts = {p.key: p.rtt_s for p in pairs if p.rtt_s is not None}
    found: list[Suspect] = []
    failed = [p for p in pairs if p.error is not None]
    dead: set[str] = set()
    if len(nodes) > 2:
        for node in nodes:
            mine = [p for p in pairs if node in (p.a, p.b)]
            if mine and all(p.error is not None for p in mine):
                dead.add(node)
                found.append(
                    Suspect(
                        kind="node",
                        nodes=(node,),
                        metric="unreachable",
                        value=math.nan,
                        typical=math.nan,
                        ratio=math.nan,
                        evidence=f"{node}: no test with any peer completed ({mine[0].error})",
                    )
                )
    for p in failed:
        if not ({p.a, p.b} & dead):
            found.append(
                Suspect(
                    kind="link",
                    nodes=p.key,
                    metric="unreachable",
                    value=math.nan,
                    typical=math.nan,
                    ratio=math.nan,
                    evidence=f"{p.key[0]}<->{p.key[1]}: {p.error}",
                )
            )
    if len(nodes) == 2 and len(bandwidth) == 1:
        return found  # one link: nothing to compare it with
    found += _judge(nodes, bandwidth, worse="lower", metric="bandwidth", thresholds=limits)
    named = {(s.kind, s.nodes) for s in found}
    for s in _judge(nodes, rtts, worse="higher", metric="latency", thresholds=limits):
        if (s.kind, s.nodes) not in named:
            found.append(s)
    order = {"unreachable": 0, "compute": 1, "bandwidth": 1, "latency": 2}
    found.sort(key=lambda s: (order[s.metric], -(0 if math.isnan(s.ratio) else s.ratio)))
    return found
