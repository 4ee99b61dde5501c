"""Stored tracks: search (``GET /tracks``), one track, its thumbnail, the models stored, erasure; and the
``store=true`` parameters of /predict/tracks and /predict/scene. Every route here needs the API token when one is
set. The store blocks (database, files): its calls run on threads."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as FastAPIPath
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from ..errors import ErrorCode, ServiceError
from ..store import MAX_LIMIT, ModelSpec, Search, StoredTrack, TrackStore
from ..store.recording import upload_tracks
from ..store.sentence import read_sentence
from .auth import require_token
from .openapi import error_responses

router = APIRouter(tags=["stored tracks"])
Protected = [Depends(require_token)]


def get_store(request: Request) -> TrackStore:
    store = getattr(request.app.state, "track_store", None)
    if store is None:
        raise ServiceError(ErrorCode.NOT_READY, "the track store is starting")
    return store


def served_model(request: Request) -> ModelSpec:
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise ServiceError(ErrorCode.NOT_READY, "the service is starting")
    return ModelSpec.of(service.backend.description)


StoreDep = Annotated[TrackStore, Depends(get_store)]
TrackId = Annotated[int, FastAPIPath(ge=1, le=2**63 - 1, description="The stored track's id.")]
ServedDep = Annotated[ModelSpec, Depends(served_model)]


def parse_time(name: str, value: str | None) -> datetime | None:
    """An ISO 8601 time; one without a zone is UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ServiceError(ErrorCode.BAD_TIME, f"{name}: {value!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _names(value: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n.strip() for n in (value or "").split(",") if n.strip()))


_TIME: dict[str, Any] = {"json_schema_extra": {"format": "date-time"}}
Camera = Annotated[str | None, Query(min_length=1, max_length=256, description="One camera (a stream's name).")]
Since = Annotated[
    str | None, Query(description="Tracks last seen at or after this ISO 8601 time (UTC if no zone).", **_TIME)
]
Until = Annotated[
    str | None, Query(description="Tracks first seen at or before this ISO 8601 time (UTC if no zone).", **_TIME)
]


def _bounds(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    start, end = parse_time("since", since), parse_time("until", until)
    if start is not None and end is not None and start > end:
        raise ServiceError(ErrorCode.BAD_TIME, f"since ({since}) is after until ({until})")
    return start, end


# Response bodies


class ModelIdentity(BaseModel):
    name: str
    version: str
    schema_name: str = Field(alias="schema")
    key: str = Field(description="How GET /tracks?model= names it: name:version.")

    model_config = {"populate_by_name": True}


class StoredAttributeBody(BaseModel):
    name: str
    group: str
    probability: float = Field(description="Fused over the track's windows.")
    threshold: float
    positive: bool


class TrackBody(BaseModel):
    id: int
    camera: str
    source: str = Field(description="upload or stream.")
    track_id: int = Field(description="The tracker's (or the client's) id within its recording.")
    first_seen: datetime
    last_seen: datetime
    windows: int = Field(description="Clips the model saw, fused into the probabilities.")
    boxes: list[list[float]] = Field(description="[seconds after first_seen, x0, y0, x1, y1] per box.")
    model: ModelIdentity
    attributes: list[StoredAttributeBody] = Field(description="Every attribute, in the schema's order.")
    thumbnail: str | None = Field(description="URL of the best crop's JPEG; null when none was kept.")


class ScoredTrack(TrackBody):
    score: float = Field(description="prod(p, required) * prod(1 - p, excluded); 1 when nothing was asked.")


class Interpretation(BaseModel):
    required: list[str]
    excluded: list[str]
    unused: list[str] = Field(description="Words of q that were not understood (common filler words aside).")


class SearchResponse(BaseModel):
    model: ModelIdentity = Field(description="The model whose tracks were ranked.")
    interpretation: Interpretation | None = Field(description="How q was read; null without q.")
    required: list[str]
    excluded: list[str]
    tracks: list[ScoredTrack] = Field(description="Best first: by score, then most recent.")
    next_cursor: str | None = Field(description="Pass as cursor= (same filters) for the next page; null at the end.")


class StoredModelBody(BaseModel):
    model: ModelIdentity
    tracks: int
    served: bool


class Erased(BaseModel):
    deleted: int


def _identity(model: ModelSpec) -> ModelIdentity:
    return ModelIdentity(name=model.name, version=model.version, schema_name=model.schema_name, key=model.key)


def _body(request: Request, track: StoredTrack) -> dict[str, Any]:
    thumbnail = str(request.url_for("track_thumbnail", track=track.id)) if track.has_thumbnail else None
    return {
        "id": track.id,
        "camera": track.camera,
        "source": track.source,
        "track_id": track.track_id,
        "first_seen": track.first_seen,
        "last_seen": track.last_seen,
        "windows": track.windows,
        "boxes": track.boxes,
        "model": _identity(track.model),
        "attributes": [StoredAttributeBody(**vars(a)) for a in track.attributes],
        "thumbnail": thumbnail,
    }


# Routes


@router.get(
    "/tracks",
    response_model=SearchResponse,
    summary="Search the stored tracks by attributes, camera and time",
    dependencies=Protected,
    responses=error_responses(400, 401, 422, 503),
)
async def search_tracks(
    request: Request,
    store: StoreDep,
    served: ServedDep,
    camera: Camera = None,
    since: Since = None,
    until: Until = None,
    attributes: Annotated[str | None, Query(description="Required attributes, comma-separated.")] = None,
    exclude: Annotated[str | None, Query(description="Excluded attributes, comma-separated.")] = None,
    q: Annotated[
        str | None,
        Query(max_length=500, description='A sentence, e.g. "a woman with long hair in a black top and no hat".'),
    ] = None,
    min_probability: Annotated[
        float | None,
        Query(ge=0, le=1, description="Required: p >= this; excluded: p < this (default: each one's threshold)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=400, description="next_cursor of the previous page.")] = None,
    model: Annotated[
        str | None,
        Query(max_length=200, description="Search another stored model's tracks (name:version, see /tracks/models)."),
    ] = None,
) -> SearchResponse:
    """Tracks of the served model (or of `model`) ranked by the joint probability of the attributes asked:
    score = product of p over the required attributes times product of (1 - p) over the excluded ones, then the
    most recent first."""
    start, end = _bounds(since, until)
    required, excluded = list(_names(attributes)), list(_names(exclude))
    interpretation = None
    if q is not None:
        stored = (await asyncio.to_thread(store.models)) if model is not None else []
        reading_model = next((m.spec for m in stored if m.spec.key == model), served)
        reading = read_sentence(q, reading_model)
        interpretation = Interpretation(
            required=list(reading.required), excluded=list(reading.excluded), unused=list(reading.unused)
        )
        required += [name for name in reading.required if name not in required]
        excluded += [name for name in reading.excluded if name not in excluded]
    search = Search(
        required=tuple(required),
        excluded=tuple(excluded),
        camera=camera,
        since=start,
        until=end,
        min_probability=min_probability,
        limit=limit,
        cursor=cursor,
        model=model,
    )
    page = await asyncio.to_thread(store.search, search, served)
    return SearchResponse(
        model=_identity(page.model),
        interpretation=interpretation,
        required=required,
        excluded=excluded,
        tracks=[ScoredTrack(**_body(request, track), score=score) for track, score in page.tracks],
        next_cursor=page.cursor,
    )


@router.get(
    "/tracks/models",
    response_model=list[StoredModelBody],
    summary="The models whose tracks are stored",
    dependencies=Protected,
    responses=error_responses(401, 503),
)
async def stored_models(store: StoreDep, served: ServedDep) -> list[StoredModelBody]:
    found = await asyncio.to_thread(store.models)
    return [StoredModelBody(model=_identity(m.spec), tracks=m.tracks, served=m.spec == served) for m in found]


@router.get(
    "/tracks/{track}",
    response_model=TrackBody,
    summary="One stored track",
    dependencies=Protected,
    responses=error_responses(400, 401, 404, 503),
)
async def get_track(request: Request, store: StoreDep, track: TrackId) -> TrackBody:
    found = await asyncio.to_thread(store.get, track)
    if found is None:
        raise ServiceError(ErrorCode.NOT_FOUND, f"no stored track {track}")
    return TrackBody(**_body(request, found))


@router.get(
    "/tracks/{track}/thumbnail.jpg",
    response_class=FileResponse,
    name="track_thumbnail",
    summary="The JPEG of a stored track's best crop",
    dependencies=Protected,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "The thumbnail"},
        **error_responses(400, 401, 404, 503),
    },
)
async def track_thumbnail(store: StoreDep, track: TrackId) -> FileResponse:
    path = await asyncio.to_thread(store.thumbnail, track)
    if path is None or not await asyncio.to_thread(path.is_file):
        raise ServiceError(ErrorCode.NOT_FOUND, f"stored track {track} has no thumbnail")
    return FileResponse(path, media_type="image/jpeg")


@router.delete(
    "/tracks",
    response_model=Erased,
    summary="Erase the stored tracks of a camera and/or a time window (with their thumbnails)",
    dependencies=Protected,
    responses=error_responses(400, 401, 422, 503),
)
async def erase_tracks(store: StoreDep, camera: Camera = None, since: Since = None, until: Until = None) -> Erased:
    """Deletes every track of `camera` (all cameras if not given) seen at any time between `since` and `until`.
    At least one of the three is needed."""
    if camera is None and since is None and until is None:
        raise ServiceError(ErrorCode.BAD_SEARCH, "erasure needs camera, since or until (or several): what to erase")
    start, end = _bounds(since, until)
    return Erased(deleted=await asyncio.to_thread(store.erase, camera, start, end))


# Storing the tracks of /predict/tracks and /predict/scene


@dataclass(frozen=True)
class Recording:
    """``store=true``: the request's tracks are stored, under ``camera``, from ``start``."""

    store: TrackStore
    camera: str
    start: datetime
    thumbnails: bool

    async def save(self, model: ModelSpec, prepared, results) -> list[int]:
        tracks = upload_tracks(prepared, results, self.camera, self.start)
        return await asyncio.to_thread(self.store.add, model, tracks)


def recording(
    request: Request,
    store: Annotated[bool, Query(description="Keep the tracks answered in the track store (GET /tracks).")] = False,
    camera: Annotated[
        str | None, Query(min_length=1, max_length=256, description="With store=true: the camera's name (needed).")
    ] = None,
    start: Annotated[
        str | None,
        Query(description="With store=true: ISO 8601 time of the video's first frame (default: now).", **_TIME),
    ] = None,
) -> Recording | None:
    moment = parse_time("start", start)
    if not store:
        return None
    if camera is None:
        raise ServiceError(ErrorCode.CAMERA_REQUIRED, "store=true needs camera=NAME")
    settings = request.app.state.settings
    return Recording(get_store(request), camera, moment or datetime.now(UTC), settings.store_thumbnails)


RecordingDep = Annotated[Recording | None, Depends(recording)]
