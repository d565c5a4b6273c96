"""One controller leads a shared PostgreSQL database; the others stand by and take over.

Several `baige up` may share one PostgreSQL database: all serve the API, one runs the
controller. Leading takes two things, both in the database, so there is nothing else to run:

- **A session-level advisory lock**, held on a connection of its own. PostgreSQL frees it
  the moment that connection ends: at once when the leader's process dies (its socket
  closes), and after ``lease_s`` when the process is alive but stuck (paused, frozen, cut
  off): the connection is opened with ``idle_session_timeout = lease_s`` and the leader
  touches it every ``lease_s / 4``, so a leader that stops touching it loses it.
- **A term**: the ``leader_lease`` row's counter, raised by one by every new leader once it
  holds the lock. Every transaction the controller opens starts by reading the term ``FOR
  SHARE`` (:meth:`Leadership.fence`) and raises :class:`Deposed` when it is not the one it
  took. The share lock makes the next leader's raise wait until transactions that passed the
  check have ended; a transaction left open by a paused leader is ended by the server after
  ``lease_s`` (``idle_in_transaction_session_timeout`` on the controller's connections). So
  a deposed leader that wakes up can neither launch nor record anything: its launches happen
  inside fenced transactions, and its next one fails the check.

A standby waits for the lock, trying every second. A leader whose lock connection went away
(the database restarted, or cut it off for a while) takes the lock back if the term is still
its own — nobody led meanwhile, as a new leader raises the term first — so both sides ride
out an outage; the lead is lost only when the term moved on. A deposed leader does not try
to lead again in the same process: its in-memory state is stale, and `baige up` exits (to be
restarted by its supervisor, as a standby), as Kubernetes' controller managers do when they
lose their lease. SQLite is one process's embedded database and keeps its file lock.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Literal

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

__all__ = ["DEFAULT_LEASE_S", "Deposed", "Leadership", "Role"]

# what a `baige up`'s controller is doing: leading, standing by, or stopped once deposed
Role = Literal["leading", "standby", "stopped"]

log = logging.getLogger("baige.up")

DEFAULT_LEASE_S = 8.0
LOCK_KEY = 704236  # the advisory lock the leading `baige up` holds on its database


class Deposed(RuntimeError):
    """This controller no longer leads: another took over (its term is newer)."""


class Leadership:
    """Leading the controller of one PostgreSQL database (see the module's docstring).

    ``wait()`` blocks until this process leads (or ``stop`` is set) and returns the term;
    ``fence(session)`` is the check every controller transaction starts with; ``on_lost``
    is called once, from the keeper thread, when the lock's connection is gone."""

    def __init__(
        self,
        url: str,
        *,
        lease_s: float = DEFAULT_LEASE_S,
        name: str | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        if lease_s < 1:
            raise ValueError(f"the lease must be at least 1 s, got {lease_s:g}")
        self.lease_s = lease_s
        self.name = name or f"baige up pid {os.getpid()} on {socket.gethostname()}"
        self.on_lost = on_lost
        self.term: int | None = None
        self.lost = threading.Event()
        self._engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        self._connection: Connection | None = None
        self._keeper: threading.Thread | None = None
        self._closing = threading.Event()

    # ---------------------------------------------------------------- taking the lead

    def wait(
        self, stop: threading.Event, *, on_standby: Callable[[str], None] | None = None
    ) -> int | None:
        """Block until this process holds the lock and has raised the term; the term, or
        None when ``stop`` was set first. ``on_standby`` hears who leads, once."""
        told = False
        while not stop.is_set():
            try:
                term = self._try_to_lead()
            except Exception as err:  # the database is unreachable: keep trying
                log.warning("standby: cannot reach the database (%s); retrying", err)
                term = None
            if term is not None:
                return term
            if not told and on_standby is not None:
                on_standby(self.holder())
                told = True
            stop.wait(1.0)
        return None

    def _open(self) -> Connection:
        """A connection for the lock: the server ends it after ``lease_s`` of silence."""
        connection = self._engine.connect()
        try:
            ms = max(1, round(self.lease_s * 1000))
            connection.execute(text(f"SET idle_session_timeout = {ms}"))
            connection.execute(text(f"SET idle_in_transaction_session_timeout = {ms}"))
            connection.execute(
                text("SELECT set_config('application_name', :name, false)"),
                {"name": self.name[:63]},
            )
        except Exception:
            connection.close()
            raise
        return connection

    def _try_to_lead(self) -> int | None:
        connection = self._open()
        try:
            if not connection.execute(text(f"SELECT pg_try_advisory_lock({LOCK_KEY})")).scalar():
                connection.close()
                return None
            term = connection.execute(
                text(
                    "UPDATE leader_lease SET term = term + 1, holder = :holder, since = :now "
                    "WHERE id = 1 RETURNING term"
                ),
                {"holder": self.name, "now": time.time()},
            ).scalar_one()
        except Exception:
            connection.close()
            raise
        self._connection = connection
        self.term = int(term)
        self._keeper = threading.Thread(target=self._keep, name="leader-lease", daemon=True)
        self._keeper.start()
        log.info("leading the controller (term %d)", self.term)
        return self.term

    def holder(self) -> str:
        """Who leads now, as the lease row and the lock's session say."""
        with self._engine.connect() as connection:
            row = connection.execute(
                text("SELECT term, holder FROM leader_lease WHERE id = 1")
            ).first()
            alive = connection.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND objid = :key AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                ),
                {"key": LOCK_KEY},
            ).scalar()
        if row is None or not row[1]:
            return "nobody yet"
        state = "" if alive else " (its lease is lapsing)"
        return f"{row[1]}, term {row[0]}{state}"

    # ---------------------------------------------------------------- keeping it

    def _keep(self) -> None:
        """Touch the lock's connection every lease/4. When it is gone (the database
        restarted or cut us off, or this process was paused past the lease), take the lock
        back if the term is still ours: nobody led meanwhile, since a new leader raises the
        term before anything else. The lead is lost only when the term moved on."""
        while not self._closing.wait(self.lease_s / 4):
            if self._touch():
                continue
            verdict = self._reclaim()
            if verdict is None:  # the database is away: the next beat tries again
                continue
            if not verdict:
                if self._closing.is_set():
                    return
                log.error("lost the lead: another controller took over (this one had term %s)",
                          self.term)  # fmt: skip
                self.lost.set()
                if self.on_lost is not None:
                    self.on_lost()
                return

    def _touch(self) -> bool:
        """Whether the lock's connection answers and still holds the lock."""
        if self._connection is None:
            return False
        try:
            held = self._connection.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND objid = :key AND pid = pg_backend_pid()"
                ),
                {"key": LOCK_KEY},
            ).scalar()
        except Exception as err:
            log.warning("the leader's connection to the database is gone: %s", err)
            held = False
        if not held:
            self._drop_connection()
        return bool(held)

    def _reclaim(self) -> bool | None:
        """Take the lock back: True when held again with the term unchanged, False when the
        term moved on (deposed), None when the database cannot tell yet."""
        try:
            connection = self._open()
        except Exception:
            return None
        try:
            got = connection.execute(text(f"SELECT pg_try_advisory_lock({LOCK_KEY})")).scalar()
            term = connection.execute(text("SELECT term FROM leader_lease WHERE id = 1")).scalar()
        except Exception:
            connection.close()
            return None
        if term != self.term:
            connection.close()
            return False
        if not got:  # someone else holds the lock: wait for them to raise the term, or go
            connection.close()
            return None
        self._connection = connection
        log.info("kept the lead (term %d) after losing the database for a while", self.term)
        return True

    def _drop_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # already gone
                log.debug("closing the leader's connection", exc_info=True)
            self._connection = None

    def fence(self, session: Session) -> None:
        """The first statement of every controller transaction: raise Deposed unless this
        process still holds the term it took (and share-lock it until the transaction
        ends, so that a takeover waits for it)."""
        if self.lost.is_set():
            raise Deposed(f"this controller lost the lead (term {self.term})")
        term = session.execute(
            text("SELECT term FROM leader_lease WHERE id = 1 FOR SHARE")
        ).scalar()
        if term != self.term:
            self.lost.set()
            raise Deposed(f"another controller leads (term {term}; this one had {self.term})")

    def close(self) -> None:
        """Let go of the lead (the lock's connection closes; a standby takes over)."""
        self._closing.set()
        if self._keeper is not None:
            self._keeper.join(timeout=5)
        self._drop_connection()
        self._engine.dispose()
