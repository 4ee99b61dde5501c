"""Live streams: open, list, inspect and close camera streams; read their tracks' attributes as server-sent
events; watch their preview. Every route needs the API token when VTFPAR_API_TOKEN is set (a stream makes the
server open connections, and its events and preview show people)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import anyio
import numpy as np
import pydantic_core
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import Field
from sse_starlette import EventSourceResponse

from ..streams import Event, StreamSpec
from ..streams.preview import BOUNDARY, PREVIEW_FPS, part, render
from .auth import require_token
from .deps import ServiceDep
from .openapi import error_responses
from .schemas import StreamList, StreamStatus, decisions

router = APIRouter(prefix="/streams", tags=["streams"], dependencies=[Depends(require_token)])
SHUTDOWN_GRACE_S = 5.0  # after SIGTERM, how long an events reader has to get its tracks' ends


StreamId = Annotated[str, Field(max_length=64)]


@router.post(
    "",
    status_code=201,
    response_model=StreamStatus,
    summary="Open a live stream",
    responses=error_responses(400, 401, 403, 404, 429),
)
async def open_stream(spec: StreamSpec, service: ServiceDep) -> dict:
    """Opens `url` (rtsp, rtsps, http(s) MPEG-TS or HLS, rtmp, or a file:// recording) if it lies under one of
    VTFPAR_STREAM_SOURCES (403 `source_not_allowed` otherwise, before any connection); the stream connects in the
    background: its `state` says how it goes."""
    return await service.streams.open(spec)


@router.get("", response_model=StreamList, summary="Every stream and its status", responses=error_responses(401))
async def list_streams(service: ServiceDep) -> dict:
    return {"streams": await service.streams.statuses()}


@router.get(
    "/{stream_id}", response_model=StreamStatus, summary="A stream's status", responses=error_responses(400, 401, 404)
)
async def stream_status(stream_id: StreamId, service: ServiceDep) -> dict:
    return await service.streams.status(stream_id)


@router.delete("/{stream_id}", status_code=204, summary="Close a stream", responses=error_responses(400, 401, 404))
async def close_stream(stream_id: StreamId, service: ServiceDep) -> Response:
    """Stops the stream (its open tracks end, with `track_end` events) and forgets it."""
    await service.streams.remove(stream_id)
    return Response(status_code=204)


@router.get(
    "/{stream_id}/events",
    summary="A stream's tracks as server-sent events",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **error_responses(400, 401, 404)},
)
async def stream_events(stream_id: StreamId, service: ServiceDep) -> EventSourceResponse:
    """`track_update` each time a track's attributes are computed again, `track_end` when the tracker loses it (or
    the stream stops), each with JSON data: `stream`, `stream_name`, `track_id`, `first_seen` and `last_seen`
    (`stream_s`: stream time; `at`: wall clock, UTC), the last `box` ([left, top, width, height] pixels),
    `windows` (clips fused) and `attributes` and `groups` as /predict answers them (null before any window)."""
    stream_events = await service.streams.events(stream_id)
    model = service.backend.description

    async def events():
        async for event in stream_events:
            yield {"event": event.kind, "data": event_json(model, event)}

    return EventSourceResponse(events(), shutdown_event=anyio.Event(), shutdown_grace_period=SHUTDOWN_GRACE_S)


@router.get(
    "/{stream_id}/preview",
    summary="A stream's live picture with boxes, ids and top attributes (MJPEG)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {f"multipart/x-mixed-replace; boundary={BOUNDARY}": {}}},
        **error_responses(400, 401, 404),
    },
)
async def stream_preview(stream_id: StreamId, request: Request, service: ServiceDep) -> StreamingResponse:
    stream = await service.streams.watch(stream_id)
    model = service.backend.description

    async def pictures():
        while not stream.ended and not await request.is_disconnected():
            jpeg = await asyncio.to_thread(render, stream, model.schema.names, model.thresholds)
            if jpeg is not None:
                yield part(jpeg)
            await asyncio.sleep(1 / PREVIEW_FPS)

    return StreamingResponse(pictures(), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}")


def event_json(model, event: Event) -> str:
    track = event.track
    x0, y0, x1, y1 = event.box
    attributes = groups = None
    if track.probabilities:
        attributes, groups = decisions(model, np.asarray(track.probabilities, np.float32))
    return pydantic_core.to_json(
        {
            "stream": track.stream_id,
            "stream_name": track.stream_name,
            "track_id": track.track_id,
            "first_seen": {"stream_s": track.first_seen_s, "at": track.first_seen_at.isoformat()},
            "last_seen": {"stream_s": track.last_seen_s, "at": track.last_seen_at.isoformat()},
            "box": [round(x0, 1), round(y0, 1), round(x1 - x0, 1), round(y1 - y0, 1)],
            "windows": track.windows,
            "attributes": attributes,
            "groups": groups,
        }
    ).decode()
