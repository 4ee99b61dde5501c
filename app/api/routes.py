"""The HTTP surface. Routes only translate: requests in, service calls, response models out."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import torch
from fastapi import APIRouter, Depends, Request, Response

from ..decoding.sniff import IMAGE_KINDS, VIDEO_KINDS
from ..decoding.video import ALLOWED_CODECS
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
from .uploads import read_upload

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


_PREDICT_OPENAPI = {
    "parameters": [
        {
            "name": "X-Request-Id",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
            "description": "Echoed in the response header, the body and the logs; generated when absent.",
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "video": {
                            "type": "string",
                            "format": "binary",
                            "description": "One clip: mp4/mov, webm/mkv, avi or gif.",
                        },
                        "frames": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "A tracklet: JPEG/PNG crops of one size, in temporal order.",
                        },
                    },
                },
            },
            "video/*": {
                "schema": {"type": "string", "format": "binary"},
                "example": "curl --data-binary @clip.mp4 -H 'Content-Type: video/mp4' .../predict",
            },
        },
    },
}


@router.post(
    "/predict",
    response_model=PredictResponse,
    summary="Attribute probabilities for one clip",
    responses=_errors(400, 413, 415, 422, 429, 503),
    openapi_extra=_PREDICT_OPENAPI,
)
async def predict(request: Request, service: ServiceDep) -> PredictResponse:
    """Send one `video` file, or several `frames` image files (multipart), or a raw body with a `video/*`
    content type. The model sees `frames_per_clip` frames sampled evenly over the clip."""
    start = time.perf_counter()
    settings = service.settings
    with service.admit():
        upload = await read_upload(request, settings.max_upload_bytes, settings.max_upload_frames)
        service.metrics.upload_bytes.observe(upload.bytes_read)
        try:
            clip = await (
                service.decoder.video(upload.video)
                if upload.video is not None
                else service.decoder.frames(upload.frames)
            )
        finally:
            await upload.close()
        service.record_decode(clip)
        result = await _unless_client_leaves(request, service.batcher.submit(clip.tensor))
    return prediction_response(
        request_id_var.get() or "", service.runner, clip, result, total_s=time.perf_counter() - start
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
    runner, settings = service.runner, service.settings
    identity, config, schema = runner.identity, runner.model.config, runner.schema
    return InfoResponse(
        model=ModelInfo(
            name=identity.name,
            version=identity.version,
            digest=identity.digest,
            schema=identity.schema,
            demo=identity.demo,
            frames_per_clip=runner.frames_per_clip,
            image_size=config.image_size,
            model_card=identity.model_card,
            calibration=runner.model.calibration,
        ),
        device=str(runner.device),
        dtype=runner.dtype,
        torch_threads=torch.get_num_threads(),
        attributes=[
            AttributeInfo(name=a.name, group=a.group, phrase=a.phrase, threshold=t, temperature=temperature)
            for a, t, temperature in zip(
                schema.attributes, runner.thresholds, runner.model.temperatures or [1.0] * len(schema), strict=True
            )
        ],
        groups=[
            GroupInfo(name=g.name, kind=g.kind, attributes=[schema.attributes[c].name for c in g.columns])
            for g in schema.groups
        ],
        limits={
            name: getattr(settings, name)
            for name in (
                "max_upload_bytes",
                "max_upload_frames",
                "max_pixels",
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
                "max_concurrent_requests",
                "retry_after_s",
            )
        },
        decoding={
            "decode_workers": settings.decode_workers,
            "decode_threads": settings.decode_threads,
            "containers": [k.name for k in VIDEO_KINDS],
            "codecs": sorted(ALLOWED_CODECS),
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
