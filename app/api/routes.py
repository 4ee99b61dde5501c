"""The HTTP surface. Routes only translate: requests in, service calls, response models out."""

from __future__ import annotations

import time
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request, Response

from ..decoding.sniff import IMAGE_KINDS, VIDEO_KINDS
from ..errors import ErrorCode, ServiceError
from ..log import request_id_var
from ..metrics import CONTENT_TYPE
from ..service import Service
from ..settings import Settings
from ..tracks import submit_tracks
from .deps import (
    Recording,
    RecordingDep,
    ServiceDep,
    predicted_clip,
    received_and_decoded,
    served_model,
    unless_client_leaves,
)
from .openapi import PREDICT_BODY, SCENE_BODY, TRACKS_BODY, error_responses
from .schemas import (
    AttributeInfo,
    GroupInfo,
    Health,
    InfoResponse,
    ModelInfo,
    PredictResponse,
    SceneInfo,
    TracksResponse,
    predict_response,
    tracks_response,
)
from .uploads import SCENE_FORM, TRACKS_FORM, Form

router = APIRouter()


Margin = Annotated[
    float,
    Query(
        ge=0,
        le=1,
        description="Grow each box by this fraction of its width on the left and right, and of its height above "
        "and below, before cropping (clipped to the frame).",
    ),
]


@router.post(
    "/predict",
    response_model=PredictResponse,
    summary="Attribute probabilities for one clip",
    responses=error_responses(400, 408, 413, 415, 422, 429, 503),
    openapi_extra=PREDICT_BODY,
)
async def predict(request: Request, service: ServiceDep) -> PredictResponse:
    """Send one `video` file, or one or more `frames` image files (multipart), or a raw video body. The model
    sees `frames_per_clip` frames sampled evenly over the clip."""
    start = time.perf_counter()
    clip, result = await predicted_clip(request, service)
    return predict_response(
        request_id_var.get() or "", service.backend.description, clip, result, total_s=time.perf_counter() - start
    )


@router.post(
    "/predict/tracks",
    response_model=TracksResponse,
    summary="Attribute probabilities for every track of a full-frame video",
    responses=error_responses(400, 401, 408, 413, 415, 422, 429, 503),
    openapi_extra=TRACKS_BODY,
)
async def predict_tracks(
    request: Request, service: ServiceDep, recording: RecordingDep, margin: Margin = 0.0
) -> TracksResponse:
    """Send the `video` (camera footage) and its `tracks` (MOT text or JSON). Each track's boxes are sampled as
    /predict samples a clip, cropped (all tracks from one decode pass) and run through the model as one clip."""
    start = time.perf_counter()
    pipeline = service.tracks

    thumbnails = recording is not None and recording.thumbnails

    def decode(upload):
        return service.decoder.run(
            lambda deadline: pipeline.read_tracks(upload.video, upload.tracks, margin, deadline, thumbnails)
        )

    return await _answer_tracks(request, service, TRACKS_FORM, decode, start, False, recording)


@router.post(
    "/predict/scene",
    response_model=TracksResponse,
    summary="Attribute probabilities for every person the service's own detector and tracker find",
    responses=error_responses(400, 401, 404, 408, 413, 415, 422, 429, 503),
    openapi_extra=SCENE_BODY,
)
async def predict_scene(
    request: Request, service: ServiceDep, recording: RecordingDep, margin: Margin = 0.0
) -> TracksResponse:
    """Send the `video` alone (multipart or a raw body): the configured detector runs on every k-th frame,
    ByteTrack joins its boxes into tracks, and each track is answered as /predict/tracks answers it, with its
    boxes. 404 `detection_off` when detection is off (VTFPAR_DETECTOR; /info says)."""
    start = time.perf_counter()
    pipeline = service.tracks
    if pipeline.scene is None:
        raise ServiceError(
            ErrorCode.DETECTION_OFF,
            "built-in detection is off on this server (VTFPAR_DETECTOR=off, or the 'scene' extra is not installed): "
            "send your own tracks to /predict/tracks",
        )

    thumbnails = recording is not None and recording.thumbnails

    def decode(upload):
        return service.decoder.run(lambda deadline: pipeline.read_scene(upload.video, margin, deadline, thumbnails))

    return await _answer_tracks(request, service, SCENE_FORM, decode, start, True, recording)


async def _answer_tracks(
    request: Request, service: Service, form: Form, decode, start: float, with_boxes: bool, recording: Recording | None
):
    async with received_and_decoded(request, service, form, decode) as prepared:
        submitted = time.perf_counter()
        results = await unless_client_leaves(request, submit_tracks(service.backend, prepared))
        model_s = time.perf_counter() - submitted
    stored = await recording.save(served_model(request), prepared, results) if recording else None
    answer = tracks_response(
        request_id_var.get() or "",
        service.backend.description,
        prepared,
        results,
        model_s=model_s,
        total_s=time.perf_counter() - start,
        with_boxes=with_boxes,
    )
    answer.stored = stored
    return answer


@router.get("/health/live", response_model=Health, summary="The process is up")
async def live() -> Health:
    return Health(status="ok")


@router.get(
    "/health/ready",
    response_model=Health,
    summary="Model loaded and warmed up, not draining",
    responses=error_responses(503),
)
async def ready(service: ServiceDep) -> Health:
    if not service.ready:
        raise ServiceError(ErrorCode.NOT_READY, "draining" if service.draining else "loading or warming up")
    return Health(status="ok")


@router.get(
    "/info",
    response_model=InfoResponse,
    summary="Model, schema, device and every limit in force",
    responses=error_responses(503),
)
async def info(service: ServiceDep) -> InfoResponse:
    model, settings = service.backend.description, service.settings
    served, schema = model.served, model.schema
    return InfoResponse(
        model=ModelInfo(
            name=served.name,
            version=served.version,
            digest=served.digest,
            schema_name=served.schema,
            demo=served.demo,
            frames_per_clip=model.frames_per_clip,
            image_size=model.image_size,
            model_card=_card_url(served.model_card),
            calibration=model.calibration,
        ),
        device=model.device,
        precision=model.precision,
        torch_threads=model.torch_threads,
        runtime=model.runtime,
        compiled=model.compiled,
        attributes=[
            AttributeInfo(name=a.name, group=a.group, phrase=a.phrase, threshold=t, temperature=temperature)
            for a, t, temperature in zip(
                schema.attributes, model.thresholds, model.temperatures or [1.0] * len(schema), strict=True
            )
        ],
        groups=[
            GroupInfo(name=g.name, kind=g.kind, attributes=[schema.attributes[c].name for c in g.columns])
            for g in schema.groups
        ],
        limits={name: getattr(settings, name) for name in Settings.in_info_section("limits")},
        batching={name: getattr(settings, name) for name in Settings.in_info_section("batching")},
        decoding={
            **{name: getattr(settings, name) for name in Settings.in_info_section("decoding")},
            "containers": [k.name for k in VIDEO_KINDS],
            "codecs": list(settings.allowed_codecs),
            "image_formats": [k.name for k in IMAGE_KINDS],
        },
        streams={name: getattr(settings, name) for name in Settings.in_info_section("streams")},
        store={name: getattr(settings, name) for name in Settings.in_info_section("store")},
        scene=_scene_info(service),
    )


def _card_url(recorded: str | None) -> str | None:
    """The model card's address for a client: a URL; a path the checkpoint records (the demo's names a file of the
    source repository) means nothing to a client of an installed service."""
    return recorded if recorded and urlsplit(recorded).scheme in ("http", "https") else None


def _scene_info(service: Service) -> SceneInfo:
    scene, settings = service.tracks.scene, service.settings
    weights = settings.detector_weights
    return SceneInfo(
        enabled=scene is not None,
        detector=scene.detector.name if scene is not None else None,
        detector_weights=str(weights) if scene is not None and weights is not None else None,
        detection_interval=settings.detection_interval,
        tracker=scene.tracker if scene is not None else None,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text exposition"}},
)
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE)
