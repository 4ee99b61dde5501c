"""Stored tracks' CLIP image embeddings, what free text (``q=``) is ranked against: a table of their own (one row
per track, with the model that made it) and an in-memory :class:`~app.store.vectors.VectorIndex` per model.

Kept in step with the track store as the appearance embeddings are (``TrackStore.listen``, inside the tracks' own
transactions). Searched exactly, every track of a window scored (free text is fused with the attribute score of
every track that passes the attribute filters, so no approximate candidate list would do); the indexes are built
from the table at start (no file: a start reads the table), and catch up on other instances' rows before a search.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime

import numpy as np
from sqlalchemy import Connection, DateTime, Engine, ForeignKey, Index, LargeBinary, String, delete, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from .embeddings import embedding_rows, index_rows
from .records import NewTrack
from .tables import Base, Id, TrackRow
from .vectors import Filters, VectorIndex


class ImageEmbeddingRow(Base):
    """One stored track's CLIP image embedding (float32 bytes, unit length) and what the index filters on."""

    __tablename__ = "track_image_embeddings"
    __table_args__ = (Index("ix_track_image_embeddings_model", "model_id", "track_id"),)

    # CASCADE: PostgreSQL drops the row with its track; SQLite (foreign keys off) relies on ``erasing`` below.
    track_id: Mapped[int] = mapped_column(Id, ForeignKey("tracks.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[int] = mapped_column(Id, ForeignKey("models.id"))
    camera: Mapped[str] = mapped_column(String(256))
    first_seen: Mapped[datetime] = mapped_column(DateTime)
    last_seen: Mapped[datetime] = mapped_column(DateTime)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class ImageEmbeddings:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._indexes: dict[int, VectorIndex] = {}  # by the store's model id
        self._newest: dict[int, int] = {}  # the newest track id each index has seen
        self._lock = threading.Lock()

    @classmethod
    def attach(cls, store) -> ImageEmbeddings:
        """Builds the indexes from the table and listens to ``store`` (a ``TrackStore``) from now on."""
        embeddings = cls(store.engine)
        with store.engine.begin() as connection:  # rows whose track went while the process was down (SQLite)
            connection.execute(delete(ImageEmbeddingRow).where(~ImageEmbeddingRow.track_id.in_(select(TrackRow.id))))
        embeddings._catch_up(None)
        store.listen(added=embeddings.added, erasing=embeddings.erasing)
        return embeddings

    def added(self, connection: Connection, ids: Sequence[int], tracks: Sequence[NewTrack]) -> None:
        """In the transaction that stores ``tracks``: the rows and index places of those with an image embedding."""
        rows = embedding_rows(connection, ids, tracks, lambda track: track.image_embedding)
        if rows:
            with self._lock:  # held across both: a search catching up meanwhile must not index these rows twice
                connection.execute(insert(ImageEmbeddingRow), rows)
                self._index_rows(rows)

    def erasing(self, connection: Connection, ids: Sequence[int]) -> None:
        """In the transaction that erases the tracks, before their rows go."""
        connection.execute(delete(ImageEmbeddingRow).where(ImageEmbeddingRow.track_id.in_(list(ids))))
        with self._lock:
            for index in self._indexes.values():
                index.remove(list(ids))

    def cosines(self, model_id: int, text: np.ndarray, filters: Filters) -> dict[int, float]:
        """Every track of the model within ``filters`` that has an image embedding: its cosine with ``text``."""
        self._catch_up(model_id)
        with self._lock:
            index = self._indexes.get(model_id)
            return {} if index is None else index.similarities(text, filters)

    def _index_rows(self, rows: list[dict]) -> None:
        for model_id in {row["model_id"] for row in rows}:
            mine = [row for row in rows if row["model_id"] == model_id]
            self._indexes[model_id] = index_rows(self._indexes.get(model_id), mine)
            self._newest[model_id] = max(self._newest.get(model_id, 0), max(row["track_id"] for row in mine))

    def _catch_up(self, model_id: int | None) -> None:
        """Rows not indexed yet: all of them at start (``model_id`` None), then another instance's new rows."""
        query = select(ImageEmbeddingRow.__table__).order_by(ImageEmbeddingRow.track_id)
        if model_id is not None:
            newest = self._newest.get(model_id, 0)
            query = query.where(ImageEmbeddingRow.model_id == model_id, ImageEmbeddingRow.track_id > newest)
        with self.engine.connect() as connection:
            rows = [dict(row._mapping) for row in connection.execute(query)]
        if not rows:
            return
        with self._lock:  # rows ``added`` indexed meanwhile are not indexed twice
            fresh = [row for row in rows if not self._indexed(row["model_id"], row["track_id"])]
            if fresh:
                self._index_rows(fresh)

    def _indexed(self, model_id: int, track: int) -> bool:
        index = self._indexes.get(model_id)
        return index is not None and track <= self._newest[model_id] and index.vector(track) is not None
