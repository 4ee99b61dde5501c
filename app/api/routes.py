"""The HTTP surface. Routes only translate: requests in, service calls, response models out."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from ..decoding.sniff import IMAGE_KINDS, VIDEO_KINDS
from ..errors import ErrorCode, ServiceError
from ..log import request_id_var
from ..metrics import CONTENT_TYPE
from ..service import Service
from .schemas import (
    AttributeInfo,
    ErrorResponse,
    GroupInfo,
    Health,
    InfoResponse,
    ModelInfo,
    PredictResponse,
    prediction_response,
)
from .uploads import RAW_CONTENT_TYPES, read_upload

router = APIRouter()


def get_service(request: Request) -> Service:
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise ServiceError(ErrorCode.NOT_READY, "the service is starting")
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


def _errors(*statuses: int) -> dict:
    descriptions = {
        400: "Malformed request: missing, extra or empty parts.",
        408: "The request body was not complete within the upload deadline (VTFPAR_UPLOAD_TIMEOUT_S).",
        413: "Upload larger than the byte limit, or too many frame files.",
        415: "Content type, container, codec or image format not accepted (playlists are refused).",
        422: "Media that cannot be used: undecodable, no video stream, too few frames, too long, too many pixels, "
        "frames of different sizes, decode deadline passed.",
        429: "Queue full or too many requests in flight; retry after Retry-After seconds.",
        503: "Not ready (loading, warming up or draining) or queued too long; retry after Retry-After seconds.",
    }
    responses = {status: {"model": ErrorResponse, "description": descriptions[status]} for status in statuses}
    for status in set(statuses) & {429, 503}:
        responses[status]["headers"] = {
            "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
        }
    return responses


_BINARY = {"type": "string", "format": "binary", "minLength": 1}  # an empty file is refused
_PREDICT_OPENAPI = {
    "parameters": [
        {
            "name": "X-Request-Id",
            "in": "header",
            "required": False,
            # Any value is accepted: one that does not match the pattern is replaced by a generated id.
            "schema": {"type": "string"},
            "description": "Your id for this request (letters, digits and `. _ : -`, up to 128 characters; "
            "anything else is replaced by a generated id). Echoed in the response header, the body and the logs.",
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "oneOf": [
                        {
                            "title": "Video",
                            "type": "object",
                            "properties": {
                                "video": {**_BINARY, "description": "One clip: mp4/mov, webm/mkv, avi, gif or mpeg-ts."}
                            },
                            "required": ["video"],
                            "additionalProperties": False,
                        },
                        {
                            "title": "Frames",
                            "type": "object",
                            "properties": {
                                "frames": {
                                    "type": "array",
                                    "items": _BINARY,
                                    "minItems": 1,
                                    "description": "A tracklet: JPEG/PNG crops in temporal order (at most "
                                    "VTFPAR_MAX_UPLOAD_FRAMES, see /info).",
                                }
                            },
                            "required": ["frames"],
                            "additionalProperties": False,
                        },
                    ]
                },
                "encoding": {
                    "video": {"contentType": ", ".join(RAW_CONTENT_TYPES)},
                    "frames": {"contentType": "image/jpeg, image/png"},
                },
            },
            **{content_type: {"schema": _BINARY} for content_type in RAW_CONTENT_TYPES},
        },
    },
}


@router.post(
    "/predict",
    response_model=PredictResponse,
    summary="Attribute probabilities for one clip",
    responses=_errors(400, 408, 413, 415, 422, 429, 503),
    openapi_extra=_PREDICT_OPENAPI,
)
async def predict(request: Request, service: ServiceDep) -> PredictResponse:
    """Send one `video` file, or one or more `frames` image files (multipart), or a raw video body. The model
    sees `frames_per_clip` frames sampled evenly over the clip."""
    start = time.perf_counter()
    settings = service.settings
    with service.admit() as admission:
        upload = await read_upload(
            request, settings.max_upload_bytes, settings.max_upload_frames, settings.upload_timeout_s
        )
        service.metrics.upload_bytes.observe(upload.bytes_read)
        try:
            admission.body_received()
            clip = await (
                service.decoder.video(upload.video)
                if upload.video is not None
                else service.decoder.images(upload.frames)
            )
        finally:
            await upload.close()
        result = await _unless_client_leaves(request, service.backend.submit(clip.model_input))
    return prediction_response(
        request_id_var.get() or "", service.backend.description, clip, result, total_s=time.perf_counter() - start
    )


async def _unless_client_leaves(request: Request, work):
    """Await ``work``, cancelling it (which takes the clip out of the queue) if the client disconnects.

    The body has been read, so the next ASGI message can only be the disconnect."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        raise ServiceError(ErrorCode.CLIENT_DISCONNECTED, "the client disconnected before its answer was ready")
    finally:
        watcher.cancel()
        task.cancel()  # a no-op once done; otherwise the clip leaves the queue


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


@router.get("/health/live", response_model=Health, summary="The process is up")
async def live() -> Health:
    return Health(status="ok")


@router.get(
    "/health/ready", response_model=Health, summary="Model loaded and warmed up, not draining", responses=_errors(503)
)
async def ready(service: ServiceDep) -> Health:
    if not service.ready:
        raise ServiceError(ErrorCode.NOT_READY, "draining" if service.draining else "loading or warming up")
    return Health(status="ok")


@router.get(
    "/info",
    response_model=InfoResponse,
    summary="Model, schema, device and every limit in force",
    responses=_errors(503),
)
async def info(service: ServiceDep) -> InfoResponse:
    model, settings = service.backend.description, service.settings
    served, schema = model.served, model.schema
    return InfoResponse(
        model=ModelInfo(
            name=served.name,
            version=served.version,
            digest=served.digest,
            schema=served.schema,
            demo=served.demo,
            frames_per_clip=model.frames_per_clip,
            image_size=model.image_size,
        ),
        device=model.device,
        precision=model.precision,
        torch_threads=model.torch_threads,
        attributes=[
            AttributeInfo(name=a.name, group=a.group, phrase=a.phrase, threshold=t)
            for a, t in zip(schema.attributes, model.thresholds, strict=True)
        ],
        groups=[
            GroupInfo(name=g.name, kind=g.kind, attributes=[schema.attributes[c].name for c in g.columns])
            for g in schema.groups
        ],
        limits={
            name: getattr(settings, name)
            for name in (
                "max_upload_bytes",
                "upload_timeout_s",
                "max_upload_frames",
                "max_pixels",
                "max_side",
                "max_aspect_ratio",
                "max_duration_s",
                "max_frames_decoded",
                "min_frames",
                "decode_timeout_s",
            )
        },
        batching={
            name: getattr(settings, name)
            for name in (
                "max_batch_clips",
                "max_batch_wait_ms",
                "max_queue",
                "queue_timeout_s",
                "max_concurrent_uploads",
                "max_concurrent_requests",
                "retry_after_s",
            )
        },
        decoding={
            "decode_workers": settings.decode_workers,
            "decode_threads": settings.decode_threads,
            "containers": [k.name for k in VIDEO_KINDS],
            "codecs": list(settings.allowed_codecs),
            "image_formats": [k.name for k in IMAGE_KINDS],
        },
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text exposition"}},
)
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE)
