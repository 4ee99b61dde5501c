"""Tracks that look like a stored track: its appearance embedding against those of the same model's tracks, within
a camera and a time window, a page at a time (keyset cursor on (score, id))."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

import numpy as np

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
    """The tracks most like stored track ``track`` (left out). Blocks (database): call it on a thread."""
    origin = store.get(track)
    if origin is None:
        raise ServiceError(ErrorCode.NOT_FOUND, f"no stored track {track}")
    embedded = embeddings.of_track(track)
    if embedded is None:
        raise ServiceError(
            ErrorCode.NO_EMBEDDING,
            f"stored track {track} has no appearance embedding (its runner gave none), or one of an older version of "
            "the network's embedding (`vtfpar reembed` recomputes it)",
        )
    model_id, vector = embedded
    window = Window(camera, since, until, limit, cursor)
    # The embedding's model: the track's own, or the one `vtfpar reembed` embedded it with.
    return _page(store, embeddings, store.model(model_id), model_id, vector, window, exclude=track)


def similar_to(
    store: TrackStore, embeddings: TrackEmbeddings, model: ModelSpec, vector: np.ndarray, window: Window
) -> SimilarPage:
    """The stored tracks of ``model`` most like ``vector`` (an uploaded clip's embedding). Blocks: on a thread."""
    model_id = embeddings.model_id(model)
    if model_id is None:
        return SimilarPage(model, [], None)
    page = _page(store, embeddings, model, model_id, vector, window, exclude=None)
    return SimilarPage(model, page.tracks, None)  # one page: an upload is not kept to continue from


@dataclass(frozen=True)
class Window:
    """Which tracks a similar search may answer, and which page of them."""

    camera: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    cursor: str | None = None


def _page(
    store: TrackStore,
    embeddings: TrackEmbeddings,
    model: ModelSpec,
    model_id: int,
    vector: np.ndarray,
    window: Window,
    exclude: int | None,
) -> SimilarPage:
    asked = [exclude, window.camera, str(window.since), str(window.until)]
    fingerprint = hashlib.sha256(json.dumps(asked).encode()).hexdigest()[:16]
    filters = Filters(
        camera=window.camera,
        since=None if window.since is None else naive_utc(window.since),
        until=None if window.until is None else naive_utc(window.until),
        exclude=exclude,
        after=None if window.cursor is None else decode_cursor(window.cursor, fingerprint),
    )
    hits = embeddings.nearest(model_id, vector, window.limit, filters)
    found = [(store.get(hit), score) for hit, score in hits]
    page = [(stored, score) for stored, score in found if stored is not None]  # erased by another instance meanwhile
    more = encode_cursor(hits[-1][1], hits[-1][0], fingerprint) if len(hits) == window.limit else None
    return SimilarPage(model, page, more)
