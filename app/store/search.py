"""The search over stored tracks: which tracks match, and in which order.

Ranking: the joint probability of what was asked, taking the model's attributes as independent given the track,

    score = prod(p_a for a in required) * prod(1 - p_c for c in excluded)

then the most recent (``last_seen``) first, then the highest id. A required attribute must be decided positive
(``p > threshold``; with ``min_probability``, ``p >= min_probability``), an excluded one negative (``p <= threshold``;
with ``min_probability``, ``p < min_probability``). Without attributes every track scores 1: the most recent first.

The model, camera and time filters are a range on the index ``tracks (model_id, camera, last_seen)`` (or
``(model_id, last_seen)`` without a camera), so SQLite and PostgreSQL both walk only the window's tracks; each
asked attribute is then read from the row's probabilities (``json_extract`` in SQLite, ``->>`` on JSONB in
PostgreSQL), with no join. Pages continue with an opaque cursor holding the
last result's (score, last_seen, id): keyset pagination, so that a page costs the same however deep it is and new
tracks do not shift it.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, literal, select, tuple_
from sqlalchemy.types import Double

from ..errors import ErrorCode, ServiceError
from .records import ModelSpec, naive_utc
from .tables import TrackRow

MAX_LIMIT = 200
MAX_ID = 2**63 - 1  # ids are 64-bit integers in both databases


@dataclass(frozen=True)
class Search:
    required: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    camera: str | None = None
    since: datetime | None = None  # aware; tracks last seen at or after it
    until: datetime | None = None  # aware; tracks first seen at or before it
    min_probability: float | None = None  # None: each attribute's own threshold
    limit: int = 50
    cursor: str | None = None
    model: str | None = None  # "name:version" of a stored model; None: the served model

    def fingerprint(self) -> str:
        """What a cursor belongs to: the query without its limit and cursor."""
        asked = [self.required, self.excluded, self.camera, str(self.since), str(self.until), self.min_probability]
        return hashlib.sha256(json.dumps([*asked, self.model], default=str).encode()).hexdigest()[:16]


def unknown_attribute(name: str, names: list[str]) -> ServiceError:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else f"; known: {', '.join(names)}"
    return ServiceError(ErrorCode.UNKNOWN_ATTRIBUTE, f"unknown attribute {name!r}{hint}")


def columns(model: ModelSpec, asked: tuple[str, ...]) -> list[int]:
    names = model.names
    for name in asked:
        if name not in names:
            raise unknown_attribute(name, names)
    return [names.index(name) for name in asked]


@dataclass(frozen=True)
class Asked:
    column: int  # the attribute's index in its model
    wanted: bool  # required (scores p) or excluded (scores 1 - p)
    cut: float  # the attribute's threshold, or min_probability


def asked(search: Search, model: ModelSpec) -> list[Asked]:
    if overlap := set(search.required) & set(search.excluded):
        raise ServiceError(ErrorCode.BAD_SEARCH, f"both required and excluded: {', '.join(sorted(overlap))}")
    named = [(c, True) for c in columns(model, search.required)] + [(c, False) for c in columns(model, search.excluded)]
    cut = search.min_probability
    return [Asked(c, wanted, model.attributes[c].threshold if cut is None else cut) for c, wanted in named]


def statement(
    search: Search, model_id: int, model: ModelSpec, longest_track_s: float, among: list[int] | None = None
) -> Select:
    """The page's tracks with their scores, best first; without their boxes (a result list does not show them).
    ``among``: only these tracks, known to be of the model, camera and window."""
    attributes = asked(search, model)
    tracks = TrackRow.__table__
    score: ColumnElement = literal(1.0, Double)
    query = select(*(column for column in tracks.c if column.name != "boxes"))
    for each in attributes:
        p = tracks.c.probabilities[each.column].as_float()
        if search.min_probability is None:  # the model's decision: positive iff p > threshold
            query = query.where(p > each.cut if each.wanted else p <= each.cut)
        else:
            query = query.where(p >= each.cut if each.wanted else p < each.cut)
        score = score * (p if each.wanted else 1.0 - p)
    score = score.label("score")
    query = query.add_columns(score)
    if among is not None:
        # Candidates the columns chose within the model, camera and window (exactly: those columns are not
        # rounded): by primary key, so that no planner prefers walking the model's index over them.
        query = query.where(tracks.c.id.in_(among))
    else:
        query = query.where(tracks.c.model_id == model_id)
    if search.camera is not None and among is None:
        query = query.where(tracks.c.camera == search.camera)
    if search.since is not None and among is None:
        query = query.where(tracks.c.last_seen >= naive_utc(search.since))
    if search.until is not None and among is None:
        until = naive_utc(search.until)
        # The second bound is implied by the first (no track lasts longer than the longest stored); it makes the
        # index range on last_seen two-sided.
        query = query.where(tracks.c.first_seen <= until)
        query = query.where(tracks.c.last_seen <= _later(until, longest_track_s))
    # Without attributes every score is 1: ordered by time alone, the index on last_seen gives the order (no sort).
    keys: list[ColumnElement[Any]] = (
        [score, tracks.c.last_seen, tracks.c.id] if attributes else [tracks.c.last_seen, tracks.c.id]
    )
    if search.cursor is not None:
        after_score, after_seen, after_id = decode_cursor(search.cursor, search.fingerprint())
        after: list[Any] = [after_score, after_seen, after_id] if attributes else [after_seen, after_id]
        query = query.where(tuple_(*keys) < tuple_(*after))
    return query.order_by(*(key.desc() for key in keys)).limit(search.limit)


def _later(moment: datetime, seconds: float) -> datetime:
    try:
        return moment + timedelta(seconds=seconds)
    except OverflowError:  # until=9999-12-31T23:59:59Z
        return datetime.max


def encode_cursor(score: float, last_seen: datetime, track: int, fingerprint: str) -> str:
    data = json.dumps([score.hex(), last_seen.isoformat(), track, fingerprint]).encode()
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def decode_cursor(cursor: str, fingerprint: str) -> tuple[float, datetime, int]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        score, seen, track, belongs = float.fromhex(raw[0]), datetime.fromisoformat(raw[1]), int(raw[2]), raw[3]
        if not (0.0 <= score <= 1.0 and 1 <= track <= MAX_ID):  # what a database would refuse or overflow on
            raise ValueError("out of range")
    except (ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
        raise ServiceError(ErrorCode.BAD_SEARCH, f"cursor: not one this service handed out ({exc})") from None
    if belongs != fingerprint:
        raise ServiceError(ErrorCode.BAD_SEARCH, "cursor: it belongs to another query; send the same filters")
    return score, seen, track
