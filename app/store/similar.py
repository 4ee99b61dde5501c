"""Tracks that look like a stored track: its appearance embedding against those of the same model's tracks, within
a camera and a time window, a page at a time (keyset cursor on (score, id))."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from ..errors import ErrorCode, ServiceError
from .embeddings import TrackEmbeddings, decode_cursor, encode_cursor
from .records import ModelSpec, StoredTrack, naive_utc
from .store import TrackStore
from .vectors import Filters


@dataclass(frozen=True)
class SimilarPage:
    model: ModelSpec  # the model that embedded the track searched from
    tracks: list[tuple[StoredTrack, float]]  # with their cosine similarity, best first
    cursor: str | None


def similar_tracks(
    store: TrackStore,
    embeddings: TrackEmbeddings,
    track: int,
    *,
    camera: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> SimilarPage:
    """Blocks (database): call it on a thread."""
    origin = store.get(track)
    if origin is None:
        raise ServiceError(ErrorCode.NOT_FOUND, f"no stored track {track}")
    embedded = embeddings.of_track(track)
    if embedded is None:
        raise ServiceError(
            ErrorCode.NO_EMBEDDING, f"stored track {track} has no appearance embedding (its runner gave none)"
        )
    model_id, vector = embedded
    fingerprint = hashlib.sha256(json.dumps([track, camera, str(since), str(until)]).encode()).hexdigest()[:16]
    filters = Filters(
        camera=camera,
        since=None if since is None else naive_utc(since),
        until=None if until is None else naive_utc(until),
        exclude=track,
        after=None if cursor is None else decode_cursor(cursor, fingerprint),
    )
    hits = embeddings.nearest(model_id, vector, limit, filters)
    found = [(store.get(hit), score) for hit, score in hits]
    page = [(stored, score) for stored, score in found if stored is not None]  # erased by another instance meanwhile
    more = encode_cursor(hits[-1][1], hits[-1][0], fingerprint) if len(hits) == limit else None
    return SimilarPage(origin.model, page, more)
