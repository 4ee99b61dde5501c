"""The dependencies routes share: the service, the track store, the served model, ``store=true``'s recording, the
parsing of ISO 8601 times, an upload received and decoded, and the wait that stops when the client leaves.
Routers import them from here, never from each other."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request

from ..alerts import Alerts
from ..errors import ErrorCode, ServiceError
from ..runner import TextReader
from ..service import Service
from ..settings import Settings
from ..store import ImageEmbeddings, ModelSpec, TrackEmbeddings, TrackStore
from ..store.recording import upload_tracks
from ..streams.preview import Previews
from .auth import require_token
from .uploads import PREDICT_FORM, Form, read_upload

# How far ahead of this server's clock a stored video may start: a camera's clock a little fast, not a wrong date.
MAX_CLOCK_SKEW = timedelta(minutes=5)

T = TypeVar("T")


async def get_service(request: Request) -> Service:  # async: FastAPI would run a plain def on a worker thread
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise ServiceError(ErrorCode.NOT_READY, "the service is starting")
    return service


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_store(request: Request) -> TrackStore:
    store = getattr(request.app.state, "track_store", None)
    if store is None:
        raise ServiceError(ErrorCode.NOT_READY, "the track store is starting")
    return store


def served_model(request: Request) -> ModelSpec:
    """The served model as the store keys it (the one place that turns a backend into a ``ModelSpec``)."""
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise ServiceError(ErrorCode.NOT_READY, "the service is starting")
    return ModelSpec.of(service.backend.description)


def get_previews(request: Request) -> Previews:
    return request.app.state.previews


def get_alerts(request: Request) -> Alerts:
    alerts = getattr(request.app.state, "alerts", None)
    if alerts is None:
        raise ServiceError(ErrorCode.NOT_READY, "the alerts are starting")
    return alerts


ServiceDep = Annotated[Service, Depends(get_service)]
PreviewsDep = Annotated[Previews, Depends(get_previews)]
AlertsDep = Annotated[Alerts, Depends(get_alerts)]
StoreDep = Annotated[TrackStore, Depends(get_store)]
ServedDep = Annotated[ModelSpec, Depends(served_model)]


def get_embeddings(request: Request) -> TrackEmbeddings:
    embeddings = getattr(request.app.state, "track_embeddings", None)
    if embeddings is None:
        raise ServiceError(ErrorCode.NOT_READY, "the track store is starting")
    return embeddings


EmbeddingsDep = Annotated[TrackEmbeddings, Depends(get_embeddings)]


def get_image_embeddings(request: Request) -> ImageEmbeddings:
    images = getattr(request.app.state, "image_embeddings", None)
    if images is None:
        raise ServiceError(ErrorCode.NOT_READY, "the track store is starting")
    return images


ImageEmbeddingsDep = Annotated[ImageEmbeddings, Depends(get_image_embeddings)]


def text_reader(service: Service) -> TextReader | None:
    """The served model's runner when it can embed free text: this process's torch runner of a model with
    ``clip_image_embedding`` (not an ONNX export, nor a model on Ray replicas)."""
    runner = getattr(service.backend, "runner", None)
    return runner if getattr(runner, "text_logit_scale", None) is not None else None


def parse_time(name: str, value: str | None) -> datetime | None:
    """An ISO 8601 time; one without a zone is UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ServiceError(ErrorCode.BAD_TIME, f"{name}: {value!r} is not an ISO 8601 time") from None
    try:  # in UTC here, so that no later step overflows (0001-01-01T00:00+01:00 is before the year 1 in UTC)
        return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    except OverflowError:
        raise ServiceError(ErrorCode.BAD_TIME, f"{name}: {value!r} is outside the years 1 to 9999 in UTC") from None


def time_bounds(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    """``since`` and ``until`` parsed, in order."""
    start, end = parse_time("since", since), parse_time("until", until)
    if start is not None and end is not None and start > end:
        raise ServiceError(ErrorCode.BAD_TIME, f"since ({since}) is after until ({until})")
    return start, end


TIME_FORMAT: dict[str, Any] = {"json_schema_extra": {"format": "date-time"}}


@dataclass(frozen=True)
class Recording:
    """``store=true``: the request's tracks are stored, under ``camera``, from ``start``."""

    store: TrackStore
    camera: str
    start: datetime
    thumbnails: bool
    alerts: Alerts | None  # the rules match the stored tracks

    async def save(self, model: ModelSpec, prepared, results) -> list[int]:
        tracks = upload_tracks(prepared, results, self.camera, self.start)
        ids = await self.store.run(self.store.add, model, tracks)
        if self.alerts is not None:
            self.alerts.tracks_stored(tracks, ids)
        return ids


def recording(
    request: Request,
    store: Annotated[bool, Query(description="Keep the tracks answered in the track store (GET /tracks).")] = False,
    camera: Annotated[
        str | None, Query(min_length=1, max_length=256, description="With store=true: the camera's name (needed).")
    ] = None,
    start: Annotated[
        str | None,
        Query(description="With store=true: ISO 8601 time of the video's first frame (default: now).", **TIME_FORMAT),
    ] = None,
) -> Recording | None:
    moment = parse_time("start", start)
    if not store:
        return None
    require_token(request)  # stored tracks are people's data, whoever sends them
    if camera is None:
        raise ServiceError(ErrorCode.CAMERA_REQUIRED, "store=true needs camera=NAME")
    if moment is not None and moment > datetime.now(UTC) + MAX_CLOCK_SKEW:
        raise ServiceError(
            ErrorCode.BAD_TIME,
            f"start: {start!r} is in the future (more than {MAX_CLOCK_SKEW.seconds // 60} minutes ahead of the "
            "server's clock); give the time of the video's first frame",
        )
    settings = request.app.state.settings
    alerts = getattr(request.app.state, "alerts", None)
    return Recording(get_store(request), camera, moment or datetime.now(UTC), settings.store_thumbnails, alerts)


RecordingDep = Annotated[Recording | None, Depends(recording)]


# Uploads: a route's body received and decoded, and work cancelled when its client leaves.


@contextlib.asynccontextmanager
async def received_and_decoded(request: Request, service: Service, form: Form, decode):
    """Admission, the body, then ``decode(upload)`` on the decode pool; the request keeps its processing slot
    until the caller's block (queue and model) is done."""
    settings = service.settings
    with service.admit() as admission:
        upload = await read_upload(
            request, settings.max_upload_bytes, settings.max_upload_frames, settings.upload_timeout_s, form
        )
        service.metrics.upload_bytes.observe(upload.bytes_read)
        try:
            admission.body_received()
            decoded = await unless_client_leaves(request, decode(upload))  # a job still queued is dropped
        finally:
            await upload.close()
        yield decoded


async def predicted_clip(request: Request, service: Service):
    """The body as /predict takes it (one video, or frames of one person) decoded and through the model: the clip
    and its answer (probabilities, and the appearance embedding where the runner gives one)."""

    def decode(upload):
        if upload.video is not None:
            return service.decoder.video(upload.video)
        return service.decoder.images(upload.frames)

    async with received_and_decoded(request, service, PREDICT_FORM, decode) as clip:
        result = await unless_client_leaves(request, service.backend.submit(clip.model_input))
    return clip, result


async def unless_client_leaves(request: Request, work: Awaitable[T], on_leave: Callable[[], None] | None = None) -> T:
    """Await ``work``, cancelling it (which takes a clip out of the model's queue, or a job out of the decode
    pool's) if the client disconnects; ``on_leave`` stops what cancelling cannot (a statement on a thread).

    The body has been read, so the next ASGI message can only be the disconnect."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        if on_leave is not None:
            on_leave()
        raise ServiceError(ErrorCode.CLIENT_DISCONNECTED, "the client disconnected before its answer was ready")
    finally:
        watcher.cancel()
        task.cancel()  # a no-op once done; otherwise the clip leaves the queue


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
