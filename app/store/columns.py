"""The search's columnar side index: each stored track's model, camera, times and probabilities as numpy columns,
so that a search scores a whole month in milliseconds instead of parsing every row of its window.

Why a side index (docs/search.md has the measurements): a search with attributes must score every track of its
window; a row store reads whole rows and parses their probabilities per row (seconds at 1 M), while one float32
column per attribute is 4 MB at 1 M tracks, scanned in about a millisecond. The database stays the truth:

- The columns hold probabilities rounded to float32 (within ``EPS`` of the stored doubles), so they only choose
  *candidates*: every track that could be on the page, with a margin that covers the rounding. The database then
  ranks the candidates exactly (the same statement as without the index, restricted to their ids), and the page is
  kept only when it provably is the page the whole table would give (:meth:`Plan.proves`); otherwise the search
  widens, and in the end falls back to the plain statement.
- Kept in step from the database alone, so that several instances sharing one PostgreSQL see each other's writes:
  each search first reads the rows above the highest id seen. Ids a concurrent transaction took but had not
  committed yet (PostgreSQL hands out ids before commit) are re-read for ``GAP_WAIT_S``. Erasures by this instance
  are applied at once; those of another instance are found when an erased track comes up as a candidate and the
  database no longer has it.
- Built at start on a thread of its own; until it is ready, searches run the plain statement.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import Connection, Engine, Text, cast, func, select

from .search import Asked
from .tables import TrackRow

log = logging.getLogger(__name__)

EPS = 2.0**-24  # the most a probability in [0, 1] moves when rounded to float32
CHUNK = 50_000  # rows read per query while catching up
RECENT_IDS = 10_000  # ids below the highest seen that may still belong to an uncommitted transaction
GAP_WAIT_S = 60.0  # how long such an id is re-read before it is taken as rolled back
EPOCH = datetime(1970, 1, 1)


def microseconds(moment: datetime) -> int:
    """A naive UTC time as integer microseconds: exact, unlike float seconds."""
    return (moment - EPOCH) // _MICROSECOND


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1) - EPOCH


@dataclass(frozen=True)
class Plan:
    """The candidates for one page: ids to rank exactly, and what proves the exact page right."""

    ids: list[int]
    complete: bool  # every track that passes the filters is a candidate: any exact page of them is right
    bound: float  # otherwise: the page is right when its lowest exact score is at least this

    def proves(self, scores: list[float], limit: int) -> bool:
        # Every track left out scores below ``bound`` exactly, so below every track of a full page reaching it.
        return self.complete or (len(scores) == limit and scores[-1] >= self.bound)


class Columns:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.ready = False
        self._lock = threading.Lock()
        self._size = 0
        self._ids = np.empty(0, np.int64)
        self._model = np.empty(0, np.int32)
        self._camera = np.empty(0, np.int32)
        self._first = np.empty(0, np.int64)
        self._last = np.empty(0, np.int64)
        self._alive = np.empty(0, bool)
        self._p = np.empty((0, 0), np.float32)  # (attributes, capacity): each attribute's column contiguous
        self._cameras: dict[str, int] = {}
        self._high_water = 0
        self._gaps: dict[int, float] = {}  # id -> when first missed

    # Keeping in step

    def build(self, stop: threading.Event) -> None:
        """Reads every stored track (at start, on its own thread); then searches use the columns."""
        started = time.perf_counter()
        while not stop.is_set():
            with self._lock, self.engine.connect() as connection:
                if self._read_above(connection) < CHUNK:
                    break
        with self._lock:
            # The most recent ids missing may belong to transactions still open: read them again for a while.
            recent = np.arange(max(1, self._high_water - RECENT_IDS), self._high_water + 1)
            self._note_gaps(recent[~np.isin(recent, self._ids[: self._size])].tolist())
            self.ready = not stop.is_set()
        log.info("search columns: %d tracks in %.1f s", self._size, time.perf_counter() - started)

    def catch_up(self, connection: Connection) -> None:
        """Reads what was stored since (on the search's connection: within its limit)."""
        with self._lock:
            while self._read_above(connection) == CHUNK:
                pass
            self._reread_gaps(connection)

    def forget(self, ids: list[int]) -> None:
        """Tracks erased (by this instance, or found gone)."""
        with self._lock:
            n = self._size
            self._alive[:n] &= ~np.isin(self._ids[:n], ids)
            if self.engine.dialect.name == "sqlite":
                # SQLite reuses the ids above the highest left: read them again when they come back.
                with self.engine.connect() as connection:
                    highest = connection.execute(select(func.max(TrackRow.id))).scalar() or 0
                if highest < self._high_water:
                    self._alive[:n] &= self._ids[:n] <= highest
                    self._high_water = highest

    def _read_above(self, connection: Connection) -> int:
        """Appends the next chunk of rows above the highest id seen; how many were read."""
        rows = self._read(connection, TrackRow.id > self._high_water, CHUNK)
        if not rows:
            return 0
        before, self._high_water = self._high_water, rows[-1].id
        if self.ready:  # ids skipped between two catch-ups: perhaps a transaction not committed yet
            seen = {row.id for row in rows}
            low = max(before, self._high_water - RECENT_IDS) + 1
            self._note_gaps([i for i in range(low, self._high_water + 1) if i not in seen])
        self._append(rows)
        return len(rows)

    def _note_gaps(self, ids: list[int]) -> None:
        now = time.monotonic()
        for missing in ids:
            self._gaps.setdefault(missing, now)

    def _reread_gaps(self, connection: Connection) -> None:
        now = time.monotonic()
        self._gaps = {gap: since for gap, since in self._gaps.items() if now - since < GAP_WAIT_S}
        if not self._gaps:
            return
        rows = self._read(connection, TrackRow.id.in_(list(self._gaps)), None)
        for row in rows:
            del self._gaps[row.id]
        self._append(rows)

    def _read(self, connection: Connection, condition, limit: int | None) -> list:
        tracks = TrackRow.__table__.c
        query = (
            select(tracks.id, tracks.model_id, tracks.camera, tracks.first_seen, tracks.last_seen)
            .add_columns(cast(tracks.probabilities, Text).label("probabilities"))
            .where(condition)
            .order_by(tracks.id)
            .limit(limit)
        )
        return list(connection.execute(query))

    def _append(self, rows: list) -> None:
        if not rows:
            return
        # One C parse of the JSON arrays' numbers instead of a json.loads per row.
        texts = [row.probabilities.strip()[1:-1] for row in rows]
        widths = [text.count(",") + 1 if text.strip() else 0 for text in texts]
        values = np.fromstring(",".join(t for t in texts if t.strip()), dtype=np.float64, sep=",")
        self._reserve(self._size + len(rows), max(widths))
        start, end = self._size, self._size + len(rows)
        self._ids[start:end] = [row.id for row in rows]
        self._model[start:end] = [row.model_id for row in rows]
        self._camera[start:end] = [self._cameras.setdefault(row.camera, len(self._cameras)) for row in rows]
        self._first[start:end] = [microseconds(row.first_seen) for row in rows]
        self._last[start:end] = [microseconds(row.last_seen) for row in rows]
        self._alive[start:end] = True
        self._p[:, start:end] = np.nan
        if len(set(widths)) == 1:  # one model: one reshape
            self._p[: widths[0], start:end] = values.reshape(len(rows), widths[0]).T
        else:
            offset = 0
            for row, width in enumerate(widths):
                self._p[:width, start + row] = values[offset : offset + width]
                offset += width
        self._size = end

    def _reserve(self, size: int, width: int) -> None:
        capacity = len(self._ids)
        if size <= capacity and width <= self._p.shape[0]:
            return
        capacity = max(size, capacity * 2, 1024)
        width = max(width, self._p.shape[0])
        for name in ("_ids", "_model", "_camera", "_first", "_last", "_alive"):
            old = getattr(self, name)
            grown = np.zeros(capacity, old.dtype)
            grown[: self._size] = old[: self._size]
            setattr(self, name, grown)
        grown_p = np.full((width, capacity), np.nan, np.float32)
        grown_p[: self._p.shape[0], : self._size] = self._p[:, : self._size]
        self._p = grown_p

    # Searching

    @staticmethod
    def _loose(p: np.ndarray, each: Asked) -> np.ndarray:
        """The attribute's filter widened by the rounding: keeps every track the exact filter may keep."""
        return p >= each.cut - EPS if each.wanted else p <= each.cut + EPS

    @staticmethod
    def _factor(p: np.ndarray, each: Asked) -> np.ndarray:
        p = p.astype(np.float64)
        return p if each.wanted else 1.0 - p

    def plan(
        self,
        model_id: int,
        asked: list[Asked],
        camera: str | None,
        since: datetime | None,
        until: datetime | None,
        after: tuple[float, datetime, int] | None,
        wanted: int,
    ) -> Plan:
        """The candidates for a page of ``wanted`` tracks: those whose float32 scores come within the rounding
        margin of the ``wanted``-th best float32 score (after the cursor ``after``, if any). ``asked``: at least one
        attribute (without any, the database's index gives the order)."""
        margin = (len(asked) + 1) * EPS  # a product of k factors in [0, 1], each within EPS
        with self._lock:
            n = self._size
            mask = self._alive[:n] & (self._model[:n] == model_id)
            if any(each.column >= self._p.shape[0] for each in asked):  # no track of this model is held yet
                return Plan([], True, 0.0)
            if camera is not None:
                if camera not in self._cameras:
                    return Plan([], True, 0.0)
                mask &= self._camera[:n] == self._cameras[camera]
            if since is not None:
                mask &= self._last[:n] >= microseconds(since)
            if until is not None:
                mask &= self._first[:n] <= microseconds(until)
            # The first attribute on its contiguous column, with the other filters: one pass over every track.
            first = self._p[asked[0].column, :n]
            mask &= self._loose(first, asked[0])
            rows = np.flatnonzero(mask)
            score = self._factor(first[rows], asked[0])
            for each in asked[1:]:
                p = self._p[each.column, rows]
                keep = self._loose(p, each)
                rows, score = rows[keep], score[keep] * self._factor(p[keep], each)
            if after is not None:  # the cursor, loosely: its exact comparison is the database's
                keep = score <= after[0] + margin
                rows, score = rows[keep], score[keep]
            ids = self._ids[rows]
        if len(rows) <= wanted:
            return Plan(ids.tolist(), True, 0.0)
        cut = np.partition(score, len(score) - wanted)[len(score) - wanted] - 2 * margin
        chosen = score >= cut
        return Plan(ids[chosen].tolist(), bool(chosen.all()), cut + margin)
