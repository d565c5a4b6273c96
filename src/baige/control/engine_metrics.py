"""Engine metrics: what each service replica's own engine says about its load.

The gateway sees requests from outside; an engine knows what it is doing with them: how many
wait for a batch slot (vLLM's ``vllm:num_requests_waiting``, SGLang's
``sglang:num_queue_reqs``) and how full its KV cache is (``vllm:gpu_cache_usage_perc``,
``sglang:token_usage``). Every ``interval`` seconds the scraper reads the Prometheus metrics
of the running replicas of services whose ``autoscale:`` targets them (the engine's metrics
path from :data:`baige.engines.render.ENGINES`), and puts the total waiting and the mean
cache use on the :class:`LoadBoard`, where the autoscaler reads them with the gateway's
figures. The text is parsed by ``prometheus_client``'s parser, not by hand.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from baige.api.workloads import InferenceServiceSpec, Phase
from baige.backends.base import ReplicaState
from baige.control.load_board import LoadBoard
from baige.control.snapshot import parse_spec
from baige.engines.render import ENGINES, EngineInfo
from baige.store.db import Database
from baige.store.tables import ReplicaRow, WorkloadRow

__all__ = ["EngineReading", "EngineScraper", "read_engine_metrics"]

log = logging.getLogger("baige.engine_metrics")

MAX_BYTES = 1 << 20  # a replica's metrics page is read up to this size


@dataclass(frozen=True, slots=True)
class EngineReading:
    """One replica's engine: requests waiting, KV-cache use (None: not exported)."""

    waiting: float | None
    cache_usage: float | None


def read_engine_metrics(text: str, info: EngineInfo) -> EngineReading:
    """The waiting and cache gauges named by ``info`` in a Prometheus text page (summed
    over label sets, e.g. one per served model); a page that does not parse reads as
    nothing measured."""
    found: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in (info.waiting_metric, info.cache_metric):
                    found[sample.name] = found.get(sample.name, 0.0) + float(sample.value)
    except (ValueError, TypeError, IndexError):
        return EngineReading(None, None)
    cache = found.get(info.cache_metric)
    if cache is not None:
        cache = min(1.0, max(0.0, cache))
    return EngineReading(found.get(info.waiting_metric), cache)


class EngineScraper:
    """Reads service replicas' engine metrics onto the board, every ``interval`` seconds."""

    def __init__(
        self,
        db: Database,
        board: LoadBoard,
        *,
        interval: float = 5.0,
        timeout: float = 1.0,
        fetch: Callable[[str], str] | None = None,
    ) -> None:
        self.db = db
        self.board = board
        self.interval = interval
        self.http = httpx.Client(timeout=timeout)
        self.fetch = fetch or self._get

    def _get(self, url: str) -> str:
        with self.http.stream("GET", url) as response:
            response.raise_for_status()
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_BYTES:
                    raise ValueError(f"{url}: the metrics page exceeds {MAX_BYTES} bytes")
            return body.decode("utf-8", "replace")

    def _targets(self) -> dict[str, tuple[EngineInfo, list[int]]]:
        """Services that scale on engine metrics: their engine and running replicas' ports."""
        out: dict[str, tuple[EngineInfo, list[int]]] = {}
        with self.db.session() as session:
            rows = session.scalars(
                select(WorkloadRow).where(
                    WorkloadRow.kind == "InferenceService",
                    WorkloadRow.phase.in_((Phase.ADMITTED.value, Phase.RUNNING.value)),
                )
            )
            for row in rows:
                spec = parse_spec(row.kind, row.spec)
                if not isinstance(spec, InferenceServiceSpec) or spec.engine is None:
                    continue
                scale = spec.autoscale
                if scale is None or (
                    scale.target_waiting_per_replica is None and scale.target_cache_usage is None
                ):
                    continue
                ports = session.scalars(
                    select(ReplicaRow.port).where(
                        ReplicaRow.workload_id == row.id,
                        ReplicaRow.desired == "running",
                        ReplicaRow.state == ReplicaState.RUNNING.value,
                        ReplicaRow.port.is_not(None),
                    )
                )
                out[row.id] = (ENGINES[spec.engine.name], [p for p in ports if p is not None])
        return out

    def scrape(self) -> int:
        """One round; returns how many replicas answered."""
        answered = 0
        for service_id, (info, ports) in self._targets().items():
            waiting: list[float] = []
            cache: list[float] = []
            for port in ports:
                try:
                    text = self.fetch(f"http://127.0.0.1:{port}{info.metrics_path}")
                except (httpx.HTTPError, ValueError, OSError) as err:
                    log.debug("metrics of %s on port %d: %s", service_id, port, err)
                    continue
                reading = read_engine_metrics(text, info)
                answered += 1
                if reading.waiting is not None:
                    waiting.append(reading.waiting)
                if reading.cache_usage is not None:
                    cache.append(reading.cache_usage)
            self.board.set_engine(
                service_id,
                sum(waiting) if waiting else None,
                sum(cache) / len(cache) if cache else None,
            )
        return answered

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.scrape()
            except Exception:  # a round must never end the thread; the next one retries
                log.exception("reading engine metrics failed; retrying")
            stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
        self.http.close()
