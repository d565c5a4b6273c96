"""Waking the leading controller from any `baige up` on the database (PostgreSQL NOTIFY).

A submission, a cancel or a scale wakes the controller at once instead of at its next
pass. In one process that is a method call; with several `baige up` on one PostgreSQL
database the API that took the request may not be the one whose controller leads. So every
instance also sends ``NOTIFY baige_wake`` (:class:`Notifier`: coalesced on a thread of its
own, so a burst of 500 submissions a second costs a few notifications, never a request's
time), and the leading one listens (:class:`Listener`) and wakes its controller.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy.engine import make_url

__all__ = ["CHANNEL", "Listener", "Notifier", "libpq_url"]

log = logging.getLogger("baige.up")

CHANNEL = "baige_wake"
_COALESCE_S = 0.02  # wake-ups closer than this are one notification


def libpq_url(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as libpq (psycopg) spells it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Notifier:
    """``wake()`` from any thread returns at once; a thread sends one NOTIFY for every burst
    of calls. A database that cannot be reached costs a logged warning, never the caller."""

    def __init__(self, url: str) -> None:
        self.url = libpq_url(url)
        self._due = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wake-notifier", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._due.set()

    def _run(self) -> None:
        connection: psycopg.Connection | None = None
        while not self._stop.is_set():
            self._due.wait()
            if self._stop.is_set():
                break
            self._due.clear()
            try:
                if connection is None or connection.closed:
                    connection = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
                connection.execute(f"NOTIFY {CHANNEL}")
            except psycopg.Error as err:
                log.warning("cannot wake the leading controller through the database: %s", err)
                if connection is not None:
                    connection.close()
                connection = None
            self._stop.wait(_COALESCE_S)
        if connection is not None:
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._due.set()
        self._thread.join(timeout=5)


class Listener:
    """While running, calls ``wake`` for every ``NOTIFY baige_wake`` on the database; it
    reconnects after an outage."""

    def __init__(self, url: str, wake: Callable[[], None]) -> None:
        self.url = libpq_url(url)
        self.wake = wake
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Listener:
        self._thread = threading.Thread(target=self._run, name="wake-listener", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        for _ in connection.notifies(timeout=0.5, stop_after=1):
                            self.wake()
            except psycopg.Error as err:
                if self._stop.is_set():
                    return
                log.warning("not listening for wake-ups (%s); retrying", err)
                self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
