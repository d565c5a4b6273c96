"""The service gateway's load across processes: API processes publish, the controller sums.

When ``baige up`` runs its API and its controller as separate processes (PostgreSQL), the
gateway's counts (:class:`~baige.control.load_board.LoadBoard`) live in each API process
while the autoscaler and the drain that read them run in the controller's. Each API process
therefore writes its board's :meth:`~LoadBoard.export` to one ``gateway_load`` row about twice
a second (:class:`LoadPublisher`), and the controller reads the sum of the rows written in the
last few seconds (:class:`SharedLoad`); a row that stops being written (its process died,
and its requests with it) drops out. The engines' own figures are scraped by the controller
process and stay on its local board.

A drain waits ``DRAIN_SETTLE_S`` (2 s) before it trusts an in-flight count of 0: the gateway
stops routing to a replica within ``ENDPOINTS_TTL_S`` (1 s), its count reaches the store
within ``PUBLISH_S`` and the controller's read is at most ``READ_CACHE_S`` old, 1.75 s in all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from baige.control.load_board import WINDOW_S, LoadBoard, figures_of, merge
from baige.control.row_publisher import RowPublisher
from baige.sched.autoscale import LoadSample
from baige.store.db import Database
from baige.store.tables import GatewayLoadRow

__all__ = ["FRESH_S", "PUBLISH_S", "LoadPublisher", "SharedLoad"]

PUBLISH_S = 0.5  # how often an API process writes its counts
READ_CACHE_S = 0.25  # how long the controller reuses one read of them
FRESH_S = 5.0  # rows older than this belong to a process that is gone


class LoadPublisher(RowPublisher):
    """An API process's side: its board written to the store every ``interval`` seconds."""

    what = "the gateway's load"

    def __init__(
        self, db: Database, board: LoadBoard, worker: str, interval: float = PUBLISH_S
    ) -> None:
        super().__init__(db, interval)
        self.board = board
        self.worker = worker

    def write(self, session: Session) -> None:
        figures = self.board.export()
        session.merge(GatewayLoadRow(worker=self.worker, updated_at=time.time(), figures=figures))

    def remove(self, session: Session) -> None:
        session.execute(delete(GatewayLoadRow).where(GatewayLoadRow.worker == self.worker))


class SharedLoad:
    """The controller's side: the sum of every live API process's gateway counts, with the
    engines' figures from ``engines`` (the board this process's scraper fills). Offers what
    :class:`LoadBoard` offers the controller: ``sample``, ``replica_in_flight``, ``figures``."""

    def __init__(
        self,
        db: Database,
        engines: LoadBoard,
        *,
        fresh_s: float = FRESH_S,
        cache_s: float = READ_CACHE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.engines = engines
        self.fresh_s = fresh_s
        self.cache_s = cache_s
        self.clock = clock
        self._read_at = -float("inf")
        self._merged: dict[str, object] = {"services": {}, "replicas": {}}
        self._lock = threading.Lock()

    def _current(self) -> dict[str, object]:
        now = self.clock()
        with self._lock:
            if now - self._read_at >= self.cache_s:
                with self.db.session() as session:
                    rows = session.scalars(
                        select(GatewayLoadRow.figures).where(
                            GatewayLoadRow.updated_at >= now - self.fresh_s
                        )
                    ).all()
                self._merged = merge([dict(r) for r in rows])
                self._read_at = now
            return self._merged

    def sample(self, service_id: str) -> LoadSample | None:
        """The service's load summed over the API processes; None if none served it."""
        one = dict(self._current()["services"]).get(service_id)  # type: ignore[call-overload]
        if one is None:
            return None
        waiting, cache = self.engines.engine(service_id)
        return LoadSample(float(one["arrivals"]) / WINDOW_S, int(one["in_flight"]),
                          int(one["ready"]), waiting, cache)  # fmt: skip

    def replica_in_flight(self, replica_id: str) -> int:
        """Requests in flight to one replica through any API process."""
        return int(dict(self._current()["replicas"]).get(replica_id, 0))  # type: ignore[call-overload]

    def figures(self) -> dict[str, dict[str, float]]:
        """Per service, the gateway's figures summed over the API processes."""
        return figures_of(self._current())
