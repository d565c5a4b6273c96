"""``/metrics`` in Prometheus' text format.

Cluster figures are read from the store at scrape time (a custom collector: nothing goes
stale between scrapes); request latency is measured by a middleware. It names every
tenant's queues and running job ids, so it needs a token (``app.py``): an admin's, or a
metrics token made for the scrape (``baige token prometheus --metrics``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from baige.api.queues import QueueSpec
from baige.control.auth import Principal
from baige.control.node_health import health_from_json
from baige.control.runtime_figures import runtime_view
from baige.control.service import ACTIVE, ControlService
from baige.store.tables import NodeRow, QueueRow, WorkloadRow

__all__ = ["ClusterCollector", "GatewayCollector", "MeasureLatency", "make_registry"]

_ADMIN = Principal("metrics", None, admin=True)


class ClusterCollector(Collector):
    """Cards, queues, workloads and the controller, as gauges, computed per scrape."""

    def __init__(self, service: ControlService, pass_seconds: Callable[[], list[float]]) -> None:
        self.service = service
        self.pass_seconds = pass_seconds

    def collect(self) -> Iterator[Metric]:
        overview = self.service.overview(_ADMIN, hours=0.0)
        cards = GaugeMetricFamily(
            "baige_accelerators", "Cards by type and state (total, allocated, idle, failed, "
            "cordoned)", labels=["type", "state"],
        )  # fmt: skip
        for summary in overview.accelerators:
            for state in ("total", "allocated", "idle", "failed", "cordoned"):
                cards.add_metric([summary.type, state], float(getattr(summary, state)))
        yield cards
        nodes = GaugeMetricFamily("baige_nodes", "Nodes by health", labels=["health"])
        for health, count in sorted(overview.nodes.items()):
            nodes.add_metric([health], count)
        yield nodes
        phases = GaugeMetricFamily("baige_workloads", "Workloads by phase", labels=["phase"])
        for phase, count in sorted(overview.workloads.items()):
            phases.add_metric([phase], count)
        yield phases
        reasons = GaugeMetricFamily(
            "baige_pending_workloads_by_reason", "Pending workloads by reason", labels=["reason"]
        )
        for reason, count in sorted(overview.pending_reasons.items()):
            reasons.add_metric([reason], count)
        yield reasons
        yield GaugeMetricFamily(
            "baige_workload_restarts", "Restarts summed over all workloads", value=overview.restarts
        )
        yield from self._queues()
        yield from self._runtime()
        yield from self._device_health()
        history = self.pass_seconds()
        recent = sorted(history)
        passes = GaugeMetricFamily(
            "baige_controller_pass_seconds", "Controller pass time over the last 1,000 passes",
            labels=["quantile"],
        )  # fmt: skip
        if recent:
            passes.add_metric(["0.5"], recent[len(recent) // 2])
            passes.add_metric(
                ["0.99"], recent[min(len(recent) - 1, round(0.99 * (len(recent) - 1)))]
            )
        yield passes
        if history:
            yield GaugeMetricFamily(
                "baige_controller_last_pass_seconds", "The last controller pass", value=history[-1]
            )

    def _queues(self) -> Iterator[Metric]:
        now = time.time()
        quota = GaugeMetricFamily(
            "baige_queue_accelerators", "Guaranteed, limit and used cards per queue and type",
            labels=["queue", "type", "kind"],
        )  # fmt: skip
        for view in self.service.list_queues(_ADMIN):
            for accel, usage in view.usage.items():
                quota.add_metric([view.name, accel, "guaranteed"], usage.guaranteed)
                quota.add_metric([view.name, accel, "used"], usage.used)
                if usage.limit is not None:
                    quota.add_metric([view.name, accel, "limit"], usage.limit)
        yield quota
        pending = GaugeMetricFamily("baige_queue_pending", "Pending workloads", labels=["queue"])
        wait = GaugeMetricFamily(
            "baige_queue_oldest_wait_seconds", "How long the oldest pending workload has waited",
            labels=["queue"],
        )  # fmt: skip
        oldest: dict[str, float] = {}
        counts: dict[str, int] = defaultdict(int)
        with self.service.db.session() as session:
            names = [
                QueueSpec.model_validate(spec).name
                for (spec,) in session.execute(select(QueueRow.spec))
            ]
            for queue, created in session.execute(
                select(WorkloadRow.queue, WorkloadRow.created_at).where(
                    WorkloadRow.phase == ACTIVE[0]
                )
            ):
                counts[queue] += 1
                oldest[queue] = min(oldest.get(queue, created), created)
        for name in sorted(names):
            pending.add_metric([name], counts[name])
            wait.add_metric([name], now - oldest[name] if name in oldest else 0.0)
        yield pending
        yield wait

    def _runtime(self) -> Iterator[Metric]:
        """What ``baige run`` reported, per active training job (ended jobs drop out, so the
        series count follows what runs now)."""
        families = {
            field: GaugeMetricFamily(name, text, labels=["job", "queue"])
            for field, name, text in _RUNTIME_GAUGES
        }
        faults = GaugeMetricFamily(
            "baige_job_runtime_faults", "Faults detected by baige run, by kind",
            labels=["job", "queue", "kind"],
        )  # fmt: skip
        with self.service.db.session() as session:
            rows = session.execute(
                select(WorkloadRow.id, WorkloadRow.queue, WorkloadRow.runtime).where(
                    WorkloadRow.phase.in_(ACTIVE), WorkloadRow.runtime.is_not(None)
                )
            ).all()
        for job, queue, figures in rows:
            view = runtime_view(figures)
            if view is None:
                continue
            for field, family in families.items():
                value = getattr(view, field)
                if value is not None:
                    family.add_metric([job, queue], float(value))
            for kind, count in sorted(view.faults.items()):
                faults.add_metric([job, queue, kind], count)
        yield from families.values()
        yield faults

    def _device_health(self) -> Iterator[Metric]:
        """Device conditions the node agents report now, counted by kind and severity, and
        the nodes the health policy holds out (cordoned, and marked for repair)."""
        conditions = GaugeMetricFamily(
            "baige_device_conditions", "Device conditions reported now, by kind and severity",
            labels=["kind", "severity"],
        )  # fmt: skip
        held = GaugeMetricFamily(
            "baige_nodes_held_by_health", "Nodes the health policy holds out",
            labels=["state"],
        )  # fmt: skip
        counts: dict[tuple[str, str], int] = defaultdict(int)
        cordoned = repair = 0
        with self.service.db.session() as session:
            for (data,) in session.execute(
                select(NodeRow.device_health).where(NodeRow.device_health.is_not(None))
            ):
                health = health_from_json(data)
                for condition in health.conditions:
                    counts[(condition.kind.value, condition.severity.value)] += 1
                cordoned += health.cordoned
                repair += health.repair
        for (kind, severity), count in sorted(counts.items()):
            conditions.add_metric([kind, severity], count)
        held.add_metric(["cordoned"], cordoned)
        held.add_metric(["repair"], repair)
        yield conditions
        yield held


_RUNTIME_GAUGES = (  # RuntimeView field, metric name, help
    ("restarts", "baige_job_runtime_restarts", "Worker-group restarts by baige run"),
    ("lost_steps", "baige_job_runtime_lost_steps", "Steps computed again after restores"),
    ("last_step", "baige_job_runtime_step", "The last step reached"),
    ("steps_per_s", "baige_job_runtime_steps_per_second", "Current step rate"),
    ("max_detection_s", "baige_job_runtime_max_detection_seconds", "Slowest fault detection"),
    ("max_recovery_s", "baige_job_runtime_max_recovery_seconds", "Slowest recovery"),
    ("ettr", "baige_job_runtime_ettr", "Effective training time ratio (estimate)"),
)


class GatewayCollector(Collector):
    """What the service gateway measured per service, and the replicas each service wants
    (the autoscaler's target) against those running."""

    def __init__(
        self, service: ControlService, figures: Callable[[], dict[str, dict[str, float]]]
    ) -> None:
        self.service = service
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        figures = self.figures()
        help_text = {
            "requests_per_second": "Requests per second through the gateway (15 s window)",
            "in_flight": "Requests in flight through the gateway",
            "latency_p50_seconds": "Median request latency through the gateway (15 s window)",
            "latency_p99_seconds": "99th percentile request latency (15 s window)",
        }
        for key, text in help_text.items():
            family = GaugeMetricFamily(f"baige_service_{key}", text, labels=["service"])
            for service_id, values in sorted(figures.items()):
                family.add_metric([service_id], values[key])
            yield family
        counters = (
            ("requests_total", "Requests through the gateway"),
            ("errors_total", "Requests that failed (5xx or no replica)"),
        )
        for key, text in counters:
            counter = CounterMetricFamily(f"baige_service_{key.removesuffix('_total')}", text,
                                          labels=["service"])  # fmt: skip
            for service_id, values in sorted(figures.items()):
                counter.add_metric([service_id], values[key])
            yield counter
        wanted = GaugeMetricFamily(
            "baige_service_replicas", "Service replicas wanted (the autoscaler's target) and "
            "running", labels=["service", "queue", "kind"],
        )  # fmt: skip
        for view in self.service.list_workloads(_ADMIN, kind="InferenceService", phase=None,
                                                queue=None, limit=10_000, offset=0):  # fmt: skip
            if view.phase not in ACTIVE:
                continue
            wanted.add_metric([view.id, view.queue, "wanted"], view.replicas)
            wanted.add_metric([view.id, view.queue, "running"], len(view.running_replicas))
        yield wanted


def make_registry(
    service: ControlService,
    pass_seconds: Callable[[], list[float]],
    figures: Callable[[], dict[str, dict[str, float]]] | None = None,
) -> tuple[CollectorRegistry, Histogram]:
    """A registry for one app: the cluster and gateway collectors and the API latency
    histogram."""
    registry = CollectorRegistry()
    registry.register(ClusterCollector(service, pass_seconds))
    if figures is not None:
        registry.register(GatewayCollector(service, figures))
    latency = Histogram(
        "baige_api_request_seconds",
        "API request latency",
        ["method", "route", "status"],
        registry=registry,
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
    )
    return registry, latency


class MeasureLatency:
    """ASGI middleware: each request's time to its response's start, by method, route
    template and status, into ``latency``. A plain ASGI wrapper rather than Starlette's
    ``@app.middleware("http")``, which runs every request through an extra task and memory
    stream (a third of the framework's cost for a small request)."""

    def __init__(self, app: ASGIApp, latency: Histogram) -> None:
        self.app = app
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        observed = False

        def observe(status: int) -> None:
            nonlocal observed
            observed = True
            template = getattr(scope.get("route"), "path", "unmatched")
            self.latency.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - started
            )

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and not observed:
                observe(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except BaseException:
            if not observed:
                observe(500)
            raise
