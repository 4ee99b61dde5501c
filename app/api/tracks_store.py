"""Stored tracks: search (``GET /tracks``), one track, its thumbnail, the models stored, erasure. Every route here
needs the API token when one is set. The store blocks (database, files): its calls run on threads."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as FastAPIPath
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ..errors import ErrorCode, ServiceError
from ..service import Service
from ..store import MAX_LIMIT, Search, SearchLimit
from ..store.sentence import Reading, read_sentence, with_reading
from ..store.text_search import FreeText, text_search
from .auth import require_token
from .deps import (
    TIME_FORMAT,
    ImageEmbeddingsDep,
    ServedDep,
    ServiceDep,
    SettingsDep,
    StoreDep,
    text_reader,
    time_bounds,
    unless_client_leaves,
)
from .openapi import error_responses
from .schemas import (
    Erased,
    Interpretation,
    ScoredTrack,
    SearchResponse,
    StoredModelBody,
    TrackBody,
    identity,
    track_fields,
)

router = APIRouter(tags=["stored tracks"])
Protected = [Depends(require_token)]
TrackId = Annotated[int, FastAPIPath(ge=1, le=2**63 - 1, description="The stored track's id.")]


def _names(value: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n.strip() for n in (value or "").split(",") if n.strip()))


CAMERA_DESCRIPTION = "One camera (a stream's name)."
SINCE_DESCRIPTION = "Tracks last seen at or after this ISO 8601 time (UTC if no zone)."
UNTIL_DESCRIPTION = "Tracks first seen at or before this ISO 8601 time (UTC if no zone)."
Camera = Annotated[str | None, Query(min_length=1, max_length=256, description=CAMERA_DESCRIPTION)]
Since = Annotated[str | None, Query(description=SINCE_DESCRIPTION, **TIME_FORMAT)]
Until = Annotated[str | None, Query(description=UNTIL_DESCRIPTION, **TIME_FORMAT)]


class SearchQuery(BaseModel):
    """GET /tracks's parameters, as one model (the route reads them from the query string)."""

    camera: str | None = Field(None, min_length=1, max_length=256, description=CAMERA_DESCRIPTION)
    since: str | None = Field(None, description=SINCE_DESCRIPTION, **TIME_FORMAT)
    until: str | None = Field(None, description=UNTIL_DESCRIPTION, **TIME_FORMAT)
    attributes: str | None = Field(None, description="Required attributes, comma-separated.")
    exclude: str | None = Field(None, description="Excluded attributes, comma-separated.")
    q: str | None = Field(
        None, max_length=500, description='A sentence, e.g. "a woman with long hair in a black top and no hat".'
    )
    min_probability: float | None = Field(
        None, ge=0, le=1, description="Required: p >= this; excluded: p < this (default: each one's threshold)."
    )
    limit: int = Field(50, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(None, max_length=400, description="next_cursor of the previous page.")
    model: str | None = Field(
        None, max_length=200, description="Search another stored model's tracks (name:version, see /tracks/models)."
    )


async def _interpreted(
    reading: Reading, service: Service, searched_served: bool
) -> tuple[Interpretation, FreeText | None]:
    """How the sentence was read, and its free text as the served model embeds it (None when there is none, or
    when it cannot be read: then the interpretation lists its words as unused and its note says why)."""
    pretrained = service.backend.description.served.pretrained_tower
    interpretation = Interpretation(
        required=list(reading.required),
        excluded=list(reading.excluded),
        unused=list(reading.unused),
        contradictions=list(reading.contradictions),
        pretrained_tower=pretrained,
    )
    if not reading.free:
        return interpretation, None
    text = ", ".join(reading.free)
    reader = text_reader(service)
    if reader is None or reader.text_logit_scale is None:
        interpretation.note = (
            f"free text {text!r} not read: the served model keeps no CLIP text tower (its checkpoint was made "
            "without clip_image_embedding, or it runs as an ONNX export or on Ray replicas)"
        )
        return interpretation, None
    if not searched_served:
        interpretation.note = f"free text {text!r} not read: it is ranked only among the served model's tracks"
        return interpretation, None
    free_words = set(" ".join(reading.free).split())
    interpretation.unused = [word for word in reading.unused if word not in free_words]
    interpretation.free_text = text
    if not pretrained:
        interpretation.note = (
            "the served model's CLIP tower is not a pretrained one (the demo's is random): the free-text ranking "
            "means nothing; serve a model with real CLIP weights for it to mean something"
        )
    embedding = await asyncio.to_thread(reader.encode_text, text)
    return interpretation, FreeText(text, embedding, reader.text_logit_scale)


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
    service: ServiceDep,
    store: StoreDep,
    images: ImageEmbeddingsDep,
    served: ServedDep,
    settings: SettingsDep,
    query: Annotated[SearchQuery, Query()],
) -> SearchResponse:
    """Tracks of the served model (or of `model`) ranked by the joint probability of the attributes asked:
    score = product of p over the required attributes times product of (1 - p) over the excluded ones, then the
    most recent first. Words of `q` no attribute covers are free text: with a model that keeps CLIP's text tower
    they rank the tracks too (score times exp(s * (cos - 1)), then the highest id); see `interpretation`."""
    start, end = time_bounds(query.since, query.until)
    required, excluded = _names(query.attributes), _names(query.exclude)
    interpretation = None
    free = None
    if query.q is not None:
        stored = (await store.run(store.models)) if query.model is not None else []
        reading_model = next((m.spec for m in stored if m.spec.key == query.model), served)
        reading = read_sentence(query.q, reading_model)
        searched_served = query.model is None or query.model == served.key
        interpretation, free = await _interpreted(reading, service, searched_served)
        required, excluded = with_reading(required, excluded, reading)
    search = Search(
        required=required,
        excluded=excluded,
        camera=query.camera,
        since=start,
        until=end,
        min_probability=query.min_probability,
        limit=query.limit,
        cursor=query.cursor,
        model=query.model,
    )
    limit = SearchLimit(settings.search_timeout_s)
    searching = (
        store.run(store.search, search, served, limit)
        if free is None
        else store.run(text_search, store, images, search, served, free, limit)
    )
    page = await unless_client_leaves(request, searching, limit.cancel)
    return SearchResponse(
        model=identity(page.model),
        interpretation=interpretation,
        required=list(required),
        excluded=list(excluded),
        tracks=[ScoredTrack(**track_fields(request, track), score=score) for track, score in page.tracks],
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
    found = await store.run(store.models)
    return [StoredModelBody(model=identity(m.spec), tracks=m.tracks, served=m.spec == served) for m in found]


@router.get(
    "/tracks/{track}",
    response_model=TrackBody,
    summary="One stored track",
    dependencies=Protected,
    responses=error_responses(400, 401, 404, 503),
)
async def get_track(request: Request, store: StoreDep, track: TrackId) -> TrackBody:
    found = await store.run(store.get, track)
    if found is None:
        raise ServiceError(ErrorCode.NOT_FOUND, f"no stored track {track}")
    return TrackBody(**track_fields(request, found))


@router.get(
    "/tracks/{track}/thumbnail.jpg",
    response_class=Response,
    name="track_thumbnail",
    summary="The JPEG of a stored track's best crop",
    dependencies=Protected,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "The thumbnail"},
        **error_responses(400, 401, 404, 503),
    },
)
async def track_thumbnail(store: StoreDep, track: TrackId) -> Response:
    # Read whole (a few kB) in one step: a picture erased between a check and the sending would be a 500.
    picture = await store.run(store.thumbnail, track)
    if picture is None:
        raise ServiceError(ErrorCode.NOT_FOUND, f"stored track {track} has no thumbnail")
    return Response(picture, media_type="image/jpeg")


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
    start, end = time_bounds(since, until)
    return Erased(deleted=await store.run(store.erase, camera, start, end))
