"""Per-service load as the service gateway sees it: requests per second, in flight, latency.

The gateway (``baige.server.gateway``) counts every request it proxies; the controller's
autoscaler reads :meth:`LoadBoard.sample`, and ``/metrics`` reads :meth:`LoadBoard.figures`.
In a single-process ``baige up`` (SQLite) both read this board directly. When the API and the
controller run as separate processes (PostgreSQL), each API process publishes
:meth:`LoadBoard.export` to the store and the controller reads the sum of them
(:mod:`baige.control.shared_load`); the engines' figures stay on the controller's own board.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from baige.sched.autoscale import MEASURE_WINDOW_S, LoadSample

__all__ = ["WINDOW_S", "LoadBoard", "quantile"]

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


def quantile(times: list[float], q: float) -> float:
    """The ``q`` quantile of sorted ``times`` (nearest rank); NaN when there are none."""
    if not times:
        return math.nan
    return times[min(len(times) - 1, round(q * (len(times) - 1)))]


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

    def engine(self, service_id: str) -> tuple[float | None, float | None]:
        """The engines' (waiting, cache use) for a service, if reported in the last
        ``ENGINE_FRESH_S``; (None, None) otherwise."""
        now = self.clock()
        with self._lock:
            load = self._services.get(service_id)
            if load is None or load.engine is None or now - load.engine[0] > ENGINE_FRESH_S:
                return None, None
            return load.engine[1], load.engine[2]

    def figures(self) -> dict[str, dict[str, float]]:
        """Per service: requests/s, in flight, p50/p99 latency (s), totals; for /metrics."""
        return figures_of(self.export())

    def export(self) -> dict[str, object]:
        """This board's gateway counts as JSON: what an API process publishes for a
        controller in another process (``control.shared_load``), and what :func:`merge`
        sums over several API processes. Latencies travel as their count and quantiles."""
        now = self.clock()
        services: dict[str, dict[str, float | None]] = {}
        with self._lock:
            for service_id, load in self._services.items():
                self._trim(load, now)
                times = sorted(latency for _, latency in load.latencies)
                services[service_id] = {
                    "arrivals": len(load.arrivals),
                    "in_flight": load.in_flight,
                    "ready": load.ready,
                    "total": load.total,
                    "errors": load.errors,
                    "latencies": len(times),
                    "p50": quantile(times, 0.5) if times else None,
                    "p99": quantile(times, 0.99) if times else None,
                }
            return {"services": services, "replicas": dict(self._replicas)}


def merge(exports: list[dict[str, object]]) -> dict[str, object]:
    """Several API processes' :meth:`LoadBoard.export` as one: counts add up, ``ready`` (the
    replicas a gateway can route to, the same list for each) is the largest, the median is
    the count-weighted mean of the medians and the 99th percentile the largest of them."""
    services: dict[str, dict[str, float | None]] = {}
    replicas: dict[str, int] = {}
    for export in exports:
        for replica_id, busy in dict(export.get("replicas") or {}).items():  # type: ignore[call-overload]
            replicas[replica_id] = replicas.get(replica_id, 0) + int(busy)
        for service_id, one in dict(export.get("services") or {}).items():  # type: ignore[call-overload]
            into = services.setdefault(service_id, {
                "arrivals": 0, "in_flight": 0, "ready": 0, "total": 0, "errors": 0,
                "latencies": 0, "p50": None, "p99": None,
            })  # fmt: skip
            count, before = float(one.get("latencies") or 0), float(into["latencies"] or 0)
            if count and one.get("p50") is not None:
                weighted = float(into["p50"] or 0) * before + float(one["p50"]) * count
                into["p50"] = weighted / (before + count)
                into["p99"] = max(float(into["p99"] or 0), float(one["p99"] or 0))
            for key in ("arrivals", "in_flight", "total", "errors", "latencies"):
                into[key] = float(into[key] or 0) + float(one.get(key) or 0)
            into["ready"] = max(float(into["ready"] or 0), float(one.get("ready") or 0))
    return {"services": services, "replicas": replicas}


def figures_of(export: dict[str, object]) -> dict[str, dict[str, float]]:
    """Per service, the figures /metrics and the console show, from an export."""
    out: dict[str, dict[str, float]] = {}
    for service_id, one in dict(export.get("services") or {}).items():  # type: ignore[call-overload]
        out[service_id] = {
            "requests_per_second": float(one["arrivals"]) / WINDOW_S,
            "in_flight": float(one["in_flight"]),
            "latency_p50_seconds": math.nan if one["p50"] is None else float(one["p50"]),
            "latency_p99_seconds": math.nan if one["p99"] is None else float(one["p99"]),
            "requests_total": float(one["total"]),
            "errors_total": float(one["errors"]),
        }
    return out
