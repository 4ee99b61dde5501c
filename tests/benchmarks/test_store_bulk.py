"""``benchmarks/store.py --bulk`` times searches on rows it wrote itself: they must be the rows ``TrackStore.add``
writes, or its figures would be of another store. Bulk-loaded tracks read back exactly as the same tracks stored
through ``TrackStore.add``, in SQLite and PostgreSQL, and are searched the same."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from app.store import Search, TrackStore
from app.store.tables import ModelRow, TrackRow
from benchmarks.postgres import PostgresServer, missing
from benchmarks.store import served_model
from benchmarks.store_bulk import batch, bulk_load

COUNT, CAMERAS, DAYS = 300, 3, 2.0


def compare(bulk: TrackStore, added: TrackStore) -> None:
    model = served_model()
    bulk_load(bulk, model, COUNT, CAMERAS, DAYS)
    added.add(model, batch(np.random.default_rng(0), COUNT, CAMERAS, DAYS, len(model.attributes)))

    columns = [c for c in TrackRow.__table__.c if c.name != "stored_at"]
    rows = []
    for store in (bulk, added):
        with store.engine.connect() as connection:
            rows.append(
                (
                    connection.execute(select(*columns).order_by(TrackRow.id)).all(),
                    connection.execute(select(ModelRow.longest_track_s)).all(),
                )
            )
    assert len(rows[0][0]) == COUNT
    assert rows[0] == rows[1]

    search = Search(required=("female", "backpack"), camera="camera-1", limit=20)
    pages = [store.search(search, model) for store in (bulk, added)]
    assert pages[0].tracks and pages[0].tracks == pages[1].tracks and pages[0].cursor == pages[1].cursor


def test_bulk_rows_are_the_rows_add_writes_sqlite(tmp_path):
    bulk = TrackStore.open(None, tmp_path / "bulk", keep_thumbnails=False)
    added = TrackStore.open(None, tmp_path / "added", keep_thumbnails=False)
    try:
        compare(bulk, added)
    finally:
        bulk.close()
        added.close()


@pytest.mark.postgres
def test_bulk_rows_are_the_rows_add_writes_postgres(tmp_path):
    if (reason := missing()) is not None:
        pytest.skip(reason)
    with PostgresServer() as server:
        bulk = TrackStore.open(server.create_database("bulk"), tmp_path / "bulk", keep_thumbnails=False)
        added = TrackStore.open(server.create_database("added"), tmp_path / "added", keep_thumbnails=False)
        try:
            compare(bulk, added)
        finally:
            bulk.close()
            added.close()
