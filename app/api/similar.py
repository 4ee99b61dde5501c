"""Appearance search: the stored tracks that look like one stored track (``GET /tracks/{track}/similar``) or like
an uploaded clip or pictures of a person (``POST /tracks/similar/upload``)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as FastAPIPath
from pydantic import BaseModel, Field

from ..errors import ErrorCode, ServiceError
from ..store import MAX_LIMIT
from ..store.similar import SimilarPage, Window, similar_to, similar_tracks
from .auth import require_token
from .deps import (
    TIME_FORMAT,
    EmbeddingsDep,
    ServiceDep,
    StoreDep,
    predicted_clip,
    served_model,
    time_bounds,
)
from .openapi import PREDICT_BODY, error_responses
from .schemas import SimilarResponse, SimilarTrack, identity, track_fields

router = APIRouter(tags=["stored tracks"])
TrackId = Annotated[int, FastAPIPath(ge=1, le=2**63 - 1, description="The stored track's id.")]


class SimilarQuery(BaseModel):
    """GET /tracks/{track}/similar's parameters: GET /tracks's camera, time window and paging."""

    camera: str | None = Field(None, min_length=1, max_length=256, description="Only this camera's tracks.")
    since: str | None = Field(None, description="Tracks last seen at or after this ISO 8601 time.", **TIME_FORMAT)
    until: str | None = Field(None, description="Tracks first seen at or before this ISO 8601 time.", **TIME_FORMAT)
    limit: int = Field(50, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(None, max_length=400, description="next_cursor of the previous page.")


class UploadQuery(BaseModel):
    """POST /tracks/similar/upload's parameters: the filters, and how many (one page: no cursor)."""

    camera: str | None = Field(None, min_length=1, max_length=256, description="Only this camera's tracks.")
    since: str | None = Field(None, description="Tracks last seen at or after this ISO 8601 time.", **TIME_FORMAT)
    until: str | None = Field(None, description="Tracks first seen at or before this ISO 8601 time.", **TIME_FORMAT)
    limit: int = Field(50, ge=1, le=MAX_LIMIT)


@router.get(
    "/tracks/{track}/similar",
    response_model=SimilarResponse,
    summary="Stored tracks that look like this one (appearance embeddings), across cameras",
    dependencies=[Depends(require_token)],
    responses=error_responses(400, 401, 404, 409, 422, 503),
)
async def similar(
    request: Request,
    service: ServiceDep,
    store: StoreDep,
    embeddings: EmbeddingsDep,
    track: TrackId,
    query: Annotated[SimilarQuery, Query()],
) -> SimilarResponse:
    """The tracks of the model that embedded `track`, ranked by the cosine similarity of their appearance
    embeddings to its own (the track itself left out). With the built-in demo model the embeddings come from a
    random CLIP tower: `pretrained_tower` is false and the ranking says little about appearance."""
    start, end = time_bounds(query.since, query.until)
    page = await asyncio.to_thread(
        similar_tracks,
        store,
        embeddings,
        track,
        camera=query.camera,
        since=start,
        until=end,
        limit=query.limit,
        cursor=query.cursor,
    )
    return _response(request, service, page, track)


@router.post(
    "/tracks/similar/upload",
    response_model=SimilarResponse,
    summary="Stored tracks that look like the person in an uploaded clip or pictures",
    dependencies=[Depends(require_token)],
    responses=error_responses(400, 401, 408, 409, 413, 415, 422, 429, 503),
    openapi_extra=PREDICT_BODY,
)
async def similar_to_upload(
    request: Request,
    service: ServiceDep,
    store: StoreDep,
    embeddings: EmbeddingsDep,
    query: Annotated[UploadQuery, Query()],
) -> SimilarResponse:
    """Send what /predict takes (one `video`, or `frames` pictures of one person); the served model embeds it and
    its stored tracks are ranked against it. 409 `no_embedding` when the served runner gives no embedding (an ONNX
    export made without one)."""
    start, end = time_bounds(query.since, query.until)
    _, result = await predicted_clip(request, service)
    if result.embedding is None:
        raise ServiceError(
            ErrorCode.NO_EMBEDDING,
            "the served model's runner gives no appearance embedding (an ONNX export made before exports carried one: "
            "export it again with vtfpar export)",
        )
    model = served_model(request)
    window = Window(query.camera, start, end, query.limit)
    page = await asyncio.to_thread(similar_to, store, embeddings, model, result.embedding, window)
    return _response(request, service, page, None)


def _response(request: Request, service, page: SimilarPage, track: int | None) -> SimilarResponse:
    return SimilarResponse(
        model=identity(page.model),
        track=track,
        pretrained_tower=service.backend.description.served.pretrained_tower,
        tracks=[SimilarTrack(**track_fields(request, found), score=score) for found, score in page.tracks],
        next_cursor=page.cursor,
    )
