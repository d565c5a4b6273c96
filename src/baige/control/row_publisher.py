"""A row a process keeps rewriting in the store for other processes to read, on a thread.

The split `baige up` (``control.processes``) has two: an API process's gateway load
(``control.shared_load``) and the controller process's status (``control.shared_status``).
Both write on a beat, ride out a database outage (the next beat writes again) and take their
row out when they stop, so a reader sees a stopped process at once, not after its row ages.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Self

from sqlalchemy.orm import Session

from baige.store.db import Database

__all__ = ["RowPublisher"]

log = logging.getLogger("baige.publish")


class RowPublisher:
    """Subclasses say what to write (:meth:`write`) and how to take it out (:meth:`remove`)."""

    what = "a row"  # for the log

    def __init__(self, db: Database, interval: float) -> None:
        self.db = db
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def write(self, session: Session) -> None:
        raise NotImplementedError

    def remove(self, session: Session) -> None:
        raise NotImplementedError

    def publish(self) -> None:
        """Write the row now."""
        with self.db.session() as session:
            self.write(session)

    def start(self, *, at_once: bool = False) -> Self:
        """Publish every ``interval`` (and first at once when ``at_once``) until :meth:`close`."""
        if at_once:
            with contextlib.suppress(Exception):
                self.publish()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.publish()
            except Exception as err:  # the database is away: the next beat writes again
                log.warning("publishing %s failed: %s", self.what, err)

    def close(self) -> None:
        """Stop publishing and take the row out (what it says ends with the process)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(Exception), self.db.session() as session:
            self.remove(session)
