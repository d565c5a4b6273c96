"""What a `baige up`'s controller process tells its API processes: its role and pass times.

When the API and the controller run as separate processes (PostgreSQL), ``/healthz`` and
``/metrics`` are answered by an API process that cannot see the controller's memory. The
controller process writes one ``controller_status`` row for its `baige up` instance about
once a second (:class:`StatusPublisher`, on the unfenced connection: a standby writes its row
too); the API processes read it (:class:`StatusReader`). A row not written for
``STALE_S`` means the controller process is down (its supervisor is restarting it): the
role then reads "stopped".
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Self

from sqlalchemy import delete
from sqlalchemy.orm import Session

from baige.control.leadership import Role
from baige.control.row_publisher import RowPublisher
from baige.store.db import Database
from baige.store.tables import ControllerStatusRow

__all__ = ["STALE_S", "StatusPublisher", "StatusReader"]

log = logging.getLogger("baige.shared_status")

PUBLISH_S = 1.0
STALE_S = 5.0
KEEP = 200  # pass times kept in the row (the p50/p99 /healthz shows are over these)


class StatusPublisher(RowPublisher):
    """The controller process's side: its role and last pass times, every ``interval``."""

    what = "the controller's status"

    def __init__(
        self,
        db: Database,
        instance: str,
        role: Callable[[], Role],
        pass_seconds: Callable[[], list[float]],
        interval: float = PUBLISH_S,
    ) -> None:
        super().__init__(db, interval)
        self.instance = instance
        self.role = role
        self.pass_seconds = pass_seconds

    def write(self, session: Session) -> None:
        session.merge(
            ControllerStatusRow(
                instance=self.instance,
                role=self.role(),
                pid=os.getpid(),
                updated_at=time.time(),
                pass_seconds=self.pass_seconds()[-KEEP:],
            )
        )

    def start(self, *, at_once: bool = True) -> Self:
        """As :meth:`RowPublisher.start`, first at once: the API shows the role from the start."""
        return super().start(at_once=at_once)

    def remove(self, session: Session) -> None:
        """Going: the API then reads "stopped"."""
        session.execute(
            delete(ControllerStatusRow).where(ControllerStatusRow.instance == self.instance)
        )


class StatusReader:
    """An API process's side: its instance's controller role and pass times, read at most
    every ``cache_s`` (``/healthz`` may be polled often)."""

    def __init__(
        self,
        db: Database,
        instance: str,
        *,
        stale_s: float = STALE_S,
        cache_s: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.instance = instance
        self.stale_s = stale_s
        self.cache_s = cache_s
        self.clock = clock
        self._read_at = -float("inf")
        self._row: tuple[str, float, list[float]] | None = None
        self._lock = threading.Lock()

    def _current(self) -> tuple[str, float, list[float]] | None:
        now = self.clock()
        with self._lock:
            if now - self._read_at >= self.cache_s:
                self._read_at = now
                try:
                    with self.db.session() as session:
                        row = session.get(ControllerStatusRow, self.instance)
                        self._row = None if row is None else (
                            row.role, row.updated_at, list(row.pass_seconds)
                        )  # fmt: skip
                except Exception as err:  # the database is away: the last row ages out
                    log.debug("reading the controller's status failed: %s", err)
            return self._row

    def role(self) -> Role:
        row = self._current()
        if row is None or self.clock() - row[1] > self.stale_s:
            return "stopped"
        role = row[0]
        return "leading" if role == "leading" else "standby" if role == "standby" else "stopped"

    def pass_seconds(self) -> list[float]:
        row = self._current()
        if row is None or self.clock() - row[1] > self.stale_s or row[0] != "leading":
            return []
        return row[2]
