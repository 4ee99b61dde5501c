"""The alerts' migration creates exactly the tables the code queries (on the track store's database)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import app.alerts.tables  # noqa: F401 (registers the alerts' tables on the store's metadata)
from app.store import TrackStore
from app.store.tables import Base


def test_an_empty_database_is_migrated_to_the_alerts_tables(tmp_path):
    store = TrackStore.open(None, tmp_path)
    try:
        with store.engine.connect() as connection:
            assert {"alert_rules", "alerts", "alert_deliveries"} <= set(inspect(connection).get_table_names())
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    finally:
        store.close()
