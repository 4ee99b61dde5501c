"""Bulk loading for ``benchmarks/store.py --bulk``: millions of tracks in minutes, so that searches can be timed on
1 M and 10 M stores. This measures search, not insert: the rows go in by the fastest honest route (SQLAlchemy's
executemany in transactions of 100,000 rows for SQLite, ``COPY`` for PostgreSQL, the tracks' indexes dropped
before and rebuilt after, as any bulk loader does), and the insert rate is measured through ``TrackStore.add`` on a
separate sample. The rows are the very ones ``TrackStore.add`` writes (``app.store.store.track_rows``: the same
columns, JSON texts, times and decisions); tests/benchmarks/test_store_bulk.py checks that they read back the same.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import Connection, insert, text, update

from app.store import ModelSpec, NewTrack, TrackStore
from app.store.store import track_rows
from app.store.tables import ModelRow, TrackRow

CHUNK = 100_000  # rows per transaction
START = datetime(2026, 1, 1, tzinfo=UTC)
BOXES = [[0.0, 10.0, 20.0, 60.0, 180.0], [1.0, 12.0, 20.0, 62.0, 180.0]]


def batch(rng: np.random.Generator, size: int, cameras: int, days: float, width: int) -> list[NewTrack]:
    """``size`` tracks: a random camera, first seen anywhere in ``days``, seen for 2-120 s, two boxes, and
    probabilities drawn from Beta(0.6, 0.9) (many near 0 and 1, as a calibrated model's are)."""
    first = rng.integers(0, int(days * 86400e6), size)
    seen = rng.integers(2_000_000, 120_000_000, size)
    camera = rng.integers(0, cameras, size)
    track_id = rng.integers(0, 1 << 31, size)
    windows = rng.integers(1, 8, size)
    probabilities = rng.beta(0.6, 0.9, (size, width)).tolist()
    tracks = []
    for i in range(size):
        begin = START + timedelta(microseconds=int(first[i]))
        tracks.append(
            NewTrack(
                camera=f"camera-{camera[i]}",
                source="stream",
                track_id=int(track_id[i]),
                first_seen=begin,
                last_seen=begin + timedelta(microseconds=int(seen[i])),
                boxes=BOXES,
                windows=int(windows[i]),
                probabilities=probabilities[i],
            )
        )
    return tracks


def bulk_load(store: TrackStore, model: ModelSpec, count: int, cameras: int, days: float) -> float:
    """Writes ``count`` tracks of ``model`` into the store's (empty) database; the seconds it took."""
    started = time.perf_counter()
    model_id = store.model_id(model)
    rng = np.random.default_rng(0)
    indexes = list(TrackRow.__table__.indexes)  # type: ignore[attr-defined]  # a Table
    with store.engine.begin() as connection:
        for index in indexes:
            index.drop(connection)
    longest = 0.0
    for done in range(0, count, CHUNK):
        tracks = batch(rng, min(CHUNK, count - done), cameras, days, len(model.attributes))
        now = datetime.now(UTC).replace(tzinfo=None)
        rows = track_rows(model, model_id, tracks, [None] * len(tracks), [list(t.probabilities) for t in tracks], now)
        longest = max(longest, *((t.last_seen - t.first_seen).total_seconds() for t in tracks))
        with store.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                _copy(connection, rows)
            else:
                connection.execute(insert(TrackRow), rows)
        print(f"  bulk: {done + len(tracks):>10} tracks, {time.perf_counter() - started:.0f} s", flush=True)
    with store.engine.begin() as connection:
        for index in indexes:
            index.create(connection)
        connection.execute(update(ModelRow).where(ModelRow.id == model_id).values(longest_track_s=longest))
        if connection.dialect.name == "postgresql":
            connection.execute(text("ANALYZE tracks"))  # what autovacuum does after a load this size, now
    return time.perf_counter() - started


def _copy(connection: Connection, rows: list[dict]) -> None:
    """PostgreSQL's COPY of the rows; JSON columns as the JSON text SQLAlchemy would send (json.dumps)."""
    names = list(rows[0])
    with connection.connection.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
        with cursor.copy(f"COPY tracks ({', '.join(names)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([json.dumps(v) if isinstance(v, list) else v for v in row.values()])
