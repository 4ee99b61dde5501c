"""Live streams: open, list, inspect and close camera streams; read their tracks' attributes as server-sent
events; watch their preview (a JPEG snapshot to poll, or MJPEG). Every route needs the API token when one is in
force (a stream makes the server open connections, and its events and preview show people)."""

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
from ..streams.preview import BOUNDARY, PREVIEW_FPS, part
from .auth import require_token
from .deps import PreviewsDep, ServiceDep
from .openapi import error_responses
from .schemas import StreamList, StreamStatus, box_ltwh, decisions

router = APIRouter(prefix="/streams", tags=["streams"], dependencies=[Depends(require_token)])
SHUTDOWN_GRACE_S = 5.0  # after SIGTERM, how long an events reader has to get its tracks' ends


StreamId = Annotated[str, Field(max_length=64)]


@router.post(
    "",
    status_code=201,
    response_model=StreamStatus,
    summary="Open a live stream",
    responses=error_responses(400, 401, 403, 404, 429, 503),
)
async def open_stream(spec: StreamSpec, service: ServiceDep) -> StreamStatus:
    """Opens `url` (rtsp, rtsps, http(s) MPEG-TS or HLS, rtmp, or a file:// recording) if it lies under one of
    VTFPAR_STREAM_SOURCES (403 `source_not_allowed` otherwise, before any connection); the stream connects in the
    background: its `state` says how it goes. 503 while the service shuts down."""
    return await service.streams.open(spec)


@router.get("", response_model=StreamList, summary="Every stream and its status", responses=error_responses(401))
async def list_streams(service: ServiceDep) -> StreamList:
    return StreamList(streams=await service.streams.statuses())


@router.get(
    "/{stream_id}", response_model=StreamStatus, summary="A stream's status", responses=error_responses(400, 401, 404)
)
async def stream_status(stream_id: StreamId, service: ServiceDep) -> StreamStatus:
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
    "/{stream_id}/snapshot",
    summary="A stream's latest picture with boxes, ids and top attributes (JPEG)",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}},
        204: {"description": "No frame processed yet."},
        **error_responses(400, 401, 404),
    },
)
async def stream_snapshot(stream_id: StreamId, service: ServiceDep, previews: PreviewsDep) -> Response:
    """The picture the MJPEG preview would show now (rendered at most 5 times a second, shared by every viewer);
    poll it for a live picture that holds no connection between pictures."""
    stream = await service.streams.watch(stream_id)
    model = service.backend.description
    jpeg = await previews.picture(stream_id, stream, model.schema.names, model.thresholds)
    if jpeg is None:
        return Response(status_code=204)
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.get(
    "/{stream_id}/preview",
    summary="A stream's live picture with boxes, ids and top attributes (MJPEG)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {f"multipart/x-mixed-replace; boundary={BOUNDARY}": {}}},
        **error_responses(400, 401, 404, 429),
    },
)
async def stream_preview(
    stream_id: StreamId, request: Request, service: ServiceDep, previews: PreviewsDep
) -> StreamingResponse:
    """A few viewers per stream at most (429 `too_many_viewers` beyond); each gets the shared picture."""
    stream = await service.streams.watch(stream_id)
    model = service.backend.description
    previews.check_room(stream_id)

    async def pictures():
        with previews.viewer(stream_id):
            while not stream.ended and not await request.is_disconnected():
                jpeg = await previews.picture(stream_id, stream, model.schema.names, model.thresholds)
                if jpeg is not None:
                    yield part(jpeg)
                await asyncio.sleep(1 / PREVIEW_FPS)

    return StreamingResponse(pictures(), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}")


def event_json(model, event: Event) -> str:
    track = event.track
    attributes = groups = None
    if track.probabilities:
        attributes, groups = decisions(model, np.asarray(track.probabilities, np.float32))
    first, last = track.first_seen, track.last_seen
    return pydantic_core.to_json(
        {
            "stream": track.stream_id,
            "stream_name": track.stream_name,
            "track_id": track.track_id,
            "first_seen": {"stream_s": first.stream_s, "at": first.at.isoformat()},
            "last_seen": {"stream_s": last.stream_s, "at": last.at.isoformat()},
            "box": box_ltwh(*track.box),
            "windows": track.windows,
            "attributes": attributes,
            "groups": groups,
        }
    ).decode()
