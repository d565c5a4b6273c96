"""The pre-flight's runner for ``baige up``'s own nodes: one diagnosis probe per local node
(a :class:`~baige.diag.probe.ProbeServer` thread of this process, on 127.0.0.1), so a gang
placed on them is checked exactly as ``baige diagnose --preflight`` checks remote probes —
each node's part in its own child process that imports torch, a real gloo all-reduce among
them, a real compute check.

A fake node slowed with ``baige fault slow`` (its declared fake health file says
``slow_compute``) really computes that many times slower in its check. Nodes of other
backends (Slurm) have no probe here: the platform turns the gate off for them, so their gangs
start without a pre-flight.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from baige.control.preflight_gate import PreflightSettings
from baige.diag.locate import Thresholds
from baige.diag.preflight import PreflightReport, preflight
from baige.diag.probe import ProbeServer
from baige.hw.health import FakeHealth

__all__ = ["LocalProbes"]


class LocalProbes:
    """Probes for this machine's nodes; ``run`` is a :data:`~baige.control.preflight_gate.
    Runner`."""

    def __init__(self, nodes: Mapping[str, Path | None]) -> None:
        """``nodes``: each node's name and its fake health file (None: a real node)."""
        self._health = dict(nodes)
        self._servers: dict[str, ProbeServer] = {}

    def start(self) -> None:
        for name in self._health:
            server = ProbeServer(("127.0.0.1", 0), name)
            threading.Thread(
                target=server.serve_forever, args=(0.2,), name=f"probe-{name}", daemon=True
            ).start()
            self._servers[name] = server

    def stop(self) -> None:
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
        self._servers.clear()

    def run(self, nodes: Sequence[str], settings: PreflightSettings) -> PreflightReport:
        missing = [n for n in nodes if n not in self._servers]
        if missing:
            raise ValueError(f"no pre-flight probe on node(s) {', '.join(missing)}")
        for name in nodes:
            path = self._health[name]
            self._servers[name].settings.slow_compute = (
                FakeHealth(path).slow_compute() if path is not None else 1.0
            )
        return preflight(
            [self._servers[n].address for n in nodes],
            mb=settings.mb,
            compute_s=settings.compute_s,
            thresholds=Thresholds(slowdown=settings.slowdown),
        )
