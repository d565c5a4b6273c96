"""Connecting to the database and bringing its schema up to date.

``Database(url)`` creates the engine (SQLite gets WAL mode and a busy timeout so the API's
threads and the controller can share one file), runs Alembic's migrations to head, and hands
out sessions whose commit is the unit of every change.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["Database", "DatabaseError", "default_db_url"]

MIGRATIONS = Path(__file__).parent / "migrations"


class DatabaseError(RuntimeError):
    """The database cannot be used: a bad URL, an unreachable server, a failed migration."""


def default_db_url(home: Path) -> str:
    return f"sqlite:///{home / 'baige.db'}"


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Database:
    """An engine with an up-to-date schema and a session factory."""

    def __init__(
        self,
        url: str,
        *,
        migrate: bool = True,
        idle_in_transaction_s: float | None = None,
        pool_size: int = 20,
    ) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise DatabaseError(
                f"--db {url!r} is not a database URL; use sqlite:///PATH or "
                "postgresql+psycopg://USER@HOST:PORT/DB"
            ) from None
        self.url = url
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        elif self.dialect == "postgresql":
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
            if idle_in_transaction_s is not None:
                # the server ends a transaction left open this long (a paused process's),
                # releasing its locks: see control.leadership
                ms = max(1, round(idle_in_transaction_s * 1000))
                kwargs["connect_args"] = {"options": f"-c idle_in_transaction_session_timeout={ms}"}
        else:
            raise DatabaseError(f"unsupported database {self.dialect!r}: use SQLite or PostgreSQL")
        self.engine: Engine = create_engine(url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # run first in every transaction (the controller's term check, control.leadership)
        self.fence: Callable[[Session], None] | None = None
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        """Run every Alembic migration not yet applied (idempotent)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except Exception as err:  # any driver error: report the URL, never a traceback
            raise DatabaseError(f"cannot use database {self.safe_url}: {err}") from err

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        with self.sessions() as session, session.begin():
            if self.fence is not None:
                self.fence(session)
            yield session

    def insert(self, entity: Any) -> postgresql.Insert | sqlite.Insert:
        """An INSERT in this database's dialect, which can say ``ON CONFLICT`` (both
        PostgreSQL and SQLite have it, each in its own statement class)."""
        if self.dialect == "postgresql":
            return postgresql.insert(entity)
        return sqlite.insert(entity)

    def dispose(self) -> None:
        self.engine.dispose()


def home_dir() -> Path:
    """Where Baige keeps its database, tokens and logs (``BAIGE_HOME`` or ``~/.baige``)."""
    return Path(os.environ.get("BAIGE_HOME", Path.home() / ".baige")).expanduser()
