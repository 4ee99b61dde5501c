"""Stored tracks' appearance embeddings: a table of their own (one row per track, with the model that made it) and
an in-memory :class:`~app.store.vectors.VectorIndex` per model, saved under ``<data_dir>/embeddings``.

It listens to the track store (``TrackStore.listen``, inside the tracks' own transactions): a track added with an
embedding gets its row and its place in the index; an erased or purged track loses both. The table is the truth,
the index files a cache: at start a model's files (``model-<id>.npz``, the arrays; ``model-<id>.hnsw``, the graph
and the vectors) are loaded when they match the table (same count and newest id) and each other, and rebuilt from
the table otherwise (deleted, damaged, or stale after a crash). Instances that share a PostgreSQL store catch up
on each other's new rows before each search; a track another instance erased is dropped when the route reads it
(``TrackStore.get`` finds none).

A model's index holds embeddings of one width. The network's embedding may change with the code while the model
(its weights' fingerprint) stays the same: rows of another width than the model's newest are then left out of its
index (never compared with the new ones) until ``vtfpar reembed`` replaces them.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..errors import ErrorCode, ServiceError
from .records import ModelSpec, NewTrack, naive_utc
from .tables import Base, Id, ModelRow, TrackRow
from .vectors import Filters, VectorIndex

log = logging.getLogger(__name__)


class EmbeddingRow(Base):
    """One stored track's appearance embedding (float32 bytes, unit length) and what the index filters on."""

    __tablename__ = "track_embeddings"
    __table_args__ = (Index("ix_track_embeddings_model", "model_id", "track_id"),)

    # CASCADE: PostgreSQL drops the row with its track; SQLite (foreign keys off) relies on ``erased`` below.
    track_id: Mapped[int] = mapped_column(Id, ForeignKey("tracks.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[int] = mapped_column(Id, ForeignKey("models.id"))
    camera: Mapped[str] = mapped_column(String(256))
    first_seen: Mapped[datetime] = mapped_column(DateTime)
    last_seen: Mapped[datetime] = mapped_column(DateTime)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


def encode_cursor(score: float, track: int, fingerprint: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([score.hex(), track, fingerprint]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, fingerprint: str) -> tuple[float, int]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        score, track, belongs = float.fromhex(raw[0]), int(raw[1]), raw[2]
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ServiceError(ErrorCode.BAD_SEARCH, f"cursor: not one this service handed out ({exc})") from None
    if belongs != fingerprint:
        raise ServiceError(ErrorCode.BAD_SEARCH, "cursor: it belongs to another query; send the same filters")
    return score, track


def embedding_rows(
    connection: Connection,
    ids: Sequence[int],
    tracks: Sequence[NewTrack],
    vector_of: Callable[[NewTrack], np.ndarray | None],
) -> list[dict]:
    """The rows of an embeddings table (this one, or the CLIP image embeddings') for ``tracks`` just stored as
    ``ids`` (all of one model), one per track that has a vector."""
    if not ids:
        return []
    model_id = connection.execute(select(TrackRow.model_id).where(TrackRow.id == ids[0])).scalar_one()
    return [
        {
            "track_id": track_id,
            "model_id": model_id,
            "camera": track.camera,
            "first_seen": naive_utc(track.first_seen),
            "last_seen": naive_utc(track.last_seen),
            "vector": np.asarray(vector, np.float32).tobytes(),
        }
        for track_id, track in zip(ids, tracks, strict=True)
        if (vector := vector_of(track)) is not None
    ]


def index_rows(index: VectorIndex | None, rows: list[dict]) -> VectorIndex:
    """``rows`` of an embeddings table (one model's, one width) added to ``index``, or to a new one when None."""
    vectors = np.stack([np.frombuffer(r["vector"], np.float32) for r in rows])
    index = index if index is not None else VectorIndex(vectors.shape[1])
    index.add(
        [r["track_id"] for r in rows],
        vectors,
        [r["camera"] for r in rows],
        [r["first_seen"] for r in rows],
        [r["last_seen"] for r in rows],
    )
    return index


class TrackEmbeddings:
    def __init__(self, engine: Engine, folder: Path) -> None:
        self.engine = engine
        self.folder = folder
        self._indexes: dict[int, VectorIndex] = {}  # by the store's model id
        self._newest: dict[int, int] = {}  # the newest track id each index has seen (catching up)
        self._lock = threading.Lock()

    @classmethod
    def attach(cls, store, data_dir: Path) -> TrackEmbeddings:
        """Loads (or rebuilds) the indexes and listens to ``store`` (a ``TrackStore``) from now on."""
        embeddings = cls(store.engine, data_dir / "embeddings")
        embeddings.load()
        store.listen(added=embeddings.added, erasing=embeddings.erasing)
        return embeddings

    def path(self, model_id: int) -> Path:
        return self.folder / f"model-{model_id}.npz"

    # Keeping in step with the track store

    def added(self, connection: Connection, ids: Sequence[int], tracks: Sequence[NewTrack]) -> None:
        """In the transaction that stores ``tracks``: their embeddings' rows, and their places in the index (a
        transaction undone after this leaves ids in the index whose tracks the routes then do not find)."""
        rows = embedding_rows(connection, ids, tracks, lambda track: track.embedding)
        if not rows:
            return
        model_id = rows[0]["model_id"]
        with self._lock:  # held across both: a search catching up meanwhile must not index these rows twice
            connection.execute(insert(EmbeddingRow), rows)
            self._ingest(connection, model_id, rows)

    def erasing(self, connection: Connection, ids: Sequence[int]) -> None:
        """In the transaction that erases the tracks, before their rows go."""
        connection.execute(delete(EmbeddingRow).where(EmbeddingRow.track_id.in_(list(ids))))
        with self._lock:
            for index in self._indexes.values():
                index.remove(list(ids))

    def _ingest(self, connection: Connection, model_id: int, rows: list[dict]) -> None:
        """Indexes new ``rows``; rows of a new width (a changed embedding) replace the index by that width's rows."""
        index = self._indexes.get(model_id)
        newest = max(rows, key=lambda r: r["track_id"])
        width = len(newest["vector"]) // 4
        if index is None or index.width == width:
            self._index_rows(model_id, [r for r in rows if len(r["vector"]) == 4 * width])
        else:
            log.warning(
                "model %d: its embeddings are now %d wide (were %d): the others await `vtfpar reembed`",
                model_id,
                width,
                index.width,
            )
            self._rebuild(model_id, width, connection)

    def _index_rows(self, model_id: int, rows: list[dict]) -> None:
        if not rows:
            return
        self._indexes[model_id] = index_rows(self._indexes.get(model_id), rows)
        self._newest[model_id] = max(self._newest.get(model_id, 0), max(r["track_id"] for r in rows))

    # Start and stop

    def load(self) -> None:
        """Drops rows whose track is gone (erased while the process died between the two), then loads each model's
        index file when it matches the table, rebuilding it from the table when it does not."""
        gone = ~EmbeddingRow.track_id.in_(select(TrackRow.id))
        with self.engine.begin() as connection:
            connection.execute(delete(EmbeddingRow).where(gone))
            size = func.length(EmbeddingRow.vector)
            groups = connection.execute(
                select(EmbeddingRow.model_id, size, func.count(), func.max(EmbeddingRow.track_id)).group_by(
                    EmbeddingRow.model_id, size
                )
            ).all()
        by_model: dict[int, list] = {}
        for group in groups:
            by_model.setdefault(group[0], []).append(group)
        for model_id, widths in by_model.items():
            _, size, count, newest = max(widths, key=lambda group: group[3])  # the width of its newest row
            if len(widths) > 1:
                stale = sum(group[2] for group in widths) - count
                log.warning("model %d: %d embeddings of an older width left out: `vtfpar reembed`", model_id, stale)
            index = self._load_file(model_id, count, newest, size // 4)
            if index is None:
                with self.engine.connect() as connection:
                    index = self._rebuild(model_id, size // 4, connection)
                index.save(self.path(model_id))
                log.info("rebuilt the appearance index of model %d from the store (%d tracks)", model_id, count)
            with self._lock:
                self._indexes[model_id], self._newest[model_id] = index, newest

    def _load_file(self, model_id: int, count: int, newest: int, width: int) -> VectorIndex | None:
        path = self.path(model_id)
        try:
            index = VectorIndex.load(path)
        except (OSError, ValueError, KeyError) as exc:
            if path.exists():
                log.warning("appearance index %s unreadable (%s): rebuilding it", path, exc)
            return None
        if len(index) != count or index.width != width or (count and int(index.ids.max()) != newest):
            return None
        return index

    def _rebuild(self, model_id: int, width: int, connection: Connection) -> VectorIndex:
        """The model's index from its rows of ``width`` in the table."""
        query = (
            select(EmbeddingRow.__table__)
            .where(EmbeddingRow.model_id == model_id, func.length(EmbeddingRow.vector) == 4 * width)
            .order_by(EmbeddingRow.track_id)
        )
        rows = [dict(row._mapping) for row in connection.execute(query)]
        self._indexes[model_id] = VectorIndex(width)
        self._index_rows(model_id, rows)
        return self._indexes[model_id]

    def save(self) -> None:
        """Writes every index to its file (at shutdown), so that the next start loads instead of rebuilding."""
        with self._lock:
            for model_id, index in self._indexes.items():
                index.save(self.path(model_id))

    # Searching

    def of_track(self, track: int) -> tuple[int, np.ndarray] | None:
        """The model id and embedding of a stored track; None when it has none, or one of an older width than its
        model's index (see the module's docstring)."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(EmbeddingRow.model_id, EmbeddingRow.vector).where(EmbeddingRow.track_id == track)
            ).first()
        if row is None:
            return None
        with self._lock:
            index = self._indexes.get(row.model_id)
            if index is not None and index.width * 4 != len(row.vector):
                return None
        return row.model_id, np.frombuffer(row.vector, np.float32)

    def model_id(self, model: ModelSpec) -> int | None:
        """The store's id of ``model``; None while none of its tracks is stored."""
        query = select(ModelRow.id).where(
            ModelRow.name == model.name, ModelRow.version == model.version, ModelRow.schema_name == model.schema_name
        )
        with self.engine.connect() as connection:
            return connection.execute(query).scalar()

    def nearest(self, model_id: int, query: np.ndarray, limit: int, filters: Filters) -> list[tuple[int, float]]:
        """The ``limit`` tracks of the model most similar to ``query`` within ``filters``, best first."""
        self._catch_up(model_id)
        with self._lock:
            index = self._indexes.get(model_id)
            if index is None or index.width != len(query):  # an embedding of another width: nothing comparable
                return []
            return index.search(query, limit, filters)

    def _catch_up(self, model_id: int) -> None:
        """Rows another instance added since this one last looked (a shared PostgreSQL store)."""
        newest = self._newest.get(model_id, 0)
        query = select(EmbeddingRow.__table__).where(EmbeddingRow.model_id == model_id, EmbeddingRow.track_id > newest)
        with self.engine.connect() as connection:
            rows = [dict(row._mapping) for row in connection.execute(query)]
            if rows:
                with self._lock:
                    index = self._indexes.get(model_id)
                    known = set() if index is None else set(index.ids[index.ids > newest].tolist())
                    fresh = [r for r in rows if r["track_id"] not in known]
                    if fresh:
                        self._ingest(connection, model_id, fresh)
