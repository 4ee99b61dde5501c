"""The track store: tracks in, searched, read and erased; thumbnails beside it as files.

Every method blocks (database and file work): async callers run them on the store's own bounded pool
(:meth:`TrackStore.run`), so that a burst of searches cannot take the threads uploads and previews need.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from ..errors import ErrorCode, ServiceError
from .columns import Columns
from .database import migrate, open_engine, store_url
from .limits import SearchLimit
from .records import AttributeSpec, ModelSpec, NewTrack, StoredAttribute, StoredTrack, aware_utc, naive_utc
from .search import Asked, Search, asked, decode_cursor, encode_cursor, statement
from .tables import ModelRow, TrackRow
from .thumbnails import ThumbnailFiles

T = TypeVar("T")
AddedListener = Callable[[Connection, list[int], list[NewTrack]], None]
ErasingListener = Callable[[Connection, list[int]], None]
ERASE_CHUNK = 5000  # tracks deleted per transaction: short transactions while searches go on
# A picture no row names is swept once this old: far longer than any transaction that writes its row.
SWEEP_GRACE_S = 3600.0
SLACK = 16  # candidates beyond the page, for those the exact filters may drop
WIDENINGS = 3  # rounds of ever more candidates (x8) before the plain statement
MAX_CANDIDATES = 20_000  # ids sent to the database at most (many equal scores): beyond, the plain statement


@dataclass(frozen=True)
class Page:
    model: ModelSpec  # the model whose tracks were ranked
    tracks: list[tuple[StoredTrack, float]]  # with their scores, best first
    cursor: str | None  # for the next page; None when this one is the last


@dataclass(frozen=True)
class StoredModel:
    spec: ModelSpec
    tracks: int


class TrackStore:
    def __init__(
        self, engine: Engine, thumbnails: ThumbnailFiles, keep_thumbnails: bool = True, workers: int = 4
    ) -> None:
        self.engine = engine
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="store")
        self.thumbnails = thumbnails
        self.keep_thumbnails = keep_thumbnails
        self._model_ids: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()
        # Others' side data (alerts, embeddings...) kept in step: called inside the tracks' own transactions.
        self._on_added: list[AddedListener] = []
        self._on_erasing: list[ErasingListener] = []
        self.columns = Columns(engine)
        self._stop = threading.Event()
        threading.Thread(target=self.columns.build, args=(self._stop,), name="store-columns", daemon=True).start()

    @classmethod
    def open(
        cls, database_url: str | None, data_dir: Path, keep_thumbnails: bool = True, workers: int = 4
    ) -> TrackStore:
        """Connects and migrates the database to the latest revision."""
        engine = open_engine(store_url(database_url, data_dir), pool_size=workers)
        migrate(engine)
        return cls(engine, ThumbnailFiles(data_dir / "thumbnails"), keep_thumbnails, workers)

    @classmethod
    def from_settings(cls, settings) -> TrackStore:
        return cls.open(settings.database_url, settings.data_dir, settings.store_thumbnails, settings.store_workers)

    def listen(self, added: AddedListener | None = None, erasing: ErasingListener | None = None) -> None:
        """Keeps side data in step with the tracks: ``added(connection, ids, tracks)`` runs in the transaction that
        stores the tracks (after their rows, before the commit), ``erasing(connection, ids)`` in the one that erases
        them (before their rows go, so that tables referencing them can go first); what they raise undoes it."""
        if added is not None:
            self._on_added.append(added)
        if erasing is not None:
            self._on_erasing.append(erasing)

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` on the store's pool."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(work, *args))

    def close(self) -> None:
        self._stop.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.engine.dispose()

    # Writing

    def add(self, model: ModelSpec, tracks: list[NewTrack]) -> list[int]:
        """Stores the tracks (one transaction), returns their ids in order."""
        if not tracks:
            return []
        checked = list(_probabilities(model, tracks))  # before any thumbnail file is written
        model_id = self.model_id(model)
        thumbnails: list[str | None] = []
        try:
            for track in tracks:
                thumbnails.append(self._save_thumbnail(track))
            return self._insert(model, model_id, tracks, thumbnails, checked)
        except BaseException:  # a full disk, the database away: no picture stays without its row
            self.thumbnails.delete(thumbnails)
            raise

    def _insert(
        self,
        model: ModelSpec,
        model_id: int,
        tracks: list[NewTrack],
        thumbnails: list[str | None],
        checked: list[list[float]],
    ) -> list[int]:
        rows = track_rows(model, model_id, tracks, thumbnails, checked, datetime.now(UTC).replace(tzinfo=None))
        longest = max((t.last_seen - t.first_seen).total_seconds() for t in tracks)
        with self.engine.begin() as connection:
            inserted = connection.execute(insert(TrackRow).returning(TrackRow.id, sort_by_parameter_order=True), rows)
            ids = [row.id for row in inserted]
            for added in self._on_added:
                added(connection, ids, tracks)
            connection.execute(
                update(ModelRow)
                .where(ModelRow.id == model_id, ModelRow.longest_track_s < longest)
                .values(longest_track_s=longest)
            )
        return ids

    def _save_thumbnail(self, track: NewTrack) -> str | None:
        if not self.keep_thumbnails or track.thumbnail is None:
            return None
        return self.thumbnails.save(track.thumbnail)

    def model_id(self, model: ModelSpec) -> int:
        """The store's id of ``model``, registered at its first use."""
        identity = (model.name, model.version, model.schema_name)
        with self._lock:
            if identity in self._model_ids:
                return self._model_ids[identity]
        found = self._find_model(*identity)
        if found is None:
            attributes = [vars(a) for a in model.attributes]
            values = dict(zip(("name", "version", "schema_name"), identity, strict=True))
            try:
                with self.engine.begin() as connection:
                    connection.execute(insert(ModelRow).values(**values, attributes=attributes, longest_track_s=0.0))
            except IntegrityError:  # another instance registered it first (unique index): use theirs
                pass
            found = self._find_model(*identity)
            assert found is not None
        with self._lock:
            self._model_ids[identity] = found[0]
        return found[0]

    def _find_model(self, name: str, version: str, schema_name: str) -> tuple[int, ModelSpec, float] | None:
        query = select(ModelRow).where(
            ModelRow.name == name, ModelRow.version == version, ModelRow.schema_name == schema_name
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else (row.id, _spec(row), row.longest_track_s)

    # Reading

    def search(self, search: Search, served: ModelSpec, limit: SearchLimit | None = None) -> Page:
        """One page; within ``limit`` (its time, its client) when given."""
        model_id, model, longest = self._searched_model(search.model, served)
        query = statement(search, model_id, model, longest)
        attributes = asked(search, model)
        with self.engine.connect() as connection, limit.bounding(connection) if limit else nullcontext():
            ranked = (
                self._from_columns(search, (model_id, model, longest), attributes, connection) if attributes else None
            )
            # Nothing asked (the index on last_seen gives the order), or the columns not ready: the statement alone.
            rows = ranked if ranked is not None else list(connection.execute(query))
        found = [_stored(row, model) for row in rows]
        cursor = None
        if len(rows) == search.limit:
            last = rows[-1]
            cursor = encode_cursor(last.score, last.last_seen, last.id, search.fingerprint())
        return Page(model, [(track, row.score) for track, row in zip(found, rows, strict=True)], cursor)

    def scores(
        self, search: Search, served: ModelSpec, limit: SearchLimit | None = None
    ) -> tuple[int, ModelSpec, dict[int, float]]:
        """Every track of the search's model, camera and window that passes its attribute filters, with its
        attribute score (no order, no page; ``search.cursor`` is not read): what a ranking that also weighs
        something else (free text) fuses with. The store's model id (-1: none stored yet) and the model too."""
        model_id, model, longest = self._searched_model(search.model, served)
        # The search's own statement, without its order, page and cursor.
        every = statement(replace(search, cursor=None), model_id, model, longest).order_by(None).limit(None).subquery()
        with self.engine.connect() as connection, limit.bounding(connection) if limit else nullcontext():
            rows = connection.execute(select(every.c.id, every.c.score)).all()
        return model_id, model, {row.id: row.score for row in rows}

    def _from_columns(
        self, search: Search, searched: tuple[int, ModelSpec, float], attributes: list[Asked], connection: Connection
    ) -> list[Row] | None:
        """The page, ranked exactly by the database among the candidates the columns choose; None when the
        columns cannot prove a page right (not built yet, or too many equal scores)."""
        if not self.columns.ready:
            return None
        model_id, model, longest = searched
        self.columns.catch_up(connection)
        after = None if search.cursor is None else decode_cursor(search.cursor, search.fingerprint())
        since, until = (None if t is None else naive_utc(t) for t in (search.since, search.until))
        wanted = search.limit + SLACK
        for _ in range(WIDENINGS):
            plan = self.columns.plan(model_id, attributes, search.camera, since, until, after, wanted)
            if len(plan.ids) > MAX_CANDIDATES:
                return None
            rows = list(connection.execute(statement(search, model_id, model, longest, among=plan.ids)))
            if plan.proves([row.score for row in rows], search.limit):
                return rows
            # Candidates that failed the exact filters, or that another instance erased: forget the latter.
            present = connection.execute(select(TrackRow.id).where(TrackRow.id.in_(plan.ids))).scalars()
            self.columns.forget(sorted(set(plan.ids) - set(present)))
            wanted *= 8
        return None

    def _searched_model(self, key: str | None, served: ModelSpec) -> tuple[int, ModelSpec, float]:
        if key is None or key == served.key:
            found = self._find_model(served.name, served.version, served.schema_name)
            # Nothing stored for the served model yet: an empty answer, not an error.
            return found if found is not None else (-1, served, 0.0)
        name, _, version = key.rpartition(":")
        with self.engine.connect() as connection:
            row = connection.execute(select(ModelRow).where(ModelRow.name == name, ModelRow.version == version)).first()
        if row is None:
            known = ", ".join(m.spec.key for m in self.models()) or "none"
            raise ServiceError(ErrorCode.BAD_SEARCH, f"model {key!r}: no tracks of it are stored (stored: {known})")
        return row.id, _spec(row), row.longest_track_s

    def model(self, model_id: int) -> ModelSpec:
        """The model the store knows as ``model_id``."""
        with self.engine.connect() as connection:
            return _spec(connection.execute(select(ModelRow).where(ModelRow.id == model_id)).one())

    def get(self, track: int) -> StoredTrack | None:
        with self.engine.connect() as connection:
            rows = connection.execute(select(TrackRow.__table__).where(TrackRow.id == track)).all()
            if not rows:
                return None
            model_row = connection.execute(select(ModelRow).where(ModelRow.id == rows[0].model_id)).one()
        return _stored(rows[0], _spec(model_row))

    def thumbnail(self, track: int) -> bytes | None:
        """The track's picture, or None (no such track, none kept, or erased since)."""
        with self.engine.connect() as connection:
            name = connection.execute(select(TrackRow.thumbnail).where(TrackRow.id == track)).scalar()
        return None if name is None else self.thumbnails.read(name)

    def models(self) -> list[StoredModel]:
        counts = select(TrackRow.model_id, func.count().label("n")).group_by(TrackRow.model_id).subquery()
        query = select(ModelRow, counts.c.n).join(counts, counts.c.model_id == ModelRow.id).order_by(ModelRow.id)
        with self.engine.connect() as connection:
            return [StoredModel(_spec(row), row.n) for row in connection.execute(query)]

    # Erasing

    def erase(self, camera: str | None = None, since: datetime | None = None, until: datetime | None = None) -> int:
        """Deletes the tracks seen within the bounds (of one camera, if given) with their thumbnails; returns how
        many. A track is within when it was seen at all between ``since`` and ``until``."""
        conditions = []
        if camera is not None:
            conditions.append(TrackRow.camera == camera)
        if since is not None:
            conditions.append(TrackRow.last_seen >= naive_utc(since))
        if until is not None:
            conditions.append(TrackRow.first_seen <= naive_utc(until))
        return self._erase_where(conditions)

    def purge(self, retention_days: float, now: datetime | None = None) -> int:
        """Deletes the tracks last seen more than ``retention_days`` ago (0 keeps everything)."""
        if retention_days <= 0:
            return 0
        cutoff = naive_utc(now or datetime.now(UTC)) - timedelta(days=retention_days)
        return self._erase_where([TrackRow.last_seen < cutoff])

    def sweep_thumbnails(self, grace_s: float = SWEEP_GRACE_S) -> int:
        """Removes the pictures that no row names, older than ``grace_s`` (left by a crash between writing files
        and committing rows, or between deleting rows and unlinking files); returns how many."""

        def named(names: list[str]) -> set[str]:
            query = select(TrackRow.thumbnail).where(TrackRow.thumbnail.in_(names))
            with self.engine.connect() as connection:
                return {name for name in connection.execute(query).scalars() if name is not None}

        return self.thumbnails.sweep(named, grace_s)

    def _erase_where(self, conditions: list) -> int:
        erased = 0
        for chunk in self._chunks(conditions):
            ids = [track for track, _ in chunk]
            with self.engine.begin() as connection:
                for erasing in self._on_erasing:
                    erasing(connection, ids)
                connection.execute(delete(TrackRow).where(TrackRow.id.in_(ids)))
            self.columns.forget(ids)
            self.thumbnails.delete(name for _, name in chunk)
            erased += len(chunk)
        return erased

    def _chunks(self, conditions: list) -> Iterator[list[tuple[int, str | None]]]:
        query = select(TrackRow.id, TrackRow.thumbnail).where(*conditions).order_by(TrackRow.id).limit(ERASE_CHUNK)
        while True:
            with self.engine.connect() as connection:
                chunk = [(row.id, row.thumbnail) for row in connection.execute(query)]
            if not chunk:
                return
            yield chunk


def track_rows(
    model: ModelSpec,
    model_id: int,
    tracks: list[NewTrack],
    thumbnails: list[str | None],
    probabilities: list[list[float]],
    stored_at: datetime,
) -> list[dict[str, Any]]:
    """The ``tracks`` rows of ``tracks`` (naive UTC times), as :meth:`TrackStore.add` writes them."""
    return [
        {
            "model_id": model_id,
            "camera": track.camera,
            "source": track.source,
            "track_id": track.track_id,
            "first_seen": naive_utc(track.first_seen),
            "last_seen": naive_utc(track.last_seen),
            "boxes": track.boxes,
            "windows": track.windows,
            "probabilities": each,
            "positives": [p > a.threshold for p, a in zip(each, model.attributes, strict=True)],
            "thumbnail": thumbnail,
            "stored_at": stored_at,
        }
        for track, thumbnail, each in zip(tracks, thumbnails, probabilities, strict=True)
    ]


def _probabilities(model: ModelSpec, tracks: list[NewTrack]) -> Iterator[list[float]]:
    for track in tracks:
        if len(track.probabilities) != len(model.attributes):
            raise ValueError(f"{len(track.probabilities)} probabilities for {len(model.attributes)} attributes")
        yield [float(p) for p in track.probabilities]


def _spec(row) -> ModelSpec:
    attributes = tuple(AttributeSpec(**a) for a in row.attributes)
    return ModelSpec(row.name, row.version, row.schema_name, attributes)


def _stored(row: Row, model: ModelSpec) -> StoredTrack:
    return StoredTrack(
        id=row.id,
        model=model,
        camera=row.camera,
        source=row.source,
        track_id=row.track_id,
        first_seen=aware_utc(row.first_seen),
        last_seen=aware_utc(row.last_seen),
        boxes=getattr(row, "boxes", None),  # not read by a search
        windows=row.windows,
        attributes=[
            StoredAttribute(spec.name, spec.group, p, spec.threshold, positive)
            for spec, p, positive in zip(model.attributes, row.probabilities, row.positives, strict=True)
        ],
        has_thumbnail=row.thumbnail is not None,
    )
