"""Per-service load as the service gateway sees it: requests per second, in flight, latency.

The gateway (``baige.server.gateway``) counts every request it proxies; the controller's
autoscaler reads :meth:`LoadBoard.sample`, and ``/metrics`` reads :meth:`LoadBoard.figures`.
Today both sit in the one ``baige up`` process; a control plane split across processes will
need the board kept in the store instead (issue 18).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from baige.sched.autoscale import MEASURE_WINDOW_S, LoadSample

__all__ = ["WINDOW_S", "LoadBoard"]

WINDOW_S = MEASURE_WINDOW_S  # requests per second are counted over this window
ENGINE_FRESH_S = 30.0  # engine metrics older than this are not shown to the autoscaler


@dataclass(slots=True)
class _ServiceLoad:
    arrivals: deque[float] = field(default_factory=deque)
    latencies: deque[tuple[float, float]] = field(default_factory=deque)
    in_flight: int = 0
    ready: int = 0
    engine: tuple[float, float | None, float | None] | None = None  # (when, waiting, cache)
    total: int = 0
    errors: int = 0


class LoadBoard:
    """Per-service load as the gateway sees it; read by the autoscaler and ``/metrics``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._services: dict[str, _ServiceLoad] = {}
        self._replicas: dict[str, int] = {}  # requests in flight per replica
        self._lock = threading.Lock()

    def _get(self, service_id: str) -> _ServiceLoad:
        return self._services.setdefault(service_id, _ServiceLoad())

    def started(self, service_id: str) -> float:
        now = self.clock()
        with self._lock:
            load = self._get(service_id)
            load.arrivals.append(now)
            load.in_flight += 1
            load.total += 1
            self._trim(load, now)
        return now

    def finished(self, service_id: str, since: float, ok: bool) -> None:
        now = self.clock()
        with self._lock:
            load = self._get(service_id)
            load.in_flight -= 1
            load.latencies.append((now, now - since))
            if not ok:
                load.errors += 1
            self._trim(load, now)

    def replica_busy(self, replica_id: str, delta: int) -> None:
        """A request to ``replica_id`` started (+1) or finished (-1) through the gateway."""
        with self._lock:
            left = self._replicas.get(replica_id, 0) + delta
            if left > 0:
                self._replicas[replica_id] = left
            else:
                self._replicas.pop(replica_id, None)

    def replica_in_flight(self, replica_id: str) -> int:
        """Requests the gateway has in flight to one replica: the controller stops a replica
        it no longer wants only once this is 0 (drain, then stop)."""
        with self._lock:
            return self._replicas.get(replica_id, 0)

    def set_engine(self, service_id: str, waiting: float | None, cache: float | None) -> None:
        """What the service's engines report (``baige.control.engine_metrics``): requests
        waiting in them, all replicas, and their mean KV-cache use."""
        with self._lock:
            self._get(service_id).engine = (self.clock(), waiting, cache)

    def set_ready(self, service_id: str, ready: int) -> None:
        with self._lock:
            self._get(service_id).ready = ready

    @staticmethod
    def _trim(load: _ServiceLoad, now: float) -> None:
        while load.arrivals and now - load.arrivals[0] > WINDOW_S:
            load.arrivals.popleft()
        while load.latencies and now - load.latencies[0][0] > WINDOW_S:
            load.latencies.popleft()

    def sample(self, service_id: str) -> LoadSample | None:
        """The service's load over the last window; None if the gateway never served it."""
        now = self.clock()
        with self._lock:
            load = self._services.get(service_id)
            if load is None:
                return None
            self._trim(load, now)
            waiting = cache = None
            if load.engine is not None and now - load.engine[0] <= ENGINE_FRESH_S:
                _, waiting, cache = load.engine
            return LoadSample(len(load.arrivals) / WINDOW_S, load.in_flight, load.ready,
                              waiting, cache)  # fmt: skip

    def figures(self) -> dict[str, dict[str, float]]:
        """Per service: requests/s, in flight, p50/p99 latency (s), totals; for /metrics."""
        now = self.clock()
        out: dict[str, dict[str, float]] = {}
        with self._lock:
            for service_id, load in self._services.items():
                self._trim(load, now)
                times = sorted(latency for _, latency in load.latencies)

                def quantile(q: float, times: list[float] = times) -> float:
                    if not times:
                        return math.nan
                    return times[min(len(times) - 1, round(q * (len(times) - 1)))]

                out[service_id] = {
                    "requests_per_second": len(load.arrivals) / WINDOW_S,
                    "in_flight": float(load.in_flight),
                    "latency_p50_seconds": quantile(0.5),
                    "latency_p99_seconds": quantile(0.99),
                    "requests_total": float(load.total),
                    "errors_total": float(load.errors),
                }
        return out
