"""Alembic's environment: always run in-process by ``app.store.database.migrate`` on the connection it passes."""

from __future__ import annotations

from alembic import context

from app.store.tables import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
