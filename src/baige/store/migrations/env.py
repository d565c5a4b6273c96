"""Alembic environment: migrations run on the connection ``Database.migrate`` passes in."""

from __future__ import annotations

from alembic import context

from baige.store.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only the programmatic path is supported
    raise RuntimeError("run migrations through baige.store.Database.migrate()")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
