"""Fault diagnosis across nodes: ``baige diagnose`` locates a slow node or link with ring and
pairwise tests between small TCP probes (``probe``, ``links``, the pure verdict in
``locate``); ``preflight`` checks a gang's nodes (gloo all-reduce, compute) before it starts;
``netlab`` builds a lab network of namespaces to prove it all on one machine.
See ``docs/diagnose.md``.
"""

from __future__ import annotations

from baige.diag.links import LinkReport, Probe, RingEdge, diagnose_links, round_robin
from baige.diag.locate import Pair, Suspect, Thresholds, locate, pair_key
from baige.diag.preflight import NodeCheck, PreflightReport, preflight
from baige.diag.probe import ProbeError, ProbeServer, call, parse_address

__all__ = [
    "LinkReport",
    "NodeCheck",
    "Pair",
    "PreflightReport",
    "Probe",
    "ProbeError",
    "ProbeServer",
    "RingEdge",
    "Suspect",
    "Thresholds",
    "call",
    "diagnose_links",
    "locate",
    "pair_key",
    "parse_address",
    "preflight",
    "round_robin",
]
