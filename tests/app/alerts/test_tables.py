"""The alerts' migration creates exactly the tables the code queries (on the track store's database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, update

import app.alerts.tables  # noqa: F401 (registers the alerts' tables on the store's metadata)
from app.alerts.rules import RuleSpec
from app.alerts.store import AlertStore
from app.alerts.tables import AlertRow, DeliveryRow
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


def test_retention_purges_old_alerts_with_their_deliveries_and_keeps_recent_ones(tmp_path):
    """An alert keeps a person's picture: it goes with VTFPAR_RETENTION_DAYS as the tracks do (0 keeps all)."""
    alerts = AlertStore(TrackStore.open(None, tmp_path).engine)
    rule = alerts.create_rule(RuleSpec(name="anyone", search={}, webhook="http://127.0.0.1:9/hook"))
    hook = [("webhook", "http://127.0.0.1:9/hook")]
    old = alerts.fire(rule, "gate-3", "track:1", {"track": {}}, b"jpeg", hook)
    recent = alerts.fire(rule, "gate-3", "track:2", {"track": {}}, b"jpeg", hook)
    assert old is not None and recent is not None
    with alerts.engine.begin() as connection:
        ten_days_ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=10)  # naive UTC, as the store writes
        connection.execute(update(AlertRow).where(AlertRow.id == old).values(fired_at=ten_days_ago))
    assert alerts.purge(0) == 0
    assert alerts.purge(7) == 1
    assert alerts.alert(old) is None and alerts.alert(recent) is not None
    with alerts.engine.connect() as connection:
        left = connection.execute(select(DeliveryRow.alert_id)).scalars().all()
    assert left == [recent]
