"""Pre-flight for a big gang: before it starts, its nodes run a short collective test (an
all-reduce of a few hundred MB over gloo, the backend these CPUs have; NCCL on GPUs would be
the same call) and a compute check; a node far below its peers is named, so a scheduler can
leave it out and cordon it with the evidence instead of letting the job fail on it.

The coordinator hosts the rendezvous (a torch TCPStore on an address the nodes reach: the
one it used to reach the first probe), asks every probe at once to run its part, and judges
the figures. An all-reduce is paced by its slowest member, so it says whether the gang's
collectives are healthy (the bus bandwidth) and which node could not take part at all; a
slow link among the nodes is ``baige diagnose``'s pairwise test's to locate.

``baige diagnose --preflight`` runs it on probes an operator names; the controller runs it
before a big gang starts (:mod:`baige.control.preflight_gate`).
"""

from __future__ import annotations

import socket
import statistics
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from baige.diag.links import Probe, hello_all
from baige.diag.locate import Suspect, Thresholds
from baige.diag.probe import ProbeError, call, parse_address

__all__ = ["NodeCheck", "PreflightReport", "preflight"]


@dataclass(frozen=True, slots=True)
class NodeCheck:
    name: str
    address: str
    flops: float | None  # matrix-multiply FLOP per CPU second
    allreduce_s: float | None
    bus_bandwidth: float | None  # bytes per second
    error: str | None = None


@dataclass
class PreflightReport:
    nodes: list[NodeCheck]
    mb: float
    suspects: list[Suspect]
    thresholds: Thresholds
    notes: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.suspects

    @property
    def bus_bandwidth(self) -> float | None:
        values = [n.bus_bandwidth for n in self.nodes if n.bus_bandwidth is not None]
        return min(values) if len(values) == len(self.nodes) and values else None

    def summary(self) -> str:
        if not self.suspects:
            return f"all {len(self.nodes)} nodes passed the pre-flight"
        return "leave out " + "; ".join(s.evidence for s in self.suspects)

    def to_json(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "summary": self.summary(),
            "allreduce_mb": self.mb,
            "bus_bandwidth": self.bus_bandwidth,
            "nodes": [
                {
                    "name": n.name,
                    "address": n.address,
                    "flops": n.flops,
                    "allreduce_s": n.allreduce_s,
                    "bus_bandwidth": n.bus_bandwidth,
                    "error": n.error,
                }
                for n in self.nodes
            ],
            "suspects": [s.to_json() for s in self.suspects],
            "slowdown_threshold": self.thresholds.slowdown,
            "notes": self.notes,
            "units": {"flops": "FLOP per CPU second", "bus_bandwidth": "bytes/s"},
        }


def judge_compute(checks: Sequence[NodeCheck], thresholds: Thresholds) -> list[Suspect]:
    """Nodes whose check failed, then nodes whose compute is ``slowdown`` times below the
    median of the others'. Pure."""
    nan = float("nan")
    found = [
        Suspect("node", (c.name,), "unreachable", nan, nan, nan,
                f"{c.name}: its pre-flight failed: {c.error}")
        for c in checks
        if c.error is not None
    ]  # fmt: skip
    measured = {c.name: c.flops for c in checks if c.flops}
    for name, value in sorted(measured.items()):
        others = [v for n, v in measured.items() if n != name]
        if not others:
            continue
        typical = statistics.median(others)
        if typical / value >= thresholds.slowdown:
            found.append(
                Suspect("node", (name,), "compute", value, typical, typical / value,
                        f"{name}: {value / 1e9:.2f} GFLOP/s against {typical / 1e9:.2f} "
                        "for its peers")
            )  # fmt: skip
    return found


def _reachable_address(probe: str) -> str:
    """This machine's address on the route to ``probe``: where the nodes find the store."""
    host, port = parse_address(probe)
    with socket.create_connection((host, port), timeout=10) as sock:
        return str(sock.getsockname()[0])


def preflight(
    addresses: Sequence[str],
    *,
    mb: float = 256.0,
    rounds: int = 2,
    compute_s: float = 1.0,
    thresholds: Thresholds | None = None,
) -> PreflightReport:
    """Run the pre-flight on the probes at ``addresses``; ``ProbeError`` if one cannot be
    reached at all."""
    from torch.distributed import TCPStore  # type: ignore[attr-defined]  # noqa: PLC0415

    if not addresses:
        raise ValueError("give at least one node (HOST:PORT of a probe)")
    if len(set(addresses)) != len(addresses):
        raise ValueError("a node is given twice")
    if not 0 < mb <= 4096:
        raise ValueError("the all-reduce size must be in (0, 4096] MB")
    limits = thresholds or Thresholds()
    probes: list[Probe] = hello_all(addresses, timeout=10.0)
    try:
        host = _reachable_address(addresses[0])
    except OSError as err:
        raise ProbeError(f"cannot reach the probe at {addresses[0]}: {err}") from None
    store = TCPStore(host, 0, world_size=len(probes) + 1, is_master=True,
                     timeout=timedelta(seconds=120), wait_for_workers=False)  # fmt: skip
    where = f"{host}:{store.port}"
    results: dict[int, dict[str, Any] | str] = {}

    def run(rank: int) -> None:
        request = {"op": "preflight", "rank": rank, "world": len(probes),
                   "store": where, "mb": mb, "rounds": rounds,
                   "compute_s": compute_s}  # fmt: skip
        try:
            results[rank] = call(probes[rank].address, request, timeout=330)
        except ProbeError as err:
            results[rank] = str(err)

    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        list(pool.map(run, range(len(probes))))
    del store  # the rendezvous is over
    checks: list[NodeCheck] = []
    for rank, probe in enumerate(probes):
        got = results.get(rank, "no answer")
        if isinstance(got, str):
            checks.append(NodeCheck(probe.name, probe.address, None, None, None, got))
            continue
        checks.append(
            NodeCheck(
                probe.name,
                probe.address,
                flops=float(got["flops"]) if "flops" in got else None,
                allreduce_s=float(got["allreduce_s"]) if "allreduce_s" in got else None,
                bus_bandwidth=float(got["bus_bandwidth"]) if "bus_bandwidth" in got else None,
            )
        )
    report = PreflightReport(checks, mb, judge_compute(checks, limits), limits)
    if len(probes) == 1:
        report.notes.append("one node: its compute has no peer to compare with")
    return report
