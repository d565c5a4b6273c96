"""Persistence: SQLAlchemy tables, Alembic migrations, and the transactions the API and the
controller run. SQLite by default (a file, nothing to install), PostgreSQL for production."""

from baige.store.db import Database, default_db_url
from baige.store.tables import Base, EventRow, NodeRow, QueueRow, ReplicaRow, TokenRow, WorkloadRow

__all__ = [
    "Base",
    "Database",
    "EventRow",
    "NodeRow",
    "QueueRow",
    "ReplicaRow",
    "TokenRow",
    "WorkloadRow",
    "default_db_url",
]
