"""Ring and pairwise link tests among probes, and the report that names the slow node or link.

Pairwise: every pair, both directions at once, in rounds of disjoint pairs (the circle
method of a round-robin tournament: N-1 rounds for N nodes), so each node drives one peer
at a time and a result belongs to one path. Round trips are measured first, on idle links.

Ring: every node streams to its successor at the same moment — the traffic pattern of a
ring all-reduce, whose speed the slowest edge sets. It says what a collective would see;
the pairwise tests say who is to blame.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from baige.diag.locate import Pair, Suspect, Thresholds, locate
from baige.diag.probe import MAX_PINGS, MAX_SECONDS, ProbeError, call

__all__ = ["LinkReport", "Probe", "RingEdge", "diagnose_links", "hello_all", "round_robin"]


@dataclass(frozen=True, slots=True)
class Probe:
    name: str
    address: str


@dataclass(frozen=True, slots=True)
class RingEdge:
    src: str
    dst: str
    bandwidth: float | None  # bytes per second; None if it failed
    error: str | None = None


@dataclass
class LinkReport:
    probes: list[Probe]
    pairs: list[Pair]
    ring: list[RingEdge]
    suspects: list[Suspect]
    seconds: float
    thresholds: Thresholds
    notes: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.suspects

    @property
    def ring_bandwidth(self) -> float | None:
        values = [e.bandwidth for e in self.ring]
        if not values or any(v is None for v in values):
            return None
        return min(v for v in values if v is not None)

    def summary(self) -> str:
        if not self.suspects:
            return f"no slow node or link among {len(self.probes)} nodes"
        worst = self.suspects[0]
        return f"slow {worst.kind} {worst.name}: {worst.evidence}"

    def to_json(self) -> dict[str, Any]:
        def num(value: float | None) -> float | None:
            return None if value is None or math.isnan(value) else value

        return {
            "healthy": self.healthy,
            "summary": self.summary(),
            "nodes": [{"name": p.name, "address": p.address} for p in self.probes],
            "pairs": [
                {
                    "a": p.a,
                    "b": p.b,
                    "bandwidth_ab": num(p.bw_ab),
                    "bandwidth_ba": num(p.bw_ba),
                    "rtt_s": num(p.rtt_s),
                    "error": p.error,
                }
                for p in self.pairs
            ],
            "ring": [
                {"src": e.src, "dst": e.dst, "bandwidth": num(e.bandwidth), "error": e.error}
                for e in self.ring
            ],
            "ring_bandwidth": self.ring_bandwidth,
            "suspects": [s.to_json() for s in self.suspects],
            "slowdown_threshold": self.thresholds.slowdown,
            "seconds": round(self.seconds, 3),
            "notes": self.notes,
            "units": {"bandwidth": "bytes/s", "rtt_s": "s"},
        }


def round_robin(n: int) -> list[list[tuple[int, int]]]:
    """Rounds of disjoint pairs covering every pair of ``range(n)`` once."""
    players: list[int | None] = list(range(n))
    if n % 2:
        players.append(None)
    m = len(players)
    rounds: list[list[tuple[int, int]]] = []
    for _ in range(m - 1):
        pairs = []
        for i in range(m // 2):
            a, b = players[i], players[m - 1 - i]
            if a is not None and b is not None:
                pairs.append((min(a, b), max(a, b)))
        rounds.append(pairs)
        players = [players[0], players[-1], *players[1:-1]]
    return rounds


def _rate(result: dict[str, Any]) -> float:
    if "rate" in result:
        return float(result["rate"])
    seconds = float(result.get("seconds", 0.0))
    size = float(result.get("bytes", 0))
    return size / seconds if seconds > 0 else 0.0


def hello_all(addresses: Sequence[str], timeout: float) -> list[Probe]:
    probes: list[Probe] = []
    for address in addresses:
        answer = call(address, {"op": "hello"}, timeout=timeout)
        probes.append(Probe(name=str(answer.get("name") or address), address=address))
    names = [p.name for p in probes]
    if len(set(names)) != len(names):  # two probes calling themselves the same
        probes = [Probe(name=p.address, address=p.address) for p in probes]
    return probes


class _Tester:
    """Runs tests through the probes; keeps every figure measured, per direction."""

    def __init__(
        self, probes: list[Probe], pool: ThreadPoolExecutor, *, seconds: float, pings: int,
        timeout: float,
    ) -> None:  # fmt: skip
        self.probes = probes
        self.pool = pool
        self.seconds = seconds
        self.pings = pings
        self.timeout = seconds + timeout
        self.rtt: dict[tuple[int, int], list[float]] = {}
        self.bw: dict[tuple[int, int], list[float]] = {}  # (src, dst) -> B/s samples
        self.errors: dict[tuple[int, int], str] = {}  # (low, high) -> first error

    def _ping(self, a: int, b: int) -> None:
        try:
            answer = call(
                self.probes[a].address,
                {"op": "ping", "to": self.probes[b].address, "count": self.pings},
                timeout=self.timeout,
            )
            self.rtt.setdefault((a, b), []).append(float(answer["rtt_s"]))
        except (ProbeError, KeyError, ValueError) as err:
            self.errors.setdefault((min(a, b), max(a, b)), str(err))

    def send(self, a: int, b: int) -> float | None:
        try:
            answer = call(
                self.probes[a].address,
                {"op": "send", "to": self.probes[b].address, "seconds": self.seconds},
                timeout=self.timeout,
            )
        except ProbeError as err:
            self.errors.setdefault((min(a, b), max(a, b)), str(err))
            return None
        return _rate(answer)

    def pairs(self, rounds: Sequence[Sequence[tuple[int, int]]]) -> None:
        """Round trips, then each direction in turn (both at once would queue one side's
        acknowledgements behind the other side's data on a slow port and measure that)."""
        for pairs in rounds:
            list(self.pool.map(lambda p: self._ping(*p), pairs))
        for pairs in rounds:
            for direction in (pairs, [(b, a) for a, b in pairs]):
                results = list(self.pool.map(lambda p: self.send(*p), direction))
                for (a, b), value in zip(direction, results, strict=True):
                    if value is not None:
                        self.bw.setdefault((a, b), []).append(value)

    def result(self) -> list[Pair]:
        out: list[Pair] = []
        n = len(self.probes)
        for a in range(n):
            for b in range(a + 1, n):
                ab, ba, rtt = self.bw.get((a, b)), self.bw.get((b, a)), self.rtt.get((a, b))
                failed = not ab or not ba
                out.append(
                    Pair(
                        a=self.probes[a].name,
                        b=self.probes[b].name,
                        bw_ab=statistics.median(ab) if ab else None,
                        bw_ba=statistics.median(ba) if ba else None,
                        rtt_s=statistics.median(rtt) if rtt else None,
                        error=self.errors.get((a, b), "no result") if failed else None,
                    )
                )
        out.sort(key=lambda p: p.key)
        return out


def diagnose_links(
    addresses: Sequence[str],
    *,
    seconds: float = 0.5,
    pings: int = 20,
    ring: bool = True,
    confirm: int = 2,
    thresholds: Thresholds | None = None,
    timeout: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
) -> LinkReport:
    """Measure every pair (and the ring) among the probes at ``addresses`` and name what is
    slow. A pair that looks slow is measured ``confirm`` more times and judged on the
    median, so one unlucky test (a busy CPU on a shared machine) names nothing. Raises
    ``ProbeError`` naming the address if a probe cannot be reached at all."""
    if len(addresses) < 2:
        raise ValueError("give at least two nodes (HOST:PORT of a probe each)")
    if len(set(addresses)) != len(addresses):
        raise ValueError("a node is given twice")
    if not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"seconds per test must be in (0, {MAX_SECONDS:g}]")
    if not 0 < pings <= MAX_PINGS:
        raise ValueError(f"pings must be in 1..{MAX_PINGS}")
    limits = thresholds or Thresholds()
    started = clock()
    probes = hello_all(addresses, timeout)
    names = [p.name for p in probes]
    index = {name: i for i, name in enumerate(names)}
    n = len(probes)
    edges: list[RingEdge] = []
    with ThreadPoolExecutor(max_workers=max(2, n)) as pool:
        tester = _Tester(probes, pool, seconds=seconds, pings=pings, timeout=timeout)
        tester.pairs(round_robin(n))
        pairs = tester.result()
        suspects = locate(names, pairs, limits)
        for _ in range(confirm if suspects else 0):
            again: set[tuple[int, int]] = set()
            for s in suspects:
                if s.metric == "unreachable":
                    continue
                touched = [p.key for p in pairs if set(s.nodes) <= set(p.key)]
                again |= {(min(index[a], index[b]), max(index[a], index[b])) for a, b in touched}
            if not again:
                break
            tester.pairs(_disjoint(sorted(again)))
        if confirm and suspects:
            pairs = tester.result()
            suspects = locate(names, pairs, limits)
        if ring and n > 2:
            hops = [(i, (i + 1) % n) for i in range(n)]
            values = list(pool.map(lambda p: tester.send(*p), hops))
            edges = [
                RingEdge(names[a], names[b], v, None if v is not None else "failed")
                for (a, b), v in zip(hops, values, strict=True)
            ]
    report = LinkReport(
        probes=probes,
        pairs=pairs,
        ring=edges,
        suspects=suspects,
        seconds=clock() - started,
        thresholds=limits,
    )
    if n == 2:
        report.notes.append(
            "two nodes make one link: there is nothing to compare it with, so only a failed "
            "link is named; give three or more nodes to find a slow one"
        )
    return report


def _disjoint(pairs: Sequence[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Pairs grouped into rounds in which no node appears twice (greedy)."""
    rounds: list[list[tuple[int, int]]] = []
    busy: list[set[int]] = []
    for a, b in pairs:
        for members, group in zip(busy, rounds, strict=True):
            if a not in members and b not in members:
                group.append((a, b))
                members |= {a, b}
                break
        else:
            rounds.append([(a, b)])
            busy.append({a, b})
    return rounds
